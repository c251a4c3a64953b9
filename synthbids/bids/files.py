"""Small text files written atomically, so parallel participant jobs never see half a file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..core.atomic import atomic_path, write_text

__all__ = ['copy_file', 'read_tsv', 'write_json', 'write_text', 'write_tsv']


def write_json(path: Path, data: dict) -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=False) + '\n')


def copy_file(src: Path, dest: Path) -> Path:
    """Copy ``src`` to ``dest`` atomically (a crash never leaves a partial ``dest``)."""
    dest = Path(dest)
    with atomic_path(dest, makedirs=True) as tmp:
        shutil.copyfile(src, tmp)
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
