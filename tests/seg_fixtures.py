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


#: Right-hemisphere labels that share the band of their left counterpart in
#: :func:`banded_network` (``twins=TWINS``).
TWINS = {41: 2, 42: 3, 43: 24}
#: How strongly the intensity gradient along the first axis decides between twins.
TWIN_GAIN = 30.0


def tiny_seg_network(v1: bool = False) -> SegUNet:
    """4-feature SynthSeg whose labels are intensity bands (module docstring)."""
    return banded_network(L.seg_labels(v1))


def banded_network(labels, twins=None) -> SegUNet:
    """4-feature network over ``labels`` (channel order) whose labels are the intensity
    bands of :data:`BANDS`. Each label of ``twins`` shares the band of its value, and the
    intensity gradient along the first axis, g = I(x + 1) - I(x), decides between the two
    (the twin where g > 0): left and right labels that swap when the image is mirrored, as a
    real network's do, and a flip average that changes the result (forward and backward
    differences)."""
    labels = list(labels)
    net = _unet(1, len(labels))
    bands = dict(BANDS)
    for lab, twin in (twins or {}).items():
        bands[lab] = BANDS[twin]
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
        if twins:  # channel 1 carries I(x + 1) the same way
            net.down[0][0].conv.weight[1, 0, c + 1, c, c] = 1
            net.down[0][1].conv.weight[1, 1, c, c, c] = 1
            net.up[-1][0].conv.weight[1, 1, c, c, c] = 1
            net.up[-1][1].conv.weight[1, 1, c, c, c] = 1
        net.likelihood.bias[:] = -20
        for lab, (slope, intercept) in bands.items():
            if lab in labels:
                i = labels.index(lab)
                net.likelihood.weight[i, 0, 0, 0, 0] = 3 * slope
                net.likelihood.bias[i] = 3 * intercept
        for lab, twin in (twins or {}).items():
            if lab in labels and twin in labels:
                for i, sign in ((labels.index(lab), 1), (labels.index(twin), -1)):
                    net.likelihood.weight[i, 0, 0, 0, 0] -= sign * TWIN_GAIN
                    net.likelihood.weight[i, 1, 0, 0, 0] += sign * TWIN_GAIN
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


# --------------------------------------------------------------------------- Photo-SynthSeg


def write_photo_lists(folder: Path, variant: str, labels, names, topology) -> dict[str, Path]:
    """Photo-SynthSeg's three ``.npy`` lists (``variant`` ``both`` or ``single``), written
    with their official names into ``folder``, entry for entry as given."""
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    lists = {
        'segmentation_labels': np.asarray(labels, dtype=np.int32),
        'segmentation_names': np.asarray(names, dtype=str),
        'topological_classes': np.asarray(topology, dtype=np.int32),
    }
    paths = {}
    for what, values in lists.items():
        paths[what] = folder / f'synthseg_{what}_photo_{variant}_1.0.npy'
        np.save(paths[what], values)
    return paths
