"""Using a registration (:mod:`.register`): resampling images into the template's space and
back, and the registration as the steps of ITK transform files (:mod:`.xfm_itk`)."""

from __future__ import annotations

import numpy as np
import torch

from .register import Registration, _as_level, _Level, _sample, _to_vox, _world

__all__ = ['forward_steps', 'from_forward_steps', 'inverse_steps', 'to_subject', 'to_template']


# --- resampling through a registration -------------------------------------------------


def _field_level(disp: np.ndarray, affine: np.ndarray, device) -> _Level:
    return _as_level(disp, affine, device)


def _field_at(level: _Level, points: torch.Tensor) -> torch.Tensor:
    """(..., 3) displacements at world ``points``, as ITK evaluates them (see
    :func:`.xfm_steps.field_at`): the edge value within half a voxel outside, zero farther."""
    vox = _to_vox(points, level.affine)
    size = torch.tensor(level.shape, dtype=vox.dtype, device=vox.device)
    inside = ((vox >= -0.5) & (vox < size - 0.5)).all(-1, keepdim=True)
    values = _sample(level.data, vox, padding='border')[0].permute(1, 2, 3, 0)
    return values * inside


def to_template(
    data: np.ndarray,
    data_affine: np.ndarray,
    reg: Registration,
    shape,
    affine: np.ndarray,
    order: int = 1,
    device='cpu',
) -> np.ndarray:
    """Resample subject ``data`` (X, Y, Z[, C]) onto a template grid (``shape``, ``affine``):
    trilinear (``order=1``) or nearest (``order=0``); 0 outside the subject's grid."""
    return _pull(data, data_affine, shape, affine, order, device, reg.field, reg.field_affine,
                 reg.affine, warp_first=True)  # fmt: skip


def to_subject(
    data: np.ndarray,
    data_affine: np.ndarray,
    reg: Registration,
    shape,
    affine: np.ndarray,
    order: int = 1,
    device='cpu',
) -> np.ndarray:
    """Resample template ``data`` onto a subject grid (the inverse of :func:`to_template`)."""
    return _pull(data, data_affine, shape, affine, order, device, reg.inverse_field,
                 reg.field_affine, np.linalg.inv(reg.affine), warp_first=False)  # fmt: skip


def _pull(data, data_affine, shape, affine, order, device, disp, disp_affine, matrix, warp_first):
    device = torch.device(device)
    squeeze = data.ndim == 3
    arr = data[..., None] if squeeze else data
    source = _as_level(arr.astype(np.float32, copy=False), data_affine, device)
    field_level = _field_level(disp, disp_affine, device) if disp is not None else None
    a = torch.as_tensor(matrix, dtype=torch.float32, device=device)
    shape = tuple(int(s) for s in shape)
    out = np.empty(shape + (arr.shape[-1],), dtype=np.float32)
    mode = 'bilinear' if order == 1 else 'nearest'
    step = max(1, (1 << 21) // (shape[1] * shape[2]))
    with torch.no_grad():
        for x0 in range(0, shape[0], step):
            x1 = min(shape[0], x0 + step)
            slab = affine.copy()
            slab[:3, 3] = affine[:3, :3] @ [x0, 0, 0] + affine[:3, 3]
            p = _world((x1 - x0,) + shape[1:], slab, device)
            if warp_first and field_level is not None:
                p = p + _field_at(field_level, p)
            p = p @ a[:3, :3].T + a[:3, 3]
            if not warp_first and field_level is not None:
                p = p + _field_at(field_level, p)
            values = _sample(source.data, _to_vox(p, data_affine), mode=mode)
            out[x0:x1] = values[0].permute(1, 2, 3, 0).cpu().numpy()
    out = out.astype(data.dtype, copy=False) if order == 0 else out
    return out[..., 0] if squeeze else out


# --- as ITK transform files (:mod:`.xfm_itk`) ---------------------------------------------


def forward_steps(reg: Registration) -> list:
    """Template point -> subject point, as the steps of an ITK composite (applied in order):
    what ANTs writes as ``from-<image>_to-<template>`` and what resampling into the
    template's space uses."""
    from .xfm_steps import Affine, Displacement

    steps = [Affine(reg.affine)]
    if reg.field is not None:
        steps.insert(0, Displacement(reg.field, reg.field_affine))
    return steps


def inverse_steps(reg: Registration) -> list:
    """Subject point -> template point (``from-<template>_to-<image>``)."""
    from .xfm_steps import Affine, Displacement

    steps = [Affine(np.linalg.inv(reg.affine))]
    if reg.inverse_field is not None:
        steps.append(Displacement(reg.inverse_field, reg.field_affine))
    return steps


def from_forward_steps(steps: list) -> Registration:
    """The :class:`Registration` of a forward file: an affine, optionally after a field."""
    from .xfm_steps import Affine, Displacement

    kinds = [type(s) for s in steps]
    if kinds == [Affine]:
        return Registration(np.asarray(steps[0].matrix, dtype=np.float64), np.eye(4))
    if kinds == [Displacement, Affine]:
        disp, aff = steps
        return Registration(
            np.asarray(aff.matrix, dtype=np.float64),
            np.asarray(disp.affine, dtype=np.float64),
            np.asarray(disp.field, dtype=np.float32),
        )
    raise ValueError(f'not a displacement-then-affine transform: {[k.__name__ for k in kinds]}')
