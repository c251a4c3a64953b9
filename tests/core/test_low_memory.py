"""``--low-memory`` / ``load_seg_model(low_memory=True)``: the networks recompute their
full-resolution features instead of keeping them, and the results are those of the default
path (labels, volumes, parcellation, QC)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from synthbids.cli.seg import main
from synthbids.core.seg_keras import write_keras_h5
from synthbids.core.seg_nets import SegUNet
from synthbids.core.segment import load_seg_model, segment
from tests.seg_fixtures import tiny_seg_network


@pytest.fixture
def shells(make_nifti):
    """A head of nested shells of decreasing brightness with noisy, bumpy borders: the tiny
    networks' intensity bands turn it into several labels with irregular boundaries."""
    shape = (44, 52, 40)
    rng = np.random.default_rng(7)
    grid = np.indices(shape).astype(float)
    centre = (np.array(shape) - 1)[:, None, None, None] / 2
    r = np.sqrt((((grid - centre) / (np.array(shape)[:, None, None, None] / 2)) ** 2).sum(0))
    r = r + 0.05 * np.sin(grid[0] / 3) * np.cos(grid[1] / 4)
    data = np.interp(r, [0, 0.3, 0.5, 0.7, 0.85, 1.0], [120, 110, 75, 50, 25, 0])
    data = data + 4 * rng.standard_normal(shape)
    return make_nifti('shells.nii.gz', shape=shape, data=np.clip(data, 0, None).astype(np.float32))


@pytest.fixture
def keep_skip_calls(monkeypatch):
    """Record the ``keep_skip`` argument of every segmentation network run."""
    calls = []
    real = SegUNet.predict

    def spy(self, *args, keep_skip=True, **kwargs):
        calls.append(keep_skip)
        return real(self, *args, keep_skip=keep_skip, **kwargs)

    monkeypatch.setattr(SegUNet, 'predict', spy)
    return calls


def test_low_memory_segments_like_the_default(shells, tiny_seg_h5, keep_skip_calls):
    """The tiny 1 mm SynthSeg 2.0 network: same labels and volumes, posteriors within float
    rounding."""
    results = {}
    for low_memory in (False, True):
        model = load_seg_model(tiny_seg_h5, low_memory=low_memory)
        keep_skip_calls.clear()
        results[low_memory] = segment(shells, model, fast=True, posteriors=True)
        assert keep_skip_calls == [not low_memory]  # low memory: full-resolution skips dropped
    default, low = results[False], results[True]
    assert len(np.unique(default.labels)) >= 4  # a non-trivial segmentation
    np.testing.assert_array_equal(low.labels, default.labels)
    np.testing.assert_allclose(low.posteriors, default.posteriors, atol=1e-5)
    assert low.volumes.keys() == default.volumes.keys() and len(default.volumes) == 33
    for name, value in default.volumes.items():
        assert low.volumes[name] == pytest.approx(value, rel=1e-5, abs=1e-6), name


def test_low_memory_option_of_the_command(shells, tmp_path, keep_skip_calls):
    """``synthbids-seg --low-memory`` with a network on a 2 mm grid (as the packaged weights:
    the coarse prediction path) writes the same segmentation and volumes."""
    coarse = write_keras_h5(tiny_seg_network(), tmp_path / 'coarse.h5', meta={'voxsize': 2.0})
    outputs = []
    for flag in ([], ['--low-memory']):
        out = tmp_path / f'out{len(flag)}'
        args = ['--i', shells, '--o', out / 'seg.nii.gz', '--vol', out / 'v.csv', '--fast']
        keep_skip_calls.clear()
        assert main([str(a) for a in [*args, '--model', coarse, *flag]]) == 0
        assert keep_skip_calls == [not flag]
        seg = np.asanyarray(nib.load(out / 'seg.nii.gz').dataobj)
        outputs.append((seg, (out / 'v.csv').read_text().splitlines()[1].split(',')[1:]))
    (seg, vol), (seg_low, vol_low) = outputs
    assert len(np.unique(seg)) >= 3
    np.testing.assert_array_equal(seg_low, seg)
    np.testing.assert_allclose(np.array(vol_low, float), np.array(vol, float), rtol=1e-5)
