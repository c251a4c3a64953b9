"""Binary-mask operations shared by SynthStrip and SynthSeg post-processing."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .geometry import bbox_slices


def _padded_bbox(mask: np.ndarray, pad: int = 1) -> tuple[slice, ...]:
    box = bbox_slices(mask)
    return tuple(
        slice(max(s.start - pad, 0), min(s.stop + pad, n)) for s, n in zip(box, mask.shape)
    )


def largest_component(mask: np.ndarray) -> np.ndarray:
    """Keep the largest 6-connected component (ties: the first in raster order)."""
    mask = np.asarray(mask, dtype=bool)
    out = np.zeros_like(mask)
    if not mask.any():
        return out
    box = _padded_bbox(mask)
    labels, n = ndimage.label(mask[box])
    if n == 0:
        return out
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    out[box] = labels == int(np.argmax(sizes))
    return out


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill background regions not connected (6-connectivity) to the array border."""
    mask = np.asarray(mask, dtype=bool)
    out = mask.copy()
    if not mask.any():
        return out
    box = _padded_bbox(mask)
    out[box] = ndimage.binary_fill_holes(mask[box])
    return out


def extend_sdt(sdt: np.ndarray, border: float) -> np.ndarray:
    """Widen a narrow-band distance map for large borders.

    The network's distance is only meaningful within a few mm of the brain. When ``border``
    reaches the largest predicted value, the outside is recomputed as the Euclidean distance
    (voxels) to the region ``sdt < 1``, within its bounding box grown by ``int(border + 0.5)``;
    inside values are kept and everything further away gets 100.
    """
    if border < int(sdt.max()):
        return sdt
    inside = sdt < 1
    if not inside.any():
        return sdt
    gap = int(border + 0.5)
    box = tuple(
        slice(max(s.start - gap, 0), min(s.stop + gap, n))
        for s, n in zip(bbox_slices(inside), sdt.shape)
    )
    out = np.full_like(sdt, 100)
    out[box] = ndimage.distance_transform_edt(~inside[box])
    out[inside] = sdt[inside]
    return out
