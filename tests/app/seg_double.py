"""A test double of the SynthSeg core (``synthbids.core.segment`` / ``synthbids.core.labels``).

TEMPORARY, tests only: the SynthSeg core is being written on the ``seg-core`` branch. This
double follows its agreed contract (``load_seg_model``, ``segment`` -> ``SegResult``; label
lists, names and FreeSurfer colours) so that the app's segmentation path (interfaces,
derivatives, reports, group tables) is exercised end to end. It is installed into
``sys.modules`` by the ``seg_double`` fixture, so it only works in-process (Linear plugin).
Remove it when the real core and its ``tiny_seg_h5`` fixture are on main.

Its "segmentation" thresholds intensity: bright voxels split into left/right cortex, white
matter and ventricles by position. One image (``sub-02`` T2w) gets a failing QC score.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field

import numpy as np

SEG_LABELS_V2 = (
    0, 2, 3, 4, 5, 7, 8, 10, 11, 12, 13, 14, 15, 16, 17, 18, 24, 26, 28,
    41, 42, 43, 44, 46, 47, 49, 50, 51, 52, 53, 54, 58, 60,
)  # fmt: skip
PARC_LABELS = (0,) + tuple(b + i for b in (1000, 2000) for i in range(1, 36) if i != 4)
QC_NAMES = (
    'general white matter', 'general grey matter', 'general csf', 'cerebellum', 'brainstem',
    'thalamus', 'putamen+pallidum', 'hippocampus+amygdala',
)  # fmt: skip
NAMES = {2: 'left cerebral white matter', 3: 'left cerebral cortex', 4: 'left lateral ventricle',
         41: 'right cerebral white matter', 42: 'right cerebral cortex',
         43: 'right lateral ventricle'}  # fmt: skip
FS = {0: 'Unknown', 2: 'Left-Cerebral-White-Matter', 3: 'Left-Cerebral-Cortex',
      4: 'Left-Lateral-Ventricle', 41: 'Right-Cerebral-White-Matter',
      42: 'Right-Cerebral-Cortex', 43: 'Right-Lateral-Ventricle'}  # fmt: skip
COLORS = {0: '#000000', 2: '#f5f5f5', 3: '#cd3e4e', 4: '#781286', 41: '#00e100',
          42: '#cd3e4e', 43: '#781286'}  # fmt: skip


# --------------------------------------------------------------------------- labels


def seg_labels(v1=False):
    return tuple(v for v in SEG_LABELS_V2 if not (v1 and v == 24))


def segmentation_labels_with_parcellation(v1=False):
    base = [v for v in seg_labels(v1) if v not in (3, 42)]
    return tuple(sorted(base + list(PARC_LABELS[1:])))


def name(label):
    if label in NAMES:
        return NAMES[label]
    if label >= 1000:
        return f'ctx-{"lh" if label < 2000 else "rh"}-region{label % 1000}'
    return f'structure {label}'


def fs_name(label):
    return FS.get(label, name(label).replace(' ', '-'))


def color(label):
    return COLORS.get(label, f'#{label % 251:02x}{(label * 7) % 251:02x}{99:02x}')


def lookup_table(labels):
    return [{'index': int(v), 'name': fs_name(v), 'color': color(v)} for v in labels]


# --------------------------------------------------------------------------- segment


@dataclass
class SegModel:
    weights: list
    parc: bool = False
    qc: bool = False
    robust: bool = False


@dataclass
class SegResult:
    labels: np.ndarray
    affine: np.ndarray
    volumes: dict
    qc: dict | None = None
    posteriors: np.ndarray | None = None
    posterior_labels: list = field(default_factory=list)
    resampled: np.ndarray | None = None
    resampled_affine: np.ndarray | None = None
    weights: list = field(default_factory=list)


def load_seg_model(model=None, *, v1=False, robust=False, parc=False, qc=False, device='cpu'):
    from synthbids.core.weights import resolve

    weights = [resolve('seg-robust' if robust else 'seg', explicit=model)]
    return SegModel(weights=weights, parc=parc, qc=qc, robust=robust)


def segment(image, model, *, fast=False, crop=None, ct=False, keepgeom=False, posteriors=False,
            parc_compat=False):  # fmt: skip
    import nibabel as nib

    img = nib.load(str(image))
    data = np.asanyarray(img.dataobj).astype(np.float32)
    inside = data > 0.4 * np.percentile(data, 99)
    x = np.indices(data.shape)[0]
    centre = np.argwhere(inside).mean(0) if inside.any() else np.array(data.shape) / 2
    r = np.linalg.norm(
        (np.indices(data.shape) - centre[:, None, None, None])
        / (np.array(data.shape) / 4)[:, None, None, None],
        axis=0,
    )
    right = x < centre[0]  # RAS: lower x is right... only the split matters here
    labels = np.zeros(data.shape, np.int32)
    labels[inside] = np.where(right, 42, 3)[inside]
    core = inside & (r < 0.8)
    labels[core] = np.where(right, 41, 2)[core]
    vent = inside & (r < 0.3)
    labels[vent] = np.where(right, 43, 4)[vent]
    if model.parc:
        ctx = np.isin(labels, (3, 42))
        labels[ctx] = np.where(right, 2001, 1001)[ctx] + (x[ctx] % 3)
    voxel = float(abs(np.linalg.det(img.affine[:3, :3])))
    volumes = {'total intracranial': float(inside.sum()) * voxel}
    for v in seg_labels():
        if v:
            volumes[name(v)] = float(np.count_nonzero(labels == v)) * voxel
    if model.parc:
        for v in PARC_LABELS[1:]:
            volumes[name(v)] = float(np.count_nonzero(labels == v)) * voxel
    qc = None
    if model.qc:
        qc = {n: 0.9 - 0.01 * i for i, n in enumerate(QC_NAMES)}
        if 'sub-02' in str(image) and 'T2w' in str(image):
            qc['general csf'] = 0.41
    post = None
    labels_list = list(seg_labels())
    if posteriors:
        aseg = np.where(labels >= 2000, 42, np.where(labels >= 1000, 3, labels))
        post = np.stack([(aseg == v).astype(np.float32) for v in labels_list], axis=-1)
    return SegResult(
        labels=labels,
        affine=np.asarray(img.affine),
        volumes=volumes,
        qc=qc,
        posteriors=post,
        posterior_labels=labels_list,
        weights=list(model.weights),
    )


def modules() -> dict[str, types.ModuleType]:
    """``sys.modules`` entries standing in for the SynthSeg core."""
    labels = types.ModuleType('synthbids.core.labels')
    for key in ('seg_labels', 'segmentation_labels_with_parcellation', 'name', 'fs_name',
                'color', 'lookup_table', 'PARC_LABELS', 'QC_NAMES'):  # fmt: skip
        setattr(labels, key, globals()[key])
    segment_mod = types.ModuleType('synthbids.core.segment')
    for key in ('SegModel', 'SegResult', 'load_seg_model', 'segment'):
        setattr(segment_mod, key, globals()[key])
    return {'synthbids.core.labels': labels, 'synthbids.core.segment': segment_mod}
