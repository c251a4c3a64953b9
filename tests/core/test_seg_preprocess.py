"""SynthSeg preprocessing: bit-identical network inputs, alignment, channels, edge cases."""

from __future__ import annotations

import hashlib
import json

import nibabel as nib
import numpy as np
import pytest

from synthbids.core.errors import InputError
from synthbids.core.imageio import load_volume
from synthbids.core.seg_preprocess import (
    crop_indices,
    needs_resampling,
    pad_indices,
    preprocess,
    ras_alignment,
)


@pytest.fixture(scope='module')
def pipeline(shared_dir):
    return shared_dir / 'golden/synthseg/pipeline'


def test_ch2_network_input_is_bit_identical(ch2, pipeline):
    prepared = preprocess(load_volume(ch2, fdata=True))
    ref = np.load(pipeline / 'synthseg2_net_input.npz')['x'][0, ..., 0]
    np.testing.assert_array_equal(prepared.image, ref)
    assert prepared.pad_idx == (5, 3, 5, 186, 220, 186)
    assert prepared.resampled is None and prepared.crop_idx is None
    np.testing.assert_array_equal(prepared.im_res, [1, 1, 1])


def test_crop_network_input_is_bit_identical(ch2, pipeline):
    prepared = preprocess(load_volume(ch2, fdata=True), crop=[64, 32, 32])
    info = json.loads((pipeline / 'synthseg2_crop_info.json').read_text())
    np.testing.assert_array_equal(
        prepared.image, np.load(pipeline / 'synthseg2_crop_net_input.npz')['x'][0, ..., 0]
    )
    assert list(prepared.crop_idx) == info['crop_idx']
    assert list(prepared.pad_idx) == info['pad_idx']


def test_oblique_anisotropic_image_is_resampled_and_aligned_exactly(shared_dir, pipeline):
    image = shared_dir / 'golden/ch2_oblique_aniso.nii.gz'
    prepared = preprocess(load_volume(image, fdata=True))
    info = json.loads((pipeline / 'oblique_preprocess_info.json').read_text())
    np.testing.assert_allclose(prepared.affine, info['resampled_affine'], atol=1e-9)
    assert list(prepared.aligned_shape) == info['shape_after_align']
    assert list(prepared.pad_idx) == info['pad_idx']
    x = prepared.image
    digest = hashlib.sha256(np.ascontiguousarray(x[None, ..., None]).tobytes()).hexdigest()
    assert digest == info['sha256_float32_of_full_input_1xDxHxWx1']
    parts = np.load(pipeline / 'oblique_preprocess_net_input_parts.npz')
    c = np.array(x.shape) // 2
    np.testing.assert_array_equal(parts['plane_i'], x[c[0]])
    np.testing.assert_array_equal(
        parts['block'], x[c[0] - 32 : c[0] + 32, c[1] - 32 : c[1] + 32, c[2] - 32 : c[2] + 32]
    )
    assert prepared.resampled.shape == prepared.shape and prepared.resampled.dtype == np.float32


def test_alignment_undo_is_the_exact_inverse():
    rng = np.random.default_rng(0)
    for _ in range(20):
        perm = rng.permutation(3)
        affine = np.eye(4)
        affine[:3, :3] = np.eye(3)[:, perm] * rng.choice([-1, 1], 3) * rng.uniform(0.5, 2, 3)
        alignment = ras_alignment(affine)
        data = rng.random((4, 5, 6, 2))
        aligned = alignment.apply(data)
        assert aligned.shape[:3] == alignment.aligned_shape(data.shape)
        np.testing.assert_array_equal(alignment.undo(aligned), data)
        # the aligned axes point to +R, +A, +S
        permuted = affine[:3, list(alignment.perm)] * np.where(alignment.flips, -1, 1)
        assert (np.diag(permuted) > 0).all()


def test_resampling_threshold_uses_the_header_float32():
    assert not needs_resampling([1.05, 1, 1]) and not needs_resampling([0.95, 1, 1])
    assert needs_resampling([1.06, 1, 1]) and needs_resampling([1, 1, 0.94])


def test_crop_and_pad_indices():
    assert crop_indices((181, 217, 181), [64, 32, 32]) == [58, 92, 74, 122, 124, 106]
    assert crop_indices((20, 217, 181), [40, 33, 1]) == [0, 76, 74, 20, 140, 106]
    idx, margins = pad_indices((181, 217, 181), [128] * 3)
    assert idx == [5, 3, 5, 186, 220, 186] and margins[1] == (3, 4)
    assert pad_indices((64, 32, 32), [64, 32, 32])[1] == [(0, 0)] * 3


def test_channels_are_averaged_and_thin_images_rejected(make_nifti, tmp_path):
    rng = np.random.default_rng(0)
    data = rng.random((30, 32, 28, 3)).astype(np.float32) * 100
    path = make_nifti('rgb.nii.gz', data=data)
    prepared = preprocess(load_volume(path, max_dims=5, fdata=True))
    mean = preprocess(load_volume(make_nifti('mean.nii.gz', data=data.mean(-1)), fdata=True))
    np.testing.assert_allclose(prepared.image, mean.image, atol=1e-6)
    frames = make_nifti('frames.nii.gz', data=rng.random((20, 20, 20, 12)).astype(np.float32))
    with pytest.raises(InputError, match='4-D with 12 frames'):
        preprocess(load_volume(frames, max_dims=5, fdata=True))
    thin = make_nifti('thin.nii.gz', data=rng.random((40, 40, 3)).astype(np.float32))
    with pytest.raises(InputError, match='only 3 slices'):
        preprocess(load_volume(thin, fdata=True))
    const = make_nifti('const.nii.gz', data=np.full((20, 20, 20), 7, np.int16))
    with pytest.raises(InputError, match='constant'):
        preprocess(load_volume(const, fdata=True))


def test_scaled_integers_are_read_as_get_fdata(tmp_path):
    img = nib.Nifti1Image(np.arange(8000, dtype=np.int16).reshape(20, 20, 20), np.eye(4))
    img.header.set_slope_inter(0.1, 3)
    path = tmp_path / 'scaled.nii.gz'
    img.to_filename(path)
    volume = load_volume(path, fdata=True)
    assert volume.data.dtype == np.float64
    np.testing.assert_array_equal(volume.data, nib.load(path).get_fdata())
