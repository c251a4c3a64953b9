"""Volume and QC tables in ``mri_synthseg``'s CSV layout.

One table for many subjects: a header row ``subject,<names...>`` and one row per subject,
named after the input file with ``.nii.gz`` removed (the reference removes nothing else).
Per-subject tables (inputs given as a text file of paths) have an empty first header cell.
Volumes are written as the reference prints them: the shortest decimal of the float32 value
(float64 with ``--crop``); QC scores with 4 decimals. Files are replaced atomically.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .atomic import write_text


def subject_name(path: str | os.PathLike) -> str:
    return os.path.basename(os.fspath(path)).replace('.nii.gz', '')


def format_volume(value: float, precision: str = 'float32') -> str:
    if precision == 'float64':
        return str(np.float64(value))
    return str(np.float32(value))


def format_qc(value: float) -> str:
    return f'{value:.4f}'


def volume_row(subject: str, volumes: Mapping[str, float], precision: str = 'float32'):
    return [subject] + [format_volume(v, precision) for v in volumes.values()]


def qc_row(subject: str, scores: Mapping[str, float]):
    return [subject] + [format_qc(v) for v in scores.values()]


def table(header: Sequence[str], rows: Sequence[Sequence[str]], shared: bool = True) -> str:
    """CSV text: ``subject`` heads the first column of a shared table, nothing otherwise."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator='\r\n')
    writer.writerow(['subject' if shared else '', *header])
    writer.writerows(rows)
    return out.getvalue()


def write_table(path: str | os.PathLike, text: str) -> Path:
    """Replace ``path`` with ``text`` atomically (CSV line ends kept as they are)."""
    return write_text(path, text, newline='')
