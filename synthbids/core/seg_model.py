"""Loading SynthSeg's networks: weights resolved, read and converted once per run.

>>> model = load_seg_model(parc=True, qc=True)   # resolves weights (see core.weights)

``model`` is a weights file or a folder of official file names; the companion networks
(parcellation, QC) come from the same file when it holds them, else from the same search.
Photo-SynthSeg (``photo=``) runs the standard network with the label lists found beside its
weights (:mod:`.seg_photo`).
Every call converts fresh networks (no module-level cache): a model loaded for one device
never shares parameters with another. Networks trained by synthbids on a coarser grid
(``voxsize`` in the file's metadata) run inside the 1 mm pipeline (:func:`predict_coarse`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import labels as L
from . import seg_photo as P
from .errors import SynthbidsError, WeightsError
from .qc_net import QCNet
from .seg_keras import build_qc, build_unet, prefixes_in, read_keras_meta, read_keras_weights
from .seg_nets import SegUNet
from .seg_photo import PhotoLists
from .seg_preprocess import DIVISOR
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
    photo: PhotoLists | None = None  # Photo-SynthSeg: its labels, names, classes and pairs

    def predict(self, net: SegUNet, x: torch.Tensor, sink, **kwargs) -> None:
        factor = int(round(self.voxsize))
        if factor > 1:
            predict_coarse(net, x, sink, factor, keep_skip=not self.low_memory, **kwargs)
        else:
            net.predict(x, sink, keep_skip=not self.low_memory, **kwargs)

    @property
    def refine(self) -> bool:
        """Whether :func:`.segment.segment` refines the posteriors by default: as the model
        card of the weights measured them (packaged synthbids weights; never official ones)."""
        return bool(self.weights) and self.weights[0].refine

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
    def flip_indices(self) -> list[int] | None:
        """Channel of each label's left/right counterpart for the flip average; None when
        there is none to do (Photo-SynthSeg of a single hemisphere)."""
        if self.photo is not None:
            return None if self.photo.flip is None else list(self.photo.flip)
        return L.flip_indices(self.labels)

    @property
    def topology(self) -> list[int]:
        if self.photo is not None:
            return list(self.photo.topology)
        return [L.TOPOLOGY_CLASS[lab] for lab in self.labels]

    @property
    def names(self) -> list[str]:
        """Volume-table name of each output channel (background first)."""
        if self.photo is not None:
            return list(self.photo.names)
        return [L.name(lab) for lab in self.labels]

    @property
    def total_volume(self) -> bool:
        """Whether the volumes start with the total intracranial volume (2.0 does; 1.0 and
        Photo-SynthSeg do not)."""
        return not (self.v1 or self.photo is not None)

    @property
    def mirrored(self) -> bool:
        """Photo-SynthSeg of a right hemisphere: mirrored before the network, back after."""
        return self.photo is not None and self.photo.mirrored

    @property
    def qc_lut(self) -> np.ndarray:
        return np.array([L.QC_CLASS[lab] for lab in self.labels], dtype=np.uint8)


_KEYS = {'seg': 'seg', 'v1': 'seg-v1', 'robust': 'seg-robust', 'parc': 'seg-parc', 'qc': 'seg-qc'}


def official_file(kind: str) -> str:
    for entry in official_entries().values():
        if entry.kind == kind:
            return entry.file
    raise WeightsError(f'no official weights file for {kind}')


def _resolve(kind: str, model, sha256: str | None = None) -> WeightsFile:
    if model is None:
        return resolve(kind)
    path = Path(model).expanduser()
    if path.is_dir():
        candidate = path / official_file(kind)
        if not candidate.is_file():
            raise WeightsError(f'{candidate.name} not found in the model folder', path)
        return resolve(kind, explicit=candidate)
    return resolve(kind, explicit=path, sha256=sha256)


def _weights_of(wf: WeightsFile) -> dict:
    if wf.path.suffix.lower() not in ('.h5', '.hdf5', '.keras') and not _is_hdf5(wf.path):
        raise WeightsError('not a Keras HDF5 weights file (SynthSeg weights end in .h5)', wf.path)
    return read_keras_weights(wf.path)


def _is_hdf5(path: Path) -> bool:
    with open(path, 'rb') as fh:
        return fh.read(8).startswith(b'\x89HDF')


def _network(wf: WeightsFile, weights: dict, prefix: str, qc: bool = False):
    """A fresh network converted from the Keras weights (callers own it: no shared cache)."""
    return build_qc(weights, wf.path, prefix) if qc else build_unet(weights, prefix, wf.path)


def load_seg_model(
    model: str | os.PathLike | None = None,
    *,
    v1: bool = False,
    robust: bool = False,
    parc: bool = False,
    qc: bool = False,
    device: str | torch.device = 'cpu',
    low_memory: bool = False,
    warn: bool = True,
    sha256: str | None = None,
    photo: str | None = None,
) -> SegModel:
    """Resolve, read and convert the SynthSeg networks a run needs, once.

    ``model`` is a weights file (the segmentation network; it also serves ``parc``/``qc``
    when it holds those networks) or a folder with the official file names; otherwise the
    weights are searched in the documented order (:mod:`.weights`). ``low_memory`` trades about
    20 % of the time for ~20 % less peak memory. ``warn`` logs the warning of early packaged
    weights (a caller that already said it passes False); ``sha256``, the known hash of the
    ``model`` file, saves hashing it again. ``photo`` (``left``, ``right`` or ``both``) loads
    Photo-SynthSeg, whose label lists must sit beside its weights (:mod:`.seg_photo`).
    """
    if photo is not None:
        P.check_options(photo, robust=robust, v1=v1, qc=qc)
    if robust and v1:
        raise SynthbidsError('--v1 cannot be used with --robust (the robust model is 2.0 only)')
    key = P.kind(photo) if photo else _KEYS['robust' if robust else 'v1' if v1 else 'seg']
    main = _resolve(key, model, sha256)
    main_weights = _weights_of(main)
    lists = P.read_lists(main.path, photo) if photo else None
    labels = lists.labels if lists else L.seg_labels(v1)
    prefixes = ('unet_', 'l2l_', 'unet2_') if robust else ('unet_',)
    nets = [_network(main, main_weights, prefix) for prefix in prefixes]
    _check_labels(nets[-1], labels, v1, main, lists)
    if lists is not None and lists.flip is None and parc and warn:
        log.warning(
            'the flag --parc is not well tested with single hemispheres (--photo %s)', photo
        )
    used = [main]
    companion = _Companions(model, main, main_weights, used)
    parc_net = companion.network('seg-parc', 'unet_parc_') if parc else None
    if parc_net is not None and (
        parc_net.n_labels != len(L.PARC_LABELS) or parc_net.layout['in_channels'] != 3
    ):
        raise WeightsError(
            'not a SynthSeg parcellation network (69 labels, 3 inputs)', used[-1].path
        )
    qc_net = companion.network('seg-qc', 'qc_', qc=True) if qc else None
    if qc_net is not None and qc_net.layout['in_channels'] != len(L.QC_NAMES):
        raise WeightsError('not a SynthSeg QC network (9 input classes)', used[-1].path)
    if warn:
        for wf in used:
            if wf.warning:
                log.warning('%s: %s', wf.name, wf.warning)
    device = torch.device(device)
    for net in [*nets, parc_net, qc_net]:
        if net is not None:
            net.to(device=device, memory_format=torch.channels_last_3d)
    return SegModel(
        unet=nets[0],
        labels=labels,
        v1=v1,
        denoiser=nets[1] if robust else None,
        unet2=nets[2] if robust else None,
        parc=parc_net,
        qc=qc_net,
        weights=used,
        device=device,
        low_memory=low_memory,
        voxsize=float(read_keras_meta(main.path).get('voxsize', 1.0)),
        photo=lists,
    )


def _check_labels(final: SegUNet, labels, v1: bool, wf: WeightsFile, photo=None) -> None:
    if final.n_labels == len(labels):
        return
    if photo is not None:
        raise WeightsError(
            f'network predicts {final.n_labels} labels, the Photo-SynthSeg label list beside '
            f'it has {len(labels)}',
            wf.path,
        )
    hint = ' (SynthSeg 1.0 weights? use --v1)' if final.n_labels == 32 else ''
    hint = ' (SynthSeg 2.0 weights? drop --v1)' if final.n_labels == 33 and v1 else hint
    raise WeightsError(
        f'network predicts {final.n_labels} labels, the labels of '
        f'{"SynthSeg 1.0" if v1 else "SynthSeg 2.0"} are {len(labels)}{hint}',
        wf.path,
    )


@dataclass
class _Companions:
    """Where the parcellation and QC networks come from: the main file when the user gave
    one that holds them, else the same search as the main network (``used`` grows)."""

    model: str | os.PathLike | None
    main: WeightsFile
    main_weights: dict
    used: list

    def network(self, kind: str, prefix: str, qc: bool = False):
        model = self.model
        if model is not None and prefix in prefixes_in(self.main_weights):
            return _network(self.main, self.main_weights, prefix, qc=qc)
        wf = _resolve(kind, model if model is None or Path(model).is_dir() else None)
        self.used.append(wf)
        return _network(wf, _weights_of(wf), prefix, qc=qc)


# --------------------------------------------------------------------------- coarse grids


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
