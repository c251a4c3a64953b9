"""SynthSeg networks: the fast inference path equals the plain one, Keras layout round trip."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from synthbids.core.engine import conv_upsampled, pad_low, phase_kernels
from synthbids.core.errors import WeightsError
from synthbids.core.qc_net import QCNet
from synthbids.core.seg_keras import (
    build_qc,
    build_unet,
    prefixes_in,
    read_keras_weights,
    write_keras_h5,
)
from synthbids.core.seg_nets import SegUNet, blur, upsample2
from tests.seg_fixtures import tiny_qc_network, tiny_robust_networks, tiny_seg_network


def random_unet(seed=0, in_channels=1, n_labels=7, kernel=3, merges=None, width=4):
    torch.manual_seed(seed)
    enc = [[width * 2**lv] * 2 for lv in range(5)]
    dec = [[width * 2 ** (3 - m)] * 2 for m in range(4)]
    net = SegUNet(in_channels, n_labels, enc, dec, merges=merges, kernel=kernel).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for bn in [*net.bn_down, *net.bn_up]:
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 1.5)
            bn.weight.uniform_(0.75, 1.25)
            bn.bias.uniform_(-0.2, 0.2)
    return net


@pytest.mark.parametrize('kernel', [3, 5])
def test_convolution_after_upsampling_runs_at_low_resolution(kernel):
    torch.manual_seed(kernel)
    low = torch.randn(1, 6, 5, 4, 3)
    weight = torch.randn(4, 6, kernel, kernel, kernel)
    expected = F.conv3d(upsample2(low), weight, padding=kernel // 2)
    out = torch.zeros_like(expected).contiguous(memory_format=torch.channels_last_3d)
    with torch.no_grad():
        conv_upsampled(pad_low(low), phase_kernels(weight), out)
    torch.testing.assert_close(out, expected, atol=2e-5, rtol=1e-5)
    # planes [a, b) of the low-resolution tensor with their real neighbours as context
    part = torch.zeros(1, 4, 4, 8, 6).contiguous(memory_format=torch.channels_last_3d)
    with torch.no_grad():
        conv_upsampled(pad_low(low, 1, 3), phase_kernels(weight), part)
    torch.testing.assert_close(part, expected[:, :, 2:6], atol=2e-5, rtol=1e-5)


def test_blur_is_the_normalised_gaussian_with_zero_padding():
    x = torch.ones(1, 2, 4, 4, 4)
    y = blur(x)
    assert torch.allclose(y[:, :, 1:3, 1:3, 1:3], torch.ones(1, 2, 2, 2, 2), atol=1e-6)
    g = np.exp(-(np.arange(-1, 2) ** 2) / (2 * 0.25))
    g /= g.sum()
    corner = (g[1:].sum()) ** 3  # a corner voxel only keeps the taps inside the volume
    assert y[0, 0, 0, 0, 0].item() == pytest.approx(corner, rel=1e-6)


@pytest.mark.parametrize(
    ('kernel', 'merges', 'slab', 'smooth'),
    [(3, None, 8, True), (3, None, 6, False), (5, [True, True, False, False], 4, False)],
)
def test_lean_prediction_equals_the_whole_volume_forward(kernel, merges, slab, smooth):
    net = random_unet(kernel=kernel, merges=merges, in_channels=2)
    x = torch.rand(1, 2, 32, 16, 48)
    with torch.no_grad():
        expected = net(x)
    raw, out = [], []
    net.predict(
        x,
        lambda a, b, p: out.append((a, b, p.clone())),
        smooth=smooth,
        slab=slab,
        raw_sink=lambda a, b, p: raw.append(p.clone()) if smooth else None,
    )
    assert [o[0] for o in out] == list(range(0, 32, slab))
    got = torch.cat([o[2] for o in out], dim=2)
    torch.testing.assert_close(got, blur(expected) if smooth else expected, atol=3e-5, rtol=0)
    if smooth:
        torch.testing.assert_close(torch.cat(raw, dim=2), expected, atol=3e-5, rtol=0)


def test_qc_slabs_equal_the_whole_volume_and_one_hot_input():
    net = tiny_qc_network()
    classes = torch.randint(0, 9, (20, 15, 13), generator=torch.Generator().manual_seed(0))
    one_hot = F.one_hot(classes.long(), 9).permute(3, 0, 1, 2)[None].float()
    expected = net(one_hot)
    got = net.predict(classes.to(torch.uint8), 9, slab=4)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_keras_file_round_trip_keeps_names_layouts_and_values(tmp_path):
    nets = tiny_robust_networks()
    path = write_keras_h5(nets, tmp_path / 'robust.h5')
    weights = read_keras_weights(path)
    assert prefixes_in(weights) == {'unet_', 'l2l_', 'unet2_'}
    with h5py.File(path, 'r') as fh:
        assert 'unet_conv_downarm_0_0/unet_conv_downarm_0_0/kernel:0' in fh
        assert fh['l2l_conv_downarm_0_0/l2l_conv_downarm_0_0/kernel:0'].shape == (5, 5, 5, 5, 4)
        assert list(fh['unet_bn_down_0'].attrs['weight_names']) == [
            b'unet_bn_down_0/gamma:0',
            b'unet_bn_down_0/beta:0',
            b'unet_bn_down_0/moving_mean:0',
            b'unet_bn_down_0/moving_variance:0',
        ]
    for prefix, net in nets.items():
        back = build_unet(weights, prefix)
        assert back.layout == net.layout
        for key, value in net.state_dict().items():
            torch.testing.assert_close(back.state_dict()[key], value)
    assert build_unet(weights, 'l2l_').layout['merges'] == [True, True, False, False]
    qc = tiny_qc_network()
    qc_back = build_qc(read_keras_weights(write_keras_h5(qc, tmp_path / 'qc.h5', 'qc_')))
    assert qc_back.layout == qc.layout


def test_keras_file_under_model_weights_group(tmp_path):
    """Files saved with ``model.save`` keep the layers under ``model_weights/``."""
    src = write_keras_h5(tiny_seg_network(), tmp_path / 'a.h5')
    dst = tmp_path / 'b.h5'
    with h5py.File(src, 'r') as fin, h5py.File(dst, 'w') as fout:
        group = fout.create_group('model_weights')
        for name in fin:
            fin.copy(name, group)
    assert build_unet(read_keras_weights(dst), 'unet_').layout['n_labels'] == 33


def test_unreadable_or_foreign_weights_give_one_line(tmp_path):
    bad = tmp_path / 'bad.h5'
    bad.write_bytes(b'not hdf5')
    with pytest.raises(WeightsError, match='not a readable Keras HDF5'):
        read_keras_weights(bad)
    qc = write_keras_h5(tiny_qc_network(), tmp_path / 'qc.h5', 'qc_')
    with pytest.raises(WeightsError, match=r'not a SynthSeg network \(unet_\*\)') as err:
        build_unet(read_keras_weights(qc), 'unet_')
    assert '\n' not in str(err.value)


def test_widths_are_read_from_the_weights():
    net = random_unet(width=3, n_labels=33)
    from synthbids.core.seg_keras import keras_weights_of, unet_layout

    layout = unet_layout(keras_weights_of(net, 'unet_'), 'unet_')
    assert layout['encoder'] == [[3, 3], [6, 6], [12, 12], [24, 24], [48, 48]]


def test_qc_scores_by_hand():
    """A 1x1x1-kernel QC network small enough to compute by hand: the level is
    relu(conv path + expand) = 2 [class 0] + 3 [class 1], batch norm (unit statistics) divides
    by sqrt(1 + eps), Keras 'same' max-pooling keeps the odd last plane, and the final
    convolutions' spatial mean gives the scores (v, relu(10 - v))."""
    net = QCNet(2, [[1, 1]], [True], [2], kernel=1).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net.bn_down[0].weight.fill_(1)
        net.down[0][0].conv.weight.view(-1)[:] = torch.tensor([1.0, 0.0])  # class 0, relu
        net.down[0][1].conv.weight.fill_(2)  # last convolution: no activation
        net.expand[0].conv.weight.view(-1)[:] = torch.tensor([0.0, 3.0])  # class 1, relu
        net.final[0].conv.weight.view(-1)[:] = torch.tensor([1.0, -1.0])
        net.final[0].conv.bias[:] = torch.tensor([0.0, 10.0])
    scale = 1 / np.sqrt(1 + 1e-3)  # Keras' batch-norm epsilon
    classes = torch.zeros((5, 4, 4), dtype=torch.uint8)
    for voxel in [(0, 0, 0), (4, 3, 3)]:  # class 1 in 2 of the 3 x 2 x 2 pooled blocks
        classes[voxel] = 1
    for seg, ones in [(classes, 2), (torch.zeros_like(classes), 0)]:
        pooled = (2 + ones / 12) * scale  # a block is 3 where it holds class 1, else 2
        expected = torch.tensor([[pooled, 10 - pooled]], dtype=torch.float32)
        one_hot = F.one_hot(seg.long(), 2).permute(3, 0, 1, 2)[None].float()
        torch.testing.assert_close(net(one_hot), expected, atol=1e-5, rtol=0)
        torch.testing.assert_close(net.predict(seg, 2, slab=2), expected, atol=1e-5, rtol=0)
