"""The SynthStrip U-Net, with the official state-dict layout.

The network regresses a signed distance (mm) to the brain boundary. Its parameter names
(``encoder.L.C.conv``, ``decoder.L.C.conv``, ``remaining.K.conv``) and tensor shapes are those
of FreeSurfer's ``synthstrip.1.pt``, so official checkpoints load unchanged. Widths and depth
are read from a state dict, so narrower variants (our own CPU-trained weights) load too.

Inference uses :meth:`StripUNet.predict`, which gives the same values as ``forward`` but runs
the full-resolution tail (upsample, concatenate, three convolutions) in slabs with a halo, so
the 48-channel full-resolution tensor never exists at once: peak memory drops several-fold.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .engine import CL, UpsampledConv, cached, even_rows, in_slabs, pad_low, run

#: Official layout: 7 levels, 16 features doubling up to 64, 2 convolutions per level.
OFFICIAL_ENCODER = ((16, 16), (32, 32), (64, 64), (64, 64), (64, 64), (64, 64))
OFFICIAL_DECODER = ((64, 64), (64, 64), (64, 64), (64, 64), (64, 64), (32, 32))
OFFICIAL_TAIL = (16, 16, 1)


class ConvBlock(nn.Module):
    """3x3x3 convolution (padding 1, bias) followed by LeakyReLU(0.2), unless ``final``."""

    def __init__(self, in_channels: int, out_channels: int, final: bool = False):
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, kernel_size=3, padding=1)
        self.final = final

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(self.conv(x))

    def activate(self, x: torch.Tensor) -> torch.Tensor:
        if self.final:
            return x
        # in place at inference (a fresh convolution output): one full-size tensor less
        return F.leaky_relu(x, 0.2, inplace=not torch.is_grad_enabled())


class StripUNet(nn.Module):
    """SynthStrip's U-Net: ``encoder`` levels with max-pooling, ``decoder`` levels with
    nearest upsampling and ``cat([upsampled, skip])``, and a full-resolution ``remaining`` tail
    whose last convolution has no activation."""

    def __init__(
        self,
        encoder: Sequence[Sequence[int]] = OFFICIAL_ENCODER,
        decoder: Sequence[Sequence[int]] = OFFICIAL_DECODER,
        tail: Sequence[int] = OFFICIAL_TAIL,
        in_channels: int = 1,
    ):
        super().__init__()
        if len(encoder) != len(decoder):
            raise ValueError('encoder and decoder need the same number of levels')
        self.layout = {
            'encoder': [list(map(int, lv)) for lv in encoder],
            'decoder': [list(map(int, lv)) for lv in decoder],
            'tail': [int(f) for f in tail],
            'in_channels': int(in_channels),
        }
        self.encoder = nn.ModuleList()
        prev = in_channels
        for level in encoder:
            block = nn.ModuleList()
            for feats in level:
                block.append(ConvBlock(prev, feats))
                prev = feats
            self.encoder.append(block)
        skips = [level[-1] for level in encoder][::-1]
        self.decoder = nn.ModuleList()
        for level, skip in zip(decoder, skips):
            block = nn.ModuleList()
            for feats in level:
                block.append(ConvBlock(prev, feats))
                prev = feats
            self.decoder.append(block)
            prev += skip
        self.remaining = nn.ModuleList()
        for i, feats in enumerate(tail):
            self.remaining.append(ConvBlock(prev, feats, final=i == len(tail) - 1))
            prev = feats

    @property
    def divisor(self) -> int:
        """Spatial sizes must be multiples of this (2 ** number of poolings)."""
        return 2 ** len(self.encoder)

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor]) -> StripUNet:
        """Build a network whose layout matches ``state`` (official or narrower)."""
        layout = infer_layout(state)
        model = cls(**layout)
        model.load_state_dict(state, strict=True)
        return model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for level in self.encoder:
            for conv in level:
                x = conv(x)
            skips.append(x)
            x = F.max_pool3d(x, 2)
        for level in self.decoder:
            for conv in level:
                x = conv(x)
            x = F.interpolate(x, scale_factor=2, mode='nearest')
            x = torch.cat([x, skips.pop()], dim=1)
        for conv in self.remaining:
            x = conv(x)
        return x

    @torch.inference_mode()
    def predict(self, x: torch.Tensor, slab: int = 64) -> torch.Tensor:
        """Same values as ``forward`` (to float rounding), in less time and memory, on the
        shared inference engine (:mod:`.engine`):

        * ``channels_last_3d`` layout (about 1.7x faster convolutions on CPU);
        * every "nearest upsample x2, concatenate, convolve" runs at low resolution without
          building the upsampled or concatenated tensors (:class:`~.engine.UpsampledConv`);
        * the two full-resolution ends (first encoder level; tail) run in slabs of ``slab``
          planes along the first spatial axis, each with a halo, so the result equals the
          whole-volume computation.
        """
        x = x.contiguous(memory_format=CL)
        first = self.encoder[0]
        level0 = in_slabs(x, first[-1].conv.out_channels, slab, len(first), self._slab_of(x))
        skips = [level0]
        x = F.max_pool3d(level0, 2)
        for level in self.encoder[1:]:
            x = run(level, x)
            skips.append(x)
            x = F.max_pool3d(x, 2)
        x = run(self.decoder[0], x)
        for m, level in enumerate(self.decoder[1:], start=1):
            x = run(level[1:], self._up_conv(m)(pad_low(x), skips.pop()))
        return self._tail(x, skips.pop(), slab).contiguous()

    def _slab_of(self, x: torch.Tensor):
        return lambda lo, hi: run(self.encoder[0], x[:, :, lo:hi])

    def _up_conv(self, m: int) -> UpsampledConv:
        """The first convolution after decoder level ``m - 1`` (``m == len(decoder)``: the
        tail's), applied to ``cat([upsample2(low), skip])`` at low resolution (cached)."""
        first = self.remaining[0] if m == len(self.decoder) else self.decoder[m][0]

        def build():
            skip = self.layout['encoder'][len(self.encoder) - m][-1]
            return UpsampledConv(first.conv, skip, False, first.activate)

        return cached(self, ('up', m), (first.conv.weight, first.conv.bias), build)

    def _tail(self, low: torch.Tensor, skip: torch.Tensor, slab: int) -> torch.Tensor:
        up_conv = self._up_conv(len(self.decoder))
        convs = self.remaining

        def compute(lo, hi):
            lo2, hi2 = even_rows(lo, hi)
            y = up_conv(pad_low(low, lo2 // 2, hi2 // 2), skip[:, :, lo2:hi2])
            return run(convs[1:], y)[:, :, lo - lo2 : hi - lo2]

        return in_slabs(skip, convs[-1].conv.out_channels, slab, len(convs), compute)


_KEY = re.compile(
    r'^(encoder|decoder)\.(\d+)\.(\d+)\.conv\.weight$|^remaining\.(\d+)\.conv\.weight$'
)


def infer_layout(state: Mapping[str, torch.Tensor]) -> dict:
    """Read encoder/decoder/tail widths from a SynthStrip state dict.

    Raises ``ValueError`` with a readable reason when ``state`` is not a SynthStrip network.
    """
    enc: dict[int, dict[int, int]] = {}
    dec: dict[int, dict[int, int]] = {}
    tail: dict[int, int] = {}
    in_channels = None
    for key, value in state.items():
        m = _KEY.match(key)
        if not m:
            continue
        if not hasattr(value, 'shape') or len(value.shape) != 5:
            raise ValueError(f'{key} is not a 3-D convolution kernel')
        out_ch = int(value.shape[0])
        if m.group(1):
            table = enc if m.group(1) == 'encoder' else dec
            table.setdefault(int(m.group(2)), {})[int(m.group(3))] = out_ch
            if m.group(1) == 'encoder' and m.group(2) == '0' and m.group(3) == '0':
                in_channels = int(value.shape[1])
        else:
            tail[int(m.group(4))] = out_ch
    if not enc or not dec or not tail:
        raise ValueError('no SynthStrip encoder/decoder/remaining convolutions found')

    def ordered(table):
        levels = []
        for lv in range(len(table)):
            if lv not in table:
                raise ValueError(f'level {lv} is missing')
            convs = table[lv]
            levels.append([convs[c] for c in range(len(convs))])
        return levels

    return {
        'encoder': ordered(enc),
        'decoder': ordered(dec),
        'tail': [tail[i] for i in range(len(tail))],
        'in_channels': in_channels or 1,
    }
