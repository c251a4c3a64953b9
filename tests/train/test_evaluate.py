"""Weights evaluation helpers: exact label geometry, and whole-pipeline scoring on a rendered
label map (a small hand-built head, tiny networks)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from synthbids.synth.contrasts import Acquisition
from synthbids.train.evaluate import label_geometry, seg_on_synthetic, strip_on_synthetic


def test_label_geometry_volumes_and_world_centroids():
    labels = np.zeros((10, 10, 10), np.int16)
    labels[0:2, 0:5, 0:4] = 2  # 40 voxels
    labels[8:10, 4:6, 6:8] = 41  # 8 voxels
    affine = np.diag([2.0, 2.0, 2.0, 1.0])  # 8 mm3 voxels
    affine[:3, 3] = [-10, -20, -30]
    g = label_geometry(labels, affine)
    assert set(g) == {2, 41}
    assert g[2]['ml'] == pytest.approx(40 * 8 / 1000)
    assert g[2]['ras'] == pytest.approx([-10 + 2 * 0.5, -20 + 2 * 2, -30 + 2 * 1.5])
    assert g[41]['ras'] == pytest.approx([-10 + 2 * 8.5, -20 + 2 * 4.5, -30 + 2 * 6.5])


@pytest.fixture(scope='module')
def small_head(tmp_path_factory):
    """A 64^3 LIA 1 mm map: skin shell, CSF, two hemispheres of white matter."""
    grid = np.stack(np.meshgrid(*[np.arange(64) - 31.5] * 3, indexing='ij'))
    r = np.sqrt((grid**2).sum(0))
    labels = np.zeros((64, 64, 64), np.float32)
    labels[r < 30] = 511
    labels[r < 26] = 24
    labels[(r < 22) & (grid[0] < 0)] = 2
    labels[(r < 22) & (grid[0] >= 0)] = 41
    affine = np.array([[-1.0, 0, 0, 32], [0, 0, 1, -32], [0, -1, 0, 32], [0, 0, 0, 1]])
    path = tmp_path_factory.mktemp('maps') / 'small_head.nii.gz'
    nib.save(nib.Nifti1Image(labels, affine), path)
    return path


ACQS = [Acquisition('T1w', (1.0, 1.0, 1.0)), Acquisition('CT', (1.0, 1.0, 3.0))]


def test_strip_on_synthetic_scores_each_acquisition(small_head, tiny_strip_ckpt):
    from synthbids.core.strip import load_strip_model

    rows = strip_on_synthetic(load_strip_model(tiny_strip_ckpt), [small_head], ACQS)
    assert [(r['contrast'], r['voxel_mm']) for r in rows] == [
        ('T1w', [1.0, 1.0, 1.0]),
        ('CT', [1.0, 1.0, 3.0]),
    ]
    assert all(0 <= r['dice'] <= 1 and r['seconds'] > 0 for r in rows)


def test_seg_on_synthetic_scores_every_label(small_head, tiny_seg_h5):
    from synthbids.core.segment import load_seg_model

    rows = seg_on_synthetic(load_seg_model(tiny_seg_h5), [small_head], ACQS[:1])
    (row,) = rows
    assert len(row['dice_per_label']) == 32  # every foreground SynthSeg 2.0 label
    assert row['dice'] == pytest.approx(np.mean(list(row['dice_per_label'].values())), abs=1e-4)
    # labels absent from both the map and the output count as perfect, present ones are scored
    assert row['dice_per_label']['17'] in (0.0, 1.0)
    assert 0 <= row['dice_per_label']['2'] <= 1
