"""SynthSeg's postprocessing on channels-first posteriors (C, X, Y, Z), in place.

Default: keep the largest connected component of the brain (sum of non-background
posteriors > 0.25) and, for each topological class, of its voxels with a posterior > 0.25;
zero the posteriors outside; crop the padding. ``fast`` (and robust): crop first, keep the
brain component, zero posteriors <= 0.2. Then normalise, take the first maximum as the label.
Also here: volumes from the soft posteriors, the QC network's input (``MakeShape``), and the
parcellation step applied slab by slab as the parcellation network produces its output.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from . import labels as L
from .masks import largest_component

BRAIN_THRESHOLD = 0.25
TOPOLOGY_THRESHOLD = 0.25
FAST_THRESHOLD = 0.2
QC_SHAPE = 224


def pad_crop(pad_idx: Sequence[int]) -> tuple[slice, slice, slice]:
    return tuple(slice(pad_idx[i], pad_idx[i + 3]) for i in range(3))


def clean_posteriors(
    post: np.ndarray, pad_idx: Sequence[int], topology: Sequence[int], fast: bool
) -> np.ndarray:
    """Connected-component clean-up and normalisation of ``post`` (C, X, Y, Z) on the padded
    grid; returns the normalised posteriors on the unpadded grid (a view of ``post``)."""
    inner = (slice(None), *pad_crop(pad_idx))
    if fast:
        post = post[inner]
    brain = largest_component(_channel_sum(post, 1) > BRAIN_THRESHOLD)
    for c in range(1, post.shape[0]):
        np.multiply(post[c], brain, out=post[c])
    del brain
    if fast:
        for c in range(1, post.shape[0]):
            np.multiply(post[c], post[c] > FAST_THRESHOLD, out=post[c])
    else:
        topology = np.asarray(topology)
        for cls in np.unique(topology):
            if cls == 0:
                continue
            channels = np.flatnonzero(topology == cls)
            mask = post[channels[0]] > TOPOLOGY_THRESHOLD
            for c in channels[1:]:
                mask |= post[c] > TOPOLOGY_THRESHOLD
            mask = largest_component(mask)
            for c in channels:
                np.multiply(post[c], mask, out=post[c])
        post = post[inner]
    total = _channel_sum(post, 0)
    empty = total == 0  # every channel zeroed: call it background rather than divide by 0
    if empty.any():
        post[0][empty] = 1
        total[empty] = 1
    for c in range(post.shape[0]):
        np.divide(post[c], total, out=post[c])
    return post


def _channel_sum(post: np.ndarray, first: int) -> np.ndarray:
    total = post[first].copy()
    for c in range(first + 1, post.shape[0]):
        total += post[c]
    return total


def argmax_channels(post: np.ndarray) -> np.ndarray:
    """Index of the largest channel at every voxel (the first one on ties), uint8."""
    best = post[0].copy()
    index = np.zeros(best.shape, dtype=np.uint8)
    for c in range(1, post.shape[0]):
        higher = post[c] > best
        index[higher] = c
        np.maximum(best, post[c], out=best)
    return index


def channel_sums(post: np.ndarray, float64: bool = False) -> np.ndarray:
    """Per-channel sums over all voxels, as ``mri_synthseg`` computes its volumes.

    The reference sums float32 posteriors voxel by voxel in raster order (numpy reduces the
    channels-last array over its spatial axes without pairwise summation), which puts an
    error of up to ~1e-3 on large soft volumes; it is reproduced here so that volumes agree
    with ``mri_synthseg``'s. With ``--crop`` the reference posteriors are float64
    (``float64=True``), and so is the sum.
    """
    if float64:
        return np.array([post[c].sum(dtype=np.float64) for c in range(post.shape[0])])
    return np.array([sequential_sum(post[c]) for c in range(post.shape[0])], dtype=np.float32)


def sequential_sum(values: np.ndarray, start: float = 0.0, chunk: int = 1 << 22) -> np.float32:
    """``start`` plus every value of ``values`` (raster order), accumulated one by one in
    float32 (``cumsum`` is a sequential scan)."""
    flat = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
    acc = np.float32(start)
    for i in range(0, flat.size, chunk):
        part = flat[i : i + chunk]
        acc = np.cumsum(np.concatenate(([acc], part)), dtype=np.float32)[-1]
    return np.float32(acc)


# --------------------------------------------------------------------------- volumes


def seg_volume_names(
    labels: Sequence[int], v1: bool, parc: bool, names: Sequence[str] | None = None
) -> list[str]:
    """Column names of the volume table, in ``mri_synthseg``'s order. ``v1``: no total
    (1.0 and Photo-SynthSeg); ``names``: one per label when not SynthSeg's own."""
    if names is None:
        names = [L.name(lab) for lab in labels]
    out = [] if v1 else [L.TOTAL_NAME]
    out += list(names[1:])
    if parc:
        out += [L.parc_name(lab) for lab in L.PARC_LABELS[1:]]
    return out


def compute_volumes(
    seg_sums: np.ndarray,
    labels: Sequence[int],
    im_res,
    v1: bool,
    parc_sums: np.ndarray | None = None,
    parc_compat: bool = False,
    names: Sequence[str] | None = None,
) -> dict[str, float]:
    """Volumes in mm^3 (3 decimals) from the posterior sums, ordered like the CSV columns,
    with the reference's arithmetic (float32 unless the sums are float64). ``v1``: no total
    intracranial volume first; ``names``: the labels' names (default: SynthSeg's).

    Parcel volumes are the parcels' posterior sums rescaled to the cortex: per hemisphere to
    the left (3) and right (42) cortex volume. ``parc_compat`` reproduces ``mri_synthseg``
    up to FreeSurfer 7.4, which rescales all parcels together to the volume at the indices of
    labels 3 and 42 minus one: the cerebral white matter for 2.0 (the total column shifts the
    vector), the cortex for 1.0. A cortex label the network lacks (Photo-SynthSeg of one
    hemisphere) counts as an empty cortex.
    """
    labels = list(labels)
    volumes = np.asarray(seg_sums[1:])
    if not v1:
        volumes = np.concatenate([[np.sum(volumes)], volumes]).astype(volumes.dtype)
    if parc_sums is not None:
        parc = np.asarray(parc_sums[1:])
        if parc_compat:
            idx = [labels.index(lab) for lab in L.CORTEX if lab in labels]
            parc = _rescale(parc, np.sum(volumes[[i - 1 for i in idx]]))
        else:
            left = np.array([lab < 2000 for lab in L.PARC_LABELS[1:]])
            cortex = [seg_sums[labels.index(lab)] if lab in labels else 0 for lab in L.CORTEX]
            parc = np.concatenate(
                [_rescale(parc[left], cortex[0]), _rescale(parc[~left], cortex[1])]
            )
        volumes = np.concatenate([volumes, parc])
    scale = np.prod(np.asarray(im_res, dtype=np.float32))
    volumes = np.round(volumes * scale.astype(volumes.dtype), 3)
    names = seg_volume_names(labels, v1, parc_sums is not None, names)
    return {n: round(float(v), 3) for n, v in zip(names, volumes)}


def _rescale(values: np.ndarray, target) -> np.ndarray:
    total = np.sum(values)
    if total <= 0:
        return values * 0
    return values / total * np.asarray(target, dtype=values.dtype)


# --------------------------------------------------------------------------- QC


def qc_crop(index_map: np.ndarray, size: int = QC_SHAPE) -> np.ndarray:
    """``MakeShape``: crop/zero-pad the argmax index map to ``size``^3 around the bounding box
    of indices other than 0 and 24. (The reference compares channel indices, not label
    values, with 24; reproduced as is.)"""
    shape = np.array(index_map.shape)
    target = np.array([size] * 3)
    mask = (index_map != 0) & (index_map != 24)
    if mask.any():
        lo, hi = [], []
        for axis in range(3):
            other = tuple(a for a in range(3) if a != axis)
            nz = np.flatnonzero(mask.any(axis=other))
            lo.append(nz[0])
            hi.append(nz[-1] + 1)
        lo, hi = np.maximum(lo, 0), np.minimum(hi, shape)
    else:
        lo, hi = np.zeros(3, dtype=int), np.minimum(shape, target)
    length = hi - lo
    lo = lo - np.array([math.ceil((t - n) / 2) for t, n in zip(target, length)])
    hi = hi + np.array([math.floor((t - n) / 2) for t, n in zip(target, length)])
    start, stop = np.maximum(lo, 0), np.minimum(hi, shape)
    out = index_map[tuple(slice(a, b) for a, b in zip(start, stop))]
    before = np.abs(np.minimum(lo, 0))
    after = np.maximum(hi - shape, 0)
    if before.any() or after.any():
        out = np.pad(out, list(zip(before, after)))
    return out


def qc_scores(raw: np.ndarray) -> dict[str, float]:
    """The 8 scores (classes 1..8) clipped to [0, 1] and rounded to 4 decimals."""
    values = np.round(np.clip(np.asarray(raw, dtype=np.float32).reshape(-1)[1:], 0, 1), 4)
    return {n: round(float(v), 4) for n, v in zip(L.QC_NAMES[1:], values)}


# --------------------------------------------------------------------------- parcellation


class ParcellationSink:
    """Consumes the parcellation network's (blurred) output slab by slab on the padded grid:
    outside the cortex channel 0 becomes 1 (0 inside), channels are normalised, cortex voxels
    of ``seg`` (the final labels on the unpadded grid) take the parcel of largest posterior,
    and per-parcel posterior sums are accumulated for the volumes."""

    def __init__(self, seg: np.ndarray, pad_idx: Sequence[int]):
        self.seg = seg
        self.pad = pad_idx
        self.parc_labels = torch.tensor(L.PARC_LABELS, dtype=torch.int32)
        self.sums = np.zeros(len(L.PARC_LABELS), dtype=np.float32)

    def __call__(self, start: int, stop: int, probs: torch.Tensor) -> None:
        a, b = max(start, self.pad[0]), min(stop, self.pad[3])
        if a >= b:
            return
        pad = self.pad
        probs = probs[0, :, a - start : b - start, pad[1] : pad[4], pad[2] : pad[5]]
        seg = torch.from_numpy(self.seg[a - pad[0] : b - pad[0]])
        cortex = (seg == 3) | (seg == 42)
        # one channels-last copy (voxels x parcels) holds every step below in place
        values = probs.permute(1, 2, 3, 0).contiguous()
        values[..., 0] = (~cortex).to(values.dtype)
        values /= values.sum(dim=-1, keepdim=True)
        best = self.parc_labels[values.argmax(dim=-1)]
        seg[cortex] = best[cortex]
        # the reference's float32 sums run voxel by voxel in raster order, slab after slab
        flat = values.numpy().reshape(-1, values.shape[-1])
        flat[0] += self.sums
        np.cumsum(flat, axis=0, out=flat)
        self.sums = flat[-1].copy()
