"""Grid operations: every voxel keeps its world position; samplers follow the reference rules."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from nibabel.orientations import aff2axcodes

from synthbids.core.geometry import (
    Grid,
    center_pad_crop,
    crop,
    integer_shift,
    reorient,
    resample_to,
    sample_linear,
    sample_nearest,
)


def world(affine, idx):
    return (affine @ np.append(np.asarray(idx, float), 1))[:3]


def random_axes_affine(rng, perm, signs, zooms=(1.2, 0.9, 2.0)):
    m = np.zeros((4, 4))
    for vox_axis, (w, s) in enumerate(zip(perm, signs)):
        m[w, vox_axis] = s * zooms[vox_axis]
    m[:3, 3] = rng.normal(size=3) * 30
    m[3, 3] = 1
    return m


@pytest.mark.parametrize('perm', list(itertools.permutations(range(3))))
@pytest.mark.parametrize('signs', [(1, 1, 1), (-1, 1, -1), (-1, -1, -1)])
def test_reorient_to_lia_keeps_world_positions(perm, signs):
    rng = np.random.default_rng(0)
    affine = random_axes_affine(rng, perm, signs)
    data = rng.random((5, 6, 7))
    out, new, zooms = reorient(data, affine, (1.2, 0.9, 2.0))
    assert ''.join(aff2axcodes(new)) == 'LIA'
    assert np.allclose(np.linalg.norm(new[:3, :3], axis=0), zooms)
    for idx in [(0, 0, 0), (4, 5, 6), (2, 1, 3)]:
        value = data[idx]
        hit = np.argwhere(out == value)[0]
        np.testing.assert_allclose(world(new, hit), world(affine, idx), atol=1e-9)


def brute_nearest(src, vox2vox, shape, fill):
    m = vox2vox.astype(np.float32)
    out = np.empty(shape, src.dtype)
    for i, j, k in np.ndindex(*shape):
        s = [
            ((m[r, 0] * np.float32(i) + m[r, 1] * np.float32(j)) + m[r, 2] * np.float32(k))
            + m[r, 3]
            for r in range(3)
        ]
        if any(c < 0 or c >= n for c, n in zip(s, src.shape)):
            out[i, j, k] = fill
            continue
        idx = [min(int(np.floor(float(c) + 0.5)), n - 1) for c, n in zip(s, src.shape)]
        out[i, j, k] = src[tuple(idx)]
    return out


def test_nearest_sampler_matches_a_voxel_loop_including_half_way_ties():
    rng = np.random.default_rng(1)
    src = rng.integers(0, 1000, (7, 6, 5)).astype(np.int16)
    vox2vox = np.eye(4)
    vox2vox[:3, :3] = [[0.5, 0.0, 0.1], [0.0, 0.75, 0.0], [-0.05, 0.0, 1.5]]
    vox2vox[:3, 3] = [-0.5, 0.25, -1.0]
    ours = sample_nearest(src, vox2vox, (12, 9, 5), fill=-7)
    np.testing.assert_array_equal(ours, brute_nearest(src, vox2vox, (12, 9, 5), -7))
    assert (ours == -7).any() and ours.dtype == np.int16


def test_linear_sampler_interpolates_and_fills_outside():
    src = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)  # linear in the index
    vox2vox = np.eye(4)
    vox2vox[:3, 3] = [0.5, 0.25, -0.5]
    out = sample_linear(src, vox2vox, (4, 5, 6), fill=100)
    i, j, k = 1, 2, 3
    assert out[i, j, k] == pytest.approx(30 * (i + 0.5) + 6 * (j + 0.25) + (k - 0.5), abs=1e-4)
    assert out[0, 0, 0] == 100  # k - 0.5 < 0
    assert out[3, 0, 1] == pytest.approx(src[3, 0, 0] + 0.25 * 6 + 0.5, abs=1e-4)  # clamped


def test_integer_shift_copy_equals_trilinear_sampling():
    rng = np.random.default_rng(2)
    src = rng.random((6, 7, 8)).astype(np.float32)
    src_aff = random_axes_affine(rng, (1, 2, 0), (-1, 1, -1), zooms=(1, 1, 1))
    # target = a permuted, flipped and shifted view of the source grid, partly outside it
    shift = np.array([[0, 0, -1, 6], [1, 0, 0, -2], [0, 1, 0, 1], [0, 0, 0, 1.0]])
    trg = Grid((9, 5, 7), src_aff @ shift)
    assert integer_shift(Grid(src.shape, src_aff), trg) is not None
    fast = resample_to(src, Grid(src.shape, src_aff), trg, fill=100)
    vox2vox = np.linalg.inv(src_aff) @ trg.affine
    slow = sample_linear(src, vox2vox, trg.shape, fill=100)
    np.testing.assert_array_equal(fast, slow)
    assert (fast == 100).any() and (fast != 100).any()


def test_crop_and_center_pad_keep_world_positions():
    rng = np.random.default_rng(3)
    affine = random_axes_affine(rng, (0, 2, 1), (-1, -1, 1))
    data = rng.random((10, 11, 12))
    cropped, aff_c = crop(data, affine, (slice(2, 9), slice(0, 11), slice(3, 12)))
    assert cropped[0, 0, 0] == data[2, 0, 3]
    np.testing.assert_allclose(world(aff_c, (0, 0, 0)), world(affine, (2, 0, 3)))
    padded, aff_p = center_pad_crop(cropped, aff_c, (12, 8, 9))  # pad, crop, keep
    # axis 0: 7 -> 12 pads 2 before; axis 1: 11 -> 8 removes 1 at the start; axis 2 unchanged
    assert padded[2, 0, 0] == cropped[0, 1, 0]
    np.testing.assert_allclose(world(aff_p, (2, 0, 0)), world(aff_c, (0, 1, 0)))
    assert padded[:2].sum() == 0 and padded[9:].sum() == 0
