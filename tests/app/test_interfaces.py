"""The Nipype interfaces, run directly (no workflow): outputs, hashing, sidecars."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from synthbids.core.head_meshes import SURFACES
from synthbids.interfaces import (
    DerivativesDataSink,
    HeadTissues,
    HeadTissuesRPT,
    MeshesDataSink,
    SynthSeg,
    SynthSegRPT,
    SynthStrip,
    SynthStripRPT,
)
from tests.app.conftest import head


@pytest.fixture
def image(tmp_path):
    affine = np.diag([1.1, 0.9, 1.2, 1.0])
    affine[:3, 3] = [-20, -19, -21]
    img = nib.Nifti1Image(head(seed=3), affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=2)
    path = tmp_path / 'sub-01_T1w.nii.gz'
    img.to_filename(path)
    return path


def test_synthstrip_outputs_keep_the_input_grid(image, tiny_strip_ckpt, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = SynthStripRPT(in_file=str(image), model=str(tiny_strip_ckpt), num_threads=1).run()
    out = result.outputs
    mask, brain, ref = nib.load(out.out_mask), nib.load(out.out_brain), nib.load(image)
    assert mask.get_data_dtype() == np.uint8 and brain.get_data_dtype() == np.int16
    assert np.array_equal(mask.affine, ref.affine) and mask.header['sform_code'] == 2
    m = np.asanyarray(mask.dataobj).astype(bool)
    assert 0.05 < m.mean() < 0.5
    assert np.all(np.asanyarray(brain.dataobj)[~m] == 0)
    assert out.model_meta['ModelName'] == 'SynthStrip network, custom weights'
    weights = out.model_meta['ModelWeights'][0]
    assert weights['File'] == 'tiny_strip.pt' and weights['Source'] == 'argument'
    assert weights['Origin'].startswith('custom weights')
    assert out.model_meta['ModelSettings'] == {'Border': 1.0, 'NoCSF': False}
    svg = open(out.out_report).read()
    assert svg.lstrip().startswith('<?xml') and '<image' in svg and '<path' in svg


def test_device_and_threads_do_not_change_the_hash(image, tiny_strip_ckpt):
    def hashval(**kwargs):
        iface = SynthStrip(in_file=str(image), model=str(tiny_strip_ckpt), **kwargs)
        return iface.inputs.get_hashval(hash_method='content')[1]

    base = hashval()
    assert hashval(use_gpu=True, num_threads=8) == base
    assert hashval(border=2.0) != base
    assert hashval(no_csf=True) != base
    for spec in (SynthStrip.input_spec(), SynthSeg.input_spec(), HeadTissues.input_spec()):
        assert spec.trait('use_gpu').nohash and spec.trait('num_threads').nohash


def test_synthseg_outputs(image, tiny_seg_models, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = SynthSegRPT(
        in_file=str(image), model=str(tiny_seg_models), qc=True, posteriors=True, num_threads=1
    ).run()
    out = result.outputs
    dseg = nib.load(out.out_dseg)
    assert dseg.get_data_dtype() == np.int32  # as mri_synthseg (and synthbids-seg) write it
    assert np.allclose(dseg.header.get_zooms(), 1)  # SynthSeg's 1 mm grid (input is not)
    labels = set(np.unique(np.asanyarray(dseg.dataobj)).tolist())
    assert {0, 2} <= labels <= {0, 2, 3, 24, 41, 42}  # the intensity bands of the tiny net
    volumes = open(out.out_volumes).read().splitlines()
    assert volumes[0] == 'index\tname\tvolume'
    assert volumes[1].startswith('n/a\ttotal intracranial\t')
    assert any(row.startswith('2\tleft cerebral white matter\t') for row in volumes)
    assert len(volumes) == 1 + 33  # total intracranial and the 32 structures
    qc = [row.split('\t') for row in open(out.out_qc).read().splitlines()]
    assert qc[0] == ['structure', 'score', 'flag'] and len(qc) == 9
    assert all(flag == ('fail' if float(score) < 0.65 else 'pass') for _, score, flag in qc[1:])
    probseg = nib.load(out.out_probseg)
    assert probseg.shape[3] == len(out.label_map) == 33 and out.label_map[0] == 'Unknown'
    assert out.model_meta['ModelSettings']['QC'] is True
    # the official file names' default: not refined, and the sidecar says so
    assert out.model_meta['ModelSettings']['IntensityRefinement'] is False
    files = [w['File'] for w in out.model_meta['ModelWeights']]
    assert files == ['synthseg_2.0.h5', 'synthseg_qc_2.0.h5']
    assert all(len(w['SHA256']) == 64 for w in out.model_meta['ModelWeights'])
    assert '<image' in open(out.out_report).read()


def test_synthseg_low_memory_gives_the_same_results(image, tiny_seg_models, tmp_path, monkeypatch):
    """``--low-mem`` changes how SynthSeg keeps its features, not what it computes: the
    same labels and volumes, and the same node hash (a finished node is not run again)."""
    from synthbids.core import segment

    loaded = []
    real = segment.load_seg_model

    def spy(*args, **kwargs):
        model = real(*args, **kwargs)
        loaded.append(model.low_memory)
        return model

    monkeypatch.setattr(segment, 'load_seg_model', spy)
    outs = {}
    for low in (False, True):
        folder = tmp_path / f'low-{low}'
        folder.mkdir()
        monkeypatch.chdir(folder)
        iface = SynthSeg(
            in_file=str(image), model=str(tiny_seg_models), low_memory=low, num_threads=1
        )
        outs[low] = (iface.inputs.get_hashval(hash_method='content')[1], iface.run().outputs)
    assert loaded == [False, True]  # two models: the cache keeps them apart
    assert SynthSeg.input_spec().trait('low_memory').nohash
    assert outs[True][0] == outs[False][0]
    labels = [np.asanyarray(nib.load(o.out_dseg).dataobj) for _, o in outs.values()]
    assert np.array_equal(*labels) and labels[0].any()
    volumes = [open(o.out_volumes).read() for _, o in outs.values()]
    assert volumes[0] == volumes[1]


def test_synthseg_refine_on_request(image, tiny_seg_models, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = (
        SynthSeg(
            in_file=str(image), model=str(tiny_seg_models), refine='on', fast=True, num_threads=1
        )
        .run()
        .outputs
    )
    assert out.model_meta['ModelSettings']['IntensityRefinement'] is True
    assert nib.load(out.out_dseg).get_fdata().any()


def test_synthseg_parcellation_and_keepgeom(image, tiny_seg_models, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = SynthSeg(
        in_file=str(image), model=str(tiny_seg_models), parc=True, keepgeom=True, fast=True
    ).run()
    labels = set(np.unique(np.asanyarray(nib.load(out.outputs.out_dseg).dataobj)).tolist())
    assert any(v > 1000 for v in labels) and not labels & {3, 42}  # cortex parcellated
    assert not out.outputs.out_qc  # no QC network asked for
    dseg = nib.load(out.outputs.out_dseg)
    assert np.array_equal(dseg.affine, nib.load(image).affine)  # the input grid
    assert 'ctx-lh-bankssts' in open(out.outputs.out_volumes).read()


def test_head_tissues_outputs(image, tiny_head_ckpt, tmp_path, monkeypatch):
    """Labels on the input grid and header, a one-row volume table in mL, GIfTI and STL
    meshes of the four surfaces (scanner mm, closed), provenance, and the two reportlets."""
    import trimesh

    monkeypatch.chdir(tmp_path)
    out = HeadTissuesRPT(in_file=str(image), model=str(tiny_head_ckpt), num_threads=1).run()
    out = out.outputs
    dseg, ref = nib.load(out.out_dseg), nib.load(image)
    assert dseg.get_data_dtype() == np.int32 and dseg.shape == ref.shape
    assert np.array_equal(dseg.affine, ref.affine) and dseg.header['sform_code'] == 2
    labels = np.asanyarray(dseg.dataobj)
    assert set(np.unique(labels).tolist()) == {0, 1, 3}  # the tiny net: brain and bone
    header, row = open(out.out_volumes).read().splitlines()
    assert header.split('\t') == ['brain', 'csf', 'bone', 'skin', 'eyes', 'other_soft_tissue']
    volumes = dict(zip(header.split('\t'), map(float, row.split('\t'))))
    voxel_ml = abs(np.linalg.det(ref.affine[:3, :3])) / 1000
    for value, name in ((1, 'brain'), (3, 'bone')):  # mL, near the labelled volume (soft sums)
        assert 0.5 < volumes[name] / ((labels == value).sum() * voxel_ml) < 2
    assert volumes['skin'] == volumes['eyes'] == 0

    names = [Path(m).name for m in out.out_meshes]
    assert names == [f'{s}.{e}' for s in SURFACES for e in ('surf.gii', 'stl')]
    world = nib.affines.apply_affine(ref.affine, np.argwhere(labels > 0))
    low, high = world.min(0), world.max(0)
    scalp = nib.load(out.out_meshes[0]).agg_data('NIFTI_INTENT_POINTSET')
    assert np.all(scalp.min(0) > low - 1) and np.all(scalp.max(0) < high + 1)  # scanner mm
    assert np.all(scalp.max(0) - scalp.min(0) > 0.7 * (high - low))
    stl = trimesh.load(out.out_meshes[3])
    assert stl.is_watertight and stl.volume > 0

    weights = out.model_meta['ModelWeights'][0]
    assert out.model_meta['ModelName'] == 'head-tissue network, custom weights'
    assert weights['File'] == 'tiny_head.pt' and len(weights['SHA256']) == 64
    svg = open(out.out_report).read()
    assert '<image' in svg and '<!-- Bone -->' in svg and '<!-- Brain -->' in svg
    assert open(out.out_render, 'rb').read(8) == b'\x89PNG\r\n\x1a\n'


def test_datasink_names_copies_and_sidecars(tmp_path, image):
    base = tmp_path / 'out'
    src = 'sub-01/ses-2/anat/sub-01_ses-2_run-1_T2w.nii.gz'
    res = DerivativesDataSink(
        base_directory=str(base),
        source_file=src,
        in_file=str(image),
        suffix='mask',
        desc='brain',
        meta_dict={'Type': 'Brain'},
        model_meta={'ModelName': 'SynthStrip', 'ModelWeights': []},
    ).run()
    out = res.outputs.out_file
    assert out == str(
        base / 'sub-01/ses-2/anat/sub-01_ses-2_run-1_space-T2w_desc-brain_mask.nii.gz'
    )
    assert open(out, 'rb').read() == image.read_bytes()
    meta = json.loads(open(res.outputs.out_meta).read())
    assert meta == {
        'Sources': [f'bids:raw:{src}'],
        'SpatialReference': f'bids:raw:{src}',
        'Type': 'Brain',
        'ModelName': 'SynthStrip',
        'ModelWeights': [],
    }
    assert DerivativesDataSink().always_run

    table = tmp_path / 'volumes.tsv'
    table.write_text('index\tname\tvolume\n')
    res = DerivativesDataSink(
        base_directory=str(base),
        source_file=src,
        in_file=str(table),
        suffix='volumes',
        desc='aseg',
        meta_dict={'a': 1},
    ).run()
    assert res.outputs.out_file.endswith('sub-01_ses-2_run-1_space-T2w_desc-aseg_volumes.tsv')
    assert 'SpatialReference' not in json.loads(open(res.outputs.out_meta).read())

    svg = tmp_path / 'x.svg'
    svg.write_text('<svg/>')
    res = DerivativesDataSink(
        base_directory=str(base),
        source_file=src,
        in_file=str(svg),
        suffix='T2w',
        desc='brainmask',
        datatype='figures',
    ).run()
    assert res.outputs.out_file == str(
        base / 'sub-01/figures/sub-01_ses-2_run-1_desc-brainmask_T2w.svg'
    )
    assert not list(base.rglob('*.partial'))


def test_meshes_sink_names_each_surface_after_its_source(tmp_path):
    meshes = tmp_path / 'meshes'
    meshes.mkdir()
    for name in ('scalp.surf.gii', 'scalp.stl', 'outerskull.surf.gii'):
        (meshes / name).write_text(name)
    base = tmp_path / 'out'
    res = MeshesDataSink(
        base_directory=str(base),
        source_file='sub-01/ses-2/anat/sub-01_ses-2_run-1_T2w.nii.gz',
        in_files=sorted(str(p) for p in meshes.iterdir()),
        desc='head',
    ).run()
    anat = base / 'sub-01/ses-2/anat'
    assert sorted(res.outputs.out_files) == [
        str(anat / 'sub-01_ses-2_run-1_space-T2w_desc-head_outerskull.surf.gii'),
        str(anat / 'sub-01_ses-2_run-1_space-T2w_desc-head_scalp.stl'),
        str(anat / 'sub-01_ses-2_run-1_space-T2w_desc-head_scalp.surf.gii'),
    ]
    assert (anat / 'sub-01_ses-2_run-1_space-T2w_desc-head_scalp.stl').read_text() == 'scalp.stl'
    assert not list(base.rglob('*.json')) and not list(base.rglob('.*'))
