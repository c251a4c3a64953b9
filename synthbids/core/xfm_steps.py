"""Transform steps in RAS millimetres and our reference for what ITK does with them.

Why this module exists: registration (:mod:`.register`), the ITK file formats
(:mod:`.xfm_itk`, :mod:`.xfm_itk_txt`) and the tests that check them against ITK share one
description of a transform (a list of :class:`Affine` and :class:`Displacement` steps,
applied in order) and one implementation of ITK's rules for mapping points and resampling
images: a displacement field is trilinear between voxel centres, takes the edge value within
half a voxel outside them and does not displace points farther out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ['Affine', 'Displacement', 'field_at', 'map_points', 'resample']


@dataclass(eq=False)
class Affine:
    """``p -> matrix @ p``: a 4x4 affine in RAS millimetres."""

    matrix: np.ndarray

    def __post_init__(self):
        self.matrix = _affine_matrix(self.matrix, 'an Affine step')


@dataclass(eq=False)
class Displacement:
    """``p -> p + u(p)``: ``field`` (X, Y, Z, 3) float32 RAS displacements (mm) on the voxel
    grid of ``affine`` (voxel to RAS world), trilinear between voxels, as ITK outside them
    (:func:`field_at`)."""

    field: np.ndarray
    affine: np.ndarray

    def __post_init__(self):
        self.field = np.asarray(self.field, dtype=np.float32)
        if self.field.ndim != 4 or self.field.shape[3] != 3 or 0 in self.field.shape:
            raise ValueError(f'a displacement field is (X, Y, Z, 3), not {self.field.shape}')
        self.affine = _affine_matrix(self.affine, "a displacement field's grid")
        if abs(np.linalg.det(self.affine[:3, :3])) < 1e-12:
            raise ValueError("a displacement field's grid affine is singular")


def _affine_matrix(matrix, what: str) -> np.ndarray:
    m = np.array(matrix, dtype=np.float64)
    if m.shape != (4, 4) or not np.isfinite(m).all():
        raise ValueError(f'{what} needs a finite 4x4 matrix, not shape {m.shape}')
    if not np.allclose(m[3], [0, 0, 0, 1], atol=1e-9):
        raise ValueError(f'{what} needs a last row of 0 0 0 1, not {m[3].tolist()}')
    m[3] = [0, 0, 0, 1]
    return m


def map_points(steps: list, points: np.ndarray) -> np.ndarray:
    """Where ``steps`` (applied in order, ``steps[0]`` first) send RAS ``points`` (..., 3)."""
    p = np.array(points, dtype=np.float64)
    shape = p.shape
    p = p.reshape(-1, 3)
    for step in steps:
        if isinstance(step, Affine):
            p = p @ step.matrix[:3, :3].T + step.matrix[:3, 3]
        elif isinstance(step, Displacement):
            p = p + field_at(step.field, step.affine, p)
        else:
            raise TypeError(f'not a transform step: {step!r}')
    return p.reshape(shape)


def field_at(field: np.ndarray, affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Displacements (N, 3) at RAS ``points`` (N, 3), as ITK evaluates a displacement field:
    trilinear between voxel centres, the edge value within half a voxel outside them, zero
    farther out (ITK's ``IsInsideBuffer``: continuous index in ``[-0.5, size - 0.5)``)."""
    vox = _to_voxels(points, affine)
    out = np.zeros((len(vox), 3))
    inside = _inside(vox, field.shape[:3])
    if inside.any():
        from scipy.ndimage import map_coordinates

        coords = vox[inside].T
        for c in range(3):
            out[inside, c] = map_coordinates(field[..., c], coords, order=1, mode='nearest')
    return out


def resample(
    data: np.ndarray,
    data_affine: np.ndarray,
    steps: list,
    ref_shape,
    ref_affine: np.ndarray,
    order: int = 1,
    cval: float = 0.0,
) -> np.ndarray:
    """Pull ``data`` (X, Y, Z[, C], voxel-to-RAS ``data_affine``) onto the reference grid
    (``ref_shape``, ``ref_affine``) as ITK's resampling does: the value at a reference point
    ``p`` is ``data`` at ``steps(p)`` (the steps map reference to data world points),
    trilinear (``order=1``) or nearest (``order=0``), with ITK's rule at the edges (the edge
    value within half a voxel outside the outer voxel centres, ``cval`` farther out)."""
    from scipy.ndimage import map_coordinates

    if order not in (0, 1):
        raise ValueError(f'order is 0 (nearest) or 1 (trilinear), not {order}')
    data = np.asarray(data)
    if data.ndim not in (3, 4):
        raise ValueError(f'data is (X, Y, Z) or (X, Y, Z, C), not {data.shape}')
    ref_shape = tuple(int(s) for s in ref_shape[:3])
    ref_affine = _affine_matrix(ref_affine, 'the reference grid')
    channels = data.reshape(data.shape[:3] + (-1,))
    dtype = data.dtype if order == 0 else np.result_type(data.dtype, np.float32)
    out = np.empty(ref_shape + (channels.shape[3],), dtype=dtype)
    size = np.array(data.shape[:3])
    step = max(1, (1 << 18) // max(1, ref_shape[1] * ref_shape[2]))
    for x0 in range(0, ref_shape[0], step):
        x1 = min(ref_shape[0], x0 + step)
        axes = (np.arange(x0, x1), np.arange(ref_shape[1]), np.arange(ref_shape[2]))
        ijk = np.stack(np.meshgrid(*axes, indexing='ij'), -1).reshape(-1, 3)
        world = map_points(steps, ijk @ ref_affine[:3, :3].T + ref_affine[:3, 3])
        vox = _to_voxels(world, data_affine)
        inside = _inside(vox, size)
        values = np.full((len(vox), channels.shape[3]), cval, dtype=dtype)
        if order == 0:  # ITK rounds half-way indices up
            idx = np.clip(np.floor(vox[inside] + 0.5).astype(np.intp), 0, size - 1)
            values[inside] = channels[idx[:, 0], idx[:, 1], idx[:, 2]]
        else:
            for c in range(channels.shape[3]):
                values[inside, c] = map_coordinates(
                    channels[..., c], vox[inside].T, order=1, mode='nearest'
                )
        out[x0:x1] = values.reshape((x1 - x0,) + ref_shape[1:] + (-1,))
    return out.reshape(ref_shape + data.shape[3:])


def _to_voxels(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    inv = np.linalg.inv(np.asarray(affine, dtype=np.float64))
    return np.asarray(points, dtype=np.float64).reshape(-1, 3) @ inv[:3, :3].T + inv[:3, 3]


def _inside(vox: np.ndarray, size) -> np.ndarray:
    size = np.asarray(size)[:3]
    return ((vox >= -0.5) & (vox < size - 0.5)).all(axis=1)
