"""SynthSeg's label facts as the BIDS outputs need them (one adapter over ``core.labels``).

``desc-aseg``: SynthSeg's 32 aseg-like structures (FreeSurfer label values and names);
``desc-aparcaseg``: the same with the cortex replaced by the 68 Desikan-Killiany parcels;
``desc-head``: the seven head-tissue classes (``core.labels.HEAD_CLASSES``).
"""

from __future__ import annotations


def _labels_module():
    from ..core import labels

    return labels


def label_values(parc: bool, v1: bool = False) -> tuple[int, ...]:
    L = _labels_module()
    return L.segmentation_labels_with_parcellation(v1) if parc else L.seg_labels(v1)


def lookup_rows(parc: bool, v1: bool = False) -> list[dict]:
    """Rows of a BIDS ``dseg.tsv``: ``index``, ``name`` (FreeSurfer), ``color`` (#rrggbb)."""
    rows = _labels_module().lookup_table(label_values(parc, v1))
    return [dict(r) for r in rows]


def colors(parc: bool, v1: bool = False) -> dict[int, str]:
    return {int(r['index']): r['color'] for r in lookup_rows(parc, v1)}


def fs_names(values) -> list[str]:
    """FreeSurfer names of label values (the ``LabelMap`` of a 4-D probseg)."""
    L = _labels_module()
    return [L.fs_name(int(v)) for v in values]


def index_of_volume_name() -> dict[str, int]:
    """Label value of each ``mri_synthseg`` volume-table name (parcels included)."""
    L = _labels_module()
    out = {}
    for value in set(L.seg_labels(False)) | set(L.PARC_LABELS):
        if value:
            out[L.name(value)] = int(value)
    return out


def head_lookup_rows() -> list[dict]:
    """Rows of the head-tissue ``dseg.tsv``: ``index`` (class), ``name``, ``color``."""
    L = _labels_module()
    return [
        {'index': i, 'name': name, 'color': color}
        for i, (name, color) in enumerate(zip(L.HEAD_NAMES, L.HEAD_COLORS))
    ]
