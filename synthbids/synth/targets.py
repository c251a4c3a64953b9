"""Training targets derived from deformed label maps."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from .labelmaps import LabelTables


def brain_mask(indices: torch.Tensor, tables: LabelTables, no_csf: bool = False) -> torch.Tensor:
    lut = torch.as_tensor(tables.brain_no_csf if no_csf else tables.brain, device=indices.device)
    return lut[indices]


def signed_distance(mask: np.ndarray, voxsize: float, band: float) -> np.ndarray:
    """Euclidean signed distance (mm) to the mask boundary, negative inside, clipped to
    +-``band`` (the network's narrow band)."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return np.full(mask.shape, band, np.float32)
    if mask.all():
        return np.full(mask.shape, -band, np.float32)
    outside = ndimage.distance_transform_edt(~mask, sampling=voxsize)
    inside = ndimage.distance_transform_edt(mask, sampling=voxsize)
    return np.clip(outside - inside, -band, band).astype(np.float32)


def strip_target(
    context: torch.Tensor,
    margin: int,
    tables: LabelTables,
    voxsize: float,
    no_csf: bool = False,
    band: float = 5.0,
) -> torch.Tensor:
    """SynthStrip target (X, Y, Z): clipped SDT of the brain mask, computed on the crop with
    ``margin`` voxels of context so that distances near the crop edge are exact."""
    mask = brain_mask(context, tables, no_csf).cpu().numpy()
    sdt = signed_distance(mask, voxsize, band)
    if margin:
        sdt = sdt[margin:-margin, margin:-margin, margin:-margin]
    return torch.from_numpy(np.ascontiguousarray(sdt)).to(context.device)


def seg_target(indices: torch.Tensor, tables: LabelTables) -> torch.Tensor:
    """Channel index (into SEG_LABELS_V2) of every voxel."""
    return torch.as_tensor(tables.seg, device=indices.device)[indices]


def head_target(indices: torch.Tensor, tables: LabelTables) -> torch.Tensor:
    """Channel index (into HEAD_CLASSES) of every voxel."""
    return torch.as_tensor(tables.head, device=indices.device)[indices]
