"""SynthSeg as a library call: load the networks once, then segment any number of images.

>>> model = load_seg_model(parc=True, qc=True)          # resolves weights (see core.weights)
>>> result = segment('T1w.nii.gz', model)
>>> result.labels, result.volumes['total intracranial'], result.qc

The pipeline is FreeSurfer's ``mri_synthseg`` (2.0, 1.0 with ``v1``, the robust cascade,
parcellation, QC): preprocessing in :mod:`.seg_preprocess`, networks in :mod:`.seg_nets`
(official Keras weights converted by :mod:`.seg_keras`), postprocessing in
:mod:`.seg_postprocess`. Test-time augmentation (default) averages the blurred posteriors of
the image and of its left-right flip; ``fast`` keeps only the first; the robust cascade runs
stage 1 -> denoiser -> stage 2 and implies ``fast``. Volumes are sums of soft posteriors;
parcel volumes are rescaled per hemisphere to the cortex (``parc_compat`` for the old rule).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import labels as L
from .errors import SynthbidsError, WeightsError
from .geometry import sample_nearest
from .imageio import Volume, load_volume
from .seg_keras import build_qc, build_unet, prefixes_in, read_keras_meta, read_keras_weights
from .seg_nets import QCNet, SegUNet
from .seg_postprocess import (
    ParcellationSink,
    argmax_channels,
    channel_sums,
    clean_posteriors,
    compute_volumes,
    qc_crop,
    qc_scores,
)
from .seg_preprocess import DIVISOR, Prepared, preprocess
from .weights import WeightsFile, official_entries, resolve

log = logging.getLogger(__name__)


@dataclass
class SegModel:
    """Loaded SynthSeg networks and the label set of their output."""

    unet: SegUNet  # 2.0 / 1.0 segmentation, or stage 1 of the robust cascade
    labels: tuple[int, ...]
    v1: bool = False
    denoiser: SegUNet | None = None  # robust: stage 2 (``l2l``)
    unet2: SegUNet | None = None  # robust: stage 3
    parc: SegUNet | None = None
    qc: QCNet | None = None
    weights: list[WeightsFile] = field(default_factory=list)
    device: torch.device = field(default_factory=lambda: torch.device('cpu'))
    low_memory: bool = False  # recompute full-resolution skips instead of keeping them
    voxsize: float = 1.0  # grid the networks work on (weights trained by synthbids: e.g. 2 mm)

    def predict(self, net: SegUNet, x: torch.Tensor, sink, **kwargs) -> None:
        factor = int(round(self.voxsize))
        if factor > 1:
            predict_coarse(net, x, sink, factor, keep_skip=not self.low_memory, **kwargs)
        else:
            net.predict(x, sink, keep_skip=not self.low_memory, **kwargs)

    @property
    def divisor(self) -> int:
        """Padded 1 mm sizes are multiples of this: 32 for the official networks; for a
        network on a ``factor``-times coarser grid, ``factor`` times what the network needs
        (a 3 mm network with 4 poolings: 48)."""
        factor = int(round(self.voxsize))
        return factor * self.unet.divisor if factor > 1 else DIVISOR

    @property
    def robust(self) -> bool:
        return self.unet2 is not None

    @property
    def flip_indices(self) -> list[int]:
        return L.flip_indices(self.labels)

    @property
    def topology(self) -> list[int]:
        return [L.TOPOLOGY_CLASS[lab] for lab in self.labels]

    @property
    def qc_lut(self) -> np.ndarray:
        return np.array([L.QC_CLASS[lab] for lab in self.labels], dtype=np.uint8)


@dataclass
class SegResult:
    """Outputs of :func:`segment` (see the module docstring)."""

    labels: np.ndarray
    affine: np.ndarray
    volumes: dict[str, float]
    qc: dict[str, float] | None = None
    posteriors: np.ndarray | None = None
    posterior_labels: list[int] = field(default_factory=list)
    resampled: np.ndarray | None = None
    resampled_affine: np.ndarray | None = None
    weights: list = field(default_factory=list)
    posteriors_affine: np.ndarray | None = None  # grid of ``posteriors`` (always 1 mm/native)
    volume_precision: str = 'float32'  # arithmetic of mri_synthseg's volumes (CSV formatting)


# --------------------------------------------------------------------------- loading

_KEYS = {'seg': 'seg', 'v1': 'seg-v1', 'robust': 'seg-robust', 'parc': 'seg-parc', 'qc': 'seg-qc'}
_CONVERTED: dict[tuple[str, str], torch.nn.Module] = {}


def official_file(kind: str) -> str:
    for entry in official_entries().values():
        if entry.kind == kind:
            return entry.file
    raise WeightsError(f'no official weights file for {kind}')


def _resolve(kind: str, model) -> WeightsFile:
    if model is None:
        return resolve(kind)
    path = Path(model).expanduser()
    if path.is_dir():
        candidate = path / official_file(kind)
        if not candidate.is_file():
            raise WeightsError(f'{candidate.name} not found in the model folder', path)
        return resolve(kind, explicit=candidate)
    return resolve(kind, explicit=path)


def _weights_of(wf: WeightsFile) -> dict:
    if wf.path.suffix.lower() not in ('.h5', '.hdf5', '.keras') and not _is_hdf5(wf.path):
        raise WeightsError('not a Keras HDF5 weights file (SynthSeg weights end in .h5)', wf.path)
    return read_keras_weights(wf.path)


def _is_hdf5(path: Path) -> bool:
    with open(path, 'rb') as fh:
        return fh.read(8).startswith(b'\x89HDF')


def _network(wf: WeightsFile, weights: dict, prefix: str, qc: bool = False):
    key = (wf.sha256, prefix)
    if key not in _CONVERTED:
        net = build_qc(weights, wf.path, prefix) if qc else build_unet(weights, prefix, wf.path)
        _CONVERTED[key] = net
        if len(_CONVERTED) > 8:
            _CONVERTED.pop(next(iter(_CONVERTED)))
    return _CONVERTED[key]


def load_seg_model(
    model: str | os.PathLike | None = None,
    *,
    v1: bool = False,
    robust: bool = False,
    parc: bool = False,
    qc: bool = False,
    device: str | torch.device = 'cpu',
    low_memory: bool = False,
) -> SegModel:
    """Resolve, read and convert the SynthSeg networks a run needs, once.

    ``model`` is a weights file (the segmentation network; it also serves ``parc``/``qc``
    when it holds those networks) or a folder with the official file names; otherwise the
    weights are searched in the documented order (:mod:`.weights`). ``low_memory`` trades about
    20 % of the time for ~20 % less peak memory.
    """
    if robust and v1:
        raise SynthbidsError('--v1 cannot be used with --robust (the robust model is 2.0 only)')
    kind = _KEYS['robust' if robust else 'v1' if v1 else 'seg']
    main = _resolve(kind, model)
    main_weights = _weights_of(main)
    found = prefixes_in(main_weights)
    used = [main]
    labels = L.seg_labels(v1)
    if robust:
        unet = _network(main, main_weights, 'unet_')
        denoiser = _network(main, main_weights, 'l2l_')
        unet2 = _network(main, main_weights, 'unet2_')
        final = unet2
    else:
        unet, denoiser, unet2 = _network(main, main_weights, 'unet_'), None, None
        final = unet
    if final.n_labels != len(labels):
        hint = ' (SynthSeg 1.0 weights? use --v1)' if final.n_labels == 32 else ''
        hint = ' (SynthSeg 2.0 weights? drop --v1)' if final.n_labels == 33 and v1 else hint
        raise WeightsError(
            f'network predicts {final.n_labels} labels, {L.__name__.split(".")[-1]} of '
            f'{"SynthSeg 1.0" if v1 else "SynthSeg 2.0"} are {len(labels)}{hint}',
            main.path,
        )
    parc_net = qc_net = None
    if parc:
        wf, w = (
            (main, main_weights) if 'unet_parc_' in found and model is not None else (None, None)
        )
        if wf is None:
            wf = _resolve('seg-parc', model if model is None or Path(model).is_dir() else None)
            w = _weights_of(wf)
            used.append(wf)
        parc_net = _network(wf, w, 'unet_parc_')
        if parc_net.n_labels != len(L.PARC_LABELS) or parc_net.layout['in_channels'] != 3:
            raise WeightsError(
                'not a SynthSeg parcellation network (69 labels, 3 inputs)', wf.path
            )
    if qc:
        wf, w = (main, main_weights) if 'qc_' in found and model is not None else (None, None)
        if wf is None:
            wf = _resolve('seg-qc', model if model is None or Path(model).is_dir() else None)
            w = _weights_of(wf)
            used.append(wf)
        qc_net = _network(wf, w, 'qc_', qc=True)
        if qc_net.layout['in_channels'] != len(L.QC_NAMES):
            raise WeightsError('not a SynthSeg QC network (9 input classes)', wf.path)
    voxsize = float(read_keras_meta(main.path).get('voxsize', 1.0))
    device = torch.device(device)
    nets = [unet, denoiser, unet2, parc_net, qc_net]
    for net in nets:
        if net is not None:
            net.to(device=device, memory_format=torch.channels_last_3d)
    return SegModel(
        unet=unet,
        labels=labels,
        v1=v1,
        denoiser=denoiser,
        unet2=unet2,
        parc=parc_net,
        qc=qc_net,
        weights=used,
        device=device,
        low_memory=low_memory,
        voxsize=voxsize,
    )


# --------------------------------------------------------------------------- networks


def predict_coarse(
    net: SegUNet, x: torch.Tensor, sink, factor: int, slab: int = 32, raw_sink=None, **kwargs
) -> None:
    """Run a network trained on a ``factor``-times coarser grid inside the 1 mm pipeline.

    The 1 mm input is block-averaged, the network runs on the coarse grid, and its
    probabilities are brought back to 1 mm by trilinear interpolation (voxel centres aligned),
    slab by slab so that the 1 mm probabilities never exist whole. The rest of the pipeline
    (test-time flip, postprocessing, soft volumes) is unchanged.
    """
    shape = x.shape[2:]
    if any(s % factor for s in shape):
        raise SynthbidsError(f'padded grid {tuple(shape)} is not divisible by {factor}')
    coarse = torch.nn.functional.avg_pool3d(x, factor)
    outputs = {}

    def keep(name):
        def store(a, b, probs):
            if name not in outputs:
                outputs[name] = torch.empty(
                    (1, probs.shape[1], *coarse.shape[2:]), dtype=probs.dtype
                )
            outputs[name][:, :, a:b] = probs.cpu()

        return store

    net.predict(coarse, keep('smooth'), raw_sink=keep('raw') if raw_sink else None, **kwargs)
    depth = coarse.shape[2]
    for name, target in (('smooth', sink), ('raw', raw_sink)):
        if target is None:
            continue
        low = outputs[name]
        for start in range(0, depth, slab):
            stop = min(start + slab, depth)
            lo, hi = max(start - 1, 0), min(stop + 1, depth)
            up = torch.nn.functional.interpolate(
                low[:, :, lo:hi], scale_factor=factor, mode='trilinear', align_corners=False
            )
            a = (start - lo) * factor
            target(start * factor, stop * factor, up[:, :, a : a + (stop - start) * factor])


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
    shape = image.shape
    image = torch.from_numpy(image)[None, None].to(model.device)
    n = len(model.labels)
    post = np.empty((n, *shape), dtype=np.float32)
    need_parc, need_qc = model.parc is not None, model.qc is not None

    def write(a, b, probs):
        channels_first(probs, post[:, a:b])

    if model.robust:
        groups = model.unet.n_labels
        stage1 = _argmax_of(model.unet, image, model)
        stage2 = _argmax_of(model.denoiser, _one_hot(stage1, groups).to(model.device), model)
        del stage1
        x2 = torch.cat([image, _one_hot(stage2, groups).to(model.device)], dim=1)
        del stage2
        model.predict(model.unet2, x2, write)
        del x2
        index = argmax_channels(post) if need_parc or need_qc else None
        return _Raw(post, index, index)
    if fast:
        # mri_synthseg's quirks: with --parc or --qc its segmentation output is the unblurred
        # softmax; the parcellation input comes from the blurred one, the QC input from the
        # unblurred one only when --parc is also on
        unblurred_post = need_parc or need_qc
        blurred_index = torch.empty(shape, dtype=torch.uint8)
        raw_index = torch.empty(shape, dtype=torch.uint8)

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

        model.predict(model.unet, image, blurred_sink, smooth=True, raw_sink=raw_sink)
        parc_index = blurred_index.numpy() if need_parc else None
        qc_index = None
        if need_qc:
            qc_index = raw_index.numpy() if need_parc else blurred_index.numpy()
        return _Raw(post, parc_index, qc_index)

    depth = image.shape[2]
    flip = model.flip_indices

    def first(a, b, probs):
        channels_first(probs, post[:, a:b])

    def second(a, b, probs):
        # final = 0.5 * (first + mirrored), as the reference computes it
        mirrored = channels_first(probs)
        for c in range(n):
            dst = post[c, depth - b : depth - a]
            np.add(dst, mirrored[flip[c], ::-1], out=dst)
            np.multiply(dst, np.float32(0.5), out=dst)

    model.predict(model.unet, image, first, smooth=True)
    model.predict(model.unet, image.flip(2), second, smooth=True)
    index = argmax_channels(post) if need_parc or need_qc else None
    return _Raw(post, index, index)


def run_qc(model: SegModel, index: np.ndarray) -> np.ndarray:
    """Raw QC network output (K,) from the argmax index map of the padded grid."""
    classes = model.qc_lut[qc_crop(index)]
    x = torch.from_numpy(classes).to(model.device)
    return model.qc.predict(x, len(L.QC_NAMES))[0].cpu().numpy()


def parcellation_input(model: SegModel, image: np.ndarray, parc_index: np.ndarray):
    """``[image, not cortex, cortex]`` (1, 3, X, Y, Z), cortex = argmax label 3 or 42."""
    labels = np.asarray(model.labels)
    cortex = torch.from_numpy(np.isin(labels[parc_index], (3, 42)))
    x = torch.from_numpy(image)[None, None]
    return torch.cat([x, _one_hot(cortex, 2)], dim=1).to(model.device)


def run_parcellation(
    model: SegModel, prepared: Prepared, parc_index: np.ndarray, seg: np.ndarray
) -> np.ndarray:
    """Replace cortex labels of ``seg`` (unpadded aligned grid) by parcels; returns the
    per-parcel posterior sums."""
    x = parcellation_input(model, prepared.image, parc_index)
    sink = ParcellationSink(seg, prepared.pad_idx)
    model.predict(model.parc, x, lambda a, b, p: sink(a, b, p.cpu()), smooth=True)
    return sink.sums


# --------------------------------------------------------------------------- pipeline


def segment(
    image,
    model: SegModel,
    *,
    fast: bool = False,
    crop=None,
    ct: bool = False,
    keepgeom: bool = False,
    posteriors: bool = False,
    parc_compat: bool = False,
) -> SegResult:
    """Segment ``image`` (a path or a :class:`Volume` read with ``fdata=True``)."""
    volume = image if isinstance(image, Volume) else load_volume(image, max_dims=5, fdata=True)
    prepared = preprocess(volume, crop=crop, ct=ct, divisor=model.divisor)
    fast = fast or model.robust
    raw = run_networks(model, prepared.image, fast)
    cleaned = clean_posteriors(raw.posteriors, prepared.pad_idx, model.topology, fast)
    seg = np.asarray(model.labels, dtype=np.int32)[argmax_channels(cleaned)]
    float64 = prepared.crop_idx is not None  # the reference pastes crops into float64 arrays
    sums = channel_sums(cleaned, float64=float64)
    post_out = _posteriors_out(cleaned, prepared) if posteriors else None
    del cleaned
    raw.posteriors = None
    qc = qc_scores(run_qc(model, raw.qc_index)) if model.qc is not None else None
    parc_sums = None
    if model.parc is not None:
        parc_sums = run_parcellation(model, prepared, raw.parc_index, seg)
    volumes = compute_volumes(
        sums, model.labels, prepared.im_res, model.v1, parc_sums, parc_compat=parc_compat
    )
    labels = _to_output_grid(seg, prepared, fill=0)
    affine = prepared.affine
    if keepgeom and prepared.resampled is not None:
        vox2vox = np.linalg.inv(prepared.affine) @ volume.affine
        labels = sample_nearest(labels, vox2vox, volume.shape[:3], fill=0)
        affine = np.asarray(volume.affine)
    return SegResult(
        labels=labels,
        affine=affine,
        volumes=volumes,
        qc=qc,
        posteriors=post_out,
        posterior_labels=list(model.labels),
        resampled=prepared.resampled,
        resampled_affine=prepared.affine if prepared.resampled is not None else None,
        weights=list(model.weights),
        posteriors_affine=prepared.affine if posteriors else None,
        volume_precision='float64' if float64 else 'float32',
    )


def _to_output_grid(data: np.ndarray, prepared: Prepared, fill) -> np.ndarray:
    """Paste the (cropped) aligned array into the aligned grid and undo the alignment."""
    if prepared.crop_idx is not None:
        full = np.full(prepared.aligned_shape + data.shape[3:], fill, dtype=data.dtype)
        c = prepared.crop_idx
        full[c[0] : c[3], c[1] : c[4], c[2] : c[5]] = data
        data = full
    return np.ascontiguousarray(prepared.alignment.undo(data))


def _posteriors_out(cleaned: np.ndarray, prepared: Prepared) -> np.ndarray:
    """(X, Y, Z, C) float32 posteriors on the output grid; background 1 outside a crop."""
    post = np.moveaxis(cleaned, 0, -1)
    if prepared.crop_idx is not None:
        full = np.zeros(prepared.aligned_shape + (post.shape[-1],), dtype=np.float32)
        full[..., 0] = 1
        c = prepared.crop_idx
        full[c[0] : c[3], c[1] : c[4], c[2] : c[5]] = post
        post = full
    return np.ascontiguousarray(prepared.alignment.undo(post), dtype=np.float32)
