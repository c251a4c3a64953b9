"""Mask post-processing: largest component, hole filling, widened distance maps."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from synthbids.core.masks import extend_sdt, fill_holes, largest_component
from synthbids.core.strip import mask_from_sdt


def test_largest_component_uses_6_connectivity_and_first_of_ties():
    m = np.zeros((9, 9, 9), bool)
    m[1:3, 1:3, 1:3] = True  # 8 voxels, first in raster order
    m[5:7, 5:7, 5:7] = True  # 8 voxels
    m[3, 3, 3] = True  # touches the first cube only diagonally: separate under 6-connectivity
    out = largest_component(m)
    assert out.sum() == 8 and out[1, 1, 1] and not out[5, 5, 5] and not out[3, 3, 3]


def test_fill_holes_fills_enclosed_cavities_only():
    m = np.zeros((12, 12, 12), bool)
    m[2:10, 2:10, 2:10] = True
    m[4:6, 4:6, 4:6] = False  # enclosed cavity
    m[7:10, 7, 7] = False  # tunnel to the outside: not a hole
    out = fill_holes(m)
    assert out[4:6, 4:6, 4:6].all() and not out[9, 7, 7]
    np.testing.assert_array_equal(out, ndimage.binary_fill_holes(m))


def test_extend_sdt_replaces_the_narrow_band_for_wide_borders():
    sdt = np.full((40, 40, 40), 5.0, np.float32)  # network band saturates at 5 mm
    sdt[15:25, 15:25, 15:25] = -2.0
    assert extend_sdt(sdt, border=1) is sdt  # border below the band: unchanged
    wide = extend_sdt(sdt, border=8)
    assert wide[20, 20, 20] == -2.0  # interior kept
    assert wide[20, 20, 28] == 4.0  # 4 voxels from the nearest inside voxel (24)
    assert wide[0, 0, 0] == 100  # beyond the grown bounding box
    mask_narrow = mask_from_sdt(sdt, 8)  # without the extension everything is < 8
    assert mask_narrow.all()
    mask_wide = mask_from_sdt(wide, 8)
    assert 10**3 < mask_wide.sum() < 40**3 and mask_wide[20, 20, 31] and not mask_wide[20, 20, 33]
