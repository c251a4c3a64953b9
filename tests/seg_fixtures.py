"""Tiny SynthSeg weights in the official Keras layout, for fast tests without golden files.

``write_tiny_models(folder)`` writes every official file name (2.0, 1.0, robust, parc, QC)
with 4-feature networks (2 features hit slow convolution paths on CPU). The 2.0 and 1.0
networks are wired, not random: intensity is carried from the input to the output, whose
logits are linear in it, so the segmentation is a set of intensity bands (background < 25 %
< CSF < 50 % < cortex < 70 % < white matter of the rescaled image), stable and non-trivial.
The others are seeded random networks; QC uses 3x3x3 kernels instead of 5x5x5 (its kernel
size is read from the weights) to stay fast.
"""

from __future__ import annotations

from pathlib import Path

import torch

from synthbids.core import labels as L
from synthbids.core.qc_net import QCNet
from synthbids.core.seg_keras import write_keras_h5
from synthbids.core.seg_nets import SegUNet

#: label -> (slope, intercept) of its logit as a function of the rescaled intensity
BANDS = {0: (0.0, 0.0), 24: (10.0, -2.5), 3: (20.0, -7.5), 2: (30.0, -14.5)}


def _unet(in_channels: int, n_labels: int, width: int = 4, kernel: int = 3, merges=None):
    enc = [[width * 2**lv] * 2 for lv in range(5)]
    dec = [[width * 2 ** (3 - m)] * 2 for m in range(4)]
    return SegUNet(in_channels, n_labels, enc, dec, merges=merges, kernel=kernel).eval()


def tiny_seg_network(v1: bool = False) -> SegUNet:
    """4-feature SynthSeg whose labels are intensity bands (module docstring)."""
    labels = L.seg_labels(v1)
    net = _unet(1, len(labels))
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        for bn in [*net.bn_down, *net.bn_up]:
            bn.weight.fill_(1)
        c = 1  # centre tap of the 3x3x3 kernels
        net.down[0][0].conv.weight[0, 0, c, c, c] = 1
        net.down[0][1].conv.weight[0, 0, c, c, c] = 1
        net.up[-1][0].conv.weight[0, 0, c, c, c] = 1  # channel 0 of the level-0 skip
        net.up[-1][1].conv.weight[0, 0, c, c, c] = 1
        net.likelihood.bias[:] = -20
        for lab, (slope, intercept) in BANDS.items():
            if lab in labels:
                i = labels.index(lab)
                net.likelihood.weight[i, 0, 0, 0, 0] = 3 * slope
                net.likelihood.bias[i] = 3 * intercept
    return net


def _seeded(seed: int):
    torch.manual_seed(seed)


def tiny_robust_networks() -> dict[str, SegUNet]:
    _seeded(1)
    return {
        'unet_': _unet(1, L.DENOISER_GROUPS),
        'l2l_': _unet(L.DENOISER_GROUPS, L.DENOISER_GROUPS, kernel=5,
                      merges=[True, True, False, False]),
        'unet2_': _unet(1 + L.DENOISER_GROUPS, len(L.SEG_LABELS_V2)),
    }  # fmt: skip


def tiny_parc_network() -> SegUNet:
    _seeded(2)
    return _unet(3, len(L.PARC_LABELS))


def tiny_qc_network() -> QCNet:
    _seeded(3)
    return QCNet(
        len(L.QC_NAMES), [[4, 4], [8, 8], [16, 16], [32, 32]], [True] * 4, [9, 9], 3
    ).eval()


def write_tiny_models(folder: Path) -> Path:
    """Every official SynthSeg file name, with tiny networks; returns ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    write_keras_h5(tiny_seg_network(), folder / 'synthseg_2.0.h5')
    write_keras_h5(tiny_seg_network(v1=True), folder / 'synthseg_1.0.h5')
    write_keras_h5(tiny_robust_networks(), folder / 'synthseg_robust_2.0.h5')
    write_keras_h5(tiny_parc_network(), folder / 'synthseg_parc_2.0.h5', prefix='unet_parc_')
    write_keras_h5(tiny_qc_network(), folder / 'synthseg_qc_2.0.h5', prefix='qc_')
    return folder
