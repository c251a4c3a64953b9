"""``synthbids-seg --photo``, ``--autocrop`` and ``--addctab`` as a user runs them, and the
Photo-SynthSeg weights in ``synthbids-models``."""

from __future__ import annotations

import csv
import shutil

import nibabel as nib
import numpy as np
import pytest

from synthbids.cli.models import main as models_main
from synthbids.cli.seg import main
from synthbids.core import labels as L
from synthbids.core import seg_ctab as C
from synthbids.core.seg_keras import write_keras_h5
from tests.seg_fixtures import TWINS, banded_network, write_photo_lists

SINGLE = [0, 24, 2, 3, 41, 42]


def run_cli(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope='module')
def photo_folder(tmp_path_factory, tiny_seg_models):
    """The tiny official files plus Photo-SynthSeg weights and lists (both, single)."""
    folder = tmp_path_factory.mktemp('photo_cli')
    for path in tiny_seg_models.iterdir():
        shutil.copy(path, folder / path.name)
    write_keras_h5(banded_network(L.SEG_LABELS_V2, TWINS), folder / 'synthseg_photo_both_1.0.h5')
    pairs = list(L.LR_PAIRS)
    raw = [0, 14, 15, 16, 24, *[a for a, _ in pairs], *[b for _, b in pairs]]
    write_photo_lists(
        folder,
        'both',
        raw,
        [f'photo {L.name(x)}' for x in raw],
        [L.TOPOLOGY_CLASS[x] for x in raw],
    )
    write_keras_h5(banded_network(sorted(SINGLE), TWINS), folder / 'synthseg_photo_single_1.0.h5')
    write_photo_lists(
        folder, 'single', SINGLE, [f'single {x}' for x in SINGLE], [0, 0, 1, 1, 2, 2]
    )
    return folder


def read_rows(path):
    with open(path, newline='') as fh:
        return list(csv.reader(fh))


@pytest.mark.parametrize(
    ('args', 'problem'),
    [
        (['--photo', 'top'], "--photo must be left, right or both (got 'top')"),
        (['--photo', 'both', '--robust'], '--robust is not compatible with Photo-SynthSeg'),
        (['--photo', 'left', '--v1'], '--v1 is not compatible with Photo-SynthSeg (--photo)'),
        (['--photo', 'right', '--ct'], '--ct is not compatible with Photo-SynthSeg (--photo)'),
        (['--photo', 'both', '--qc', 'qc.csv'], '--qc is not compatible with Photo-SynthSeg'),
        (['--autocrop', '--crop', '64'], '--autocrop cannot be used with --crop'),
    ],
)
def test_refused_combinations(args, problem, make_nifti, photo_folder, tmp_path, capsys):
    src = make_nifti()
    code, _, err = run_cli(
        ['--i', src, '--o', tmp_path / 's.nii.gz', *args, '--model', photo_folder], capsys
    )
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith('synthbids-seg: error: ') and problem in err
    assert not (tmp_path / 's.nii.gz').exists()


def test_photo_both_writes_v1_style_volumes(make_nifti, photo_folder, tmp_path, capsys):
    src = make_nifti()
    out = tmp_path / 'out'
    code, stdout, err = run_cli(
        ['--i', src, '--o', out / 'seg.mgz', '--vol', out / 'vol.csv', '--photo', 'both',
         '--addctab', '--model', photo_folder],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert 'Photo-SynthSeg 1.0 (--photo both)' in stdout
    assert 'custom (synthseg_photo_both_1.0.h5)' in stdout
    header, row = read_rows(out / 'vol.csv')
    assert header == ['subject', *[f'photo {L.name(x)}' for x in L.SEG_LABELS_V2[1:]]]
    assert row[0] == 'img' and len(row) == len(header)
    seg = nib.load(out / 'seg.mgz')
    present = set(np.unique(np.asanyarray(seg.dataobj)))
    assert {41, 42} & present and {2, 3} & present
    table = C.read_mgh_table(out / 'seg.mgz')
    assert table is not None and present <= set(table.entries)
    assert table.entries[42] == ('Right-Cerebral-Cortex', (205, 62, 78, 0))


def test_photo_single_warns_about_parc_and_needs_its_lists(
    make_nifti, photo_folder, tmp_path, capsys
):
    src = make_nifti()
    code, _, err = run_cli(
        ['--i', src, '--o', tmp_path / 's.nii.gz', '--photo', 'left', '--parc', '--fast',
         '--vol', tmp_path / 'v.csv', '--model', photo_folder],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert 'WARNING: the flag --parc is not well tested with single hemispheres' in err
    header = read_rows(tmp_path / 'v.csv')[0]
    assert header[1:6] == [f'single {x}' for x in sorted(SINGLE)[1:]]
    assert header[6] == 'ctx-lh-bankssts' and L.TOTAL_NAME not in header
    broken = tmp_path / 'broken'
    shutil.copytree(photo_folder, broken)
    missing = broken / 'synthseg_topological_classes_photo_single_1.0.npy'
    missing.unlink()
    code, _, err = run_cli(
        ['--i', src, '--o', tmp_path / 't.nii.gz', '--photo', 'right', '--model', broken], capsys
    )
    assert code == 66 and len(err.strip().splitlines()) == 1
    assert f'{missing}: not found beside the Photo-SynthSeg weights' in err
    assert not (tmp_path / 't.nii.gz').exists()


def test_autocrop_and_addctab_on_nifti(make_nifti, photo_folder, tmp_path, capsys):
    data = np.zeros((60, 64, 56), np.int16)
    data[5:45, 10:58, 8:44] = np.asanyarray(nib.load(make_nifti()).dataobj)
    src = make_nifti('padded.nii.gz', data=data, shape=data.shape)
    code, _, err = run_cli(
        ['--i', src, '--o', tmp_path / 'seg.nii.gz', '--autocrop', '--addctab', '--fast',
         '--model', photo_folder],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert 'WARNING: --addctab: NIfTI segmentations carry no colour table' in err
    seg = np.asanyarray(nib.load(tmp_path / 'seg.nii.gz').dataobj)
    assert seg.shape == data.shape and {0, 2} <= set(np.unique(seg))


def test_models_lists_the_photo_weights_and_their_lists(
    photo_folder, tmp_path, capsys, monkeypatch
):
    assert models_main(['list']) == 0
    out = capsys.readouterr().out
    assert 'synthseg-photo-both-1.0' in out and 'synthseg_photo_single_1.0.h5' in out
    folder = tmp_path / 'models'
    folder.mkdir()
    shutil.copy(photo_folder / 'synthseg_photo_both_1.0.h5', folder)
    (folder / 'synthseg_segmentation_labels_photo_both_1.0.npy').write_bytes(b'')
    monkeypatch.setenv('SYNTHBIDS_MODELS', str(folder))
    assert models_main(['list']) == 0
    out = capsys.readouterr().out
    assert 'missing beside it: synthseg_segmentation_names_photo_both_1.0.npy, ' in out
    assert models_main(['verify', 'synthseg-photo-both-1.0']) == 1
    out = capsys.readouterr().out
    assert 'BAD synthseg-photo-both-1.0 (environment)' in out
    assert 'also needs synthseg_segmentation_names_photo_both_1.0.npy' in out
