"""Intensity refinement of SynthSeg posteriors (``core/seg_refine.py``): blurred priors become
sharp labels where the image has contrast, and stay as they were where it has none."""

import numpy as np
import pytest
from scipy import ndimage

from synthbids.core.seg_refine import RefineOptions, refine_posteriors


def _dice(a, b):
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def phantom(contrast=0.4, noise=0.03, seed=0):
    """Background, a 'white matter' ball inside a 'cortex' ball, and a third label (never
    present) with a little prior everywhere; posteriors blurred by 4 voxels, as a network on a
    coarse grid draws them. Returns (posteriors (4, X, Y, Z), image, truth labels)."""
    rng = np.random.default_rng(seed)
    shape = (48, 48, 48)
    r = np.linalg.norm(np.indices(shape) - 23.5, axis=0)
    # a wavy inner boundary: the detail a blurred prior cannot follow
    theta = np.arctan2(*(np.indices(shape)[:2] - 23.5))
    truth = np.zeros(shape, np.int64)
    truth[r < 20] = 1
    truth[r < 13 + 2.5 * np.sin(6 * theta)] = 2
    image = np.choose(truth, [0.0, 0.5 - contrast / 2, 0.5 + contrast / 2])
    image = (image + rng.normal(0, noise, shape)).astype(np.float32)
    post = np.stack(
        [ndimage.gaussian_filter((truth == k).astype(np.float32), 4) for k in range(3)]
    )
    post = np.concatenate([post, np.full((1, *shape), 0.02, np.float32)])
    post[0] = np.where(truth == 0, np.maximum(post[0], 0.9995), post[0])  # clear background
    post /= post.sum(0, keepdims=True)
    return post.astype(np.float32), image, truth


def test_contrast_sharpens_blurred_labels():
    post, image, truth = phantom()
    before = np.argmax(post, 0)
    after = np.argmax(refine_posteriors(post.copy(), image), 0)
    dice = {
        label: (_dice(before == label, truth == label), _dice(after == label, truth == label))
        for label in (1, 2)
    }
    # the wavy inner boundary is drawn from the image; the outer one is the background's,
    # which keeps the network's probability, so only the inner half of label 1 sharpens
    assert dice[2][1] > 0.97 and dice[2][1] > dice[2][0] + 0.05, dice
    assert dice[1][1] > dice[1][0] + 0.05, dice
    assert not (after == 3).any()  # the absent label takes no voxel


def test_no_contrast_leaves_the_prior_in_charge():
    """Equal intensities (CT's grey and white matter): the network's labels are kept."""
    post, _, _ = phantom()
    image = np.random.default_rng(1).normal(0.5, 0.03, post.shape[1:]).astype(np.float32)
    after = refine_posteriors(post.copy(), image)
    assert (np.argmax(after, 0) == np.argmax(post, 0)).mean() > 0.99


def test_in_place_normalised_and_background_kept():
    post, image, _ = phantom()
    work = post.copy()
    out = refine_posteriors(work, image, RefineOptions(iterations=2))
    assert out is work
    np.testing.assert_array_equal(out[0], post[0])
    np.testing.assert_allclose(out.sum(0), 1, atol=1e-5)
    assert out.min() >= 0
    fg = post[0] < 0.999
    # at most ``top`` brain labels survive per voxel
    assert ((out[1:, fg] > 0).sum(0) <= RefineOptions().top).all()
    untouched = ~fg
    np.testing.assert_array_equal(out[:, untouched], post[:, untouched])


def test_absent_label_does_not_grab_dark_voxels():
    """A label with (almost) no posterior mass gets the image's overall model, not a needle
    at its few voxels' intensity."""
    post, image, truth = phantom()
    post[3] = 1e-6
    post[3, 24, 24, 24] = 0.5  # a lone bright voxel with some prior for label 3
    post /= post.sum(0, keepdims=True)
    after = np.argmax(refine_posteriors(post.copy(), image), 0)
    assert (after == 3).sum() <= 1


def test_shape_mismatch_is_an_error():
    post, image, _ = phantom()
    with pytest.raises(ValueError, match='differ in shape'):
        refine_posteriors(post, image[:-1])
