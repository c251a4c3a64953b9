"""Reading a derivatives dataset back: what was produced for each source image.

Reports and the group level read only the derivatives (names, sidecars, tables), never the
work directory, so they can be rebuilt at any time (``--reports-only``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..bids.files import read_tsv
from ..bids.naming import SourceImage, figure_relpath, parse_name

SKIPPED_FOLDERS = ('figures', 'log')
#: ``desc-`` of the head-tissue outputs (labels, volumes, meshes).
HEAD_DESC = 'head'


@dataclass
class ImageOutputs:
    """Everything written for one source image (paths relative to the output dir)."""

    source: SourceImage
    files: list[str] = field(default_factory=list)
    mask: str | None = None
    brain: str | None = None
    dseg: str | None = None
    probseg: str | None = None
    volumes: str | None = None
    qc: str | None = None
    seg: str | None = None  # desc- label of the segmentation
    head_dseg: str | None = None  # head-tissue labels (desc-head)
    head_volumes: str | None = None
    head_meshes: list[str] = field(default_factory=list)  # .surf.gii and .stl files
    tissue_dseg: str | None = None  # 3-class GM/WM/CSF dseg (no desc-)
    tissue_probsegs: list[str] = field(default_factory=list)  # label-GM|WM|CSF
    templates: dict[str, list[str]] = field(default_factory=dict)  # space-<template> files
    meta: dict[str, dict] = field(default_factory=dict)  # sidecar of each kind

    @property
    def anchor(self) -> str:
        return self.source.key

    def figure(
        self, output_dir: Path, desc: str | None, extension: str = '.svg', space: str = ''
    ) -> str | None:
        extra = {'space': space} if space else None
        rel = figure_relpath(self.source, desc, extension, extra)
        return rel if (Path(output_dir) / rel).is_file() else None


def _source_of(sidecar: Path) -> str | None:
    try:
        meta = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return None
    for uri in meta.get('Sources', []):
        if isinstance(uri, str) and uri.startswith('bids:raw:'):
            return uri[len('bids:raw:') :]
    return None


def collect_outputs(output_dir: Path, subject: str | None = None) -> list[ImageOutputs]:
    """The outputs of every processed image (of one subject, or all), sorted by source."""
    output_dir = Path(output_dir)
    pattern = f'sub-{subject}' if subject else 'sub-*'
    found: dict[str, ImageOutputs] = {}
    for subject_dir in sorted(output_dir.glob(pattern)):
        if not subject_dir.is_dir():
            continue
        for sidecar in sorted(subject_dir.rglob('*.json')):
            rel_parts = sidecar.relative_to(output_dir).parts
            if any(part in SKIPPED_FOLDERS for part in rel_parts[:-1]):
                continue
            src = _source_of(sidecar)
            if src is None:
                continue
            entry = found.setdefault(src, ImageOutputs(SourceImage.from_relpath(src)))
            _add(entry, output_dir, sidecar)
    for entry in found.values():
        _add_meshes(entry, output_dir)
    return [found[k] for k in sorted(found)]


def _add_meshes(entry: ImageOutputs, output_dir: Path) -> None:
    """The surface meshes beside an image's head labels (they have no sidecar): named like
    the labels, with the surface as suffix."""
    from ..core.head_meshes import SURFACES

    if not entry.head_dseg or not entry.head_dseg.endswith('_dseg.nii.gz'):
        return
    dseg = Path(output_dir) / entry.head_dseg
    prefix = dseg.name[: -len('dseg.nii.gz')]
    for ext in ('.surf.gii', '.stl'):
        for surface in SURFACES:  # outermost first
            path = dseg.parent / f'{prefix}{surface}{ext}'
            if path.is_file():
                rel = path.relative_to(output_dir).as_posix()
                entry.head_meshes.append(rel)
                entry.files.append(rel)


def _add(entry: ImageOutputs, output_dir: Path, sidecar: Path) -> None:
    entities, suffix, _ = parse_name(sidecar)
    stem = sidecar.name[: -len('.json')]
    data = next((p for p in sorted(sidecar.parent.glob(stem + '.*')) if p.suffix != '.json'), None)
    if data is None:
        return
    rel = data.relative_to(output_dir).as_posix()
    entry.files += [rel, sidecar.relative_to(output_dir).as_posix()]
    space = entities.get('space')
    if space is not None and space != entry.source.space:  # in a template's space
        entry.templates.setdefault(space, []).append(rel)
        return
    if suffix == 'dseg' and 'desc' not in entities:
        entry.tissue_dseg = rel
        return
    if suffix == 'probseg' and 'label' in entities:
        entry.tissue_probsegs.append(rel)
        return
    kind = {
        'mask': 'mask',
        'dseg': 'dseg',
        'probseg': 'probseg',
        'volumes': 'volumes',
        'qc': 'qc',
    }.get(suffix)
    if kind is None and entities.get('desc') == 'brain':
        kind = 'brain'
    if kind in ('dseg', 'volumes') and entities.get('desc') == HEAD_DESC:
        kind = f'head_{kind}'
    if kind is None:
        return
    setattr(entry, kind, rel)
    if kind in ('dseg', 'volumes') and entities.get('desc'):
        entry.seg = entities['desc']
    try:
        entry.meta[kind] = json.loads(sidecar.read_text())
    except ValueError:
        entry.meta[kind] = {}


def read_volumes(path: Path) -> list[dict]:
    """Rows ``{index, name, volume}`` of a per-image volume table (volume as float)."""
    _, rows = read_tsv(path)
    return [{**r, 'volume': _float(r.get('volume'))} for r in rows]


def read_head_volumes(path: Path) -> dict[str, float | None]:
    """``{class column: volume in mL}`` of a per-image head volume table (one row)."""
    _, rows = read_tsv(path)
    return {k: _float(v) for k, v in rows[0].items()} if rows else {}


def read_qc(path: Path) -> list[dict]:
    _, rows = read_tsv(path)
    return [{**r, 'score': _float(r.get('score'))} for r in rows]


def mask_volume(path: Path) -> float:
    """Volume of a binary mask in mm^3; of its first frame for a 4-D series (dynamic PET is
    stripped frame by frame: one mask per frame, each the brain once)."""
    import nibabel as nib
    import numpy as np

    img = nib.load(str(path))
    voxel = float(np.prod(img.header.get_zooms()[:3]))
    frame = img.dataobj[..., 0] if len(img.shape) > 3 else img.dataobj
    return float(np.count_nonzero(np.asanyarray(frame))) * voxel


def select_outputs(
    images: list[ImageOutputs],
    output_dir: Path,
    participant_label: tuple[str, ...] = (),
    session_label: tuple[str, ...] = (),
) -> list[ImageOutputs]:
    """The images of the given participants and sessions (images without a session are
    kept, as at the participant level); FilterError when a label has no outputs."""
    from ..bids.layout import FilterError

    if participant_label:
        present = {im.source.subject for im in images}
        missing = [p for p in participant_label if p not in present]
        if missing:
            raise FilterError(
                f'{output_dir}: no participant outputs for '
                + ', '.join(f'sub-{p}' for p in missing)
            )
        images = [im for im in images if im.source.subject in participant_label]
    if session_label:
        images = [im for im in images if im.source.session in (None, *session_label)]
        if not images:
            raise FilterError(
                f'{output_dir}: no outputs for session(s) {", ".join(session_label)}'
            )
    return images


def _float(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
