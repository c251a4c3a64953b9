"""``synthbids-head`` as a user runs it: labels, posteriors, meshes and volumes of Colin27 (two
inputs, NIfTI and MGZ, in one call), and one-line errors that leave no files behind.

The packaged head weights are still being trained: these tests check contracts (grids,
types, files, consistency between outputs), never the quality of the labels.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import trimesh

from synthbids.cli.head import main
from synthbids.core import head_meshes as H
from synthbids.core import weights as W
from synthbids.core.labels import HEAD_CLASSES
from tests.conftest import CH2, REPO, listdir_all, require

STRIP_WEIGHTS = REPO / 'synthbids' / 'data' / 'weights' / 'synthbids_strip.pt'


def run_cli(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def command() -> list[str]:
    script = Path(sys.executable).with_name('synthbids-head')
    return [str(script)] if script.exists() else [sys.executable, '-m', 'synthbids.cli.head']


@pytest.fixture(scope='module')
def colin_run(tmp_path_factory):
    """One call with two inputs: Colin27 (1 mm NIfTI) and Colin27 on a 1.5 mm grid as MGZ."""
    ch2 = require(CH2, "Colin27 from Debian's mricron-data package")
    root = tmp_path_factory.mktemp('head_cli')
    src = root / 'in'
    src.mkdir()
    first = src / 'colin.nii.gz'
    first.write_bytes(ch2.read_bytes())
    img = nib.load(ch2)
    from scipy import ndimage

    data = ndimage.zoom(img.get_fdata(dtype=np.float32), 2 / 3, order=1)
    affine = img.affine.copy()
    affine[:3, :3] *= 1.5
    second = src / 'colin15.mgz'
    nib.save(nib.MGHImage(data.astype(np.float32), affine), second)
    out = root / 'out'
    out.mkdir()
    outputs = {
        'labels': [out / 'colin_head.nii.gz', out / 'colin15_head.mgz'],
        'post': [out / 'colin_post.nii', out / 'colin15_post.mgh'],  # uncompressed: fast
        'mesh': [out / 'colin_meshes', out / 'sub' / 'colin15_meshes'],
        'vol': out / 'volumes.csv',
    }
    env = {k: v for k, v in os.environ.items() if k not in ('SYNTHBIDS_MODELS', 'FREESURFER_HOME')}
    env['SYNTHBIDS_CACHE'] = str(root / 'cache')
    proc = subprocess.run(
        [
            *command(),
            '-i',
            first,
            second,
            '-o',
            *outputs['labels'],
            '--posteriors',
            *outputs['post'],
            '--mesh',
            *outputs['mesh'],
            '--vol',
            outputs['vol'],
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    return proc, [first, second], outputs


def test_run_succeeds_and_loads_the_model_once(colin_run):
    proc, inputs, outputs = colin_run
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count('Using synthbids-head') == 1
    assert proc.stdout.count('done in') == 2
    # the packaged weights say what they are (their registry warning, whatever it reads)
    warning = next(e for e in W.packaged_entries().values() if e.kind == 'head').warning
    assert not warning or warning in proc.stderr
    files = sorted(p.name for p in outputs['labels'][0].parent.iterdir())
    assert files == sorted(
        ['colin_head.nii.gz', 'colin15_head.mgz', 'colin_post.nii', 'colin15_post.mgh']
        + ['colin_meshes', 'sub', 'volumes.csv']
    )


def test_labels_and_posteriors_are_on_the_input_grid(colin_run):
    proc, inputs, outputs = colin_run
    assert proc.returncode == 0, proc.stderr
    for src, lab, post, kind in zip(
        inputs, outputs['labels'], outputs['post'], (nib.Nifti1Image, nib.MGHImage)
    ):
        ref, img, pimg = nib.load(src), nib.load(lab), nib.load(post)
        assert isinstance(img, kind)
        assert img.shape == ref.shape
        assert img.get_data_dtype().newbyteorder('=') == np.int32
        np.testing.assert_allclose(img.affine, ref.affine, atol=1e-5)
        labels = np.asanyarray(img.dataobj)
        assert set(np.unique(labels)) <= set(range(len(HEAD_CLASSES)))
        assert pimg.shape == (*ref.shape, len(HEAD_CLASSES))
        assert pimg.get_data_dtype().newbyteorder('=') == np.float32
        np.testing.assert_allclose(pimg.affine, ref.affine, atol=1e-5)
        prob = np.asanyarray(pimg.dataobj)
        np.testing.assert_allclose(prob.sum(-1), 1, atol=1e-4)
        assert (prob >= 0).all()
        np.testing.assert_array_equal(labels, prob.argmax(-1))  # the most probable class
        if isinstance(ref, nib.Nifti1Image):
            np.testing.assert_array_equal(img.header.get_sform(), ref.header.get_sform())
            np.testing.assert_array_equal(img.header.get_qform(), ref.header.get_qform())


def test_volume_table_has_a_row_per_input_from_the_posteriors(colin_run):
    proc, inputs, outputs = colin_run
    assert proc.returncode == 0, proc.stderr
    with open(outputs['vol'], newline='') as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ['subject', *HEAD_CLASSES[1:]]
    assert [r[0] for r in rows[1:]] == ['colin', 'colin15.mgz']
    for row, post in zip(rows[1:], outputs['post']):
        pimg = nib.load(post)
        voxel_ml = abs(np.linalg.det(pimg.affine[:3, :3])) / 1000
        prob = np.asanyarray(pimg.dataobj)
        expected = prob.sum(axis=(0, 1, 2), dtype=np.float64)[1:] * voxel_ml
        np.testing.assert_allclose([float(v) for v in row[1:]], expected, rtol=1e-4)


def test_meshes_are_written_in_world_coordinates(colin_run):
    proc, inputs, outputs = colin_run
    assert proc.returncode == 0, proc.stderr
    for src, folder in zip(inputs, outputs['mesh']):
        names = sorted(f'{s}.{e}' for s in H.SURFACES for e in H.MESH_EXTENSIONS)
        assert listdir_all(folder) == names
        ref = nib.load(src)
        corners = np.array(np.meshgrid(*[[0, n - 1] for n in ref.shape[:3]])).reshape(3, -1).T
        world = corners @ ref.affine[:3, :3].T + ref.affine[:3, 3]
        zoom = np.linalg.norm(ref.affine[:3, :3], axis=0).max()
        lo, hi = world.min(0) - 2 * zoom, world.max(0) + 2 * zoom
        volumes = []
        for surface in H.SURFACES:
            gii = nib.load(folder / f'{surface}.surf.gii')
            points = gii.agg_data('NIFTI_INTENT_POINTSET')
            faces = gii.agg_data('NIFTI_INTENT_TRIANGLE')
            assert points.dtype == np.float32 and faces.dtype == np.int32
            assert (points >= lo).all() and (points <= hi).all()
            mesh = trimesh.Trimesh(points, faces, process=False)
            assert mesh.is_watertight and mesh.volume > 0
            stl = trimesh.load(folder / f'{surface}.stl', file_type='stl')
            assert stl.is_watertight
            assert stl.volume == pytest.approx(mesh.volume, rel=1e-4)
            volumes.append(mesh.volume)
        assert volumes == sorted(volumes, reverse=True)  # scalp > outer > inner skull > brain


# --------------------------------------------------------------------------- errors


def test_missing_input_is_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / 'out'
    out.mkdir()
    missing = tmp_path / 'nope.nii.gz'
    code, _, err = run_cli(
        ['-i', missing, '-o', out / 'l.nii.gz', '--mesh', out / 'm', '--vol', out / 'v.csv'],
        capsys,
    )
    assert code != 0
    assert err.strip().splitlines() == [f'synthbids-head: error: {missing}: no such file']
    assert listdir_all(out) == []


def test_unreadable_input_is_one_line_and_writes_nothing(tmp_path, capsys):
    bad = tmp_path / 'bad.nii.gz'
    bad.write_bytes(b'\x1f\x8b not really gzip')
    out = tmp_path / 'out'
    out.mkdir()
    code, _, err = run_cli(
        ['-i', bad, '-o', out / 'l.nii.gz', '--posteriors', out / 'p.nii.gz', '--mesh', out / 'm'],
        capsys,
    )
    assert code == 65
    assert len(err.strip().splitlines()) == 1 and str(bad) in err
    assert listdir_all(out) == []


def test_output_counts_and_missing_outputs_are_usage_errors(make_nifti, tmp_path, capsys):
    a, b = make_nifti('a.nii.gz'), make_nifti('b.nii.gz')
    code, _, err = run_cli(['-i', a, b, '-o', tmp_path / 'x.nii.gz'], capsys)
    assert code == 2 and '-o/--output needs one file per input (2)' in err
    code, _, err = run_cli(['-i', a, '-o', tmp_path / 'x.nii.gz', tmp_path / 'y.nii.gz'], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(['-i', a, b, '--mesh', tmp_path / 'm'], capsys)
    assert code == 2 and '--mesh needs one folder per input (2)' in err
    code, _, err = run_cli(['-i', a], capsys)
    assert code == 2 and 'give at least one output' in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ['a.nii.gz', 'b.nii.gz']


def test_bad_output_locations_fail_before_any_work(make_nifti, tmp_path, capsys):
    src = make_nifti('a.nii.gz')
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    code, _, err = run_cli(['-i', src, '--mesh', blocker], capsys)
    assert code == 73 and 'is a file, not a folder' in err and len(err.splitlines()) == 1
    code, _, err = run_cli(['-i', src, '-o', tmp_path / 'no' / 'l.nii.gz'], capsys)
    assert code == 73 and 'does not exist' in err
    code, _, err = run_cli(['-i', src, '-o', src], capsys)
    assert code == 73 and 'overwrite an input' in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ['a.nii.gz', 'file']


def test_weights_of_another_kind_are_one_clear_line(make_nifti, tmp_path, capsys):
    src = make_nifti('a.nii.gz')
    out = tmp_path / 'out'
    out.mkdir()
    code, _, err = run_cli(
        ['-i', src, '-o', out / 'l.nii.gz', '--model', STRIP_WEIGHTS, '--mesh', out / 'm'], capsys
    )
    assert code == 66
    lines = err.strip().splitlines()
    assert len(lines) == 1 and 'synthbids_strip.pt' in lines[0]
    assert 'not head-tissue weights' in lines[0]
    assert listdir_all(out) == []


def test_version():
    proc = subprocess.run([*command(), '--version'], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith('synthbids-head ')
