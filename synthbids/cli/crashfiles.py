"""Crash files written whole or not at all.

Nipype writes the crash file of a failed step itself, straight to its final name: on a full
disk that leaves an empty ``crash-*.txt`` behind and ends the run with a bare ``OSError``.
While a participant run executes, :func:`atomic_crash_files` has Nipype's crash reports go
through synthbids' atomic writer instead (same text: the node, its working folder, its inputs
and the traceback), so a crash file that cannot be written leaves nothing and is reported as
an :class:`~synthbids.core.errors.OutputError` (one line, exit 73).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


def write_crash_file(filename, record: dict) -> None:
    """Nipype's plain-text crash record (``crashfile_format: txt``), written atomically."""
    from ..core.atomic import write_text

    text = ''
    node = record.get('node')
    if node is not None:
        text += (
            f'Node: {node.fullname}\n'
            f'Working directory: {node.output_dir()}\n\n'
            f'Node inputs:\n{node.inputs}\n'
        )
    text += ''.join(record.get('traceback') or ())
    write_text(filename, text)


@contextlib.contextmanager
def atomic_crash_files() -> Iterator[None]:
    """Within the block, Nipype writes text crash files with :func:`write_crash_file`."""
    from nipype.pipeline.plugins import tools

    original = tools.crash2txt
    tools.crash2txt = write_crash_file
    try:
        yield
    finally:
        tools.crash2txt = original
