"""Training losses: values at the extremes and masking by the valid-voxel weight."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from synthbids.train.tasks import cross_entropy, soft_dice


def _onehot(target, n):
    return F.one_hot(target, n).permute(0, 4, 1, 2, 3).float()


def test_perfect_and_uniform_predictions():
    target = torch.randint(0, 4, (1, 6, 6, 6), generator=torch.Generator().manual_seed(0))
    weight = torch.ones(1, 6, 6, 6)
    perfect = _onehot(target, 4)
    assert cross_entropy(perfect, target, weight) < 1e-5
    assert soft_dice(perfect, target, weight) < 1e-5
    uniform = torch.full((1, 4, 6, 6, 6), 0.25)
    assert math.isclose(float(cross_entropy(uniform, target, weight)), math.log(4), rel_tol=1e-5)
    assert soft_dice(uniform, target, weight) > 0.4


def test_masked_voxels_do_not_count():
    target = torch.zeros(1, 4, 4, 4, dtype=torch.long)
    prob = _onehot(target, 3)
    prob[:, :, :2] = torch.tensor([0.0, 0.0, 1.0])[:, None, None, None]  # wrong in half
    weight = torch.ones(1, 4, 4, 4)
    assert cross_entropy(prob, target, weight) > 5
    weight[:, :2] = 0  # ... the half that is outside the field of view
    assert cross_entropy(prob, target, weight) < 1e-5
    assert soft_dice(prob, target, weight) < 0.7  # absent classes score 0 but add no gradient


def _soft_dice_onehot(prob, target, weight, eps=1e-7):
    """The definition, with the one-hot target built."""
    onehot = _onehot(target, prob.shape[1]).to(prob)
    w = weight[:, None].to(prob)
    dims = (0, 2, 3, 4)
    inter = (prob * onehot * w).sum(dims)
    denom = ((onehot**2) * w).sum(dims) + ((prob**2) * w).sum(dims)
    return 1 - (2 * inter / (denom + eps)).mean()


def test_soft_dice_equals_its_one_hot_definition_with_gradients():
    gen = torch.Generator().manual_seed(1)
    target = torch.randint(0, 7, (2, 9, 8, 7), generator=gen)
    target[target == 5] = 6  # a class absent from the target
    weight = (torch.rand(2, 9, 8, 7, generator=gen) > 0.3).float()
    logits = torch.randn(2, 7, 9, 8, 7, generator=gen, dtype=torch.float64)
    values, grads = [], []
    for loss in (soft_dice, _soft_dice_onehot):
        x = logits.clone().requires_grad_()
        value = loss(torch.softmax(x, 1), target, weight)
        value.backward()
        values.append(value.detach())
        grads.append(x.grad)
    torch.testing.assert_close(values[0], values[1], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-10, atol=1e-12)
    assert grads[0].abs().max() > 0
