"""Registration to a template through the segmentation: contrast-agnostic by construction.

The image itself is never compared with the template. Its GM/WM/CSF probabilities (from the
segmentation network, :mod:`.tissues`) are matched to the template's own ``label-GM|WM|CSF``
probsegs by least squares, so a CT, a FLAIR or an inverted T1w register as a T1w does.

Two stages, in torch (CPU or GPU), coarse to fine:

* affine: centres of mass first, then 12 parameters on 8, 4 and 2 mm grids;
* diffeomorphic: a stationary velocity field on an 8 mm control grid, integrated by scaling and
  squaring (its inverse is the integral of the negated field), with a diffusion penalty.

The result maps template points to subject points, ``p -> A (p + u(p))`` (what a resampler
into template space needs, and what ANTs' ``from-T1w_to-<template>`` composite holds), and
the inverse, ``q -> A^-1 q + w(A^-1 q)``. All coordinates are RAS world millimetres.
Resampling through a result and its ITK transform steps are in :mod:`.register_apply`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from dataclasses import field as dc_field

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ['Options', 'Registration', 'register']


@dataclass(frozen=True)
class Options:
    """Settings of :func:`register` (the defaults are what the BIDS App uses)."""

    affine_levels: tuple[float, ...] = (8.0, 4.0, 2.0)  # working grid spacing (mm)
    affine_iters: tuple[int, ...] = (100, 60, 20)
    warp_levels: tuple[float, ...] = (4.0, 2.0)
    warp_iters: tuple[int, ...] = (80, 40)
    control_spacing: float = 8.0  # velocity field grid (mm)
    smoothness: float = 1.0  # weight of the diffusion penalty on the velocity
    squarings: int = 5
    points: int = 40000  # random voxels per iteration (of those near the tissue)
    seed: int = 0
    nonlinear: bool = True


@dataclass
class Registration:
    """A template-to-subject mapping ``p -> affine @ (p + field(p))`` and its inverse."""

    affine: np.ndarray  # 4x4, template world (after the warp) -> subject world
    field_affine: np.ndarray  # voxel-to-world of the field grid (template space)
    field: np.ndarray | None = None  # (X, Y, Z, 3) float32 displacements (mm)
    inverse_field: np.ndarray | None = None
    metrics: dict = dc_field(default_factory=dict)

    def template_to_subject(self, points: np.ndarray) -> np.ndarray:
        """Subject world coordinates of template world ``points`` (N, 3)."""
        p = np.asarray(points, dtype=np.float64)
        if self.field is not None:
            p = p + _interp_field(self.field, self.field_affine, p)
        return p @ self.affine[:3, :3].T + self.affine[:3, 3]

    def subject_to_template(self, points: np.ndarray) -> np.ndarray:
        """Template world coordinates of subject world ``points`` (N, 3)."""
        inv = np.linalg.inv(self.affine)
        q = np.asarray(points, dtype=np.float64) @ inv[:3, :3].T + inv[:3, 3]
        if self.inverse_field is not None:
            q = q + _interp_field(self.inverse_field, self.field_affine, q)
        return q


def _interp_field(disp: np.ndarray, affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Displacement at world ``points``, as ITK (and so ANTs) evaluates the written field."""
    from .xfm_steps import field_at

    return field_at(disp, affine, points)


# --- grids as torch tensors ----------------------------------------------------------------


@dataclass
class _Level:
    """A volume (1, C, X, Y, Z) on a grid with its voxel-to-world affine."""

    data: torch.Tensor
    affine: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.data.shape[2:])

    @property
    def spacing(self) -> float:
        return float(np.mean(np.linalg.norm(self.affine[:3, :3], axis=0)))


def _pool(level: _Level, factor: int) -> _Level:
    """Average ``factor``^3 blocks; the new voxel 0 is the centre of the old 0..factor-1."""
    if factor <= 1:
        return level
    x = level.data
    pad = [(-s) % factor for s in x.shape[2:]]
    if any(pad):
        x = F.pad(x, (0, pad[2], 0, pad[1], 0, pad[0]))
    x = F.avg_pool3d(x, factor)
    scale = np.diag([factor, factor, factor, 1.0])
    scale[:3, 3] = (factor - 1) / 2
    return _Level(x, level.affine @ scale)


def _at_spacing(level: _Level, spacing: float) -> _Level:
    return _pool(level, max(1, int(math.floor(spacing / level.spacing + 1e-3))))


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (1, C, X, Y, Z), ``sigma`` in voxels."""
    if sigma <= 0:
        return x
    radius = max(1, int(math.ceil(2.5 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    for axis in range(3):
        shape = [1, 1, 1, 1, 1]
        shape[2 + axis] = k.numel()
        pad = [0, 0, 0, 0, 0, 0]
        pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = radius
        x = F.conv3d(
            F.pad(x, pad, mode='replicate'), k.view(shape).repeat(c, 1, 1, 1, 1), groups=c
        )
    return x


def _world(shape, affine: np.ndarray, device) -> torch.Tensor:
    """(X, Y, Z, 3) world coordinates of the voxel centres of a grid."""
    axes = [torch.arange(n, dtype=torch.float32, device=device) for n in shape]
    ijk = torch.stack(torch.meshgrid(*axes, indexing='ij'), dim=-1)
    a = torch.as_tensor(affine, dtype=torch.float32, device=device)
    return ijk @ a[:3, :3].T + a[:3, 3]


def _sample(volume: torch.Tensor, vox: torch.Tensor, mode='bilinear', padding='zeros'):
    """Sample (1, C, X, Y, Z) at voxel coordinates ``vox`` (..., 3) in (i, j, k) order."""
    sizes = torch.tensor(volume.shape[2:], dtype=vox.dtype, device=vox.device)
    norm = 2 * vox / (sizes - 1).clamp(min=1) - 1
    grid = norm.flip(-1).reshape(1, *vox.shape[:-1], 3)
    return F.grid_sample(volume, grid, mode=mode, padding_mode=padding, align_corners=True)


def _to_vox(points: torch.Tensor, affine: np.ndarray) -> torch.Tensor:
    inv = torch.as_tensor(np.linalg.inv(affine), dtype=points.dtype, device=points.device)
    return points @ inv[:3, :3].T + inv[:3, 3]


def _centre_of_mass(level: _Level) -> np.ndarray:
    weight = level.data[0].sum(0)
    total = weight.sum()
    if total <= 0:
        raise ValueError('an empty probability map cannot be registered')
    ijk = [torch.arange(n, dtype=torch.float64) for n in level.shape]
    grids = torch.meshgrid(*ijk, indexing='ij')
    com = np.array([float((g * weight.double().cpu()).sum() / total) for g in grids])
    return level.affine[:3, :3] @ com + level.affine[:3, 3]


# --- the two stages --------------------------------------------------------------------


class _AffineParams(torch.nn.Module):
    """``p -> (I + L)(p - c) + c + t0 + t`` with ``L`` and ``t`` learnt."""

    def __init__(self, centre: np.ndarray, shift: np.ndarray, device):
        super().__init__()
        self.linear = torch.nn.Parameter(torch.zeros(3, 3, device=device))
        self.shift = torch.nn.Parameter(torch.zeros(3, device=device))
        self.register_buffer('c', torch.as_tensor(centre, dtype=torch.float32, device=device))
        self.register_buffer('t0', torch.as_tensor(shift, dtype=torch.float32, device=device))

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        m = torch.eye(3, device=p.device) + self.linear
        return (p - self.c) @ m.T + self.c + self.t0 + self.shift

    def matrix(self) -> np.ndarray:
        m = np.eye(3) + self.linear.detach().double().cpu().numpy()
        c = self.c.double().cpu().numpy()
        t = self.t0.double().cpu().numpy() + self.shift.detach().double().cpu().numpy()
        out = np.eye(4)
        out[:3, :3] = m
        out[:3, 3] = c + t - m @ c
        return out


def _points(level: _Level, device) -> tuple[torch.Tensor, torch.Tensor]:
    """World coordinates (N, 3) and blurred values (N, C) of the voxels near the tissue:
    the loss is evaluated there only (the rest of the grid is empty on both sides)."""
    blurred = _blur(level.data, 1.0)
    near = F.max_pool3d((level.data.sum(1, keepdim=True) > 0.01).float(), 5, 1, 2)[0, 0] > 0
    ijk = torch.nonzero(near).to(torch.float32)
    a = torch.as_tensor(level.affine, dtype=torch.float32, device=device)
    values = blurred[0][:, near].T
    return ijk @ a[:3, :3].T + a[:3, 3], values


def _affine_stage(
    fixed: _Level, moving: _Level, opts: Options, device
) -> tuple[np.ndarray, float]:
    gen = torch.Generator(device=device).manual_seed(opts.seed)
    params = _AffineParams(
        _centre_of_mass(fixed), _centre_of_mass(moving) - _centre_of_mass(fixed), device
    )
    loss = float('nan')
    for spacing, iters in zip(opts.affine_levels, opts.affine_iters):
        points, target = _points(_at_spacing(fixed, spacing), device)
        mov = _at_spacing(moving, spacing)
        m = _blur(mov.data, 1.0)
        optim = torch.optim.Adam(
            [
                {'params': [params.linear], 'lr': 0.01 * spacing / 8},
                {'params': [params.shift], 'lr': 1.0 * spacing / 8},
            ]
        )
        for _ in range(iters):
            optim.zero_grad()
            p, t = _subset(points, target, opts.points, gen)
            warped = _sample_points(m, _to_vox(params(p), mov.affine))
            value = ((warped - t) ** 2).mean()
            value.backward()
            optim.step()
        loss = float(value.detach())
    return params.matrix(), loss


def _subset(points: torch.Tensor, target: torch.Tensor, n: int, gen, *more: torch.Tensor):
    """A random draw of ``n`` of the points (all of them when there are fewer): a stochastic
    gradient, as ITK's random metric sampling, at a fraction of the cost."""
    if n <= 0 or len(points) <= n:
        return (points, target, *more)
    idx = torch.randint(len(points), (n,), generator=gen, device=points.device)
    return (points[idx], target[idx], *(m[idx] for m in more))


def _sample_points(volume: torch.Tensor, vox: torch.Tensor, padding='zeros') -> torch.Tensor:
    """(N, C) values of (1, C, X, Y, Z) at voxel coordinates (N, 3)."""
    return _sample(volume, vox[:, None, None, :], padding=padding)[0, :, :, 0, 0].T


def _integrate(velocity: torch.Tensor, level_affine: np.ndarray, squarings: int):
    """Displacement (1, 3, X, Y, Z) in world mm of the stationary velocity (same layout)."""
    r_inv = torch.as_tensor(
        np.linalg.inv(level_affine[:3, :3]), dtype=velocity.dtype, device=velocity.device
    )
    shape = velocity.shape[2:]
    axes = [torch.arange(n, dtype=velocity.dtype, device=velocity.device) for n in shape]
    ijk = torch.stack(torch.meshgrid(*axes, indexing='ij'), dim=-1)
    disp = velocity / (2**squarings)
    for _ in range(squarings):
        vox = ijk + disp[0].permute(1, 2, 3, 0) @ r_inv.T
        disp = disp + _sample(disp, vox, padding='border')
    return disp


def _warp_stage(fixed: _Level, moving: _Level, matrix: np.ndarray, opts: Options, device):
    """Velocity and displacements live on the control grid (the finest level pooled to
    ``control_spacing``); displacements at other points are trilinear interpolations of it,
    in the optimisation and in the written field alike."""
    finest = _at_spacing(fixed, opts.warp_levels[-1])
    control = _at_spacing(finest, opts.control_spacing)
    velocity = torch.zeros((1, 3) + control.shape, device=device, requires_grad=True)
    gen = torch.Generator(device=device).manual_seed(opts.seed + 1)
    a = torch.as_tensor(matrix, dtype=torch.float32, device=device)
    loss = float('nan')
    for spacing, iters in zip(opts.warp_levels, opts.warp_iters):
        points, target = _points(_at_spacing(fixed, spacing), device)
        at_control = _to_vox(points, control.affine)
        mov = _at_spacing(moving, spacing)
        m = _blur(mov.data, 0.5)
        optim = torch.optim.Adam([velocity], lr=0.5 * spacing / 2)
        for _ in range(iters):
            optim.zero_grad()
            disp = _integrate(velocity, control.affine, opts.squarings)
            p, t, c = _subset(points, target, opts.points, gen, at_control)
            q = p + _sample_points(disp, c, padding='border')
            warped = _sample_points(m, _to_vox(q @ a[:3, :3].T + a[:3, 3], mov.affine))
            data = ((warped - t) ** 2).mean()
            value = data + opts.smoothness * _diffusion(velocity, control.spacing)
            value.backward()
            optim.step()
        loss = float(data.detach())
    with torch.no_grad():
        forward = _integrate(velocity, control.affine, opts.squarings)
        inverse = _integrate(-velocity, control.affine, opts.squarings)
        grid = _to_vox(_world(finest.shape, finest.affine, device), control.affine)

        def on_finest(disp):
            values = _sample(disp, grid, padding='border')[0].permute(1, 2, 3, 0)
            return np.ascontiguousarray(values.cpu().numpy())

        return on_finest(forward), on_finest(inverse), finest.affine, loss


def _diffusion(velocity: torch.Tensor, spacing: float) -> torch.Tensor:
    """Mean squared spatial derivative of the velocity (per mm)."""
    total = 0.0
    for axis in (2, 3, 4):
        d = torch.diff(velocity, dim=axis) / spacing
        total = total + (d**2).mean()
    return total


def _as_level(probs: np.ndarray, affine: np.ndarray, device) -> _Level:
    data = torch.as_tensor(np.ascontiguousarray(np.moveaxis(probs, -1, 0)), dtype=torch.float32)
    return _Level(data[None].to(device), np.asarray(affine, dtype=np.float64))


def register(
    moving: np.ndarray,
    moving_affine: np.ndarray,
    fixed: np.ndarray,
    fixed_affine: np.ndarray,
    options: Options | None = None,
    device: str | torch.device = 'cpu',
) -> Registration:
    """Register subject tissue probabilities ``moving`` (X, Y, Z, C) to the template's
    ``fixed`` (X', Y', Z', C), the same classes in the same order (e.g. GM, WM, CSF)."""
    opts = options or Options()
    if moving.shape[-1] != fixed.shape[-1]:
        raise ValueError('moving and fixed need the same tissue classes')
    device = torch.device(device)
    fix = _as_level(fixed, fixed_affine, device)
    mov = _as_level(moving, moving_affine, device)
    with torch.enable_grad():
        matrix, affine_loss = _affine_stage(fix, mov, opts, device)
        metrics = {'affine_loss': affine_loss}
        if not opts.nonlinear:
            finest = _at_spacing(fix, opts.warp_levels[-1])
            return Registration(matrix, finest.affine, metrics=metrics)
        fwd, inv, grid, warp_loss = _warp_stage(fix, mov, matrix, opts, device)
    metrics['warp_loss'] = warp_loss
    return Registration(matrix, grid, fwd, inv, metrics)
