"""SynthStrip as a library call: load the model once, then strip any number of images.

>>> model = load_strip_model()                      # resolves weights (see core.weights)
>>> mask, sdt, stripped = strip('T1w.nii.gz', model, border=1.0)

The pipeline is FreeSurfer's ``mri_synthstrip``: conform each frame to 1 mm LIA (nearest
neighbour), crop to the head, centre-pad to a multiple of 64 within 192-320 voxels, normalise
(minus minimum, divided by the 99th percentile, clipped to [0, 1]), predict the signed
distance, widen it for wide borders, bring it back to the input grid (fill 100 outside the
field of view), threshold at ``border``, keep the largest component and fill its holes.
Outputs are on the input grid; 4-D inputs are processed frame by frame.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import ndimage

from .checkpoints import read_checkpoint
from .errors import InputError, WeightsError
from .geometry import (
    LIA_DIRECTIONS,
    Grid,
    bbox_slices,
    center_pad_crop,
    crop,
    reorient,
    resample_to,
    resize_grid,
    sample_linear,
    sample_nearest,
)
from .imageio import (
    OutputSet,
    Volume,
    image_like,
    load_volume,
    require_head_size,
    require_signal,
)
from .masks import extend_sdt, fill_holes, largest_component
from .stripnet import StripUNet
from .weights import WeightsFile, resolve

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StripSettings:
    """Conforming parameters; official weights use the defaults. Weights trained by synthbids
    may carry their own (``checkpoint['synthbids']['conform']``)."""

    voxsize: float = 1.0
    min_shape: int = 192
    max_shape: int = 320
    interp: str = 'nearest'  # 'linear': Gaussian anti-aliasing + trilinear (our 2 mm weights)
    band: float | None = None  # distance band (mm) the weights were trained on, if recorded


@dataclass
class StripModel:
    """A loaded SynthStrip network with the weights it came from."""

    net: StripUNet
    weights: WeightsFile | None
    settings: StripSettings = field(default_factory=StripSettings)
    device: torch.device = field(default_factory=lambda: torch.device('cpu'))


@dataclass
class Conformed:
    """The network input of one frame and the grid it lives on."""

    data: np.ndarray
    grid: Grid


@dataclass
class StripResult:
    """Outputs on the input grid (4-D for 4-D inputs). Unpacks as ``mask, sdt, stripped``."""

    mask: np.ndarray
    sdt: np.ndarray
    stripped: np.ndarray
    weights: WeightsFile | None
    conformed: list[Grid]
    conformed_sdt: list[np.ndarray] = field(default_factory=list, repr=False)

    def __iter__(self):
        return iter((self.mask, self.sdt, self.stripped))


def build_strip_net(ckpt: dict, path: str | os.PathLike = '') -> StripUNet:
    state = ckpt['model_state_dict']
    try:
        return StripUNet.from_state_dict(state).eval()
    except (ValueError, RuntimeError, KeyError) as err:
        detail = str(err).strip().splitlines()[0]
        raise WeightsError(f'not a SynthStrip checkpoint: {detail[:160]}', path) from None


def load_strip_model(
    model: str | os.PathLike | None = None,
    no_csf: bool = False,
    device: str | torch.device = 'cpu',
    warn: bool = True,
    sha256: str | None = None,
) -> StripModel:
    """Resolve, load and prepare SynthStrip weights once (``model`` overrides the search).
    ``warn`` logs the warning of early packaged weights (a caller that already said it
    passes False); ``sha256``, the known hash of ``model``, saves hashing it again."""
    weights = resolve('strip-nocsf' if no_csf else 'strip', explicit=model, sha256=sha256)
    if warn and weights.warning:
        log.warning('%s: %s', weights.name, weights.warning)
    ckpt = read_checkpoint(weights.path)
    net = build_strip_net(ckpt, weights.path)
    meta = ckpt.get('synthbids', {}) if isinstance(ckpt.get('synthbids'), dict) else {}
    settings = StripSettings(**meta.get('conform', {}), band=meta.get('band_mm'))
    device = torch.device(device)
    net = net.to(device=device, memory_format=torch.channels_last_3d)
    return StripModel(net=net, weights=weights, settings=settings, device=device)


def conform_frame(
    data: np.ndarray,
    affine: np.ndarray,
    zooms,
    settings: StripSettings = StripSettings(),
    divisor: int = 64,
) -> Conformed:
    """Network input for one 3-D frame, on its conformed grid (see module docstring)."""
    data, affine, zooms = reorient(data, affine, zooms, LIA_DIRECTIONS)
    target = resize_grid(data.shape, affine, zooms, settings.voxsize)
    if target is not None:
        vox2vox = np.linalg.inv(affine) @ target.affine
        if settings.interp == 'linear':
            factor = settings.voxsize / np.asarray(zooms, dtype=float)
            sigma = np.where(factor > 1, 0.5 * factor, 0)
            data = np.asarray(data, dtype=np.float32)
            if sigma.any():
                data = ndimage.gaussian_filter(data, sigma, mode='nearest')
            data = sample_linear(data, vox2vox, target.shape, fill=0)
        else:
            data = sample_nearest(np.ascontiguousarray(data), vox2vox, target.shape, fill=0)
        affine = target.affine
    data = np.asarray(data, dtype=np.float32)
    data, affine = crop(data, affine, bbox_slices(data > 0))
    shape = np.ceil(np.array(data.shape) / divisor).astype(int) * divisor
    shape = np.clip(shape, settings.min_shape, settings.max_shape)
    data, affine = center_pad_crop(data, affine, shape)
    return Conformed(normalize(data), Grid(data.shape, affine))


def normalize(x: np.ndarray) -> np.ndarray:
    """Subtract the minimum, divide by the 99th percentile (all voxels), clip to [0, 1]."""
    x = x - x.min()
    scale = np.float32(np.percentile(x, 99))
    if scale <= 0:  # over 99 % of the grid is background: fall back to the maximum
        scale = np.float32(x.max())
    return np.clip(x / scale, 0, 1).astype(np.float32, copy=False)


def predict_sdt(model: StripModel, conformed: Conformed) -> np.ndarray:
    """Run the network on one conformed frame; returns the SDT on the conformed grid."""
    x = torch.from_numpy(conformed.data[None, None]).to(model.device)
    sdt = model.net.predict(x)
    return sdt[0, 0].cpu().numpy()


def mask_from_sdt(sdt: np.ndarray, border: float) -> np.ndarray:
    """``sdt < border``, largest connected component, holes filled."""
    return fill_holes(largest_component(sdt < border))


def strip_volume(
    volume: Volume,
    model: StripModel,
    border: float = 1.0,
    fill: float | None = None,
) -> StripResult:
    """Skull-strip a loaded volume (3-D or 4-D)."""
    require_signal(volume)
    require_head_size(volume)
    grid = Grid(volume.shape[:3], volume.affine)
    masks, sdts, grids, raw = [], [], [], []
    for f in range(volume.nframes):
        conformed = conform_frame(
            volume.frame(f), volume.affine, volume.zooms, model.settings, model.net.divisor
        )
        sdt = predict_sdt(model, conformed)
        raw.append(sdt)
        sdt = extend_sdt(sdt, border, model.settings.voxsize, model.settings.band)
        sdt = resample_to(sdt, conformed.grid, grid, fill=100.0)
        masks.append(mask_from_sdt(sdt, border))
        sdts.append(sdt)
        grids.append(conformed.grid)
    mask = masks[0] if volume.nframes == 1 else np.stack(masks, axis=-1)
    sdt = sdts[0] if volume.nframes == 1 else np.stack(sdts, axis=-1)
    if fill is None:
        fill = min(0, volume.data.min())
    stripped = np.array(volume.data, copy=True)
    stripped[~mask] = fill
    return StripResult(mask, sdt.astype(np.float32), stripped, model.weights, grids, raw)


def strip(image, model: StripModel, border: float = 1.0, fill: float | None = None):
    """Skull-strip ``image`` (a path or a :class:`Volume`) with a loaded ``model``."""
    volume = image if isinstance(image, Volume) else load_volume(image)
    if border != border or border in (float('inf'), float('-inf')):
        raise InputError(None, f'invalid border {border}')
    return strip_volume(volume, model, border=border, fill=fill)


def strip_file(
    image,
    model: StripModel,
    *,
    out: str | os.PathLike | None = None,
    mask: str | os.PathLike | None = None,
    sdt: str | os.PathLike | None = None,
    border: float = 1.0,
    fill: float | None = None,
) -> tuple[StripResult, Volume]:
    """Skull-strip one image (a path or a :class:`Volume`) and write the requested files on
    its grid and header, all or nothing: the stripped image (input data type), the mask
    (uint8) and the signed distance (float32, mm). ``synthbids-strip`` and the BIDS App both
    call this. Returns the result and the input volume (for reports drawn from memory)."""
    volume = image if isinstance(image, Volume) else load_volume(image)
    result = strip(volume, model, border=border, fill=fill)
    with OutputSet() as staged:
        if out is not None:
            staged.add(image_like(result.stripped, volume, out), out)
        if mask is not None:
            staged.add(image_like(result.mask.astype(np.uint8), volume, mask), mask)
        if sdt is not None:
            staged.add(image_like(result.sdt, volume, sdt), sdt)
    return result, volume
