"""Command-line entry points: argparse -> library calls -> exit codes."""
