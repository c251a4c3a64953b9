"""Selecting images with pybids: labels, sessions, filters, clear errors, light validation."""

from __future__ import annotations

import json

import pytest

from synthbids.bids.layout import (
    FilterError,
    FilterFileError,
    NoInputError,
    ValidationError,
    check_dataset,
    collect_images,
    load_filters,
    strip_prefix,
    validate_selection,
)
from tests.app.conftest import write_dataset

IMAGES = (
    'sub-01/anat/sub-01_T1w.nii.gz',
    'sub-01/anat/sub-01_acq-fast_T1w.nii.gz',
    'sub-01/anat/sub-01_FLAIR.nii.gz',
    'sub-02/ses-a/anat/sub-02_ses-a_T1w.nii.gz',
    'sub-02/ses-b/anat/sub-02_ses-b_T2w.nii.gz',
    'sub-02/ses-b/anat/sub-02_ses-b_T2starw.nii.gz',
    'sub-03/anat/sub-03_PDw.nii.gz',
    'sub-03/pet/sub-03_trc-FDG_pet.nii.gz',
    'sub-03/ct/sub-03_ct.nii.gz',  # no CT datatype in BIDS 1.10 yet: indexed where present
)


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    root = write_dataset(tmp_path_factory.mktemp('layout') / 'bids', images=IMAGES)
    (root / 'sub-01/func').mkdir()
    (root / 'sub-01/func/sub-01_task-rest_bold.nii.gz').write_bytes(b'')
    (root / 'derivatives/other/sub-01/anat').mkdir(parents=True)
    (root / 'derivatives/other/sub-01/anat/sub-01_T1w.nii.gz').write_bytes(b'')
    return root


def rels(found):
    return {k: [im.relpath for im in v] for k, v in found.items()}


def test_every_anatomical_image_of_every_participant(dataset):
    found = rels(collect_images(dataset))
    assert found == {
        '01': [
            'sub-01/anat/sub-01_T1w.nii.gz',
            'sub-01/anat/sub-01_acq-fast_T1w.nii.gz',
            'sub-01/anat/sub-01_FLAIR.nii.gz',
        ],
        '02': [
            'sub-02/ses-a/anat/sub-02_ses-a_T1w.nii.gz',
            'sub-02/ses-b/anat/sub-02_ses-b_T2w.nii.gz',
            'sub-02/ses-b/anat/sub-02_ses-b_T2starw.nii.gz',
        ],
        '03': [
            'sub-03/anat/sub-03_PDw.nii.gz',
            'sub-03/pet/sub-03_trc-FDG_pet.nii.gz',
            'sub-03/ct/sub-03_ct.nii.gz',
        ],
    }


def test_labels_sessions_and_filters(dataset, tmp_path):
    assert rels(collect_images(dataset, participant_label=['02'], session_label=['b'])) == {
        '02': [
            'sub-02/ses-b/anat/sub-02_ses-b_T2w.nii.gz',
            'sub-02/ses-b/anat/sub-02_ses-b_T2starw.nii.gz',
        ]
    }
    # files without a session stay selected when filtering by session (execution spec)
    assert '01' in collect_images(dataset, session_label=['b'])
    filters = {'t1w': {'acquisition': None}, 'flair': {'acquisition': 'nope'}}
    found = rels(collect_images(dataset, participant_label=['01'], filters=filters))
    assert found == {'01': ['sub-01/anat/sub-01_T1w.nii.gz']}
    found = rels(
        collect_images(dataset, participant_label=['01'], filters={'t1w': {'acquisition': '*'}})
    )
    assert found['01'][0] == 'sub-01/anat/sub-01_acq-fast_T1w.nii.gz'


def test_a_database_folder_is_created_and_reused(dataset, tmp_path):
    db = tmp_path / 'db'
    first = collect_images(dataset, participant_label=['01'], database_dir=db)
    (index,) = db.iterdir()
    mtime = next(index.glob('*.sqlite')).stat().st_mtime_ns
    assert rels(collect_images(dataset, participant_label=['01'], database_dir=db)) == rels(first)
    assert next(index.glob('*.sqlite')).stat().st_mtime_ns == mtime  # reused, not rebuilt
    # another selection gets its own index (no stale subjects, no shared SQLite lock)
    assert '02' in collect_images(dataset, participant_label=['02'], database_dir=db)
    assert len(list(db.iterdir())) == 2


def test_clear_errors_when_nothing_is_selected(dataset):
    with pytest.raises(FilterError, match='participant label.*not found.*sub-09') as err:
        collect_images(dataset, participant_label=['01', '09'])
    assert err.value.exit_code == 18
    with pytest.raises(FilterError, match='no images to process.*session'):
        collect_images(
            dataset,
            participant_label=['03'],
            session_label=['zz'],
            filters={'pdw': {'run': '7'}, 'pet': {'run': '7'}, 'ct': {'run': '7'}},
        )


def test_filter_file(tmp_path):
    path = tmp_path / 'f.json'
    path.write_text(json.dumps({'t1w': {'acquisition': 'mprage'}}))
    assert load_filters(path) == {'t1w': {'acquisition': 'mprage'}}
    path.write_text(json.dumps({'bold': {}}))
    with pytest.raises(FilterFileError, match='unknown filter key.*bold'):
        load_filters(path)
    path.write_text(json.dumps({'t1w': {'acquisition': 'mprage'}, 't2w': {'acq': 'fast'}}))
    with pytest.raises(FilterFileError) as err:  # one line a user can act on
        load_filters(path)
    message = str(err.value)
    assert message.startswith(f'{path}: unknown entity \'acq\' in the "t2w" filter (did you ')
    assert "mean 'acquisition'?); valid entities (pybids names): acquisition, ceagent," in message
    assert 'invalid_filters' not in message and len(message.splitlines()) == 1
    path.write_text(json.dumps({'t1w': {'resolution': '1'}}))
    with pytest.raises(FilterFileError, match="unknown entity 'resolution'.* valid entities"):
        load_filters(path)
    path.write_text('{not json')
    with pytest.raises(FilterFileError, match='not a valid JSON'):
        load_filters(path)
    with pytest.raises(FilterFileError, match='no such'):
        load_filters(tmp_path / 'missing.json')


def test_dataset_checks_and_validation(tmp_path, dataset):
    with pytest.raises(NoInputError, match='not found'):
        check_dataset(tmp_path / 'nope')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(NoInputError, match='no dataset_description.json'):
        check_dataset(tmp_path / 'empty')
    validate_selection(dataset, [im for v in collect_images(dataset).values() for im in v])

    bad = write_dataset(tmp_path / 'bad', images=('sub-01/anat/sub-01_acq_T1w.nii.gz',))
    with pytest.raises(ValidationError, match="'acq' is not key-value") as err:
        collect_images(bad)
    assert err.value.exit_code == 16
    with pytest.raises(FilterError):  # skipped with a warning: nothing left
        collect_images(bad, strict=False)

    bad = write_dataset(tmp_path / 'bad2', images=('sub-01/anat/sub-01_foo-1_T1w.nii.gz',))
    (bad / 'dataset_description.json').write_text('{"Name": "x"}')
    images = [im for v in collect_images(bad).values() for im in v]
    with pytest.raises(ValidationError, match='BIDSVersion.*not a valid BIDS file name') as err:
        validate_selection(bad, images)
    assert err.value.exit_code == 16


def test_prefixes_are_stripped():
    assert strip_prefix(['sub-01', '02', 'sub-01', ' 03 '], 'sub-') == ('01', '02', '03')
