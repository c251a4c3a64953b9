"""Small text files written atomically, so parallel participant jobs never see half a file."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from ..core.errors import OutputError


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.partial', dir=path.parent)
        with os.fdopen(fd, 'w', encoding='utf-8') as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as err:
        raise OutputError(path, f'cannot write: {err.strerror or err}') from None
    return path


def write_json(path: Path, data: dict) -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=False) + '\n')


def copy_file(src: Path, dest: Path) -> Path:
    """Copy ``src`` to ``dest`` atomically (a crash never leaves a partial ``dest``)."""
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f'.{dest.name}.', suffix='.partial', dir=dest.parent)
        os.close(fd)
        shutil.copyfile(src, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except OSError as err:
        raise OutputError(dest, f'cannot write: {err.strerror or err}') from None
    return dest


def write_tsv(path: Path, columns: list[str], rows: list[dict]) -> Path:
    """A TSV with ``columns``; missing values are written as ``n/a`` (BIDS)."""
    lines = ['\t'.join(columns)]
    for row in rows:
        lines.append('\t'.join(_cell(row.get(c)) for c in columns))
    return write_text(path, '\n'.join(lines) + '\n')


def read_tsv(path: Path) -> tuple[list[str], list[dict]]:
    lines = Path(path).read_text(encoding='utf-8').splitlines()
    if not lines:
        return [], []
    columns = lines[0].split('\t')
    rows = []
    for line in lines[1:]:
        if line.strip():
            rows.append(dict(zip(columns, line.split('\t'))))
    return columns, rows


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return 'n/a'
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, float):
        return (
            f'{value:.6g}'
            if abs(value) < 1e-3 and value
            else f'{value:.4f}'.rstrip('0').rstrip('.')
        )
    return str(value)
