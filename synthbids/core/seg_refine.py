"""Intensity refinement of SynthSeg posteriors: 1 mm boundaries from the image itself.

A network that sees a coarse grid draws blurred boundaries: the cortex swallows the sulci and
never enters the gyri's white matter. The image at 1 mm knows better, but its contrast is
unknown. Like FreeSurfer's SAMSEG, this module learns it from the image: every label gets a
Gaussian intensity model fitted where the network puts that label, and the posteriors become

    q_c(x)  ∝  p_c(x) · N(I(x); mu_c, sigma_c²)

for the brain labels (background keeps the network's probability), refitted for a few EM
iterations. The network is the spatial prior, so the
refinement is as contrast-agnostic as the network; where the labels' intensities coincide
(CT's grey and white matter) the likelihoods are alike and the prior decides.

Only the ``top`` most probable brain labels of each voxel take part (the rest are zero after
refinement): the arithmetic is a few (top, N) arrays instead of 33 full volumes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ['RefineOptions', 'refine_posteriors']

#: Voxels' worth of posterior mass below which a label's intensity model is not fitted.
MIN_WEIGHT = 10.0


@dataclass(frozen=True)
class RefineOptions:
    """Settings of :func:`refine_posteriors` (the defaults are measured in the model card)."""

    iterations: int = 5
    top: int = 4  # brain labels per voxel that compete
    background: float = 0.999  # voxels whose background probability is above this are kept
    min_variance: float = 1e-4  # of the normalised intensities (0..1)


def refine_posteriors(
    post: np.ndarray,
    image: np.ndarray,
    options: RefineOptions | None = None,
) -> np.ndarray:
    """Refine normalised posteriors ``post`` (C, X, Y, Z; channel 0 background) **in place**
    given the ``image`` (X, Y, Z) on the same grid, and return them (module docstring).
    The 1 GB of posteriors of a head is never copied: voxels are gathered channel by channel."""
    opts = options or RefineOptions()
    if post.shape[1:] != image.shape:
        raise ValueError(f'posteriors {post.shape[1:]} and image {image.shape} differ in shape')
    fg = post[0] < opts.background
    n_brain = post.shape[0] - 1
    top = min(opts.top, n_brain)
    brain = np.empty((int(fg.sum()), n_brain), dtype=np.float32)  # (N, C-1): rows contiguous
    for c in range(n_brain):
        brain[:, c] = post[c + 1][fg]
    rows = np.arange(brain.shape[0])
    idx = np.empty((top, brain.shape[0]), dtype=np.intp)
    prior = np.empty((top, brain.shape[0]), dtype=np.float32)
    for k in range(top):  # the top labels, one argmax at a time (cheaper than a partition)
        idx[k] = brain.argmax(axis=1)
        prior[k] = brain[rows, idx[k]]
        brain[rows, idx[k]] = -1.0
    del brain
    keep = 1.0 - post[0][fg]
    x = image[fg].astype(np.float32)
    q = prior / np.maximum(prior.sum(0, keepdims=True), 1e-12)
    flat_idx = idx.ravel()
    for _ in range(opts.iterations):
        mu, var = _fit(flat_idx, q, x, n_brain, opts.min_variance)
        m, v = mu[idx], var[idx]
        ll = -0.5 * (x[None] - m) ** 2 / v - 0.5 * np.log(v)
        ll -= ll.max(axis=0, keepdims=True)
        q = prior * np.exp(ll)
        q /= np.maximum(q.sum(0, keepdims=True), 1e-30)
    q *= keep
    for c in range(n_brain):
        values = np.zeros(q.shape[1], dtype=np.float32)
        for k in range(top):
            hit = idx[k] == c
            values[hit] = q[k, hit]
        post[c + 1][fg] = values
    return post


def _fit(flat_idx: np.ndarray, q: np.ndarray, x: np.ndarray, n: int, floor: float):
    """Per-label weighted mean and variance of ``x`` (weights ``q``, labels ``flat_idx``)."""
    w = q.ravel().astype(np.float64)
    xx = np.broadcast_to(x, q.shape).ravel().astype(np.float64)
    s0 = np.bincount(flat_idx, w, minlength=n)
    s1 = np.bincount(flat_idx, w * xx, minlength=n)
    s2 = np.bincount(flat_idx, w * xx * xx, minlength=n)
    safe = np.maximum(s0, 1e-6)
    mu = s1 / safe
    var = np.maximum(s2 / safe - mu**2, floor)
    # a label (almost) absent from the image learns nothing: give it the whole image's model,
    # not a needle at 0 that would pull in every dark voxel where it has any prior at all
    absent = s0 < MIN_WEIGHT
    if absent.any() and x.size:
        mu[absent] = float(x.mean())
        var[absent] = max(float(x.var()), floor)
    return mu.astype(np.float32), var.astype(np.float32)
