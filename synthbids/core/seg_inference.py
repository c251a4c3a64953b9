"""Running SynthSeg's networks on the padded 1 mm input: test-time flip, fast and robust
modes, and the inputs of the parcellation and QC networks as ``mri_synthseg`` makes them.

Photo-SynthSeg of one hemisphere has no flip to average: its networks run as ``--fast`` does
(postprocessing is still the full one unless ``--fast`` is given); for a right hemisphere the
input is mirrored along the first axis and every output mirrored back (:func:`mirror`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from . import labels as L
from .seg_model import SegModel
from .seg_nets import SegUNet
from .seg_postprocess import ParcellationSink, argmax_channels, qc_crop
from .seg_preprocess import Prepared


@dataclass
class _Raw:
    """Network outputs on the padded grid, before postprocessing."""

    posteriors: np.ndarray  # (C, X, Y, Z) float32
    parc_index: np.ndarray | None = None  # argmax channel feeding the parcellation input
    qc_index: np.ndarray | None = None  # argmax channel feeding MakeShape


def _one_hot(index: torch.Tensor, n: int) -> torch.Tensor:
    """(1, n, X, Y, Z) float32 one-hot of a (X, Y, Z) index map, channels-last."""
    out = torch.nn.functional.one_hot(index.long(), n).to(torch.float32)
    return out[None].permute(0, 4, 1, 2, 3)


def channels_first(probs: torch.Tensor, out: np.ndarray | None = None) -> np.ndarray:
    """A (1, C, X, Y, Z) slab as a channels-first (C, X, Y, Z) array, written into ``out``
    when given. Channels-last slabs are transposed in cache-sized blocks (several times
    faster than a strided copy)."""
    probs = probs[0].cpu()
    n = probs.shape[0]
    if out is None:
        out = np.empty(tuple(probs.shape), dtype=np.float32)
    rows = probs.permute(1, 2, 3, 0)
    dst = out.reshape(n, -1)
    if not rows.is_contiguous() or not np.shares_memory(dst, out):
        out[...] = probs.numpy()
        return out
    src = rows.reshape(-1, n).numpy()
    for r in range(0, src.shape[0], _BLOCK):
        dst[:, r : r + _BLOCK] = src[r : r + _BLOCK].T
    return out


_BLOCK = 16384


def _argmax_of(net: SegUNet, x: torch.Tensor, model: SegModel | None = None) -> torch.Tensor:
    index = torch.empty(x.shape[2:], dtype=torch.uint8)

    def sink(a, b, probs):
        index[a:b] = probs[0].argmax(dim=0).to(torch.uint8).cpu()

    if model is None:
        net.predict(x, sink)
    else:
        model.predict(net, x, sink)
    return index


def run_networks(model: SegModel, image: np.ndarray, fast: bool) -> _Raw:
    """Segmentation network(s) on the padded input (X, Y, Z): TTA, fast or robust (module
    docstring), with ``mri_synthseg``'s choice of outputs for the parcellation and QC."""
    x = torch.from_numpy(image)[None, None].to(model.device)
    # torch's allocator, not numpy's: numpy asks for transparent huge pages on large arrays,
    # and their first touch here cost three times the writing itself (kernel compaction)
    post = torch.empty((len(model.labels), *image.shape), dtype=torch.float32).numpy()
    if model.robust:
        _robust(model, x, post)
    elif fast or model.flip_indices is None:
        return _fast(model, x, post)
    else:
        _flip_averaged(model, x, post)
    index = argmax_channels(post) if model.parc is not None or model.qc is not None else None
    return _Raw(post, index, index)


def mirror(raw: _Raw) -> _Raw:
    """Mirror network outputs along the first spatial axis, in place (channel by channel, so
    that the posteriors are never copied whole)."""
    for c in range(raw.posteriors.shape[0]):
        np.copyto(raw.posteriors[c], raw.posteriors[c, ::-1].copy())
    if raw.parc_index is not None:
        raw.parc_index = np.ascontiguousarray(raw.parc_index[::-1])
    if raw.qc_index is not None:
        raw.qc_index = np.ascontiguousarray(raw.qc_index[::-1])
    return raw


def _writer(post: np.ndarray):
    def write(a, b, probs):
        channels_first(probs, post[:, a:b])

    return write


def _robust(model: SegModel, x: torch.Tensor, post: np.ndarray) -> None:
    """Stage 1 -> denoiser -> stage 2 (on the image and the denoised labels)."""
    groups = model.unet.n_labels
    stage1 = _argmax_of(model.unet, x, model)
    stage2 = _argmax_of(model.denoiser, _one_hot(stage1, groups).to(model.device), model)
    del stage1
    x2 = torch.cat([x, _one_hot(stage2, groups).to(model.device)], dim=1)
    del stage2
    model.predict(model.unet2, x2, _writer(post))


def _fast(model: SegModel, x: torch.Tensor, post: np.ndarray) -> _Raw:
    """One pass, no flip. ``mri_synthseg``'s quirks: with --parc or --qc its segmentation
    output is the unblurred softmax; the parcellation input comes from the blurred one, the
    QC input from the unblurred one only when --parc is also on."""
    need_parc, need_qc = model.parc is not None, model.qc is not None
    unblurred_post = need_parc or need_qc
    write = _writer(post)
    blurred_index = torch.empty(post.shape[1:], dtype=torch.uint8)
    raw_index = torch.empty(post.shape[1:], dtype=torch.uint8)

    def blurred_sink(a, b, probs):
        if not unblurred_post:
            write(a, b, probs)
        if need_parc or need_qc:
            blurred_index[a:b] = probs[0].argmax(dim=0).to(torch.uint8).cpu()

    def raw_sink(a, b, probs):
        if unblurred_post:
            write(a, b, probs)
        if need_parc and need_qc:
            raw_index[a:b] = probs[0].argmax(dim=0).to(torch.uint8).cpu()

    model.predict(model.unet, x, blurred_sink, smooth=True, raw_sink=raw_sink)
    parc_index = blurred_index.numpy() if need_parc else None
    qc_index = None
    if need_qc:
        qc_index = raw_index.numpy() if need_parc else blurred_index.numpy()
    return _Raw(post, parc_index, qc_index)


def _flip_averaged(model: SegModel, x: torch.Tensor, post: np.ndarray) -> None:
    """Test-time augmentation: the mean of the blurred posteriors of the image and of its
    left-right flip (mirrored back, left and right channels swapped)."""
    depth, flip = x.shape[2], model.flip_indices
    scratch = []  # one buffer for every slab (allocated as ``post`` is, see run_networks)

    def second(a, b, probs):
        # final = 0.5 * (first + mirrored), as the reference computes it
        if not scratch or scratch[0].shape[1] < b - a:
            shape = (probs.shape[1], b - a, *probs.shape[3:])
            scratch[:] = [torch.empty(shape, dtype=torch.float32).numpy()]
        mirrored = channels_first(probs, scratch[0][:, : b - a])
        for c in range(len(flip)):
            dst = post[c, depth - b : depth - a]
            np.add(dst, mirrored[flip[c], ::-1], out=dst)
            np.multiply(dst, np.float32(0.5), out=dst)

    model.predict(model.unet, x, _writer(post), smooth=True)
    model.predict(model.unet, x.flip(2), second, smooth=True)


def run_qc(model: SegModel, index: np.ndarray) -> np.ndarray:
    """Raw QC network output (K,) from the argmax index map of the padded grid."""
    classes = model.qc_lut[qc_crop(index)]
    x = torch.from_numpy(classes).to(model.device)
    return model.qc.predict(x, len(L.QC_NAMES))[0].cpu().numpy()


def parcellation_input(model: SegModel, image: np.ndarray, parc_index: np.ndarray):
    """``[image, not cortex, cortex]`` (1, 3, X, Y, Z), cortex = argmax cortex label."""
    labels = np.asarray(model.labels)
    cortex = torch.from_numpy(np.isin(labels[parc_index], L.CORTEX))
    x = torch.from_numpy(image)[None, None]
    return torch.cat([x, _one_hot(cortex, 2)], dim=1).to(model.device)


def run_parcellation(
    model: SegModel, prepared: Prepared, parc_index: np.ndarray, seg: np.ndarray
) -> np.ndarray:
    """Replace cortex labels of ``seg`` (unpadded aligned grid) by parcels; returns the
    per-parcel posterior sums. A mirrored model (right hemisphere) runs the network on the
    mirrored input and mirrors each output slab back."""
    sink = ParcellationSink(seg, prepared.pad_idx)
    if model.mirrored:
        depth = prepared.image.shape[0]
        image = np.ascontiguousarray(prepared.image[::-1])
        x = parcellation_input(model, image, np.ascontiguousarray(parc_index[::-1]))
        model.predict(
            model.parc, x, lambda a, b, p: sink(depth - b, depth - a, p.cpu().flip(2)), smooth=True
        )
        return sink.sums
    x = parcellation_input(model, prepared.image, parc_index)
    model.predict(model.parc, x, lambda a, b, p: sink(a, b, p.cpu()), smooth=True)
    return sink.sums
