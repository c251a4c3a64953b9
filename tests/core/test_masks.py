"""Mask post-processing: largest component, hole filling, widened distance maps."""

from __future__ import annotations

import numpy as np
import pytest
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


def _sphere_sdt(radius_mm: float, voxsize: float, n: int = 48, band: float = 5.0):
    """Signed distance (mm) to a sphere centred in an n^3 grid of ``voxsize`` mm, clipped to
    ``band`` as the training targets are, with noise around ``band`` far away (what a network
    trained on clipped targets predicts)."""
    axis = (np.arange(n) - (n - 1) / 2) * voxsize
    r = np.sqrt(sum(np.meshgrid(axis, axis, axis, indexing='ij')[i] ** 2 for i in range(3)))
    sdt = np.clip(r - radius_mm, -band, band).astype(np.float32)
    far = sdt >= band
    sdt[far] += np.random.default_rng(0).normal(0, 0.3, far.sum()).astype(np.float32)
    return sdt, r


@pytest.mark.parametrize('voxsize', [1.0, 3.0])
@pytest.mark.parametrize('border', [10.0, 20.0])
def test_wide_border_is_measured_in_mm_on_any_grid(voxsize, border):
    """``-b 10`` grows the mask by 10 mm, also on a 3 mm network grid (it grew by 30 mm)."""
    sdt, r = _sphere_sdt(20.0, voxsize, n=48 if voxsize == 3 else 100)
    mask = extend_sdt(sdt, border, voxsize, band=5.0) < border
    reach = r[mask].max()
    assert 20 + border - voxsize <= reach <= 20 + border + voxsize


def test_border_near_the_training_band_does_not_take_the_noise():
    """Weights trained on distances clipped to 5 mm predict about 5 everywhere far away: a
    4.9 mm border widens the map instead of taking everything below 4.9 (the whole field)."""
    sdt, r = _sphere_sdt(20.0, 3.0)
    assert (sdt < 4.9).mean() > 0.3  # the raw map would take a third of the field of view
    mask = extend_sdt(sdt, 4.9, 3.0, band=5.0) < 4.9
    assert r[mask].max() <= 20 + 4.9 + 3
