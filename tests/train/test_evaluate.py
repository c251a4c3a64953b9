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


def constant_masks(monkeypatch, value: bool) -> None:
    """Make :func:`synthbids.core.strip.strip` return a constant mask (a broken network)."""
    from synthbids.core import strip as S

    real = S.strip

    def constant(volume, model, **kwargs):
        result = real(volume, model, **kwargs)
        result.mask = np.full_like(result.mask, value)
        return result

    monkeypatch.setattr(S, 'strip', constant)


def test_strip_on_synthetic_scores_each_acquisition(small_head, tiny_strip_ckpt, monkeypatch):
    from synthbids.core.strip import load_strip_model

    model = load_strip_model(tiny_strip_ckpt)
    rows = strip_on_synthetic(model, [small_head], ACQS)
    assert [(r['contrast'], r['voxel_mm']) for r in rows] == [
        ('T1w', [1.0, 1.0, 1.0]),
        ('CT', [1.0, 1.0, 3.0]),
    ]
    assert all(0 <= r['dice'] <= 1 and r['seconds'] > 0 for r in rows)
    # the tiny network thresholds intensity, which finds most of the T1w brain (measured:
    # 0.75); CT's bright skin defeats it (0.44, as much as a mask of the whole image)
    assert rows[0]['dice'] > 0.6
    # constant masks score what a Dice against the brain gives them: nothing, or the brain's
    # share of the image
    constant_masks(monkeypatch, False)
    assert [r['dice'] for r in strip_on_synthetic(model, [small_head], ACQS)] == [0, 0]
    constant_masks(monkeypatch, True)
    full = strip_on_synthetic(model, [small_head], ACQS)
    brain = (4 / 3) * np.pi * 26**3 / 64**3  # the CSF sphere of the map
    assert full[0]['dice'] == pytest.approx(2 * brain / (1 + brain), abs=0.02)


def test_seg_on_synthetic_scores_every_label(small_head, tiny_seg_h5, monkeypatch):
    from synthbids.core import segment as S
    from synthbids.core.segment import load_seg_model

    model = load_seg_model(tiny_seg_h5)
    (row,) = seg_on_synthetic(model, [small_head], ACQS[:1])
    per_label = row['dice_per_label']
    assert len(per_label) == 32  # every foreground SynthSeg 2.0 label
    assert row['dice'] == pytest.approx(np.mean(list(per_label.values())), abs=1e-4)
    # labels absent from both the map and the output count as perfect; the white matter of
    # both hemispheres is found by the tiny network's intensity bands (measured: 0.57, 0.41)
    assert per_label['17'] == 1.0
    assert per_label['2'] > 0.3 and per_label['41'] > 0.3
    # an all-background segmentation scores 0 on the labels of the map, 1 on the others
    real = S.segment

    def background(volume, model, **kwargs):
        result = real(volume, model, **kwargs)
        result.labels = np.zeros_like(result.labels)
        return result

    monkeypatch.setattr(S, 'segment', background)
    (empty,) = seg_on_synthetic(model, [small_head], ACQS[:1])
    present = {'2', '24', '41'}
    assert {k for k, v in empty['dice_per_label'].items() if v == 0} == present
    assert empty['dice'] == pytest.approx(29 / 32, abs=1e-4)
