"""Named, realistic contrasts for *evaluating* weights on held-out label maps.

Training draws arbitrary random contrasts; evaluation instead renders each held-out map as a
recognisable acquisition (T1w, T2w, PDw, FLAIR, CT, PET) at a chosen resolution, stored on its
own acquisition grid as a real low-resolution scan would be, so that accuracy can be reported
per contrast and resolution with the whole inference pipeline (conform, predict, resample).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .labelmaps import TISSUE_TYPES, label_tables

# mean intensity per coarse tissue type (arbitrary units), in TISSUE_TYPES order:
# background, gm, wm, deep_gm, csf, bone, skin, soft, fat, eye, vessel
_TABLES = {
    'T1w': (5, 60, 100, 75, 15, 10, 70, 50, 110, 20, 40),
    'T2w': (5, 70, 45, 55, 160, 10, 60, 50, 90, 170, 30),
    'PDw': (5, 90, 75, 85, 120, 15, 85, 70, 100, 120, 40),
    'FLAIR': (5, 95, 60, 80, 12, 10, 70, 55, 90, 15, 30),
    'CT': (-1000, 40, 27, 36, 8, 1200, 40, 40, -90, 15, 45),
    'PET': (0, 100, 35, 85, 5, 5, 10, 10, 5, 20, 40),
}
CONTRASTS = tuple(_TABLES)


@dataclass(frozen=True)
class Acquisition:
    contrast: str
    voxel_mm: tuple[float, float, float]  # acquisition grid (LIA axes of the map)

    @property
    def name(self) -> str:
        res = 'x'.join(f'{v:g}' for v in self.voxel_mm)
        return f'{self.contrast}-{res}mm'


def render(indices: np.ndarray, acq: Acquisition, seed: int = 0):
    """Render a 1 mm label-index map (LIA) as ``acq``; returns (image, affine) on the
    acquisition grid (slice-thickness blur, then block sampling)."""
    rng = np.random.default_rng(seed)
    tables = label_tables()
    values = np.asarray(_TABLES[acq.contrast], dtype=np.float32)
    tissue = tables.tissue[indices]
    image = values[tissue]
    jitter = rng.normal(1.0, 0.04, size=len(tables.labels)).astype(np.float32)
    if acq.contrast != 'CT':
        image = image * jitter[indices]
    if acq.contrast == 'PET':
        image = ndimage.gaussian_filter(image, 3.0)
    noise = {'CT': 6.0, 'PET': 4.0}.get(acq.contrast, 0.03 * float(values.max()))
    image = image + rng.normal(0, noise, image.shape).astype(np.float32)
    if acq.contrast not in ('CT', 'PET'):
        grid = (
            np.indices(image.shape, dtype=np.float32) / np.array(image.shape)[:, None, None, None]
        )
        bias = 1 + 0.15 * np.sin(2.1 * grid[0] + 0.7) * np.cos(1.7 * grid[2])
        image = np.clip(image * bias, 0, None)
    vox = np.asarray(acq.voxel_mm, dtype=float)
    sigma = np.where(vox > 1, 0.42 * vox, 0)  # slice profile ~ FWHM of the voxel
    if sigma.any():
        image = ndimage.gaussian_filter(image, sigma)
    step = np.maximum(1, np.round(vox).astype(int))
    start = step // 2
    image = image[start[0] :: step[0], start[1] :: step[1], start[2] :: step[2]]
    affine = lia_affine(indices.shape, step, start)
    return image.astype(np.float32), affine


def lia_affine(shape, step=(1, 1, 1), start=(0, 0, 0)) -> np.ndarray:
    """Voxel-to-world matrix of a FreeSurfer-conformed (LIA, 1 mm, centred) map subsampled by
    ``step`` from voxel ``start``."""
    base = np.array([[-1.0, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]])
    base[:3, 3] = -base[:3, :3] @ (np.array(shape) / 2)
    sub = np.diag([*step, 1.0]).astype(float)
    sub[:3, 3] = start
    return base @ sub


def sample_like(labels_1mm: np.ndarray, acq: Acquisition) -> np.ndarray:
    """The label map at the acquisition grid's voxel centres (for Dice on that grid)."""
    step = np.maximum(1, np.round(np.asarray(acq.voxel_mm)).astype(int))
    start = step // 2
    return labels_1mm[start[0] :: step[0], start[1] :: step[1], start[2] :: step[2]]


__all__ = ['CONTRASTS', 'TISSUE_TYPES', 'Acquisition', 'lia_affine', 'render', 'sample_like']
