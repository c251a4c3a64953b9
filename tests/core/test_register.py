"""Registration through tissue probabilities (synthbids.core.register) on a synthetic head:
a known affine and warp are recovered, the inverse undoes the forward, and resampling
through a registration agrees with the point mapping."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from synthbids.core import register as R
from synthbids.core import register_apply as A
from synthbids.core.tissues import tissue_dseg
from tests.registration_cases import KnownWarp, boundary_points, mapping_error


def _phantom(shape=(72, 84, 72), spacing=2.0):
    """GM/WM/CSF probabilities of an asymmetric synthetic 'brain' (2 mm grid, RAS)."""
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = -np.array(shape) * spacing / 2
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing='ij'), -1)
    p = ijk @ affine[:3, :3].T + affine[:3, 3]

    def ellipsoid(centre, radii):
        return (((p - centre) / radii) ** 2).sum(-1)

    outer = ellipsoid([0, 0, 0], [62, 78, 58])
    wm = ellipsoid([0, -5, 6], [42, 58, 36]) < 1
    brain = outer < 1
    csf = (ellipsoid([10, 8, 10], [6, 22, 9]) < 1) | (ellipsoid([-12, 2, 12], [5, 16, 7]) < 1)
    csf |= (outer >= 0.85) & brain
    gm = brain & ~wm & ~csf
    wm &= ~csf
    # a few 'gyri': WM fingers into the GM, so there is detail for the warp to align
    for k, angle in enumerate(np.linspace(0, 2 * np.pi, 7, endpoint=False)):
        tip = np.array([50 * np.cos(angle), 64 * np.sin(angle), 20 + 4 * (k % 3)])
        finger = ellipsoid(tip * 0.85, [8, 8, 14]) < 1
        wm |= finger & brain & ~csf
        gm &= ~(finger & ~csf)
    probs = np.stack([gm, wm, csf], -1).astype(np.float32)
    probs = np.stack([ndimage.gaussian_filter(probs[..., c], 0.7) for c in range(3)], -1)
    return probs, affine, brain


@pytest.fixture(scope='module')
def case():
    probs, affine, brain = _phantom()
    known = KnownWarp(probs.shape[:3], affine, seed=3)
    moving = known.pull(probs, affine)
    reg = R.register(moving, affine, probs, affine)
    return probs, affine, moving, known, reg, boundary_points(probs, affine)


def test_known_affine_and_warp_are_recovered(case):
    _, _, _, known, reg, points = case
    before = mapping_error(known, lambda p: p, points).mean()
    affine_only = mapping_error(
        known, lambda p: p @ reg.affine[:3, :3].T + reg.affine[:3, 3], points
    )
    full = mapping_error(known, reg.template_to_subject, points)
    assert before > 8.0  # the case is not trivial
    # smooth synthetic surfaces leave sliding along them unobservable: the realistic bound
    # (Colin27, through the segmentation) is measured in tests/integration/test_template_space.py
    assert full.mean() < 1.5, (before, affine_only.mean(), full.mean())
    assert full.mean() < 0.85 * affine_only.mean()  # the warp adds what the affine cannot
    assert np.percentile(full, 95) < 3.0


def test_inverse_undoes_forward(case):
    _, _, _, _, reg, points = case
    back = reg.subject_to_template(reg.template_to_subject(points))
    assert np.linalg.norm(back - points, axis=1).mean() < 0.3


def test_resampling_agrees_with_point_mapping(case):
    probs, affine, moving, _, reg, _ = case
    # the subject's maps brought into template space match the template's own
    std = A.to_template(moving, affine, reg, probs.shape[:3], affine)
    labels_fixed, labels_std = tissue_dseg(probs), tissue_dseg(std)
    for index in (1, 2, 3):
        a, b = labels_fixed == index, labels_std == index
        dice = 2 * (a & b).sum() / (a.sum() + b.sum())
        assert dice > 0.85, (index, dice)
    # and back into the subject's space (nearest neighbour keeps integer labels)
    back = A.to_subject(labels_std, affine, reg, probs.shape[:3], affine, order=0)
    assert back.dtype == labels_std.dtype
    agree = (back == tissue_dseg(moving))[tissue_dseg(moving) > 0].mean()
    assert agree > 0.85


def test_affine_only_option():
    probs, affine, _ = _phantom((48, 56, 48), 3.0)
    known = KnownWarp(probs.shape[:3], affine, seed=5, warp_mm=0.0)
    moving = known.pull(probs, affine)
    reg = R.register(moving, affine, probs, affine, R.Options(nonlinear=False))
    assert reg.field is None and reg.inverse_field is None
    points = boundary_points(probs, affine)
    assert mapping_error(known, reg.template_to_subject, points).mean() < 1.0


def test_mismatched_classes_and_empty_maps_are_refused():
    probs, affine, _ = _phantom((24, 28, 24), 6.0)
    with pytest.raises(ValueError, match='same tissue classes'):
        R.register(probs[..., :2], affine, probs, affine)
    with pytest.raises(ValueError, match='empty'):
        R.register(np.zeros_like(probs), affine, probs, affine)
