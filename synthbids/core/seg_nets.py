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
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

#: BatchNorm epsilon of Keras (PyTorch's default is 1e-5).
KERAS_BN_EPS = 1e-3

Sink = Callable[[int, int, torch.Tensor], None]


def conv3d(x, weight, bias=None, padding=0, groups: int = 1) -> torch.Tensor:
    """``F.conv3d`` that always takes oneDNN's path on CPU for float32 inference.

    PyTorch picks its slow reference kernel for small inputs (batch x channels x two spatial
    sizes below 20480, i.e. narrow networks or thin slabs), which is 5-10x slower there.
    """
    if (
        x.device.type == 'cpu'
        and x.dtype == torch.float32
        and not torch.is_grad_enabled()
        and torch.backends.mkldnn.is_available()
    ):
        pad = [padding] * 3 if isinstance(padding, int) else list(padding)
        return torch.ops.aten.mkldnn_convolution(x, weight, bias, pad, [1] * 3, [1] * 3, groups)
    return F.conv3d(x, weight, bias, padding=padding, groups=groups)


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
        x = conv3d(x, self.conv.weight, self.conv.bias, self.conv.padding)
        if self.activation == 'elu':
            return F.elu(x, inplace=True)
        if self.activation == 'relu':
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
    cl = torch.channels_last_3d
    x = x.contiguous(memory_format=cl)
    kernel = blur_kernel(x.shape[1], sigma).to(x.device).contiguous(memory_format=cl)
    return conv3d(x, kernel, None, kernel.shape[-1] // 2, groups=x.shape[1])


def softmax_channels(x: torch.Tensor) -> torch.Tensor:
    """Softmax over dim 1, computed along the contiguous axis for channels-last tensors."""
    if x.is_contiguous(memory_format=torch.channels_last_3d):
        return torch.softmax(x.permute(0, 2, 3, 4, 1), dim=-1).permute(0, 4, 1, 2, 3)
    return torch.softmax(x, dim=1)


def phase_kernels(weight: torch.Tensor) -> list[tuple[tuple[int, int, int], torch.Tensor]]:
    """Rewrite a ``same`` convolution applied after nearest x2 upsampling as eight small
    convolutions at low resolution, one per output phase (parity of the output index).

    Output voxel 2i + p reads the upsampled taps 2i + p + d (|d| <= k // 2), i.e. the
    low-resolution voxels i + floor((p + d) / 2): taps falling on the same low-resolution
    voxel are summed. For k = 3 each phase needs 2 taps per axis instead of 3 (k = 5: 3
    instead of 5). Returns ``[((o0, o1, o2), kernel)]`` with each axis's first low-resolution
    offset ``o``; kernels are summed in float64 for accuracy.
    """
    k = weight.shape[-1]
    half = k // 2
    mats = []
    for p in (0, 1):
        offsets = [(p + d) // 2 for d in range(-half, half + 1)]
        first = min(offsets)
        m = torch.zeros(max(offsets) - first + 1, k, dtype=torch.float64)
        for tap, off in enumerate(offsets):
            m[off - first, tap] = 1
        mats.append((first, m))
    w64 = weight.detach().to(torch.float64)
    out = []
    for px in (0, 1):
        for py in (0, 1):
            for pz in (0, 1):
                (ox, mx), (oy, my), (oz, mz) = mats[px], mats[py], mats[pz]
                kern = torch.einsum('ai,bj,ck,oxijk->oxabc', mx, my, mz, w64)
                kern = kern.to(weight.dtype).contiguous(memory_format=torch.channels_last_3d)
                out.append(((px, py, pz), (ox, oy, oz), kern))
    return out


def conv_upsampled(low: torch.Tensor, phases, out: torch.Tensor) -> torch.Tensor:
    """Add ``conv3d(upsample2(low), weight, padding='same')`` (no bias) to ``out``, which has
    twice ``low``'s spatial size, computing it at low resolution with :func:`phase_kernels`.
    ``low`` must carry one extra plane of context on each side of every axis (zeros at the
    true volume border), as made by :func:`pad_low`."""
    inner = [s - 2 for s in low.shape[2:]]
    for (px, py, pz), offsets, kern in phases:
        # a valid convolution over the whole padded tensor (no strided copy of the input);
        # the phase's outputs start where its first tap meets its first low-resolution voxel
        y = conv3d(low, kern)
        starts = [1 + o for o in offsets]
        y = y[
            :,
            :,
            starts[0] : starts[0] + inner[0],
            starts[1] : starts[1] + inner[1],
            starts[2] : starts[2] + inner[2],
        ]
        out[:, :, px::2, py::2, pz::2] += y
    return out


def pad_low(low: torch.Tensor, a: int = 0, b: int | None = None) -> torch.Tensor:
    """Planes ``[a, b)`` of ``low`` along the first spatial axis with one plane of context on
    each side of every spatial axis (real neighbours where they exist, zeros beyond)."""
    n = low.shape[2]
    b = n if b is None else b
    lo, hi = max(a - 1, 0), min(b + 1, n)
    part = low[:, :, lo:hi]
    part = F.pad(part, (1, 1, 1, 1, lo - (a - 1), (b + 1) - hi))
    return part.contiguous(memory_format=torch.channels_last_3d)


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
        self.down = nn.ModuleList()
        self.bn_down = nn.ModuleList()
        prev = in_channels
        for level in encoder:
            convs = nn.ModuleList()
            for feats in level:
                convs.append(KerasConv(prev, feats, kernel, activation))
                prev = feats
            self.down.append(convs)
            self.bn_down.append(keras_bn(prev))
        skips = [lv[-1] for lv in encoder[:-1]][::-1]
        self.up = nn.ModuleList()
        self.bn_up = nn.ModuleList()
        for level, skip, merge in zip(decoder, skips, merges):
            prev += skip if merge else 0
            convs = nn.ModuleList()
            for feats in level:
                convs.append(KerasConv(prev, feats, kernel, activation))
                prev = feats
            self.up.append(convs)
            self.bn_up.append(keras_bn(prev))
        self.likelihood = nn.Conv3d(prev, n_labels, 1)

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
        x = x.contiguous(memory_format=torch.channels_last_3d)
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
        pooled = _empty(x, first[-1].conv.out_channels, half)
        kept = _empty(x, first[-1].conv.out_channels, x.shape[2:]) if keep_skip else None

        def encode(start, stop, y):
            if kept is not None:
                kept[:, :, start:stop] = y
            pooled[:, :, start // 2 : (stop + 1) // 2] = maxpool_same(bn0(y))

        def level0(lo, hi):
            return _run(first, x[:, :, lo:hi])

        _for_slabs(depth, slab, halo0, level0, encode)
        low = self._middle(pooled)
        pooled = None  # noqa: F841 - frees the first level's pooled output
        tail = self.up[-1]
        up_conv = self._up_conv(len(self.up) - 1)
        weight, bias = _fold_bn(self.likelihood, self.bn_up[-1])
        halo = sum(c.halo for c in tail) + (1 if smooth else 0)

        def head(lo, hi):
            lo2, hi2 = lo - lo % 2, hi + hi % 2
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
            z = _run(tail[1:], z)
            z = conv3d(z, weight, bias).contiguous(memory_format=torch.channels_last_3d)
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

        _for_slabs(depth, slab, halo, compute, emit_all)

    def _up_conv(self, m: int) -> _UpConv:
        """The (cached) low-resolution form of decoder level ``m``'s first convolution."""
        conv = self.up[m][0].conv
        key = (conv.weight.data_ptr(), conv.weight._version, conv.bias._version)
        cache = self.__dict__.setdefault('_up_conv_cache', {})
        if cache.get(m, (None,))[0] != key:
            skip = self.layout['encoder'][len(self.down) - 2 - m][-1]
            merge = self.layout['merges'][m]
            cache[m] = (key, _UpConv(self.up[m][0], merge, skip if merge else 0))
        return cache[m][1]

    def _middle(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder levels 1.. and every decoder level but the last (half resolution)."""
        skips = []
        last = len(self.down) - 1
        for lv in range(1, len(self.down)):
            x = _run(self.down[lv], x)
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
            x = self.bn_up[m](_run(convs[1:], x))
        return x


class _UpConv:
    """A decoder's first convolution applied to ``cat([skip, upsample2(low)])``, computed as
    ``conv(skip) + conv_upsampled(low)`` (see :func:`phase_kernels`), then the activation."""

    def __init__(self, conv: KerasConv, merge: bool, skip_channels: int):
        w = conv.conv.weight
        self.bias = conv.conv.bias
        self.padding = conv.conv.padding
        self.activation = conv.activation
        self.out_channels = w.shape[0]
        self.skip_weight = w[:, :skip_channels].contiguous(memory_format=torch.channels_last_3d)
        self.phases = phase_kernels(w[:, skip_channels:] if merge else w)
        self.merge = merge

    def __call__(self, low_padded: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        spatial = [2 * (s - 2) for s in low_padded.shape[2:]]
        if self.merge:
            out = conv3d(skip, self.skip_weight, self.bias, self.padding)
        else:
            out = _empty(low_padded, self.out_channels, spatial)
            out.copy_(self.bias.view(1, -1, 1, 1, 1).expand_as(out))
        conv_upsampled(low_padded, self.phases, out)
        if self.activation == 'elu':
            return F.elu(out, inplace=True)
        if self.activation == 'relu':
            return F.relu(out, inplace=True)
        return out


def _fold_bn(conv: nn.Conv3d, bn: nn.BatchNorm3d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights of ``conv(bn(x))`` for a 1x1x1 convolution (exact: no padding involved)."""
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    shift = bn.bias.double() - bn.running_mean.double() * scale
    w = conv.weight.double()[:, :, 0, 0, 0]
    weight = (w * scale[None, :]).to(conv.weight.dtype)[:, :, None, None, None]
    bias = (conv.bias.double() + w @ shift).to(conv.weight.dtype)
    return weight.contiguous(memory_format=torch.channels_last_3d), bias


def _empty(like: torch.Tensor, channels: int, spatial) -> torch.Tensor:
    return torch.empty(
        (like.shape[0], channels, *spatial),
        dtype=like.dtype,
        device=like.device,
        memory_format=torch.channels_last_3d,
    )


def _run(convs, x: torch.Tensor) -> torch.Tensor:
    for conv in convs:
        x = conv(x)
    return x


def _for_slabs(depth: int, slab: int, halo: int, compute, emit) -> None:
    """Call ``compute(lo, hi)`` for slabs widened by ``halo`` planes either side and pass
    each slab's own planes to ``emit(start, stop, y)`` (``y`` may be a tuple of tensors)."""
    for start in range(0, depth, slab):
        stop = min(start + slab, depth)
        lo, hi = max(start - halo, 0), min(stop + halo, depth)
        y = compute(lo, hi)
        if isinstance(y, tuple):
            emit(
                start,
                stop,
                tuple(None if t is None else t[:, :, start - lo : stop - lo] for t in y),
            )
        else:
            emit(start, stop, y[:, :, start - lo : stop - lo])
        del y


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
            y = _run(convs, x)
            y = y + expand(x)
        else:
            weight, bias, split = fused
            both = F.relu(conv3d(x, weight, bias, weight.shape[-1] // 2), inplace=True)
            y = _run(convs[1:], both[:, :split])
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
        key = tuple((p.data_ptr(), p._version) for p in (first.weight, other.weight))
        cache = self.__dict__.setdefault('_fused_cache', {})
        if cache.get(lv, (None,))[0] != key:
            weight = torch.cat([first.weight, other.weight]).contiguous(
                memory_format=torch.channels_last_3d
            )
            bias = torch.cat([first.bias, other.bias])
            cache[lv] = (key, (weight, bias, first.out_channels))
        return cache[lv][1]

    def _tail(self, x: torch.Tensor, first: int) -> torch.Tensor:
        for lv in range(first, len(self.down)):
            x = maxpool_same(self._level(lv, x))
        for conv in self.final:
            x = conv(x)
        return x.mean(dim=(2, 3, 4))

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw scores (N, K) of a one-hot input (N, K, X, Y, Z)."""
        return self._tail(x.contiguous(memory_format=torch.channels_last_3d), 0)

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
            memory_format=torch.channels_last_3d,
        )

        def compute(lo, hi):
            x = F.one_hot(classes[lo:hi].long(), n_classes).to(torch.float32)
            return self._level(0, x[None].permute(0, 4, 1, 2, 3))

        def emit(start, stop, y):
            pooled[:, :, start // 2 : (stop + 1) // 2] = maxpool_same(y)

        _for_slabs(depth, slab, halo, compute, emit)
        return self._tail(pooled, 1)
