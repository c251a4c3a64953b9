"""Segmentation networks trained on a coarser grid run inside the 1 mm pipeline."""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from synthbids.core.seg_keras import read_keras_meta, write_keras_h5
from synthbids.core.seg_model import predict_coarse
from synthbids.core.seg_nets import SegUNet


def tiny_net(seed=0):
    torch.manual_seed(seed)
    net = SegUNet(1, 5, [[4, 4], [8, 8], [8, 8]], [[8, 8], [4, 4]]).eval()
    return net


def test_coarse_prediction_equals_whole_volume_interpolation():
    net = tiny_net()
    x = torch.rand(1, 1, 40, 24, 16)
    slabs = []
    out = torch.zeros(1, 5, 40, 24, 16)

    def sink(a, b, probs):
        slabs.append((a, b))
        out[:, :, a:b] = probs

    predict_coarse(net, x, sink, 2, slab=6)
    with torch.no_grad():
        low = net(F.avg_pool3d(x, 2))
    expected = F.interpolate(low, scale_factor=2, mode='trilinear', align_corners=False)
    np.testing.assert_allclose(out.numpy(), expected.numpy(), atol=1e-5)
    assert slabs[0] == (0, 12) and slabs[-1][1] == 40
    assert torch.allclose(out.sum(1), torch.ones(1, 40, 24, 16), atol=1e-5)


def test_metadata_round_trip(tmp_path):
    path = write_keras_h5(tiny_net(), tmp_path / 'w.h5', meta={'voxsize': 2.0, 'task': 'seg'})
    assert read_keras_meta(path) == {'voxsize': 2.0, 'task': 'seg'}
    path = write_keras_h5(tiny_net(), tmp_path / 'plain.h5')
    assert read_keras_meta(path) == {}
