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


def extend_sdt(
    sdt: np.ndarray, border: float, voxsize: float = 1.0, band: float | None = None
) -> np.ndarray:
    """Widen a narrow-band distance map (mm, on a grid of ``voxsize`` mm) for large borders.

    The network's distance is only meaningful within a few mm of the brain. When ``border``
    reaches the largest predicted value, the outside is recomputed as the Euclidean distance
    in mm to the region ``sdt < 1``, within its bounding box grown by ``border`` (rounded to
    whole voxels); inside values are kept and everything further away gets 100. On the 1 mm
    grid of the official weights this is ``mri_synthstrip``'s rule exactly. Weights trained
    on a distance clipped to ``band`` mm predict about ``band`` everywhere far from the brain:
    for them the map is widened from ``band - 1`` mm on.
    """
    limit = int(sdt.max()) if band is None else min(int(sdt.max()), band - 1)
    if border < limit:
        return sdt
    inside = sdt < 1
    if not inside.any():
        return sdt
    gap = int(border / voxsize + 0.5)
    if voxsize > 1:  # a coarse map is interpolated onto the input grid: one voxel more
        gap += 1
    box = tuple(
        slice(max(s.start - gap, 0), min(s.stop + gap, n))
        for s, n in zip(bbox_slices(inside), sdt.shape)
    )
    out = np.full_like(sdt, 100)
    out[box] = ndimage.distance_transform_edt(~inside[box], sampling=voxsize)
    out[inside] = sdt[inside]
    return out
