"""What the seg model card shows: Dice per contrast and voxel size, and the Colin27 picture."""

from __future__ import annotations

import nibabel as nib
import numpy as np
from PIL import Image

from synthbids.train.cards import _contrast_by_resolution
from synthbids.train.evaluate import seg_picture


def test_contrast_by_resolution_averages_each_cell():
    rows = [
        {'contrast': 'T1w', 'voxel_mm': [1.0, 1.0, 1.0], 'dice': 0.8},
        {'contrast': 'T1w', 'voxel_mm': [1.0, 1.0, 1.0], 'dice': 0.6},
        {'contrast': 'T1w', 'voxel_mm': [1.0, 1.0, 5.0], 'dice': 0.5},
        {'contrast': 'CT', 'voxel_mm': [1.0, 1.0, 5.0], 'dice': 0.4},
    ]
    lines = _contrast_by_resolution(rows)
    assert '| contrast | 1x1x1 | 1x1x5 |' in lines
    assert '| T1w | 0.700 | 0.500 |' in lines
    assert '| CT |  | 0.400 |' in lines  # a cell with no image stays empty


def test_seg_picture_draws_one_row_per_panel(tmp_path):
    shape = (40, 48, 44)
    affine = np.diag([-1.0, 1.0, 1.0, 1.0])  # LAS, as many scanners write: shown as RAS
    affine[:3, 3] = [20, -24, -22]
    image = np.random.default_rng(0).uniform(0, 100, shape).astype(np.float32)
    nib.save(nib.Nifti1Image(image, affine), tmp_path / 'img.nii.gz')
    labels = np.zeros(shape, np.int16)
    labels[8:32, 8:40, 8:36] = 3  # cortex around white matter around ventricles
    labels[12:28, 12:36, 12:32] = 2
    labels[14:18, 20:28, 16:22], labels[22:26, 20:28, 16:22] = 4, 43
    path = tmp_path / 'colin.png'
    seg_picture(tmp_path / 'img.nii.gz', affine, [('a', labels), ('b', labels)], 'T', path)
    one = tmp_path / 'one.png'
    seg_picture(tmp_path / 'img.nii.gz', affine, [('a', labels)], 'T', one)
    with Image.open(path) as two_rows, Image.open(one) as one_row:
        assert two_rows.mode == 'P'  # 256 colours
        assert two_rows.width == one_row.width and two_rows.height > 1.8 * one_row.height
        pixels = np.asarray(two_rows.convert('RGB')).reshape(-1, 3).astype(int)
    red = (pixels[:, 0] > 150) & (pixels[:, 1] < 100) & (pixels[:, 2] < 100)
    assert red.sum() > 50  # the cortex boundary is drawn
