"""The inference engine every network runs on: slab loops, fast convolutions, phase kernels.

SynthStrip's and SynthSeg's U-Nets (and the QC encoder) share the same tricks, written once here:

* :func:`conv3d` always takes oneDNN's path for float32 CPU inference;
* :func:`for_slabs` computes full-resolution ends of a network slab by slab along the first
  spatial axis, each slab widened by a halo so that the values equal the whole-volume pass;
* :class:`UpsampledConv` applies a decoder's first convolution to ``cat(skip, upsample2(low))``
  without building either tensor: the upsampled part runs at low resolution with
  :func:`phase_kernels` (about 3x fewer operations for 3x3x3 kernels) and the concatenation
  becomes a sum;
* :func:`fold_bn` folds a BatchNorm into the 1x1x1 convolution after it.

Tensors are channels-first (N, C, X, Y, Z) in ``channels_last_3d`` memory layout.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

CL = torch.channels_last_3d

#: ``sink(start, stop, tensor)``: receives planes ``[start, stop)`` of an output, slab by slab.
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


def empty(like: torch.Tensor, channels: int, spatial) -> torch.Tensor:
    """An uninitialised (N, channels, *spatial) tensor like ``like``, channels-last."""
    return torch.empty(
        (like.shape[0], channels, *spatial), dtype=like.dtype, device=like.device, memory_format=CL
    )


def run(layers, x: torch.Tensor) -> torch.Tensor:
    """Apply ``layers`` in order."""
    for layer in layers:
        x = layer(x)
    return x


def for_slabs(depth: int, slab: int, halo: int, compute, emit) -> None:
    """Call ``compute(lo, hi)`` for slabs widened by ``halo`` planes either side and pass
    each slab's own planes to ``emit(start, stop, y)`` (``y`` may be a tuple of tensors)."""
    for start in range(0, depth, slab):
        stop = min(start + slab, depth)
        lo, hi = max(start - halo, 0), min(stop + halo, depth)
        y = compute(lo, hi)
        if isinstance(y, tuple):
            y = tuple(None if t is None else t[:, :, start - lo : stop - lo] for t in y)
        else:
            y = y[:, :, start - lo : stop - lo]
        emit(start, stop, y)
        del y


def in_slabs(x: torch.Tensor, channels: int, slab: int, halo: int, compute) -> torch.Tensor:
    """The whole output of ``compute(lo, hi)`` (planes ``lo..hi`` of ``x``'s first spatial
    axis), assembled from halo-widened slabs."""
    out = empty(x, channels, x.shape[2:])

    def store(start, stop, y):
        out[:, :, start:stop] = y

    for_slabs(x.shape[2], slab, halo, compute, store)
    return out


def even_rows(lo: int, hi: int) -> tuple[int, int]:
    """``[lo, hi)`` widened to even bounds, so that its half-resolution rows are whole."""
    return lo - lo % 2, hi + hi % 2


def phase_kernels(weight: torch.Tensor) -> list:
    """Rewrite a ``same`` convolution applied after nearest x2 upsampling as eight small
    convolutions at low resolution, one per output phase (parity of the output index).

    Output voxel 2i + p reads the upsampled taps 2i + p + d (|d| <= k // 2), i.e. the
    low-resolution voxels i + floor((p + d) / 2): taps falling on the same low-resolution
    voxel are summed. For k = 3 each phase needs 2 taps per axis instead of 3 (k = 5: 3
    instead of 5). Returns ``[((px, py, pz), (ox, oy, oz), kernel)]`` with each axis's first
    low-resolution offset ``o``; kernels are summed in float64 for accuracy.
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
                kern = kern.to(device=weight.device, dtype=weight.dtype)
                out.append(((px, py, pz), (ox, oy, oz), kern.contiguous(memory_format=CL)))
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
        a, b, c = (1 + o for o in offsets)
        out[:, :, px::2, py::2, pz::2] += y[
            :, :, a : a + inner[0], b : b + inner[1], c : c + inner[2]
        ]
    return out


def pad_low(low: torch.Tensor, a: int = 0, b: int | None = None) -> torch.Tensor:
    """Planes ``[a, b)`` of ``low`` along the first spatial axis with one plane of context on
    each side of every spatial axis (real neighbours where they exist, zeros beyond)."""
    n = low.shape[2]
    b = n if b is None else b
    lo, hi = max(a - 1, 0), min(b + 1, n)
    part = F.pad(low[:, :, lo:hi], (1, 1, 1, 1, lo - (a - 1), (b + 1) - hi))
    return part.contiguous(memory_format=CL)


class UpsampledConv:
    """A decoder's first convolution applied to the concatenation of a skip and
    ``upsample2(low)``, computed as ``conv(skip) + conv_upsampled(low)`` (then ``activation``).

    ``skip_first`` says the order of the concatenation (SynthSeg: skip first; SynthStrip:
    upsampled first); ``skip_channels`` is 0 for a decoder level that merges no skip.
    """

    def __init__(
        self,
        conv: nn.Conv3d,
        skip_channels: int,
        skip_first: bool,
        activation: Callable[[torch.Tensor], torch.Tensor] | None,
    ):
        w = conv.weight
        up_channels = w.shape[1] - skip_channels
        if skip_first:
            skip_w, up_w = w[:, :skip_channels], w[:, skip_channels:]
        else:
            up_w, skip_w = w[:, :up_channels], w[:, up_channels:]
        self.bias = conv.bias
        self.padding = conv.padding
        self.activation = activation
        self.out_channels = w.shape[0]
        self.skip_weight = skip_w.contiguous(memory_format=CL) if skip_channels else None
        self.phases = phase_kernels(up_w)

    def __call__(self, low_padded: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        spatial = [2 * (s - 2) for s in low_padded.shape[2:]]
        if self.skip_weight is not None:
            out = conv3d(skip, self.skip_weight, self.bias, self.padding)
        else:
            out = empty(low_padded, self.out_channels, spatial)
            out.copy_(self.bias.view(1, -1, 1, 1, 1).expand_as(out))
        conv_upsampled(low_padded, self.phases, out)
        return out if self.activation is None else self.activation(out)


def cached(module: nn.Module, key, params, build):
    """``build()`` cached on ``module`` under ``key``, rebuilt when any of ``params`` (tensors)
    changes (new storage or in-place update): derived kernels follow weight loading."""
    stamp = tuple((p.data_ptr(), p._version, p.device) for p in params)
    cache = module.__dict__.setdefault('_engine_cache', {})
    if cache.get(key, (None,))[0] != stamp:
        cache[key] = (stamp, build())
    return cache[key][1]


def fold_bn(conv: nn.Conv3d, bn: nn.BatchNorm3d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights of ``conv(bn(x))`` for a 1x1x1 convolution (exact: no padding involved)."""
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    shift = bn.bias.double() - bn.running_mean.double() * scale
    w = conv.weight.double()[:, :, 0, 0, 0]
    weight = (w * scale[None, :]).to(conv.weight.dtype)[:, :, None, None, None]
    bias = (conv.bias.double() + w @ shift).to(conv.weight.dtype)
    return weight.contiguous(memory_format=CL), bias
