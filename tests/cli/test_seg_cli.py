"""``synthbids-seg`` as a user runs it, with tiny networks in the official Keras layout."""

from __future__ import annotations

import csv
import gzip

import nibabel as nib
import numpy as np
import pytest

from synthbids.cli.seg import main
from synthbids.core import labels as L
from synthbids.core.segment import load_seg_model, segment
from tests.conftest import listdir_all


def run_cli(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def oblique_affine(zooms):
    angle = np.deg2rad(9)
    rot = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    )
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag(zooms)
    aff[:3, 3] = [-20.3, -25.7, -18.1]
    return aff


def read_rows(path):
    with open(path, newline='') as fh:
        return list(csv.reader(fh))


def test_all_outputs_of_an_anisotropic_image(make_nifti, tiny_seg_models, tmp_path, capsys):
    src = make_nifti('sub-01_T2w.nii.gz', affine=oblique_affine((1.3, 1.0, 0.9)))
    out = tmp_path / 'out'
    code, stdout, err = run_cli(
        [
            '--i', src, '--o', out / 'seg.nii.gz', '--vol', out / 'vol.csv', '--qc', out / 'qc',
            '--post', out / 'post.nii.gz', '--resample', out / 'res.mgz', '--parc',
            '--model', tiny_seg_models, '--threads', '2',
        ],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert 'Using custom (synthseg_2.0.h5)' in stdout and 'synthseg_parc_2.0.h5' in stdout
    assert listdir_all(out) == ['post.nii.gz', 'qc.csv', 'res.mgz', 'seg.nii.gz', 'vol.csv']
    seg = nib.load(out / 'seg.nii.gz')
    assert seg.get_data_dtype() == np.int32
    hdr = seg.header
    np.testing.assert_allclose(np.linalg.norm(seg.affine[:3, :3], axis=0), 1, atol=1e-6)
    np.testing.assert_allclose(hdr['pixdim'][1:4], 1, atol=1e-6)
    np.testing.assert_allclose(hdr.get_qform(), hdr.get_sform(), atol=1e-5)
    assert hdr['qform_code'] > 0 and hdr['sform_code'] > 0
    labels = set(np.unique(np.asanyarray(seg.dataobj)))
    assert {0, 2, 24} <= labels and labels <= set(L.segmentation_labels_with_parcellation())
    post = nib.load(out / 'post.nii.gz')
    assert post.shape == (*seg.shape, 33) and post.get_data_dtype() == np.float32
    np.testing.assert_allclose(post.get_fdata().sum(-1), 1, atol=1e-5)
    np.testing.assert_allclose(post.affine, seg.affine)
    res = nib.load(out / 'res.mgz')
    assert res.shape == seg.shape
    np.testing.assert_allclose(res.affine, seg.affine, atol=1e-5)
    vol = read_rows(out / 'vol.csv')
    assert vol[0][:3] == ['subject', 'total intracranial', 'left cerebral white matter']
    assert (
        vol[0][33:35] == ['right ventral DC', 'ctx-lh-bankssts'] and len(vol[0]) == 1 + 32 + 1 + 68
    )
    assert vol[1][0] == 'sub-01_T2w' and len(vol) == 2
    values = [float(v) for v in vol[1][1:]]
    assert values[0] == pytest.approx(sum(values[1:33]), rel=1e-5)
    qc = read_rows(out / 'qc.csv')
    assert qc[0] == ['subject', *L.QC_NAMES[1:]]
    assert all(len(v.split('.')[1]) == 4 for v in qc[1][1:])
    assert (out / 'vol.csv').read_bytes().endswith(b'\r\n')


def test_keepgeom_writes_the_input_grid(make_nifti, tiny_seg_models, tmp_path, capsys):
    src = make_nifti('aniso.nii.gz', affine=oblique_affine((1.3, 1.0, 0.9)))
    code, _, err = run_cli(
        ['--i', src, '--o', tmp_path, '--keepgeom', '--fast', '--model', tiny_seg_models],
        capsys,
    )
    assert code == 0, err
    seg = nib.load(tmp_path / 'aniso_synthseg.nii.gz')
    ref = nib.load(src)
    assert seg.shape == ref.shape
    np.testing.assert_array_equal(seg.affine, ref.affine)
    np.testing.assert_array_equal(seg.header['pixdim'][1:4], ref.header['pixdim'][1:4])
    assert {0, 2} <= set(np.unique(np.asanyarray(seg.dataobj)))


def test_folder_with_one_bad_image(make_nifti, tiny_seg_models, tmp_path, capsys):
    folder = tmp_path / 'in'
    folder.mkdir()
    for name in ('a.nii.gz', 'b.mgz'):
        src = make_nifti(name.replace('.mgz', '.nii.gz'))
        if name.endswith('.mgz'):
            img = nib.load(src)
            nib.save(nib.MGHImage(img.get_fdata().astype(np.float32), img.affine), folder / name)
        else:
            (folder / name).write_bytes(src.read_bytes())
    bad = folder / 'c.nii.gz'
    bad.write_bytes(make_nifti('c.nii.gz').read_bytes()[:300])
    (folder / 'notes.txt').write_text('not an image')
    out = tmp_path / 'segs'
    code, stdout, err = run_cli(
        ['--i', folder, '--o', out, '--vol', tmp_path / 'volumes', '--fast',
         '--model', tiny_seg_models],
        capsys,
    )  # fmt: skip
    assert code != 0
    assert '[1/3]' in stdout and '[3/3]' in stdout
    assert f'synthbids-seg: error: {bad}: ' in err
    assert 'synthbids-seg: 1 of 3 images failed' in err
    assert listdir_all(out) == ['a_synthseg.nii.gz', 'b_synthseg.mgz']
    rows = read_rows(tmp_path / 'volumes.csv')
    assert [r[0] for r in rows] == ['subject', 'a', 'b.mgz']  # only .nii.gz is stripped
    assert nib.load(out / 'b_synthseg.mgz').get_data_dtype().newbyteorder('=') == np.int32


def test_text_lists_of_inputs_and_outputs(make_nifti, tiny_seg_models, tmp_path, capsys):
    images = [make_nifti(f'img{i}.nii.gz') for i in range(2)]
    (tmp_path / 'in.txt').write_text('\n'.join(map(str, images)) + '\n\n')
    segs = [tmp_path / 'o' / f's{i}.nii.gz' for i in range(2)]
    vols = [tmp_path / f'v{i}.csv' for i in range(2)]
    (tmp_path / 'out.txt').write_text('\n'.join(map(str, segs)))
    (tmp_path / 'vol.txt').write_text('\n'.join(map(str, vols)))
    code, _, err = run_cli(
        ['--i', tmp_path / 'in.txt', '--o', tmp_path / 'out.txt', '--vol', tmp_path / 'vol.txt',
         '--v1', '--fast', '--crop', '64', '--model', tiny_seg_models],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert all(p.exists() for p in segs)
    rows = read_rows(vols[1])
    assert rows[0][:2] == ['', 'left cerebral white matter'] and rows[1][0] == 'img1'
    assert len(rows[0]) == 32  # 1.0: no total, no CSF
    code, _, err = run_cli(
        ['--i', tmp_path / 'in.txt', '--o', tmp_path / 'x', '--model', tiny_seg_models], capsys
    )
    assert code != 0 and '--o must be a .txt list' in err


def _truncated(make_nifti, tmp_path):
    raw = make_nifti('good.nii.gz').read_bytes()
    path = tmp_path / 'trunc.nii.gz'
    path.write_bytes(raw[: len(raw) // 2])
    return path


def _garbage(make_nifti, tmp_path):
    path = tmp_path / 'garbage.nii.gz'
    path.write_bytes(gzip.compress(b'this is not a NIfTI header' * 20))
    return path


def _flat(make_nifti, tmp_path):
    return make_nifti('flat.nii.gz', data=np.zeros((30, 30, 1), np.int16))


def _frames(make_nifti, tmp_path):
    return make_nifti('frames.nii.gz', data=np.random.default_rng(0).random((20, 20, 20, 12)))


def _constant(make_nifti, tmp_path):
    return make_nifti('const.nii.gz', data=np.full((20, 20, 20), 5, np.int16))


def _nan(make_nifti, tmp_path):
    data = np.ones((20, 20, 20), np.float32)
    data[3, 3, 3] = np.nan
    return make_nifti('nan.nii.gz', data=data)


def _extension(make_nifti, tmp_path):
    path = tmp_path / 'img.png'
    path.write_bytes(b'png')
    return path


def _rgb(make_nifti, tmp_path):
    data = np.zeros((20, 20, 20), dtype=[('R', 'u1'), ('G', 'u1'), ('B', 'u1')])
    data['G'] = np.random.default_rng(0).integers(0, 255, (20, 20, 20))
    path = tmp_path / 'rgb.nii.gz'
    nib.Nifti1Image(data, np.eye(4)).to_filename(path)
    return path


def _tiny(make_nifti, tmp_path):
    data = np.arange(20**3, dtype=np.int16).reshape(20, 20, 20)
    return make_nifti('tiny.nii.gz', data=data, shape=data.shape, zooms=(0.5, 0.5, 0.5))


BAD_INPUTS = {
    'truncated': (_truncated, 'truncated or corrupt'),
    'garbage': (_garbage, 'cannot read image'),
    '2-D': (_flat, 'image is 2-D'),
    'frames': (_frames, '4-D with 12 frames'),
    'constant': (_constant, 'image is constant'),
    'nan': (_nan, 'NaN or infinite'),
    'extension': (_extension, 'unsupported file type'),
    'RGB': (_rgb, 'unsupported voxel type: RGB colour; a grey-scale image is required'),
    'no room for a head': (
        _tiny,
        'image is too small to hold a head (20x20x20 voxels, 10x10x10 mm)',
    ),
}


@pytest.mark.parametrize('case', sorted(BAD_INPUTS))
def test_bad_input_gives_one_line_and_no_output(
    case, make_nifti, tiny_seg_models, tmp_path, capsys
):
    maker, problem = BAD_INPUTS[case]
    src = maker(make_nifti, tmp_path)
    out = tmp_path / 'out'
    out.mkdir()
    code, _, err = run_cli(
        ['--i', src, '--o', out / 's.nii.gz', '--vol', out / 'v.csv', '--model', tiny_seg_models],
        capsys,
    )
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith('synthbids-seg: error: ') and problem in lines[0]
    assert str(src) in lines[0] and 'DType' not in lines[0]
    assert listdir_all(out) == []


@pytest.mark.parametrize(
    ('args', 'problem'),
    [
        (['--robust', '--v1'], '--v1 cannot be used with --robust'),
        (['--crop', '64', '32'], '--crop takes 1 or 3 positive integers'),
        (['--vol', 'v.txt'], 'can only be a .txt list when --i is one'),
    ],
)
def test_flag_errors(args, problem, make_nifti, tiny_seg_models, tmp_path, capsys):
    src = make_nifti()
    code, _, err = run_cli(
        ['--i', src, '--o', tmp_path / 's.nii.gz', *args, '--model', tiny_seg_models], capsys
    )
    assert code == 2 and problem in err and len(err.strip().splitlines()) == 1


def test_usage_errors_exit_2_like_synthbids_strip(make_nifti, tmp_path, capsys):
    """One convention for the single-image tools: every usage error exits 2, argparse's own
    (a missing required option) and ours (no output given to synthbids-strip)."""
    from synthbids.cli.strip import main as strip_main

    src = make_nifti()
    with pytest.raises(SystemExit) as exc:
        main(['--i', str(src)])
    assert exc.value.code == 2 and 'required: --o' in capsys.readouterr().err
    assert strip_main(['-i', str(src)]) == 2
    assert 'give at least one output' in capsys.readouterr().err


def test_help_shows_i_and_o_as_required(capsys):
    with pytest.raises(SystemExit):
        main(['--help'])
    out = capsys.readouterr().out
    required = out[out.index('required arguments:') :]
    assert '--i PATH' in required and '--o PATH' in required
    assert out.index('required arguments:') > 0 and '[--i' not in out and '[--o' not in out


def test_weights_search_and_clear_failures(
    make_nifti,
    tiny_seg_models,
    tiny_strip_ckpt,
    tmp_path,
    capsys,
    monkeypatch,
    no_packaged_weights,
):
    src = make_nifti()
    code, _, err = run_cli(['--i', src, '--o', tmp_path / 's.nii.gz'], capsys)
    assert code != 0 and len(err.strip().splitlines()) == 1
    assert 'no SynthSeg 2.0 weights found' in err and 'synthbids-models fetch synthseg-2.0' in err
    code, _, err = run_cli(
        ['--i', src, '--o', tmp_path / 's.nii.gz', '--model', tiny_strip_ckpt], capsys
    )
    assert code != 0 and 'not a Keras HDF5 weights file' in err
    code, _, err = run_cli(
        ['--i', src, '--o', tmp_path / 's.nii.gz', '--v1', '--model',
         tiny_seg_models / 'synthseg_2.0.h5'],
        capsys,
    )  # fmt: skip
    assert code != 0 and 'drop --v1' in err
    monkeypatch.setenv('SYNTHBIDS_MODELS', str(tiny_seg_models))
    code, stdout, err = run_cli(
        ['--i', src, '--o', tmp_path / 's.nii.gz', '--robust', '--crop', '64'], capsys
    )
    assert code == 0, err
    assert 'custom (synthseg_robust_2.0.h5)' in stdout


@pytest.mark.parametrize(
    'options',
    [
        {'fast': True, 'parc': True, 'qc': True},
        {'robust': True, 'qc': True},
        {'v1': True, 'parc': True},
    ],
)
def test_library_variants(make_nifti, tiny_seg_models, options):
    src = make_nifti(affine=oblique_affine((1.0, 1.0, 1.0)))
    fast = options.pop('fast', False)
    model = load_seg_model(tiny_seg_models, **options)
    result = segment(src, model, fast=fast, crop=[48, 64, 40], posteriors=True)
    ref = nib.load(src)
    assert result.labels.shape == ref.shape and result.labels.dtype == np.int32
    np.testing.assert_array_equal(result.affine, ref.affine)
    assert (result.qc is not None) == options.get('qc', False)
    names = list(result.volumes)
    assert (names[0] == L.TOTAL_NAME) != options.get('v1', False)
    assert ('ctx-rh-insula' in names) == options.get('parc', False)
    post = result.posteriors
    assert post.shape == (*ref.shape, len(model.labels))
    np.testing.assert_allclose(post.sum(-1), 1, atol=1e-5)
    assert result.posterior_labels == list(model.labels)
    outside = result.labels[:, :, :2]  # the centred 48x64x40 crop leaves borders out
    assert not outside.any()


def test_refine_flags(make_nifti, tiny_seg_models, tmp_path, capsys):
    """Official-named (here: custom) weights are not refined unless ``--refine`` asks; the
    refined run says so and still writes normalised posteriors."""
    src = make_nifti(affine=oblique_affine((1.0, 1.0, 1.0)))
    base = ['--i', src, '--model', tiny_seg_models, '--fast']
    code, out, err = run_cli([*base, '--o', tmp_path / 'a.nii.gz'], capsys)
    assert code == 0, err
    assert 'refined' not in out
    post = tmp_path / 'p.nii.gz'
    code, out, err = run_cli(
        [*base, '--o', tmp_path / 'b.nii.gz', '--post', post, '--refine'], capsys
    )
    assert code == 0, err
    assert 'posteriors refined by the image intensities' in out
    probs = np.asanyarray(nib.load(post).dataobj)
    np.testing.assert_allclose(probs.sum(-1), 1, atol=1e-4)
    model = load_seg_model(tiny_seg_models)
    assert not model.refine
    assert segment(src, model, fast=True, refine=True).refined
    assert not segment(src, model, fast=True).refined
