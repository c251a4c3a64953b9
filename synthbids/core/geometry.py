"""Voxel grids and the resampling rules of FreeSurfer's SynthStrip preprocessing.

A grid is a shape plus a voxel-to-world affine. The functions here reproduce, step by step,
what ``mri_synthstrip`` (FreeSurfer 7.3.2 with surfa) does to an image before and after the
network: reorientation to LIA without interpolation, nearest-neighbour resizing to 1 mm
about the image centre, cropping to the non-zero bounding box, centre padding, and the
trilinear return to the input grid. Sampling uses float32 arithmetic in the same order as
the reference so that results match it voxel for voxel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Voxel axes of the LIA orientation expressed as world directions (x=R, y=A, z=S).
LIA_DIRECTIONS = np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])

#: Voxels processed per chunk by the samplers (bounds temporary memory to ~100 MB).
_CHUNK_VOXELS = 1 << 22


@dataclass(frozen=True)
class Grid:
    """A voxel grid: spatial ``shape`` and 4x4 voxel-to-world ``affine`` (float64)."""

    shape: tuple[int, int, int]
    affine: np.ndarray

    def __post_init__(self):
        object.__setattr__(self, 'shape', tuple(int(s) for s in self.shape))
        object.__setattr__(self, 'affine', np.asarray(self.affine, dtype=np.float64))


def world_axes(affine: np.ndarray) -> np.ndarray:
    """For each voxel axis, the index of the world axis it points along most closely.

    Ties and oblique matrices are resolved greedily by decreasing absolute cosine, so every
    world axis is used exactly once.
    """
    m = np.abs(np.asarray(affine, dtype=np.float64)[:3, :3])
    m = m / np.linalg.norm(m, axis=0, keepdims=True)
    out = np.full(3, -1)
    for _ in range(3):
        i, j = np.unravel_index(np.argmax(m), m.shape)
        out[j] = i
        m[i, :] = -1
        m[:, j] = -1
    return out


def reorient(data: np.ndarray, affine: np.ndarray, zooms, directions: np.ndarray = LIA_DIRECTIONS):
    """Permute and flip the first three axes so that voxel axis k points along
    ``directions[k]``; no interpolation. Returns ``(data, affine, zooms)``.

    Flipping axis k adds ``(n_k - 1) * column_k`` to the translation, so the world position of
    every voxel is unchanged. Oblique rotations stay oblique.
    """
    affine = np.array(affine, dtype=np.float64)
    zooms = np.asarray(zooms, dtype=np.float64)
    src_world = world_axes(affine)
    trg_world = np.argmax(np.abs(directions), axis=1)
    perm = [int(np.nonzero(src_world == w)[0][0]) for w in trg_world]
    extra = list(range(3, data.ndim))
    data = np.transpose(data, perm + extra)
    new = affine.copy()
    new[:, :3] = affine[:, perm]
    zooms = zooms[perm]
    for k in range(3):
        if np.dot(new[:3, k], directions[k]) < 0:
            data = np.flip(data, axis=k)
            new[:, k] = -new[:, k]
            new[:3, 3] = new[:3, 3] - new[:3, k] * (data.shape[k] - 1)
    return data, new, zooms


def decompose(affine: np.ndarray, shape) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split a voxel-to-world matrix into (scale, rotation, centre) as surfa does.

    The centre is the world position of voxel index ``shape / 2`` (not ``(shape - 1) / 2``);
    rotation and scale come from a QR decomposition of the 3x3 part.
    """
    affine = np.asarray(affine, dtype=np.float64)
    center = (affine @ np.append(np.asarray(shape, dtype=np.float64) / 2, 1.0))[:3]
    q, r = np.linalg.qr(affine[:3, :3])
    diag = np.diag(r)
    scale = np.abs(diag)
    rotation = q @ np.diag(diag / scale)
    return scale, rotation, center


def compose(shape, voxsize, rotation: np.ndarray, center: np.ndarray) -> np.ndarray:
    """Voxel-to-world matrix of a shear-free grid with the given rotation, voxel size and
    centre (world position of voxel index ``shape / 2``)."""
    out = np.eye(4)
    out[:3, :3] = rotation @ np.diag(np.broadcast_to(np.asarray(voxsize, float), 3))
    offset = out @ np.append(np.asarray(shape, dtype=np.float64) / 2, 1.0)
    out[:3, 3] = np.asarray(center) - offset[:3]
    return out


def resize_grid(shape, affine, zooms, voxsize: float = 1.0) -> Grid | None:
    """Target grid of surfa's ``resize``: same rotation and centre, isotropic ``voxsize``,
    shape ``ceil(zooms * shape / voxsize)``. ``None`` when no resize is needed (every voxel
    size within 1e-5 of the target)."""
    zooms = np.asarray(zooms, dtype=np.float64)
    if np.allclose(zooms, voxsize, atol=1e-5, rtol=0):
        return None
    shape = np.asarray(shape[:3])
    target_shape = tuple(int(s) for s in np.ceil(zooms * shape / voxsize))
    _, rotation, center = decompose(affine, shape)
    return Grid(target_shape, compose(target_shape, voxsize, rotation, center))


def _float32_coords(vox2vox: np.ndarray, shape, k0: int, k1: int):
    """Source coordinates of target voxels [:, :, k0:k1] in float32, summed in the order
    ``((m0 * i + m1 * j) + m2 * k) + m3`` of the reference sampler."""
    m = vox2vox.astype(np.float32)
    i = np.arange(shape[0], dtype=np.float32)[:, None, None]
    j = np.arange(shape[1], dtype=np.float32)[None, :, None]
    k = np.arange(k0, k1, dtype=np.float32)[None, None, :]
    return [((m[r, 0] * i + m[r, 1] * j) + m[r, 2] * k) + m[r, 3] for r in range(3)]


def _chunks(shape):
    step = max(1, _CHUNK_VOXELS // max(1, shape[0] * shape[1]))
    for k0 in range(0, shape[2], step):
        yield k0, min(k0 + step, shape[2])


def sample_nearest(source: np.ndarray, vox2vox: np.ndarray, shape, fill=0) -> np.ndarray:
    """Nearest-neighbour sampling of a 3-D ``source`` on a target grid of ``shape``.

    ``vox2vox`` maps target voxel indices to source indices. Coordinates are rounded half
    away from zero; any coordinate < 0 or >= n gives ``fill``. Output keeps the source dtype.
    """
    out = np.empty(tuple(shape), dtype=source.dtype)
    n = np.array(source.shape[:3])
    for k0, k1 in _chunks(shape):
        coords = _float32_coords(vox2vox, shape, k0, k1)
        inside = np.ones(coords[0].shape, dtype=bool)
        idx = []
        for axis, c in enumerate(coords):
            inside &= (c >= 0) & (c < n[axis])
            # round half away from zero == floor(c + 0.5) for c >= 0; float64 avoids the
            # float32 rounding of c + 0.5
            ic = np.floor(c.astype(np.float64) + 0.5).astype(np.intp)
            np.clip(ic, 0, n[axis] - 1, out=ic)
            idx.append(ic)
        block = source[idx[0], idx[1], idx[2]]
        block[~inside] = fill
        out[:, :, k0:k1] = block
    return out


def sample_linear(source: np.ndarray, vox2vox: np.ndarray, shape, fill=0.0) -> np.ndarray:
    """Trilinear sampling (float32) of a 3-D ``source`` on a target grid of ``shape``.

    Neighbours are ``floor(c)`` and ``floor(c) + 1`` (the upper clamped to n - 1); when
    ``floor(c)`` lies outside ``[0, n - 1]`` on any axis the voxel gets ``fill``. Weights and
    the weighted sum use float32 in the reference order.
    """
    src = np.asarray(source, dtype=np.float32)
    out = np.empty(tuple(shape), dtype=np.float32)
    n = np.array(src.shape[:3])
    one = np.float32(1.0)
    for k0, k1 in _chunks(shape):
        coords = _float32_coords(vox2vox, shape, k0, k1)
        inside = np.ones(coords[0].shape, dtype=bool)
        lows, highs, fracs, rests = [], [], [], []
        for axis, c in enumerate(coords):
            low = np.floor(c)
            inside &= (low >= 0) & (low <= n[axis] - 1)
            lo = np.clip(low, 0, n[axis] - 1).astype(np.intp)
            hi = np.where(lo == n[axis] - 1, lo, lo + 1)
            frac = (c - low).astype(np.float32)
            lows.append(lo)
            highs.append(hi)
            fracs.append(frac)
            rests.append(one - frac)
        (x0, y0, z0), (x1, y1, z1) = lows, highs
        fx, fy, fz = fracs
        dx, dy, dz = rests
        value = (dx * dy * dz) * src[x0, y0, z0]
        value += (fx * dy * dz) * src[x1, y0, z0]
        value += (dx * fy * dz) * src[x0, y1, z0]
        value += (dx * dy * fz) * src[x0, y0, z1]
        value += (fx * dy * fz) * src[x1, y0, z1]
        value += (dx * fy * fz) * src[x0, y1, z1]
        value += (fx * fy * dz) * src[x1, y1, z0]
        value += (fx * fy * fz) * src[x1, y1, z1]
        value[~inside] = fill
        out[:, :, k0:k1] = value
    return out


def integer_shift(source: Grid, target: Grid, atol: float = 1e-5):
    """If every target voxel centre falls exactly on a source voxel centre (a signed axis
    permutation plus an integer offset), return ``(perm, flips, offset)`` such that
    ``target_index[k] -> source_index[perm[k]] = flips[k] * target_index[k] + offset[k]``;
    otherwise ``None``."""
    vox2vox = np.linalg.inv(source.affine) @ target.affine
    lin = vox2vox[:3, :3]
    rounded = np.round(lin)
    if not np.allclose(lin, rounded, atol=atol):
        return None
    if (
        not (np.abs(rounded).sum(axis=0) == 1).all()
        or not (np.abs(rounded).sum(axis=1) == 1).all()
    ):
        return None
    offset = vox2vox[:3, 3]
    if not np.allclose(offset, np.round(offset), atol=atol):
        return None
    perm = np.argmax(np.abs(rounded), axis=0)  # source axis feeding each target axis
    flips = rounded[perm, np.arange(3)].astype(int)
    return perm, flips, np.round(offset).astype(int)[perm]


def copy_by_index(source: np.ndarray, src_grid: Grid, trg_grid: Grid, mapping, fill):
    """Place ``source`` values into the target grid using an :func:`integer_shift` mapping;
    target voxels with no source voxel get ``fill``. Exact (no arithmetic on values)."""
    perm, flips, offset = mapping
    out = np.full(trg_grid.shape + source.shape[3:], fill, dtype=source.dtype)
    src_slices, trg_slices = [None] * 3, [None] * 3
    view = np.transpose(source, list(perm) + list(range(3, source.ndim)))
    for k in range(3):
        n_src = src_grid.shape[perm[k]]
        n_trg = trg_grid.shape[k]
        # source index s = flip * t + offset for t in [0, n_trg)
        if flips[k] > 0:
            t0 = max(0, -offset[k])
            t1 = min(n_trg, n_src - offset[k])
        else:
            t0 = max(0, offset[k] - (n_src - 1))
            t1 = min(n_trg, offset[k] + 1)
        if t1 <= t0:
            return out
        trg_slices[k] = slice(t0, t1)
        s0 = flips[k] * t0 + offset[k]
        if flips[k] > 0:
            src_slices[k] = slice(s0, s0 + (t1 - t0))
        else:
            stop = s0 - (t1 - t0)
            src_slices[k] = slice(s0, stop if stop >= 0 else None, -1)
    out[tuple(trg_slices)] = view[tuple(src_slices)]
    return out


def resample_to(source: np.ndarray, src_grid: Grid, trg_grid: Grid, fill=0.0) -> np.ndarray:
    """Bring a 3-D array from ``src_grid`` onto ``trg_grid``: by index when the grids differ
    only by an axis permutation/flip and an integer offset (exact, fast), otherwise by
    float32 trilinear interpolation with ``fill`` outside."""
    mapping = integer_shift(src_grid, trg_grid)
    if mapping is not None:
        return copy_by_index(source, src_grid, trg_grid, mapping, fill)
    vox2vox = np.linalg.inv(src_grid.affine) @ trg_grid.affine
    return sample_linear(source, vox2vox, trg_grid.shape, fill=fill)


def bbox_slices(mask: np.ndarray) -> tuple[slice, ...]:
    """Bounding box of the non-zero voxels of a 3-D mask (the whole array if empty)."""
    if not mask.any():
        return tuple(slice(0, s) for s in mask.shape[:3])
    out = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        nz = np.flatnonzero(mask.any(axis=other))
        out.append(slice(int(nz[0]), int(nz[-1]) + 1))
    return tuple(out)


def crop(data: np.ndarray, affine: np.ndarray, slices) -> tuple[np.ndarray, np.ndarray]:
    """Crop the first three axes; the translation moves to the first kept voxel."""
    start = np.array([s.start or 0 for s in slices], dtype=np.float64)
    new = np.array(affine, dtype=np.float64)
    new[:3, 3] = (new @ np.append(start, 1.0))[:3]
    return data[tuple(slices)], new


def center_pad_crop(data: np.ndarray, affine: np.ndarray, target_shape):
    """Centre ``data`` in ``target_shape``: per axis, pad floor(d/2) zeros before and
    ceil(d/2) after, or remove floor(|d|/2) voxels at the start and ceil(|d|/2) at the end.
    The new grid is an integer shift of the input grid."""
    src, dst, shift = [], [], []
    for n, t in zip(data.shape[:3], target_shape[:3]):
        d = int(t) - int(n)
        if d >= 0:
            src.append(slice(0, n))
            dst.append(slice(d // 2, d // 2 + n))
            shift.append(-(d // 2))
        else:
            cut = (-d) // 2
            src.append(slice(cut, cut + t))
            dst.append(slice(0, t))
            shift.append(cut)
    out = np.zeros(tuple(int(t) for t in target_shape[:3]) + data.shape[3:], dtype=data.dtype)
    out[tuple(dst)] = data[tuple(src)]
    new = np.array(affine, dtype=np.float64)
    new[:3, 3] = (new @ np.append(np.array(shift, dtype=np.float64), 1.0))[:3]
    return out, new
