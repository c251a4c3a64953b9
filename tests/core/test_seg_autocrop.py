"""``--autocrop``: the crop box of hand-made arrays, the network input, and the labels pasted
back on the full grid."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from synthbids.core.errors import InputError, UsageError
from synthbids.core.imageio import load_volume
from synthbids.core.seg_preprocess import autocrop_indices, preprocess, rescale
from synthbids.core.segment import load_seg_model, segment


def box(shape, *slices):
    data = np.zeros(shape)
    data[tuple(slices)] = 1
    return data


@pytest.mark.parametrize(
    ('data', 'divisor', 'expected'),
    [
        # voxels 10-19, 30-74, 0-2: extents 11, 46, 4 -> sizes 32, 64, 32; starts 10 - 10,
        # 30 - 9, 0 - 14 -> 0 (clipped at the start)
        (
            box((100, 90, 80), slice(10, 20), slice(30, 75), slice(0, 3)),
            32,
            [0, 21, 0, 32, 85, 32],
        ),
        # voxels 30-39, 0-39, 5: extents 11, 41, 2 -> 32, 64, 32; starts 20, 0, 0; the first
        # two boxes end at the image's end
        (box((40, 40, 40), slice(30, 40), slice(None), slice(5, 6)), 32, [20, 0, 0, 40, 40, 32]),
        # voxels 16-45: extent 31 -> 32, the voxel added goes to the high side
        (box((64, 64, 64), slice(16, 46), slice(16, 46), slice(16, 46)), 32, [16] * 3 + [48] * 3),
        # a coarser network's divisor: extent 46 -> 48, start 30 - 1
        (
            box((100, 90, 80), slice(10, 20), slice(30, 75), slice(0, 3)),
            48,
            [0, 29, 0, 48, 77, 48],
        ),
    ],
)
def test_crop_box_of_hand_made_arrays(data, divisor, expected):
    assert autocrop_indices(data, divisor) == expected


def test_only_voxels_above_zero_count():
    data = np.full((50, 50, 50), -1.0)
    assert autocrop_indices(data) is None
    data[20, 25, 30] = 1e-9
    assert autocrop_indices(data) == [20 - 15, 25 - 15, 30 - 15, 20 + 17, 25 + 17, 30 + 17]


def test_box_holds_every_voxel_above_zero():
    rng = np.random.default_rng(0)
    for _ in range(20):
        shape = tuple(rng.integers(20, 120, 3))
        data = np.zeros(shape)
        lo = [rng.integers(0, s) for s in shape]
        hi = [rng.integers(a, s) + 1 for a, s in zip(lo, shape)]
        data[tuple(slice(a, b) for a, b in zip(lo, hi))] = rng.random()
        idx = autocrop_indices(data)
        for axis in range(3):
            start, stop = idx[axis], idx[axis + 3]
            assert start <= lo[axis] and hi[axis] <= stop <= shape[axis]
            size = stop - start
            assert size % 32 == 0 or stop == shape[axis]
            assert size >= hi[axis] - lo[axis] + 1


def blob_image(tmp_path, name='blob.nii.gz'):
    """A head-sized field of view with zeros around a smaller, off-centre head."""
    shape = (100, 90, 80)
    grid = np.indices(shape).astype(float)
    centre = np.array([60, 40, 35])[:, None, None, None]
    r = np.sqrt((((grid - centre) / np.array([22, 25, 20])[:, None, None, None]) ** 2).sum(0))
    rng = np.random.default_rng(1)
    data = np.where(r < 1, 40 + 80 * (1 - r) + 10 * rng.random(shape), 0).astype(np.float32)
    affine = np.diag([-1.0, 1.0, 1.0, 1.0])  # LAS: the aligned grid is the mirrored array
    path = tmp_path / name
    nib.Nifti1Image(data, affine).to_filename(path)
    return path, data


def test_network_input_is_the_rescaled_image_cropped(tmp_path):
    path, data = blob_image(tmp_path)
    volume = load_volume(path, max_dims=5, fdata=True)
    prepared = preprocess(volume, autocrop=True)
    aligned = rescale(np.asarray(data, dtype=np.float64)[::-1])
    crop = prepared.crop_idx
    assert list(crop) == autocrop_indices(aligned)
    inside = tuple(slice(crop[i], crop[i + 3]) for i in range(3))
    pad = prepared.pad_idx
    np.testing.assert_array_equal(
        prepared.image[tuple(slice(pad[i], pad[i + 3]) for i in range(3))],
        aligned[inside].astype(np.float32),
    )
    assert all(s % 32 == 0 and s >= 128 for s in prepared.image.shape)
    assert [crop[i + 3] - crop[i] for i in range(3)] == [64, 64, 64]  # of 100 x 90 x 80
    assert preprocess(volume).crop_idx is None
    with pytest.raises(UsageError, match='--autocrop cannot be used with --crop'):
        preprocess(volume, crop=64, autocrop=True)
    empty = tmp_path / 'sparse.nii.gz'
    sparse = np.zeros((40, 40, 40), np.float32)
    sparse[0, 0, :3] = 1  # fewer than 0.5 % of the voxels: the 99.5th percentile is 0
    nib.Nifti1Image(sparse, np.eye(4)).to_filename(empty)
    with pytest.raises(InputError, match='--autocrop found no voxel above'):
        preprocess(load_volume(empty, max_dims=5, fdata=True), autocrop=True)


def test_labels_and_posteriors_are_pasted_back(tmp_path, tiny_seg_models):
    path, data = blob_image(tmp_path)
    model = load_seg_model(tiny_seg_models)
    result = segment(path, model, autocrop=True, posteriors=True, fast=True)
    assert result.labels.shape == data.shape and result.volume_precision == 'float64'
    prepared = preprocess(load_volume(path, max_dims=5, fdata=True), autocrop=True)
    crop = prepared.crop_idx
    inside = np.zeros(data.shape, bool)
    inside[tuple(slice(crop[i], crop[i + 3]) for i in range(3))] = True
    inside = inside[::-1]  # back to the LAS array order
    assert result.labels[inside].any() and not result.labels[~inside].any()
    np.testing.assert_array_equal(result.posteriors[~inside][:, 0], 1)
    assert {0, 2, 3} <= set(np.unique(result.labels))
    with pytest.raises(UsageError, match='--autocrop cannot be used with --crop'):
        segment(path, model, autocrop=True, crop=[64, 64, 64])
