"""Template space on Colin27, as a user gets it: registration accuracy through the packaged
segmentation weights (a known random affine + warp, on the T1w and on a contrast-inverted
copy), and ``synthbids ds out participant --output-spaces MNIColin27`` with a TemplateFlow
home built for the test (``tests/tplhome.py``; nothing is downloaded).

Colin27 comes from Debian's mricron-data: without it the tests skip, except in CI.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from synthbids.core import register as R
from synthbids.core import register_apply as A
from synthbids.core.geometry import Grid
from synthbids.core.tissues import on_grid
from tests.registration_cases import KnownWarp, boundary_points, mapping_error

#: The issue's bounds: mean label-boundary error, template-space brain-mask overlap (measured
#: 2026-11-25 with the packaged weights and their default intensity refinement: 0.60 and 0.70 mm).
MAX_BOUNDARY_ERROR_MM = {'T1w': 1.5, 'inverted': 1.5}
MIN_MASK_DICE = 0.95


def _tissues(path, model):
    from synthbids.core.segment import segment

    result = segment(path, model, tissues=True)
    img = nib.load(path)
    source = Grid(result.tissues.shape[:3], result.posteriors_affine)
    return on_grid(result.tissues, source, Grid(img.shape[:3], img.affine))


@pytest.fixture(scope='module')
def colin(ch2, ch2bet, tmp_path_factory):
    """Colin27, its brain mask, a known deformation, the deformed T1w and its inverted copy,
    and the packaged segmentation's tissue maps of all three."""
    from synthbids.core.segment import load_seg_model

    tmp = tmp_path_factory.mktemp('colin')
    t1 = nib.load(ch2)
    image, affine = t1.get_fdata().astype(np.float32), t1.affine
    mask = nib.load(ch2bet).get_fdata() > 0
    known = KnownWarp(image.shape, affine, seed=0)
    warped = known.pull(image, affine)
    head = ndimage.binary_fill_holes(ndimage.binary_closing(warped > 20, iterations=3))
    inverted = np.where(head, warped[head].max() - warped, 0).astype(np.float32)
    model = load_seg_model(warn=False)
    maps = {'template': _tissues(ch2, model)}
    for name, data in (('T1w', warped), ('inverted', inverted)):
        path = tmp / f'{name}.nii.gz'
        nib.save(nib.Nifti1Image(data, affine), path)
        maps[name] = _tissues(path, model)
    return {'affine': affine, 'mask': mask, 'known': known, 'maps': maps}


@pytest.mark.parametrize('contrast', ['T1w', 'inverted'])
def test_known_deformation_is_recovered_through_the_segmentation(colin, contrast):
    affine, known, maps = colin['affine'], colin['known'], colin['maps']
    reg = R.register(maps[contrast], affine, maps['template'], affine)
    points = boundary_points(maps['template'], affine)
    before = mapping_error(known, lambda p: p, points).mean()
    error = mapping_error(known, reg.template_to_subject, points)
    print(f'{contrast}: boundary error {before:.2f} -> {error.mean():.2f} mm (mean)')
    assert before > 8
    assert error.mean() < MAX_BOUNDARY_ERROR_MM[contrast]
    # the subject's own brain mask (the template's, deformed) lands on the template's
    subject_mask = known.pull(colin['mask'].astype(np.float32), affine) >= 0.5
    shape = colin['mask'].shape
    std = A.to_template(subject_mask.astype(np.float32), affine, reg, shape, affine) >= 0.5
    dice = 2 * (std & colin['mask']).sum() / (std.sum() + colin['mask'].sum())
    assert dice >= MIN_MASK_DICE, dice


def test_participant_run_writes_transforms_and_template_space_outputs(colin27_template_run):
    from synthbids.core.xfm_itk import read_itk_h5

    _, out, home = colin27_template_run
    anat = out / 'sub-01' / 'anat'
    names = sorted(p.name for p in anat.iterdir())
    for name in (
        'sub-01_from-T1w_to-MNIColin27_mode-image_xfm.h5',
        'sub-01_from-MNIColin27_to-T1w_mode-image_xfm.h5',
        'sub-01_dseg.nii.gz',
        'sub-01_label-GM_probseg.nii.gz',
        'sub-01_space-MNIColin27_desc-brain_mask.nii.gz',
        'sub-01_space-MNIColin27_dseg.nii.gz',
        'sub-01_space-MNIColin27_label-CSF_probseg.nii.gz',
        'sub-01_space-MNIColin27_res-2_desc-brain_mask.nii.gz',
        'sub-01_space-MNIColin27_res-2_label-WM_probseg.nii.gz',
    ):
        assert name in names, name
    assert (out / 'sub-01' / 'figures' / 'sub-01_space-MNIColin27_T1w.svg').is_file()
    assert len(read_itk_h5(anat / 'sub-01_from-T1w_to-MNIColin27_mode-image_xfm.h5')) == 2
    # template-space outputs lie on the template's grids, with the standard-space codes
    tpl = home / 'tpl-MNIColin27'
    for res, name in (('01', 'sub-01_space-MNIColin27'), ('02', 'sub-01_space-MNIColin27_res-2')):
        ref = nib.load(tpl / f'tpl-MNIColin27_res-{res}_T1w.nii.gz')
        mask = nib.load(anat / f'{name}_desc-brain_mask.nii.gz')
        assert mask.shape == ref.shape and np.allclose(mask.affine, ref.affine)
        assert int(mask.header['sform_code']) == 4
        tmask = np.asarray(
            nib.load(tpl / f'tpl-MNIColin27_res-{res}_desc-brain_mask.nii.gz').dataobj
        )
        ours = np.asarray(mask.dataobj) > 0
        dice = 2 * (ours & (tmask > 0)).sum() / (ours.sum() + (tmask > 0).sum())
        # Colin27 registered to itself: SynthStrip's mask against the template's (ch2bet)
        assert dice > 0.9, (res, dice)
    side = json.loads((anat / 'sub-01_space-MNIColin27_res-2_dseg.json').read_text())
    assert side['Resolution'] and side['Labels']['2'] == 'WM'
    assert 'bids::sub-01/anat/sub-01_from-T1w_to-MNIColin27_mode-image_xfm.h5' in side['Sources']
    report = (out / 'sub-01.html').read_text()
    assert 'space-MNIColin27_T1w.svg' in report
    # every name is valid BIDS-Derivatives or listed in .bidsignore (transforms: *_xfm.*)
    from tests.app.bids_schema import invalid_files

    assert invalid_files(out) == []
