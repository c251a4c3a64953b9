"""Head tissues as a library call: load the model once, then label any number of head images.

>>> model = load_head_model()                      # resolves weights (see core.weights)
>>> result = head('T1w.nii.gz', model)
>>> result.labels, result.volumes['bone']          # labels on the input grid, mL

Classes (:data:`synthbids.core.labels.HEAD_CLASSES`): 0 background, 1 brain, 2 CSF (ventricles
included), 3 bone, 4 skin/scalp, 5 eyes, 6 other soft tissue.

The pipeline shares SynthStrip's geometry and engine: conform the image to the weights' grid
(LIA, e.g. 2 mm with anti-aliased linear resampling), crop to the head and pad to the
network's multiple, predict one logit per class, turn them into probabilities, bring every
class probability back to the input grid (trilinear; background 1 outside the conformed field
of view) and label each voxel with the most probable class. Volumes are sums of the soft
probabilities, as SynthSeg's are. One channel is resampled at a time, so the 7-channel
posteriors exist on the input grid only when asked for.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import numpy as np
import torch

from . import labels as L
from .checkpoints import read_checkpoint
from .errors import WeightsError
from .geometry import Grid, resample_to
from .imageio import OutputSet, Volume, image_like, load_volume, require_head_size, require_signal
from .strip import Conformed, StripSettings, build_strip_net, conform_frame
from .stripnet import StripUNet
from .weights import WeightsFile, resolve

log = logging.getLogger(__name__)

#: Data type of written head-label images (the segmentation's).
LABEL_DTYPE = np.int32


@dataclass
class HeadModel:
    """A loaded head-tissue network with the weights it came from."""

    net: StripUNet
    weights: WeightsFile | None
    settings: StripSettings = field(default_factory=lambda: StripSettings(voxsize=2.0))
    device: torch.device = field(default_factory=lambda: torch.device('cpu'))
    classes: tuple[str, ...] = L.HEAD_CLASSES


@dataclass
class HeadResult:
    """Outputs on the input grid: ``labels`` (int32), ``volumes`` (mL per class, from the
    soft probabilities), ``posteriors`` (X, Y, Z, 7 float32, when asked for)."""

    labels: np.ndarray
    volumes: dict[str, float]
    affine: np.ndarray
    weights: WeightsFile | None
    conformed: Grid
    posteriors: np.ndarray | None = None
    classes: tuple[str, ...] = L.HEAD_CLASSES


def load_head_model(
    model: str | os.PathLike | None = None,
    device: str | torch.device = 'cpu',
    warn: bool = True,
    sha256: str | None = None,
) -> HeadModel:
    """Resolve, load and prepare head-tissue weights once (``model`` overrides the search).
    The weights are a SynthStrip-layout checkpoint with one output per class and a
    ``'synthbids'`` entry naming the classes and the inference grid (``synthbids-train head``
    writes them)."""
    weights = resolve('head', explicit=model, sha256=sha256)
    if warn and weights.warning:
        log.warning('%s: %s', weights.name, weights.warning)
    ckpt = read_checkpoint(weights.path)
    net = build_strip_net(ckpt, weights.path)
    meta = ckpt.get('synthbids') if isinstance(ckpt.get('synthbids'), dict) else {}
    classes = tuple(meta.get('classes', ()))
    outputs = net.layout['tail'][-1]
    if classes != L.HEAD_CLASSES or outputs != len(L.HEAD_CLASSES):
        raise WeightsError(
            f'not head-tissue weights: {outputs} output channel(s)'
            + (f', classes {list(classes)}' if classes else ', no class list')
            + f'; expected {len(L.HEAD_CLASSES)} ({", ".join(L.HEAD_CLASSES)})',
            weights.path,
        )
    if 'conform' not in meta:
        raise WeightsError('head-tissue weights without their inference grid', weights.path)
    settings = StripSettings(**meta['conform'])
    device = torch.device(device)
    net = net.to(device=device, memory_format=torch.channels_last_3d)
    return HeadModel(net=net, weights=weights, settings=settings, device=device)


def predict_probabilities(model: HeadModel, conformed: Conformed) -> np.ndarray:
    """Class probabilities (C, X, Y, Z) float32 on the conformed grid."""
    x = torch.from_numpy(conformed.data[None, None]).to(model.device)
    logits = model.net.predict(x)
    return torch.softmax(logits[0].float(), dim=0).cpu().numpy()


def head_volume(volume: Volume, model: HeadModel, posteriors: bool = False) -> HeadResult:
    """Label the head tissues of a loaded 3-D volume (see the module docstring)."""
    require_signal(volume)
    require_head_size(volume)
    conformed = conform_frame(
        volume.frame(0), volume.affine, volume.zooms, model.settings, model.net.divisor
    )
    prob = predict_probabilities(model, conformed)
    grid = Grid(volume.shape[:3], volume.affine)
    voxel_ml = float(abs(np.linalg.det(volume.affine[:3, :3]))) / 1000
    best = np.zeros(grid.shape, dtype=np.float32)
    labels = np.zeros(grid.shape, dtype=LABEL_DTYPE)
    kept = [] if posteriors else None
    volumes = {}
    for c, name in enumerate(model.classes):
        p = resample_to(prob[c], conformed.grid, grid, fill=1.0 if c == 0 else 0.0)
        p = np.asarray(p, dtype=np.float32)
        if c == 0:
            best[...] = p
        else:
            better = p > best
            labels[better] = c
            np.maximum(best, p, out=best)
        volumes[name] = float(p.sum(dtype=np.float64)) * voxel_ml
        if kept is not None:
            kept.append(p)
    post = np.stack(kept, axis=-1) if kept is not None else None
    return HeadResult(
        labels=labels,
        volumes=volumes,
        affine=np.asarray(volume.affine),
        weights=model.weights,
        conformed=conformed.grid,
        posteriors=post,
        classes=model.classes,
    )


def head(image, model: HeadModel, posteriors: bool = False) -> HeadResult:
    """Head tissues of ``image`` (a path or a :class:`Volume`; 4-D inputs: the first frame
    must be the only one) with a loaded ``model``."""
    volume = image if isinstance(image, Volume) else load_volume(image, max_dims=3)
    return head_volume(volume, model, posteriors=posteriors)


def head_file(
    image,
    model: HeadModel,
    labels: str | os.PathLike | None = None,
    *,
    posteriors: str | os.PathLike | None = None,
    mesh_dir: str | os.PathLike | None = None,
) -> tuple[HeadResult, Volume]:
    """Label one image (a path or a :class:`Volume`) and write the requested files on its grid
    and header, all or nothing: the labels (int32), the posteriors (float32, one frame per
    class) and the surface meshes (:mod:`.head_meshes`). ``synthbids-head`` and the BIDS App
    both call this. Returns the result and the input volume."""
    volume = image if isinstance(image, Volume) else load_volume(image, max_dims=3)
    result = head_volume(volume, model, posteriors=posteriors is not None)
    with OutputSet() as staged:
        if labels is not None:
            staged.add(image_like(result.labels, volume, labels), labels)
        if posteriors is not None:
            staged.add(image_like(result.posteriors, volume, posteriors), posteriors)
        if mesh_dir is not None:
            from .head_meshes import stage_meshes

            stage_meshes(staged, result.labels, volume.affine, mesh_dir)
    return result, volume


def volumes_row(result: HeadResult) -> dict[str, float]:
    """Per-class volumes in mL, background left out (the volume TSV's row)."""
    return {name: round(v, 3) for name, v in result.volumes.items() if name != 'background'}
