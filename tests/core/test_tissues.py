"""GM/WM/CSF maps from SynthSeg posteriors (synthbids.core.tissues, segment(tissues=True))."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from synthbids.core import labels as L
from synthbids.core.geometry import Grid
from synthbids.core.segment import load_seg_model, segment
from synthbids.core.tissues import (
    TISSUE_NAMES,
    on_grid,
    tissue_dseg,
    tissue_index,
    tissue_probabilities,
)


def test_every_segmentation_label_has_the_expected_tissue():
    assert TISSUE_NAMES == ('GM', 'WM', 'CSF')
    expected = {
        1: (3, 42, 8, 47, 10, 49, 11, 50, 12, 51, 13, 52, 17, 53, 18, 54, 26, 58, 1035, 2002),
        2: (2, 41, 7, 46, 16, 28, 60),
        3: (4, 43, 5, 44, 14, 15, 24),
        0: (0, 511, 515),  # background, scalp, bone: no brain tissue
    }
    for index, labels in expected.items():
        assert [tissue_index(v) for v in labels] == [index] * len(labels)
    # every SynthSeg label but the background is one of the three
    assert all(tissue_index(v) > 0 for v in L.SEG_LABELS_V2 if v)


def test_probabilities_are_sums_of_posteriors_and_dseg_their_argmax():
    rng = np.random.default_rng(0)
    labels = L.SEG_LABELS_V2
    post = rng.random((4, 5, 6, len(labels))).astype(np.float32)
    post /= post.sum(-1, keepdims=True)
    probs = tissue_probabilities(post, labels)
    for index, name in enumerate(TISSUE_NAMES, start=1):
        frames = [f for f, v in enumerate(labels) if tissue_index(v) == index]
        np.testing.assert_allclose(probs[..., index - 1], post[..., frames].sum(-1), rtol=1e-5)
    np.testing.assert_allclose(probs.sum(-1) + post[..., 0], 1.0, rtol=1e-5)
    dseg = tissue_dseg(probs)
    full = np.concatenate([post[..., :1], probs], -1)
    assert (dseg == full.argmax(-1)).all() and dseg.dtype == np.uint8
    with pytest.raises(ValueError, match='do not match'):
        tissue_probabilities(post[..., :5], labels)


def test_on_grid_copies_exactly_when_grids_differ_by_a_flip():
    probs = np.random.default_rng(1).random((6, 7, 8, 3)).astype(np.float32)
    src = Grid(probs.shape[:3], np.diag([1.0, 1, 1, 1]))
    flipped = np.diag([-1.0, 1, 1, 1])
    flipped[0, 3] = 5
    out = on_grid(probs, src, Grid(probs.shape[:3], flipped))
    np.testing.assert_array_equal(out, probs[::-1])


def test_segment_tissues_match_the_summed_posteriors(tiny_seg_models, make_nifti):
    model = load_seg_model(tiny_seg_models)
    path = make_nifti(shape=(40, 48, 36), zooms=(1.2, 1.0, 1.3))
    full = segment(path, model, posteriors=True, tissues=True)
    expected = tissue_probabilities(full.posteriors, full.posterior_labels)
    assert full.tissues.shape == full.posteriors.shape[:3] + (3,)
    np.testing.assert_allclose(full.tissues, expected, atol=1e-5)
    assert full.tissues.max() > 0.5  # the banded network does find tissue
    # without the posteriors, the same maps (and no 33-frame array is kept)
    lean = segment(path, model, tissues=True)
    assert lean.posteriors is None
    np.testing.assert_allclose(lean.tissues, full.tissues, atol=1e-6)
    np.testing.assert_array_equal(lean.posteriors_affine, full.posteriors_affine)


def test_synthseg_interface_writes_tissue_maps_on_the_input_grid(
    tiny_seg_models, make_nifti, tmp_path
):
    from synthbids.interfaces.synthseg import SynthSeg

    path = make_nifti(shape=(40, 48, 36), zooms=(1.2, 1.0, 1.3))
    node = SynthSeg(in_file=str(path), model=str(tiny_seg_models), tissues=True)
    res = node.run(cwd=str(tmp_path))
    out = res.outputs
    src = nib.load(path)
    dseg = nib.load(out.out_tissue_dseg)
    assert dseg.shape == src.shape and np.allclose(dseg.affine, src.affine)
    assert dseg.get_data_dtype() == np.uint8
    probs = np.stack([nib.load(p).get_fdata() for p in out.out_tissue_probseg], -1)
    assert [p.rsplit('label-', 1)[1][:3].rstrip('_') for p in out.out_tissue_probseg] == [
        'GM',
        'WM',
        'CSF',
    ]
    assert probs.shape == src.shape + (3,) and probs.min() >= 0 and probs.max() <= 1
    assert (tissue_dseg(probs.astype(np.float32)) == np.asarray(dseg.dataobj)).mean() > 0.99
