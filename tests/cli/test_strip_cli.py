"""``synthbids-strip`` as a user runs it: outputs, headers, several inputs, bad input."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from synthbids.cli.strip import main
from tests.conftest import listdir_all


def run_cli(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def oblique_affine(zooms=(1.1, 0.9, 1.3)):
    angle = np.deg2rad(11)
    rot = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    )
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag(zooms)
    aff[:3, 3] = [-20.3, -25.7, -18.1]
    return aff


def test_outputs_are_written_on_the_input_grid_with_its_header(
    make_nifti, tiny_strip_ckpt, tmp_path, capsys
):
    src = make_nifti('sub-01_T1w.nii.gz', affine=oblique_affine(), dtype=np.int16)
    out, mask, sdt = tmp_path / 'brain.nii.gz', tmp_path / 'mask.nii.gz', tmp_path / 'sdt.nii'
    code, stdout, _ = run_cli(
        ['-i', src, '-o', out, '-m', mask, '-d', sdt, '--model', tiny_strip_ckpt, '-t', '1'],
        capsys,
    )
    assert code == 0
    assert 'custom (tiny_strip.pt)' in stdout and 'done' in stdout
    ref = nib.load(src)
    for path, dtype in [(out, np.int16), (mask, np.uint8), (sdt, np.float32)]:
        img = nib.load(path)
        assert img.shape == ref.shape
        assert img.get_data_dtype() == dtype
        hdr, rhdr = img.header, ref.header
        np.testing.assert_array_equal(hdr['pixdim'][1:4], rhdr['pixdim'][1:4])  # no drift
        np.testing.assert_array_equal(img.affine, ref.affine)  # no shift
        np.testing.assert_array_equal(hdr.get_qform(), rhdr.get_qform())
        np.testing.assert_array_equal(hdr.get_sform(), rhdr.get_sform())
        assert (hdr['qform_code'], hdr['sform_code']) == (rhdr['qform_code'], rhdr['sform_code'])
        rot = img.affine[:3, :3] / np.linalg.norm(img.affine[:3, :3], axis=0)
        np.testing.assert_allclose(rot.T @ rot, np.eye(3), atol=1e-6)  # orthonormal cosines
    m = np.asanyarray(nib.load(mask).dataobj)
    assert set(np.unique(m)) <= {0, 1} and 0 < m.sum() < m.size
    data, brain = ref.get_fdata(), nib.load(out).get_fdata()
    np.testing.assert_array_equal(brain[m == 1], data[m == 1])
    assert (brain[m == 0] == 0).all()
    assert listdir_all(tmp_path) == sorted([src.name, 'brain.nii.gz', 'mask.nii.gz', 'sdt.nii'])
    assert oct(out.stat().st_mode & 0o777) != '0o600'  # not the temp file's private mode


def test_fill_value_and_mgz_in_and_out(make_nifti, tiny_strip_ckpt, tmp_path, capsys):
    src = make_nifti('head.nii.gz', dtype=np.float32)
    mgz = tmp_path / 'head.mgz'
    nib.save(nib.MGHImage(nib.load(src).get_fdata().astype(np.float32), nib.load(src).affine), mgz)
    code, _, _ = run_cli(
        [
            '-i',
            mgz,
            '-o',
            tmp_path / 'brain.mgz',
            '-m',
            tmp_path / 'm.nii.gz',
            '-f',
            '-5',
            '--model',
            tiny_strip_ckpt,
        ],
        capsys,
    )
    assert code == 0
    brain = nib.load(tmp_path / 'brain.mgz')
    assert isinstance(brain, nib.MGHImage)
    np.testing.assert_allclose(brain.affine, nib.load(mgz).affine, atol=1e-4)
    m = nib.load(tmp_path / 'm.nii.gz')
    np.testing.assert_allclose(m.affine, nib.load(mgz).affine, atol=1e-4)
    assert (brain.get_fdata()[m.get_fdata() == 0] == -5).all()


def test_several_inputs_share_one_model_load_and_a_folder(
    make_nifti, tiny_strip_ckpt, tmp_path, capsys
):
    a = make_nifti('a.nii.gz')
    b = make_nifti('b.nii')
    outdir = tmp_path / 'out'
    outdir.mkdir()
    code, stdout, _ = run_cli(['-i', a, b, '-m', outdir, '--model', tiny_strip_ckpt], capsys)
    assert code == 0
    assert stdout.count('Using ') == 1
    assert listdir_all(outdir) == ['a_mask.nii.gz', 'b_mask.nii']


def test_4d_input_is_stripped_frame_by_frame(make_nifti, tiny_strip_ckpt, tmp_path, capsys):
    src = make_nifti('bold.nii.gz', shape=(30, 34, 28, 3))
    code, _, _ = run_cli(
        [
            '-i',
            src,
            '-m',
            tmp_path / 'm.nii.gz',
            '-d',
            tmp_path / 'd.nii.gz',
            '--model',
            tiny_strip_ckpt,
        ],
        capsys,
    )
    assert code == 0
    m4 = nib.load(tmp_path / 'm.nii.gz').get_fdata()
    assert m4.shape == (30, 34, 28, 3)
    img = nib.load(src)
    frame = nib.Nifti1Image(img.get_fdata()[..., 2].astype(np.int16), img.affine)
    frame.to_filename(tmp_path / 'f2.nii.gz')
    code, _, _ = run_cli(
        ['-i', tmp_path / 'f2.nii.gz', '-m', tmp_path / 'm2.nii.gz', '--model', tiny_strip_ckpt],
        capsys,
    )
    np.testing.assert_array_equal(nib.load(tmp_path / 'm2.nii.gz').get_fdata(), m4[..., 2])


# --------------------------------------------------------------------------- bad input


def _truncated(make_nifti, tmp_path):
    good = make_nifti('good.nii.gz')
    raw = good.read_bytes()
    bad = tmp_path / 'truncated.nii.gz'
    bad.write_bytes(raw[: len(raw) // 2])
    good.unlink()
    return bad


def _garbage(make_nifti, tmp_path):
    bad = tmp_path / 'garbage.nii.gz'
    bad.write_bytes(gzip.compress(b'this is not a NIfTI header' * 20))
    return bad


def _image(data):
    def make(make_nifti, tmp_path):
        if data.ndim < 3:
            path = tmp_path / 'img.nii.gz'
            nib.Nifti1Image(data, np.eye(4)).to_filename(path)
            return path
        return make_nifti('img.nii.gz', data=data, shape=data.shape)

    return make


def _extension(make_nifti, tmp_path):
    path = tmp_path / 'image.png'
    path.write_bytes(b'\x89PNG\r\n')
    return path


nan_data = np.ones((12, 12, 12), np.float32)
nan_data[3, 4, 5] = np.nan
inf_data = np.ones((12, 12, 12), np.float32)
inf_data[1, 1, 1] = -np.inf

BAD_INPUTS = {
    'truncated': (_truncated, 'truncated or corrupt'),
    'garbage': (_garbage, 'cannot read image'),
    '2d': (_image(np.ones((16, 16), np.float32)), 'image is 2-D'),
    'single-slice': (_image(np.ones((16, 16, 1), np.float32)), 'image is 2-D'),
    '5d': (_image(np.ones((8, 8, 8, 2, 2), np.float32)), '5 dimensions'),
    'all-zero': (_image(np.zeros((12, 12, 12), np.int16)), 'empty (all voxels are zero)'),
    'constant': (_image(np.full((12, 12, 12), 7, np.int16)), 'constant'),
    'nan': (_image(nan_data), 'NaN or infinite'),
    'inf': (_image(inf_data), 'NaN or infinite'),
    'extension': (_extension, "unsupported file type '.png'"),
    'no room for a head': (
        _image(np.arange(27, dtype=np.float32).reshape(3, 3, 3)),
        'image is too small to hold a head (3x3x3 voxels, 3x3x3 mm); at least 4 voxels and '
        '16 mm along every axis are needed',
    ),
    'thin slab': (
        _image(np.arange(40 * 40 * 6, dtype=np.float32).reshape(40, 40, 6)),
        'image is too small to hold a head (40x40x6 voxels, 40x40x6 mm)',
    ),
}


@pytest.mark.parametrize('case', sorted(BAD_INPUTS))
def test_bad_input_gives_one_line_and_no_output(
    case, make_nifti, tiny_strip_ckpt, tmp_path, capsys
):
    maker, problem = BAD_INPUTS[case]
    src = maker(make_nifti, tmp_path)
    outdir = tmp_path / 'out'
    outdir.mkdir()
    code, _, err = run_cli(
        [
            '-i',
            src,
            '-o',
            outdir / 'b.nii.gz',
            '-m',
            outdir / 'm.nii.gz',
            '--model',
            tiny_strip_ckpt,
        ],
        capsys,
    )
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith('synthbids-strip: error: ')
    assert str(src) in lines[0] and problem in lines[0]
    assert listdir_all(outdir) == []


def test_qform_and_sform_that_disagree_are_reported_once_with_the_file_name(
    make_nifti, tiny_strip_ckpt, tmp_path, capsys
):
    src = make_nifti('sub-01_T1w.nii.gz')
    img = nib.load(src)
    sform = img.affine.copy()
    sform[0, 3] += 5
    img.set_sform(sform, code=1)
    img.to_filename(src)
    outs = [tmp_path / 'b.nii.gz', tmp_path / 'm.nii.gz', tmp_path / 'd.nii.gz']
    code, _, err = run_cli(
        ['-i', src, '-o', outs[0], '-m', outs[1], '-d', outs[2], '--model', tiny_strip_ckpt],
        capsys,
    )
    assert code == 0
    assert err.strip().splitlines() == [
        f'WARNING: {src}: qform and sform disagree; outputs get the sform in both (the '
        'orientation nibabel and FreeSurfer use)'
    ]
    for out in outs:
        hdr = nib.load(out).header
        np.testing.assert_allclose(hdr.get_qform(), sform, atol=1e-4)
        np.testing.assert_array_equal(hdr.get_sform(), sform)


def test_missing_input_and_missing_output_folder(make_nifti, tiny_strip_ckpt, tmp_path, capsys):
    code, _, err = run_cli(['-i', tmp_path / 'nope.nii.gz', '-m', tmp_path / 'm.nii.gz'], capsys)
    assert code != 0 and 'nope.nii.gz: no such file' in err
    src = make_nifti()
    code, _, err = run_cli(
        ['-i', src, '-m', tmp_path / 'no/such/dir/m.nii.gz', '--model', tiny_strip_ckpt], capsys
    )
    assert code != 0 and 'does not exist' in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ('content', 'problem'),
    [(b'not a model', 'not a PyTorch checkpoint'), (b'\x89HDF\r\n\x1a\n' + b'\0' * 99, 'Keras')],
)
def test_model_file_of_the_wrong_kind(make_nifti, tmp_path, capsys, content, problem):
    src = make_nifti()
    model = tmp_path / 'weights.pt'
    model.write_bytes(content)
    outdir = tmp_path / 'out'
    outdir.mkdir()
    code, _, err = run_cli(['-i', src, '-m', outdir / 'm.nii.gz', '--model', model], capsys)
    assert code != 0
    assert err.strip().splitlines() == [err.strip()]
    assert str(model) in err and problem in err
    assert listdir_all(outdir) == []


def test_missing_outputs_flag_and_gpu_without_cuda(make_nifti, tiny_strip_ckpt, tmp_path, capsys):
    src = make_nifti()
    code, _, err = run_cli(['-i', src], capsys)
    assert code != 0 and 'give at least one output' in err
    import torch

    if not torch.cuda.is_available():
        code, _, err = run_cli(['-i', src, '-m', tmp_path / 'm.nii.gz', '-g'], capsys)
        assert code != 0 and 'no CUDA device' in err


def test_output_may_not_overwrite_the_input(make_nifti, tiny_strip_ckpt, capsys):
    src = make_nifti()
    before = src.read_bytes()
    code, _, err = run_cli(['-i', src, '-o', src, '--model', tiny_strip_ckpt], capsys)
    assert code != 0 and 'overwrite an input' in err
    assert src.read_bytes() == before


def test_read_only_output_folder(make_nifti, tiny_strip_ckpt):
    """Run as an unprivileged user (root may write into a mode-555 folder)."""
    if os.geteuid() == 0 and not shutil.which('setpriv'):
        pytest.skip('running as root without setpriv to drop privileges')
    root = Path(tempfile.mkdtemp(prefix='synthbids-ro-'))
    try:
        root.chmod(0o755)
        src = root / 'img.nii.gz'
        shutil.copy(make_nifti(), src)
        shutil.copy(tiny_strip_ckpt, root / 'tiny.pt')
        outdir = root / 'ro'
        outdir.mkdir()
        for p in (src, root / 'tiny.pt'):
            p.chmod(0o644)
        outdir.chmod(0o555)
        cmd = [
            sys.executable,
            '-m',
            'synthbids.cli.strip',
            '-i',
            str(src),
            '-m',
            str(outdir / 'm.nii.gz'),
            '--model',
            str(root / 'tiny.pt'),
        ]
        if os.geteuid() == 0:
            cmd = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', *cmd]
        env = {**os.environ, 'HOME': str(root), 'SYNTHBIDS_CACHE': str(root / 'cache')}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=root)
        assert proc.returncode != 0
        expected = f'{outdir / "m.nii.gz"}: output folder {outdir} is not writable'
        assert proc.stderr.strip().splitlines() == [f'synthbids-strip: error: {expected}']
        assert listdir_all(outdir) == []
    finally:
        outdir.chmod(0o755)
        shutil.rmtree(root)


def test_sigterm_leaves_no_partial_files(make_nifti, tiny_strip_ckpt, tmp_path):
    """A batch system's SIGTERM at any moment leaves complete outputs or none."""
    import signal
    import time

    sources = [make_nifti(f'img{i}.nii.gz', shape=(90, 100, 80)) for i in range(6)]
    outdir = tmp_path / 'out'
    outdir.mkdir()
    cmd = [
        sys.executable,
        '-m',
        'synthbids.cli.strip',
        '-i',
        *map(str, sources),
        '-o',
        str(outdir),
        '-m',
        str(outdir),
        '--model',
        str(tiny_strip_ckpt),
        '-t',
        '1',
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith('[1/6]')
    line = proc.stdout.readline()  # the model is loaded and the first image is being processed
    assert line.startswith('Using')
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and 'interrupted' in err
    names = listdir_all(outdir)
    assert not [n for n in names if n.startswith('.') or 'partial' in n]
    for name in names:
        assert nib.load(outdir / name).get_fdata().shape == (90, 100, 80)
