"""SynthSeg's preprocessing, step for step as ``mri_synthseg`` does it.

1. Voxels as float64 (``get_fdata``); up to 10 channels in a 4th dimension are averaged.
2. Resampling to 1 mm only when a header voxel size is outside 1 +- 0.05 mm: Gaussian
   anti-aliasing (sigma 0.25 / f voxels on axes with f <= 1, f = voxel size from the affine),
   trilinear sampling at -(f - 1) / 2f + k / f (clamped to the image), affine rescaled about
   the first voxel's corner.
3. Alignment to RAS by permuting and flipping axes (no interpolation).
4. Optional centre crop (sizes rounded up to multiples of 32), optional CT clip to [0, 80].
5. Linear rescaling of [0.5th, 99.5th] percentiles (all voxels) to [0, 1], with clipping.
   ``autocrop`` then crops to the box of rescaled voxels above 0 (later FreeSurfer's
   ``--autocrop``: sizes rounded up to multiples of 32, the box centred in them).
6. Zero padding to multiples of 32, at least 128 (or the crop size) per axis.

The result keeps everything postprocessing needs to put the labels back on the output grid.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from scipy.interpolate import RegularGridInterpolator
from scipy.ndimage import gaussian_filter

from .errors import InputError, UsageError
from .imageio import Volume, require_head_size

log = logging.getLogger(__name__)

#: The U-Net has 5 levels: inputs are padded to multiples of 2 ** 5.
DIVISOR = 32
MIN_PAD = 128
#: Voxel sizes within this distance of 1 mm are used as they are.
RESOLUTION_TOLERANCE = 0.05
MAX_CHANNELS = 10
#: Points evaluated per call of the trilinear interpolator (bounds its temporary memory).
_CHUNK_POINTS = 1 << 21


@dataclass(frozen=True)
class Alignment:
    """Axis permutation and flips that make an array's axes point to +R, +A, +S.

    ``perm[w]`` is the voxel axis that becomes axis ``w``; ``flips[w]`` says whether that axis
    is then reversed. :meth:`undo` is the exact inverse of :meth:`apply`.
    """

    perm: tuple[int, int, int]
    flips: tuple[bool, bool, bool]

    def apply(self, data: np.ndarray) -> np.ndarray:
        data = np.transpose(data, list(self.perm) + list(range(3, data.ndim)))
        for axis, flip in enumerate(self.flips):
            if flip:
                data = np.flip(data, axis=axis)
        return data

    def undo(self, data: np.ndarray) -> np.ndarray:
        for axis, flip in enumerate(self.flips):
            if flip:
                data = np.flip(data, axis=axis)
        inverse = list(np.argsort(self.perm))
        return np.transpose(data, inverse + list(range(3, data.ndim)))

    def aligned_shape(self, shape) -> tuple[int, int, int]:
        return tuple(int(shape[p]) for p in self.perm)


def ras_axes(affine: np.ndarray) -> np.ndarray:
    """For each world axis (x, y, z), the voxel axis most aligned with it: the largest entry
    of each column of |inverse(affine)|; a voxel axis picked twice gives its last pick to the
    world axis left without one (SynthSeg's rule, kept for identical results)."""
    inv = np.abs(np.linalg.inv(affine)[:3, :3])
    axes = np.argmax(inv, axis=0)
    for i in range(3):
        if i not in axes:
            values, counts = np.unique(axes, return_counts=True)
            wrong = values[np.argmax(counts)]
            axes[np.nonzero(axes == wrong)[0][-1]] = i
    return axes


def ras_alignment(affine: np.ndarray) -> Alignment:
    perm = ras_axes(affine)
    aligned = np.asarray(affine)[:3, perm]
    flips = tuple(bool(aligned[w, w] < 0) for w in range(3))
    return Alignment(tuple(int(p) for p in perm), flips)


@dataclass
class Prepared:
    """A network input and the geometry needed to undo each step."""

    image: np.ndarray  # float32 (X, Y, Z): aligned, cropped, rescaled, padded
    affine: np.ndarray  # voxel-to-world of the output grid (1 mm or native), input axis order
    shape: tuple[int, int, int]  # output grid shape, input axis order
    im_res: np.ndarray  # voxel size used for volumes (mm)
    alignment: Alignment
    crop_idx: tuple[int, ...] | None  # [start x3, stop x3] on the aligned grid
    pad_idx: tuple[int, ...]  # [start x3, stop x3] of the data inside the padded input
    resampled: np.ndarray | None  # the image on the 1 mm grid when it was resampled

    @property
    def aligned_shape(self) -> tuple[int, int, int]:
        return self.alignment.aligned_shape(self.shape)


def image_data(volume: Volume) -> np.ndarray:
    """The volume's voxels as one float64 3-D array (channels averaged, like FreeSurfer)."""
    data = np.asarray(volume.data, dtype=np.float64)
    while data.ndim > 3 and 1 in data.shape[3:]:
        data = np.squeeze(data, axis=3 + data.shape[3:].index(1))
    if data.ndim > 4:
        raise InputError(volume.path, f'image has {data.ndim} dimensions; expected a 3-D volume')
    if data.ndim == 4:
        channels = data.shape[3]
        if channels > MAX_CHANNELS:
            raise InputError(
                volume.path,
                f'image is 4-D with {channels} frames; SynthSeg segments one 3-D volume '
                f'(at most {MAX_CHANNELS} channels, which are averaged)',
            )
        log.warning('%s: %d channels, segmenting their average', volume.path, channels)
        data = data.mean(axis=-1)
    if data.shape[2] <= 3:
        raise InputError(
            volume.path,
            f'image has only {data.shape[2]} slices along its third axis (shape '
            f'{"x".join(map(str, data.shape))}): a 2-D image with channels? '
            'A 3-D volume is needed',
        )
    if data.shape[2] <= MAX_CHANNELS:
        log.warning('%s: only %d slices along the third axis', volume.path, data.shape[2])
    return data


def needs_resampling(zooms) -> bool:
    """Whether a voxel size is outside 1 +- 0.05 mm (compared in the header's float32)."""
    z = np.asarray(zooms, dtype=np.float32)
    return bool(
        np.any(
            (z > np.float32(1 + RESOLUTION_TOLERANCE)) | (z < np.float32(1 - RESOLUTION_TOLERANCE))
        )
    )


def resample_to_1mm(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Anti-aliased trilinear resampling to 1 mm (module docstring, step 2)."""
    affine = np.asarray(affine, dtype=np.float64)
    factor = np.sqrt(np.sum(affine * affine, axis=0))[:-1]
    sigmas = 0.25 / factor
    sigmas[factor > 1] = 0
    filtered = gaussian_filter(data, sigmas)
    start = -(factor - 1) / (2 * factor)
    step = 1.0 / factor
    stop = start + step * np.ceil(np.array(data.shape) * factor)
    coords = []
    for axis in range(3):
        c = np.arange(start[axis], stop[axis], step[axis])
        coords.append(np.clip(c, 0, data.shape[axis] - 1))
    interpolate = RegularGridInterpolator(
        tuple(np.arange(n) for n in data.shape), filtered, method='linear'
    )
    out = np.empty(tuple(len(c) for c in coords), dtype=np.float64)
    rows = max(1, _CHUNK_POINTS // (out.shape[1] * out.shape[2]))
    for i0 in range(0, out.shape[0], rows):
        grid = np.meshgrid(coords[0][i0 : i0 + rows], coords[1], coords[2], indexing='ij')
        out[i0 : i0 + rows] = interpolate(tuple(grid))
    new = affine.copy()
    for axis in range(3):
        new[:-1, axis] = new[:-1, axis] / factor[axis]
    new[:-1, -1] = new[:-1, -1] - new[:-1, :-1] @ (0.5 * (factor - 1))
    return out, new


def ceil_to(n: int, m: int = DIVISOR) -> int:
    return int(math.ceil(n / m) * m)


def parse_crop(crop) -> list[int] | None:
    """``--crop`` as three sizes (one value applies to every axis)."""
    if crop is None:
        return None
    values = [crop] if isinstance(crop, int | np.integer) else list(crop)
    if len(values) not in (1, 3) or any(int(v) != v or int(v) < 1 for v in values):
        raise InputError(None, f'--crop takes 1 or 3 positive integers (got {crop})')
    values = [int(v) for v in values]
    return values * 3 if len(values) == 1 else values


def crop_indices(shape, crop_sizes, divisor: int = DIVISOR) -> list[int]:
    """Centred crop of each size rounded up to a multiple of ``divisor`` (32 for the official
    networks; never larger than the image)."""
    starts, stops = [], []
    for n, c in zip(shape, crop_sizes):
        c = ceil_to(c, divisor)
        start = max(int((n - c) / 2), 0)
        starts.append(start)
        stops.append(min(start + c, n))
    return starts + stops


def autocrop_indices(data: np.ndarray, divisor: int = DIVISOR) -> list[int] | None:
    """``--autocrop``'s box ([start x3, stop x3]) around the voxels of ``data`` (the rescaled
    image) above 0, or None if there are none.

    Per axis: size = max - min + 2, rounded up to a multiple of ``divisor``; start = min -
    floor((size - (max - min + 2)) / 2), at least 0; stop = start + size, at most the shape.
    """
    inside = data > 0
    if not inside.any():
        return None
    starts, stops = [], []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        present = np.flatnonzero(inside.any(axis=other))
        low, high = int(present[0]), int(present[-1])
        extent = high - low + 2
        size = ceil_to(extent, divisor)
        start = max(low - (size - extent) // 2, 0)
        starts.append(start)
        stops.append(min(start + size, data.shape[axis]))
    return starts + stops


def rescale(data: np.ndarray) -> np.ndarray:
    """Clip to the [0.5, 99.5] percentiles (all voxels) and map that range to [0, 1]."""
    lo = np.percentile(data, 0.5)
    hi = np.percentile(data, 99.5)
    data = np.clip(data, lo, hi)
    if lo == hi:
        return np.zeros_like(data)
    return (data - lo) / (hi - lo)


def pad_indices(shape, min_pad, divisor: int = DIVISOR) -> tuple[list[int], list[tuple[int, int]]]:
    """``pad_idx`` and per-axis (before, after) zero padding to the network's shape."""
    target = [max(ceil_to(n, divisor), ceil_to(m, divisor)) for n, m in zip(shape, min_pad)]
    margins = [((t - n) // 2, (t - n) - (t - n) // 2) for n, t in zip(shape, target)]
    if not any(t > n for n, t in zip(shape, target)):
        margins = [(0, 0)] * 3
    starts = [b for b, _ in margins]
    return starts + [s + n for s, n in zip(starts, shape)], margins


def preprocess(
    volume: Volume,
    crop=None,
    ct: bool = False,
    divisor: int = DIVISOR,
    autocrop: bool = False,
) -> Prepared:
    """Network input for ``volume`` (see the module docstring). ``divisor``: what the padded
    (and cropped) sizes must be multiples of; networks on a coarser grid need more than 32."""
    crop_sizes = parse_crop(crop)
    if autocrop and crop_sizes is not None:
        raise UsageError('--autocrop cannot be used with --crop')
    data = image_data(volume)
    lo, hi = data.min(), data.max()
    if lo == hi:
        what = 'empty (all voxels are zero)' if hi == 0 else f'constant (all voxels equal {lo:g})'
        raise InputError(volume.path, f'image is {what}')
    require_head_size(volume)
    affine = np.asarray(volume.affine, dtype=np.float64)
    im_res = np.asarray(volume.zooms[:3], dtype=np.float64)
    resampled = None
    if needs_resampling(volume.zooms[:3]):
        data, affine = resample_to_1mm(data, affine)
        im_res = np.ones(3)
        resampled = data
    shape = tuple(int(s) for s in data.shape)
    alignment = ras_alignment(affine)
    data = alignment.apply(data)
    crop_idx = None
    if crop_sizes is not None:
        crop_idx = crop_indices(data.shape, crop_sizes, divisor)
        data = data[tuple(slice(crop_idx[i], crop_idx[i + 3]) for i in range(3))]
    if ct:
        data = np.clip(data, 0, 80)
    data = rescale(data)
    if autocrop:
        crop_idx = autocrop_indices(data, divisor)
        if crop_idx is None:
            raise InputError(
                volume.path, '--autocrop found no voxel above the 0.5th intensity percentile'
            )
        data = data[tuple(slice(crop_idx[i], crop_idx[i + 3]) for i in range(3))]
    pad_idx, margins = pad_indices(data.shape, crop_sizes or [MIN_PAD] * 3, divisor)
    image = np.pad(data.astype(np.float32), margins)
    return Prepared(
        image=image,
        affine=affine,
        shape=shape,
        im_res=im_res,
        alignment=alignment,
        crop_idx=None if crop_idx is None else tuple(crop_idx),
        pad_idx=tuple(pad_idx),
        resampled=None if resampled is None else resampled.astype(np.float32),
    )
