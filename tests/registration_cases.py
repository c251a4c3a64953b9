"""Known deformations for registration tests and benchmarks: a random affine and a smooth
random warp, the images pulled through them, and the error of a recovered mapping."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from synthbids.core.register import _interp_field
from synthbids.core.tissues import tissue_dseg


def _rotation(angles):
    cx, cy, cz = np.cos(angles)
    sx, sy, sz = np.sin(angles)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rx @ ry @ rz


class KnownWarp:
    """A known subject -> template mapping ``S(s) = C s + e(C s)``; the subject's maps are
    the template's pulled through it, so a perfect registration R has ``S(R(p)) = p``."""

    def __init__(self, shape, affine, seed, warp_mm=4.0):
        rng = np.random.default_rng(seed)
        self.c = np.eye(4)
        self.c[:3, :3] = _rotation(np.deg2rad(rng.uniform(-10, 10, 3))) * rng.uniform(
            0.92, 1.08, 3
        )
        self.c[:3, 3] = rng.uniform(-8, 8, 3)
        coarse = rng.normal(size=(3, 5, 6, 5))
        field = np.stack(
            [ndimage.zoom(c, np.array(shape) / np.array(c.shape), order=3) for c in coarse], -1
        )
        self.field = (field / np.abs(field).max() * warp_mm).astype(np.float32)
        self.affine = affine

    def __call__(self, points):
        q = points @ self.c[:3, :3].T + self.c[:3, 3]
        return q + _interp_field(self.field, self.affine, q)

    def pull(self, data, affine, order=1):
        """``data`` (X, Y, Z[, C]) on a grid with ``affine``, as seen in the subject's space
        (the same grid): the subject's voxel at ``s`` shows the template at ``S(s)``."""
        shape = data.shape[:3]
        ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing='ij'), -1)
        world = (ijk @ affine[:3, :3].T + affine[:3, 3]).reshape(-1, 3)
        vox = (self(world) - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T
        frames = data[..., None] if data.ndim == 3 else data
        out = [
            ndimage.map_coordinates(frames[..., c], vox.T, order=order).reshape(shape)
            for c in range(frames.shape[-1])
        ]
        out = np.stack(out, -1).astype(data.dtype if order == 0 else np.float32)
        return out[..., 0] if data.ndim == 3 else out


def boundary_points(probs, affine):
    """World coordinates of the voxels on a tissue boundary (label-boundary error: inside a
    uniform tissue a displacement cannot be observed, by any method)."""
    labels = tissue_dseg(probs)
    edge = np.zeros(labels.shape, dtype=bool)
    for axis in range(3):
        d = np.diff(labels, axis=axis) != 0
        lo = [slice(None)] * 3
        lo[axis] = slice(0, -1)
        edge[tuple(lo)] |= d
    return np.argwhere(edge) @ affine[:3, :3].T + affine[:3, 3]


def mapping_error(known, mapping, points):
    """Distance (mm) between each point and its image through ``mapping`` then the known
    subject-to-template map: zero for a perfect registration."""
    return np.linalg.norm(known(mapping(points)) - points, axis=1)
