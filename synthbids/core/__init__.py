"""Pure computational core: torch, numpy, scipy and nibabel only (no nipype, no CLI)."""
