"""Random spatial transforms of label maps: affine + diffeomorphic elastic deformation.

Following SynthSeg's generator (``SPEC-synth.md`` §3.2): rotations, per-axis scaling and shears
about the map centre, and a smooth stationary velocity field integrated by scaling and squaring.
Only the output crop is sampled: the source coordinate of every output voxel is computed
directly, so deforming a 128^3 map into a 96^3 crop costs one 96^3 nearest-neighbour lookup.
All lengths are in voxels of the map grid.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

#: The elastic field is integrated on a grid this many times coarser than the map.
FIELD_FACTOR = 4


def rotation_matrix(angles: torch.Tensor) -> torch.Tensor:
    """3x3 rotation from three angles (radians) about the three axes."""
    cx, cy, cz = torch.cos(angles)
    sx, sy, sz = torch.sin(angles)
    one, zero = torch.ones_like(cx), torch.zeros_like(cx)
    rx = torch.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx]).reshape(3, 3)
    ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy]).reshape(3, 3)
    rz = torch.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one]).reshape(3, 3)
    return rz @ ry @ rx


def random_affine(
    gen: torch.Generator, rotation_deg=15.0, scaling=0.2, shear=0.012, device='cpu'
) -> torch.Tensor:
    """Linear part of a random affine: rotation U(-r, r), scale U(1-s, 1+s), 6 shears."""

    def u(lo, hi, n):
        return lo + (hi - lo) * torch.rand(n, generator=gen, device=device)

    angles = u(-rotation_deg, rotation_deg, 3) * math.pi / 180
    scale = torch.diag(u(1 - scaling, 1 + scaling, 3))
    sh = torch.eye(3, device=device)
    off = u(-shear, shear, 6)
    sh[0, 1], sh[0, 2], sh[1, 0], sh[1, 2], sh[2, 0], sh[2, 1] = off
    return rotation_matrix(angles) @ sh @ scale


def integrate_svf(velocity: torch.Tensor, steps: int = 7) -> torch.Tensor:
    """Displacement (1, 3, D, H, W, voxels) of the flow of a stationary velocity field, by
    scaling and squaring: phi = v / 2^steps, then phi <- phi + phi(x + phi) ``steps`` times."""
    disp = velocity / (2**steps)
    shape = disp.shape[2:]
    base = _identity_grid(shape, disp.device)
    for _ in range(steps):
        disp = disp + _sample_field(disp, base + disp.permute(0, 2, 3, 4, 1), shape)
    return disp


def _identity_grid(shape, device) -> torch.Tensor:
    axes = [torch.arange(n, dtype=torch.float32, device=device) for n in shape]
    return torch.stack(torch.meshgrid(*axes, indexing='ij'), dim=-1)[None]


def _normalise(coords: torch.Tensor, shape) -> torch.Tensor:
    """Voxel coordinates (..., 3) in (i, j, k) order -> grid_sample's [-1, 1] (x=k, y=j, z=i)."""
    parts = [coords[..., a] * (2.0 / max(shape[a] - 1, 1)) - 1 for a in (2, 1, 0)]
    return torch.stack(parts, dim=-1)


def _sample_field(field: torch.Tensor, coords: torch.Tensor, shape) -> torch.Tensor:
    return F.grid_sample(
        field,
        _normalise(coords, shape),
        mode='bilinear',
        padding_mode='border',
        align_corners=True,
    )


def random_velocity(
    gen: torch.Generator, map_shape, max_std: float, control: int, device='cpu'
) -> torch.Tensor:
    """SVF on a grid 4x coarser than the map (the field is smooth: 11^3 control points) from
    a ``control``^3 grid of N(0, sigma) vectors, sigma ~ U(0, max_std) voxels of the full
    map; returned in units of the coarse grid's voxels."""
    std = max_std * torch.rand(1, generator=gen, device=device)
    coarse = torch.randn((1, 3, control, control, control), generator=gen, device=device)
    size = [max(2 * control, n // FIELD_FACTOR) for n in map_shape]
    factors = torch.tensor([(n - 1) / (m - 1) for n, m in zip(map_shape, size)], device=device)
    coarse = coarse * std / factors.reshape(1, 3, 1, 1, 1)
    return F.interpolate(coarse, size=size, mode='trilinear', align_corners=True)


def source_coordinates(
    out_shape,
    offset: torch.Tensor,
    map_shape,
    linear: torch.Tensor,
    displacement: torch.Tensor | None,
) -> torch.Tensor:
    """Map voxel coordinates (1, *out_shape, 3) sampled by each voxel of an output crop.

    Output voxel ``o`` sits at ``p = o + offset`` in the deformed map; its source is
    ``c + A (p - c) + u(p)`` with ``c`` the map centre, ``A`` the random linear transform and
    ``u`` the elastic displacement (on a coarse grid spanning the map, in its own voxels).
    """
    device = linear.device
    p = _identity_grid(out_shape, device) + offset.to(device)
    centre = (torch.tensor(map_shape, dtype=torch.float32, device=device) - 1) / 2
    src = (p - centre) @ linear.T + centre
    if displacement is not None:
        field_shape = displacement.shape[2:]
        ratio = (torch.tensor(field_shape, device=device) - 1) / (
            torch.tensor(map_shape, dtype=torch.float32, device=device) - 1
        )
        u = _sample_field(displacement, p * ratio, field_shape)
        src = src + u.permute(0, 2, 3, 4, 1) / ratio  # coarse-grid voxels -> map voxels
    return src


def sample_nearest(volume: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour lookup of a 3-D integer map at voxel ``coords``; outside -> 0."""
    shape = volume.shape
    idx = torch.round(coords).long()
    inside = torch.ones(coords.shape[:-1], dtype=torch.bool, device=coords.device)
    for a in range(3):
        inside &= (idx[..., a] >= 0) & (idx[..., a] < shape[a])
        idx[..., a].clamp_(0, shape[a] - 1)
    out = volume[idx[..., 0], idx[..., 1], idx[..., 2]]
    return torch.where(inside, out, torch.zeros_like(out))
