"""SynthSeg's QC network in PyTorch: a residual encoder regressing one score per QC class.

It follows the Keras model of ``mri_synthseg`` (``qc`` prefix; weights mapped by
``seg_keras``): every level is relu(convolutions + an ``expand`` convolution of its input),
BatchNorm and max-pooling; two final convolutions whose spatial mean gives the scores.
:meth:`QCNet.predict` builds the one-hot input and the full-resolution first level slab by
slab (see :mod:`.engine`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .engine import CL, cached, conv3d, for_slabs, run
from .seg_nets import KerasConv, keras_bn, maxpool_same


class QCNet(nn.Module):
    """SynthSeg's QC regressor: a residual encoder (``qc`` prefix) and two final convolutions
    whose spatial mean gives one score per QC class (index 0 = background, unused)."""

    def __init__(
        self,
        in_channels: int,
        encoder: Sequence[Sequence[int]],
        expand: Sequence[bool],
        final: Sequence[int],
        kernel: int = 5,
    ):
        super().__init__()
        self.layout = {
            'in_channels': int(in_channels),
            'encoder': [[int(f) for f in lv] for lv in encoder],
            'expand': [bool(e) for e in expand],
            'final': [int(f) for f in final],
            'kernel': int(kernel),
        }
        self.down = nn.ModuleList()
        self.expand = nn.ModuleList()
        self.bn_down = nn.ModuleList()
        prev = in_channels
        for level, has_expand in zip(encoder, expand):
            convs = nn.ModuleList()
            level_in = prev
            for i, feats in enumerate(level):
                last = i == len(level) - 1
                convs.append(KerasConv(prev, feats, kernel, None if last else 'relu'))
                prev = feats
            self.down.append(convs)
            self.expand.append(
                KerasConv(level_in, prev, kernel, 'relu') if has_expand else nn.Identity()
            )
            self.bn_down.append(keras_bn(prev))
        self.final = nn.ModuleList()
        for feats in final:
            self.final.append(KerasConv(prev, feats, kernel, 'relu'))
            prev = feats

    def _level(self, lv: int, x: torch.Tensor) -> torch.Tensor:
        """Level ``lv`` up to its BatchNorm: relu(conv path + expand(x)). The level's first
        convolution and its ``expand`` convolution read the same input with the same kernel
        and activation, so they run as one convolution with both sets of filters."""
        convs, expand = self.down[lv], self.expand[lv]
        fused = self._fused_first(lv)
        if fused is None:
            y = run(convs, x)
            y = y + expand(x)
        else:
            weight, bias, split = fused
            both = F.relu(conv3d(x, weight, bias, weight.shape[-1] // 2), inplace=True)
            y = run(convs[1:], both[:, :split])
            y = y + both[:, split:]
            del both
        return self.bn_down[lv](F.relu(y, inplace=True))

    def _fused_first(self, lv: int):
        convs, expand = self.down[lv], self.expand[lv]
        if len(convs) < 2 or not isinstance(expand, KerasConv) or convs[0].activation != 'relu':
            return None
        first, other = convs[0].conv, expand.conv
        if first.kernel_size != other.kernel_size:
            return None

        def build():
            weight = torch.cat([first.weight, other.weight]).contiguous(memory_format=CL)
            bias = torch.cat([first.bias, other.bias])
            return weight, bias, first.out_channels

        return cached(self, ('fused', lv), (first.weight, other.weight), build)

    def _tail(self, x: torch.Tensor, first: int) -> torch.Tensor:
        for lv in range(first, len(self.down)):
            x = maxpool_same(self._level(lv, x))
        for conv in self.final:
            x = conv(x)
        return x.mean(dim=(2, 3, 4))

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw scores (N, K) of a one-hot input (N, K, X, Y, Z)."""
        return self._tail(x.contiguous(memory_format=CL), 0)

    @torch.inference_mode()
    def predict(self, classes: torch.Tensor, n_classes: int, slab: int = 48) -> torch.Tensor:
        """Raw scores (1, K) of a class-index map (X, Y, Z); the one-hot input and the first
        (full-resolution) level are computed slab by slab with a halo, as in
        :meth:`SegUNet.predict`, which keeps memory to a fraction of the whole-volume pass."""
        depth = classes.shape[0]
        slab = max(2, slab + slab % 2)
        convs = self.down[0]
        halo = sum(c.halo for c in convs)
        half = [(s + 1) // 2 for s in classes.shape]
        pooled = torch.empty(
            (1, convs[-1].conv.out_channels, *half),
            dtype=torch.float32,
            device=classes.device,
            memory_format=CL,
        )

        def compute(lo, hi):
            x = F.one_hot(classes[lo:hi].long(), n_classes).to(torch.float32)
            return self._level(0, x[None].permute(0, 4, 1, 2, 3))

        def emit(start, stop, y):
            pooled[:, :, start // 2 : (stop + 1) // 2] = maxpool_same(y)

        for_slabs(depth, slab, halo, compute, emit)
        return self._tail(pooled, 1)
