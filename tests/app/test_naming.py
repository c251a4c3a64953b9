"""Derivative names: entities kept, space-<suffix> for non-T1w, all accepted by the schema."""

from __future__ import annotations

import pytest

from synthbids.bids.naming import (
    SourceImage,
    build_name,
    derivative_name,
    derivative_relpath,
    figure_relpath,
    parse_name,
)
from tests.app.bids_schema import is_valid_name


def test_parse_and_build_round_trip():
    entities, suffix, ext = parse_name('sub-01_ses-a_acq-fast_run-2_T2w.nii.gz')
    assert entities == {'sub': '01', 'ses': 'a', 'acq': 'fast', 'run': '2'}
    assert (suffix, ext) == ('T2w', '.nii.gz')
    # schema order regardless of the order given
    assert build_name({'run': '2', 'sub': '01', 'desc': 'x', 'acq': 'y'}, 'mask', '.json') == (
        'sub-01_acq-y_run-2_desc-x_mask.json'
    )
    with pytest.raises(ValueError, match='not key-value'):
        parse_name('sub-01_bad_T1w.nii.gz')


@pytest.mark.parametrize(
    ('relpath', 'prefix'),
    [
        ('sub-01/anat/sub-01_T1w.nii.gz', 'sub-01/anat/sub-01_'),
        ('sub-01/anat/sub-01_T2w.nii.gz', 'sub-01/anat/sub-01_space-T2w_'),
        (
            'sub-02/ses-pre/anat/sub-02_ses-pre_acq-mp2_ce-gd_rec-norm_run-3_T1w.nii.gz',
            'sub-02/ses-pre/anat/sub-02_ses-pre_acq-mp2_ce-gd_rec-norm_run-3_',
        ),
        ('sub-03/anat/sub-03_FLAIR.nii', 'sub-03/anat/sub-03_space-FLAIR_'),
        ('sub-03/anat/sub-03_PDw.nii.gz', 'sub-03/anat/sub-03_space-PDw_'),
        ('sub-03/anat/sub-03_T2starw.nii.gz', 'sub-03/anat/sub-03_space-T2starw_'),
    ],
)
def test_every_derivative_name_is_valid_bids(relpath, prefix):
    image = SourceImage.from_relpath(relpath)
    names = [
        derivative_name(image, suffix='mask', extension='.nii.gz', desc='brain'),
        derivative_name(image, suffix=image.suffix, extension='.nii.gz', desc='brain'),
        derivative_name(image, suffix='dseg', extension='.nii.gz', desc='aseg'),
        derivative_name(image, suffix='dseg', extension='.nii.gz', desc='aparcaseg'),
        derivative_name(image, suffix='probseg', extension='.nii.gz', desc='aseg'),
    ]
    for name in names:
        rel = derivative_relpath(image, name)
        assert rel.startswith(prefix)
        assert is_valid_name(rel), rel
        assert is_valid_name(rel.replace('.nii.gz', '.json')), rel
    # tables are not in the schema: listed in .bidsignore instead
    table = derivative_relpath(
        image, derivative_name(image, suffix='volumes', extension='.tsv', desc='aseg')
    )
    assert table.endswith('desc-aseg_volumes.tsv') and not is_valid_name(table)


def test_t1w_and_t2w_of_one_session_never_collide():
    t1 = SourceImage.from_relpath('sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz')
    t2 = SourceImage.from_relpath('sub-01/ses-1/anat/sub-01_ses-1_T2w.nii.gz')
    for kwargs in ({'suffix': 'mask', 'desc': 'brain'}, {'suffix': 'dseg', 'seg': 'aseg'}):
        assert derivative_name(t1, extension='.nii.gz', **kwargs) != derivative_name(
            t2, extension='.nii.gz', **kwargs
        )
    assert figure_relpath(t2, 'brainmask') == (
        'sub-01/figures/sub-01_ses-1_desc-brainmask_T2w.svg'
    )


def test_pet_derivatives_go_to_the_pet_folder():
    pet = SourceImage.from_relpath('sub-01/pet/sub-01_trc-FDG_pet.nii.gz')
    name = derivative_name(pet, suffix='pet', extension='.nii.gz', desc='brain')
    assert (
        derivative_relpath(pet, name)
        == 'sub-01/pet/sub-01_trc-FDG_space-pet_desc-brain_pet.nii.gz'
    )
    assert is_valid_name(derivative_relpath(pet, name))


def test_names_come_from_the_path_in_the_dataset_not_the_link_target(tmp_path):
    """DataLad/git-annex links point into .git/annex/objects; a dataset may be reached
    through a linked folder; neither changes where an image is in the dataset."""
    import os

    root = tmp_path / 'ds'
    key = 'SHA256E-s10--0a1b.nii.gz'
    obj = root / '.git/annex/objects/Ab/Cd' / key / key
    obj.parent.mkdir(parents=True)
    obj.write_bytes(b'0123456789')
    link = root / 'sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz'
    link.parent.mkdir(parents=True)
    link.symlink_to(os.path.relpath(obj, link.parent))
    (tmp_path / 'alias').symlink_to(root)
    for path, base in [(link, root), (tmp_path / 'alias' / link.relative_to(root), root)]:
        image = SourceImage.from_path(path, base)
        assert image.relpath == 'sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz'
        assert (image.subject, image.session, image.datatype) == ('01', '1', 'anat')
    with pytest.raises(ValueError, match='not inside the dataset'):
        SourceImage.from_path(obj, tmp_path / 'elsewhere')


def test_head_outputs_names_and_what_the_schema_says():
    """The head labels are a valid BIDS dseg (top-level lookup table included); the surface
    meshes follow BIDS' surface naming (the surface as suffix) but BIDS 1.10 has no rule for
    head meshes, nor for STL: they are listed in .bidsignore, as the volume tables are."""
    from fnmatch import fnmatch

    from synthbids.bids.dataset import BIDSIGNORE

    image = SourceImage.from_relpath('sub-01/ses-1/anat/sub-01_ses-1_T2w.nii.gz')
    dseg = derivative_relpath(
        image, derivative_name(image, suffix='dseg', extension='.nii.gz', desc='head')
    )
    assert dseg == 'sub-01/ses-1/anat/sub-01_ses-1_space-T2w_desc-head_dseg.nii.gz'
    assert is_valid_name(dseg) and is_valid_name(dseg.replace('.nii.gz', '.json'))
    assert is_valid_name('desc-head_dseg.tsv')
    for ext in ('.surf.gii', '.stl'):
        mesh = derivative_relpath(
            image, derivative_name(image, suffix='outerskull', extension=ext, desc='head')
        )
        assert mesh == f'sub-01/ses-1/anat/sub-01_ses-1_space-T2w_desc-head_outerskull{ext}'
        assert parse_name(mesh)[1:] == ('outerskull', ext)
        assert not is_valid_name(mesh)
        assert any(fnmatch(f'/out/{mesh}', pattern) for pattern in BIDSIGNORE)
    assert not any(fnmatch(f'/out/{dseg}', pattern) for pattern in BIDSIGNORE)
