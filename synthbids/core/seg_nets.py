"""SynthSeg's networks in PyTorch: the segmentation U-Net and the QC encoder.

Both follow the Keras models of ``mri_synthseg`` layer for layer (see ``seg_keras`` for the
weight mapping): ``same``-padded 3-D convolutions with bias, ELU (U-Net) or ReLU (QC),
BatchNorm with eps 1e-3 after the last convolution of every level, max-pooling by 2 with
``same`` padding (odd sizes round up), nearest upsampling by 2, and decoder merges that put the
**encoder output before its BatchNorm first**: ``cat([skip, upsampled])``. Widths, depth,
kernel size and which decoder levels merge a skip are constructor arguments, read from the
weights by ``seg_keras``, so reduced or enlarged variants of the official networks load too.

Tensors are channels-first (N, C, X, Y, Z); SynthSeg's arrays are channels-last and are
transposed at the boundary. :meth:`SegUNet.predict` is the memory-lean inference path used by
the pipeline: it computes the full-resolution ends of the network in slabs (with a halo, so
the values equal the whole-volume computation) and hands the softmax output, optionally
blurred, to a callback slab by slab instead of materialising it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .engine import (
    CL,
    Sink,
    UpsampledConv,
    cached,
    conv3d,
    empty,
    even_rows,
    fold_bn,
    for_slabs,
    pad_low,
    run,
)

#: BatchNorm epsilon of Keras (PyTorch's default is 1e-5).
KERAS_BN_EPS = 1e-3


class KerasConv(nn.Module):
    """Conv3d with Keras ``padding='same'`` (odd kernels: symmetric) and an activation."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, activation: str | None):
        super().__init__()
        if kernel % 2 != 1:
            raise ValueError(f'only odd kernel sizes are supported (got {kernel})')
        self.conv = nn.Conv3d(in_channels, out_channels, kernel, padding=kernel // 2)
        self.activation = activation

    @property
    def halo(self) -> int:
        return self.conv.kernel_size[0] // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return activate(conv3d(x, self.conv.weight, self.conv.bias, self.conv.padding), self)


def activate(x: torch.Tensor, layer: KerasConv) -> torch.Tensor:
    """The layer's activation, in place."""
    if layer.activation == 'elu':
        return F.elu(x, inplace=True)
    if layer.activation == 'relu':
        return F.relu(x, inplace=True)
    return x


def keras_bn(channels: int) -> nn.BatchNorm3d:
    return nn.BatchNorm3d(channels, eps=KERAS_BN_EPS)


def maxpool_same(x: torch.Tensor) -> torch.Tensor:
    """Keras ``MaxPooling3D(2, padding='same')``: odd sizes keep their last plane."""
    return F.max_pool3d(x, 2, ceil_mode=True)


def upsample2(x: torch.Tensor) -> torch.Tensor:
    """Keras ``UpSampling3D(2)``: every voxel repeated twice along each axis."""
    return F.interpolate(x, scale_factor=2, mode='nearest')


def gaussian_weights(sigma: float = 0.5) -> list[float]:
    """Normalised 1-D Gaussian taps; their outer product is SynthSeg's 3-D blur kernel."""
    width = int(math.ceil(2.5 * sigma) / 2) * 2 + 1
    half = (width - 1) / 2
    taps = [math.exp(-((i - half) ** 2) / (2 * sigma**2)) for i in range(width)]
    total = sum(taps)
    return [t / total for t in taps]


def blur_kernel(channels: int, sigma: float = 0.5) -> torch.Tensor:
    """Depthwise 3-D kernel (channels, 1, k, k, k): the normalised product Gaussian."""
    taps = torch.tensor(gaussian_weights(sigma), dtype=torch.float64)
    kernel = taps[:, None, None] * taps[None, :, None] * taps[None, None, :]
    kernel = (kernel / kernel.sum()).to(torch.float32)
    return kernel.expand(channels, 1, *kernel.shape).contiguous()


def blur(x: torch.Tensor, sigma: float = 0.5) -> torch.Tensor:
    """SynthSeg's posterior smoothing: every channel convolved with a normalised Gaussian
    (3 taps for sigma 0.5) with zero padding, so borders lose mass. A depthwise convolution,
    which is fast on CPU only in channels-last layout."""
    cl = CL
    x = x.contiguous(memory_format=cl)
    kernel = blur_kernel(x.shape[1], sigma).to(x.device).contiguous(memory_format=cl)
    return conv3d(x, kernel, None, kernel.shape[-1] // 2, groups=x.shape[1])


def softmax_channels(x: torch.Tensor) -> torch.Tensor:
    """Softmax over dim 1, computed along the contiguous axis for channels-last tensors."""
    if x.is_contiguous(memory_format=CL):
        return torch.softmax(x.permute(0, 2, 3, 4, 1), dim=-1).permute(0, 4, 1, 2, 3)
    return torch.softmax(x, dim=1)


class SegUNet(nn.Module):
    """neurite's U-Net as SynthSeg builds it (``nb_conv_per_level`` convolutions per level).

    ``encoder[l]`` and ``decoder[m]`` list the output features of each convolution;
    ``merges[m]`` says whether decoder level ``m`` concatenates the skip of encoder level
    ``L - 2 - m`` (the robust denoiser merges only the two coarsest ones).
    """

    def __init__(
        self,
        in_channels: int,
        n_labels: int,
        encoder: Sequence[Sequence[int]],
        decoder: Sequence[Sequence[int]],
        merges: Sequence[bool] | None = None,
        kernel: int = 3,
        activation: str = 'elu',
    ):
        super().__init__()
        if len(decoder) != len(encoder) - 1:
            raise ValueError('a U-Net has one decoder level less than encoder levels')
        merges = [True] * len(decoder) if merges is None else [bool(m) for m in merges]
        self.layout = {
            'in_channels': int(in_channels),
            'n_labels': int(n_labels),
            'encoder': [[int(f) for f in lv] for lv in encoder],
            'decoder': [[int(f) for f in lv] for lv in decoder],
            'merges': merges,
            'kernel': int(kernel),
            'activation': activation,
        }
        self.down, self.bn_down = nn.ModuleList(), nn.ModuleList()
        self.up, self.bn_up = nn.ModuleList(), nn.ModuleList()
        prev = in_channels
        for level in encoder:
            prev = self._add_level(self.down, self.bn_down, prev, level)
        skips = [lv[-1] for lv in encoder[:-1]][::-1]
        for level, skip, merge in zip(decoder, skips, merges):
            prev = self._add_level(self.up, self.bn_up, prev + (skip if merge else 0), level)
        self.likelihood = nn.Conv3d(prev, n_labels, 1)

    def _add_level(self, convs_of, bns_of, prev: int, level: Sequence[int]) -> int:
        """Append one level (its convolutions, then a BatchNorm); returns its width."""
        convs = nn.ModuleList()
        for feats in level:
            convs.append(KerasConv(prev, feats, self.layout['kernel'], self.layout['activation']))
            prev = feats
        convs_of.append(convs)
        bns_of.append(keras_bn(prev))
        return prev

    @property
    def divisor(self) -> int:
        """Spatial sizes must be multiples of this for the skips to line up."""
        return 2 ** (len(self.down) - 1)

    @property
    def n_labels(self) -> int:
        return self.likelihood.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax probabilities, whole volume at once (reference path for tests)."""
        skips = []
        last = len(self.down) - 1
        for lv, (convs, bn) in enumerate(zip(self.down, self.bn_down)):
            for conv in convs:
                x = conv(x)
            skips.append(x)
            x = bn(x)
            if lv < last:
                x = maxpool_same(x)
        skips.pop()
        for convs, bn, merge in zip(self.up, self.bn_up, self.layout['merges']):
            x = upsample2(x)
            skip = skips.pop()
            if merge:
                x = torch.cat([skip, x], dim=1)
            for conv in convs:
                x = conv(x)
            x = bn(x)
        return torch.softmax(conv3d(x, self.likelihood.weight, self.likelihood.bias), dim=1)

    # ------------------------------------------------------------------ lean inference

    @torch.inference_mode()
    def predict(
        self,
        x: torch.Tensor,
        sink: Sink,
        smooth: bool = False,
        slab: int = 32,
        raw_sink: Sink | None = None,
        keep_skip: bool = True,
    ) -> None:
        """Run the network on ``x`` (1, C, X, Y, Z) and call ``sink(start, stop, probs)`` for
        consecutive slabs ``[start, stop)`` along the first spatial axis, ``probs`` being the
        softmax output of those planes (blurred when ``smooth``), shape (1, K, stop-start, Y, Z).
        ``raw_sink``, if given, receives the same slabs before blurring. ``keep_skip`` keeps
        the first level's full-resolution output for the last decoder level; without it that
        level is recomputed slab by slab (about 20 % slower, ~20 % less peak memory).

        Same values as ``forward`` (+ :func:`blur`) up to float rounding, computed faster and
        in much less memory:

        * the full-resolution tensors (first encoder level, last decoder level, the output)
          only ever exist one slab at a time (the first level is computed twice, once for the
          encoder and again for the decoder's skip); each slab carries a halo of extra planes,
          so zero padding only happens at the true volume border;
        * a decoder's first convolution is never applied to the upsampled tensor: its
          upsampled part runs at low resolution with :func:`phase_kernels` (about 3x fewer
          operations for 3x3x3 kernels), and the concatenation is replaced by a sum;
        * the last BatchNorm is folded into the 1x1x1 ``likelihood`` convolution;
        * channels-last memory layout (markedly faster convolutions on CPU).
        """
        x = x.contiguous(memory_format=CL)
        depth = x.shape[2]
        if depth % 2 or len(self.down) < 2 or self.layout['kernel'] > 5:
            probs = self.forward(x)
            if raw_sink is not None:
                raw_sink(0, depth, probs)
            sink(0, depth, blur(probs) if smooth else probs)
            return
        slab = max(2, slab + slab % 2)
        merges = self.layout['merges']
        first, bn0 = self.down[0], self.bn_down[0]
        halo0 = sum(c.halo for c in first)
        half = [(s + 1) // 2 for s in x.shape[2:]]
        pooled = empty(x, first[-1].conv.out_channels, half)
        kept = empty(x, first[-1].conv.out_channels, x.shape[2:]) if keep_skip else None

        def encode(start, stop, y):
            if kept is not None:
                kept[:, :, start:stop] = y
            pooled[:, :, start // 2 : (stop + 1) // 2] = maxpool_same(bn0(y))

        def level0(lo, hi):
            return run(first, x[:, :, lo:hi])

        for_slabs(depth, slab, halo0, level0, encode)
        low = self._middle(pooled)
        pooled = None  # noqa: F841 - frees the first level's pooled output
        tail = self.up[-1]
        up_conv = self._up_conv(len(self.up) - 1)
        weight, bias = fold_bn(self.likelihood, self.bn_up[-1])
        halo = sum(c.halo for c in tail) + (1 if smooth else 0)

        def head(lo, hi):
            lo2, hi2 = even_rows(lo, hi)
            skip = None
            if merges[-1] and kept is not None:
                skip = kept[:, :, lo2:hi2]
            elif merges[-1]:
                # the first level's output is recomputed here rather than kept whole: it is
                # cheap, and the full-resolution skip would be the largest tensor of the run
                a, b = max(lo2 - halo0, 0), min(hi2 + halo0, depth)
                skip = level0(a, b)[:, :, lo2 - a : hi2 - a]
            z = up_conv(pad_low(low, lo2 // 2, hi2 // 2), skip)
            del skip
            z = run(tail[1:], z)
            z = conv3d(z, weight, bias).contiguous(memory_format=CL)
            return softmax_channels(z)[:, :, lo - lo2 : hi - lo2]

        def compute(lo, hi):
            probs = head(lo, hi)
            if not smooth:
                return (probs,)
            if raw_sink is None:  # only the blurred slab is needed: free the other one
                return (None, blur(probs))
            return (probs, blur(probs))

        def emit_all(start, stop, outputs):
            if smooth:
                if raw_sink is not None:
                    raw_sink(start, stop, outputs[0])
                sink(start, stop, outputs[1])
            else:
                sink(start, stop, outputs[0])

        for_slabs(depth, slab, halo, compute, emit_all)

    def _up_conv(self, m: int) -> UpsampledConv:
        """The low-resolution form of decoder level ``m``'s first convolution (cached)."""
        first = self.up[m][0]

        def build():
            merge = self.layout['merges'][m]
            skip = self.layout['encoder'][len(self.down) - 2 - m][-1] if merge else 0
            return UpsampledConv(first.conv, skip, True, lambda y: activate(y, first))

        return cached(self, ('up', m), (first.conv.weight, first.conv.bias), build)

    def _middle(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder levels 1.. and every decoder level but the last (half resolution)."""
        skips = []
        last = len(self.down) - 1
        for lv in range(1, len(self.down)):
            x = run(self.down[lv], x)
            skips.append(x)
            x = self.bn_down[lv](x)
            if lv < last:
                x = maxpool_same(x)
        skips.pop()
        merges = self.layout['merges']
        for m in range(len(self.up) - 1):
            skip = skips.pop()
            convs = self.up[m]
            up_conv = self._up_conv(m)
            x = up_conv(pad_low(x), skip if merges[m] else None)
            x = self.bn_up[m](run(convs[1:], x))
        return x
