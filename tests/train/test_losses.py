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
