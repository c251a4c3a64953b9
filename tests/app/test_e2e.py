"""End to end, as a user runs it: participant, then group, on a small BIDS dataset.

The networks are tiny (a threshold-wired SynthStrip and head-tissue network; 4-feature SynthSeg
2.0 and QC networks in the official Keras layout, ``tests/seg_fixtures.py``), so the test
measures the app under MultiProc as users run it: outputs and their names against the BIDS
schema and the committed list ``tests/data/expected_outputs.txt``, reports rendered in
Chromium, and reuse of every finished node when the same work directory is given again.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

from synthbids.cli.run import main
from tests.app import browser
from tests.app.bids_schema import invalid_files

EXPECTED = Path(__file__).resolve().parents[1] / 'data' / 'expected_outputs.txt'
UUID = re.compile(r'\d{8}-\d{6}_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}')


def listing(root: Path) -> list[str]:
    """Every file under ``root`` (dot files included), run identifiers replaced."""
    out = set()
    for path in root.rglob('*'):
        if path.is_file():
            out.add(UUID.sub('<run_uuid>', path.relative_to(root).as_posix()))
    return sorted(out)


def node_results(work: Path) -> dict[str, float]:
    """Modification time of every node's result file, by node folder."""
    return {
        p.parent.relative_to(work).as_posix(): p.stat().st_mtime_ns
        for p in work.rglob('result_*.pklz')
    }


def test_participant_then_group(
    bids_dataset, tmp_path, tiny_strip_ckpt, tiny_seg_models, tiny_head_ckpt, capsys
):
    """Participant (twice, same work folder) then group: 3 participants, a session, T1w+T2w."""
    models = (tiny_strip_ckpt, tiny_seg_models, tiny_head_ckpt)
    participant_then_group(bids_dataset, tmp_path, *models, capsys)


def participant_then_group(bids_dataset, tmp_path, strip_model, seg_model, head_model, capsys):
    out, work = tmp_path / 'derivatives' / 'synthbids', tmp_path / 'work'
    argv = [
        str(bids_dataset),
        str(out),
        'participant',
        '--strip-model',
        str(strip_model),
        '--seg-model',
        str(seg_model),
        '--head-model',
        str(head_model),
        '--posteriors',
        '--fast',
        '-w',
        str(work),
        '--nprocs',
        '2',
        '--omp-nthreads',
        '1',
    ]
    before = listing(bids_dataset)
    assert main(argv) == 0, capsys.readouterr().err
    first = node_results(work)
    # per image: strip, seg, the LabelMap node, head; 8 SynthStrip/SynthSeg and 5 head datasinks;
    # the tissue maps: 4 datasinks (dseg, GM, WM, CSF) and 3 selects
    assert len(first) == 6 * (4 + 8 + 5 + 7)

    # a second run with the same work directory reuses every computing node
    assert main(argv) == 0, capsys.readouterr().err
    second = node_results(work)
    assert second.keys() == first.keys()
    computed = [k for k in first if not k.rsplit('/', 1)[1].startswith('ds_')]
    assert len(computed) == 6 * (4 + 3)
    assert [k for k in computed if second[k] != first[k]] == []
    rewritten = [k for k in first if second[k] != first[k]]
    assert all(k.rsplit('/', 1)[1].startswith('ds_') for k in rewritten)  # sinks always run

    assert main([str(bids_dataset), str(out), 'group']) == 0
    assert listing(bids_dataset) == before, 'the input dataset was modified'

    # every output, by name: the committed list and the BIDS schema
    files = listing(out)
    if os.environ.get('SYNTHBIDS_UPDATE_EXPECTED'):
        EXPECTED.write_text('\n'.join(files) + '\n')
    expected = EXPECTED.read_text().split()
    assert files == expected, (
        f'unexpected: {sorted(set(files) - set(expected))}; '
        f'missing: {sorted(set(expected) - set(files))}'
    )
    assert invalid_files(out) == []

    check_outputs(out)
    check_reports(out, tmp_path)
    return out


def check_outputs(out: Path) -> None:
    import json

    import nibabel as nib

    mask = nib.load(out / 'sub-01/anat/sub-01_space-T2w_desc-brain_mask.nii.gz')
    raw = nib.load(
        Path(
            json.loads((out / 'dataset_description.json').read_text())['DatasetLinks']['raw'][
                len('file://') :
            ]
        )
        / 'sub-01/anat/sub-01_T2w.nii.gz'
    )
    assert mask.shape == raw.shape and np.allclose(mask.affine, raw.affine)
    assert mask.get_data_dtype() == np.uint8 and 0 < np.asanyarray(mask.dataobj).mean() < 1

    side = json.loads((out / 'sub-01/anat/sub-01_space-T2w_desc-brain_T2w.json').read_text())
    assert side['SkullStripped'] is True
    assert side['Sources'] == [
        'bids:raw:sub-01/anat/sub-01_T2w.nii.gz',
        'bids::sub-01/anat/sub-01_space-T2w_desc-brain_mask.nii.gz',
    ]
    assert (
        side['ModelName'].startswith('SynthStrip') and len(side['ModelWeights'][0]['SHA256']) == 64
    )
    assert side['ModelWeights'][0]['Source'] == 'argument'  # --strip-model
    assert (
        json.loads((out / 'sub-01/anat/sub-01_desc-brain_mask.json').read_text())['Type']
        == 'Brain'
    )
    probseg = json.loads(
        (out / 'sub-03/ses-1/anat/sub-03_ses-1_desc-aseg_probseg.json').read_text()
    )
    assert (
        len(probseg['LabelMap'])
        == nib.load(out / 'sub-03/ses-1/anat/sub-03_ses-1_desc-aseg_probseg.nii.gz').shape[3]
    )

    lut = (out / 'desc-aseg_dseg.tsv').read_text().splitlines()
    assert lut[0] == 'index\tname\tcolor' and len(lut) == 34
    assert all(re.fullmatch(r'\d+\t\S+\t#[0-9a-f]{6}', row) for row in lut[1:])

    qc = (out / 'group_qc.tsv').read_text().splitlines()
    header = qc[0].split('\t')
    assert header[:4] == ['bids_name', 'sub', 'ses', 'suffix'] and header[-1] == 'qc_flags'
    assert len(qc) == 1 + 6
    assert all(row.split('\t')[-2] != 'n/a' for row in qc[1:])  # every image has scores
    vols = (out / 'group_volumes.tsv').read_text().splitlines()
    assert len(vols) == 1 + 6 and 'total intracranial' in vols[0].split('\t')

    check_head_outputs(out)

    citation = (out / 'logs/CITATION.md').read_text()
    assert 'SynthStrip' in citation and 'SynthSeg' in citation and 'PNAS' not in citation
    assert 'Head tissues (brain, CSF, bone' in citation and '[@marching_cubes]' in citation
    assert 'doi:10.1016/j.neuroimage.2022.119474' in citation
    assert 'doi:10.1073/pnas.2216399120' in citation  # QC scores


def check_head_outputs(out: Path) -> None:
    """Head tissues of every image: labels on the input grid with their sidecar and lookup
    table, the volume table (mL), closed meshes of the four surfaces, the group columns."""
    import json

    import nibabel as nib
    import trimesh

    from synthbids.core.head_meshes import SURFACES

    anat = out / 'sub-01/anat'
    dseg = nib.load(anat / 'sub-01_space-T2w_desc-head_dseg.nii.gz')
    links = json.loads((out / 'dataset_description.json').read_text())['DatasetLinks']
    raw = nib.load(Path(links['raw'][len('file://') :]) / 'sub-01/anat/sub-01_T2w.nii.gz')
    assert dseg.shape == raw.shape and np.allclose(dseg.affine, raw.affine)
    assert dseg.get_data_dtype() == np.int32
    assert set(np.unique(np.asanyarray(dseg.dataobj)).tolist()) == {0, 1, 3}  # the tiny net
    side = json.loads((anat / 'sub-01_space-T2w_desc-head_dseg.json').read_text())
    assert side['Sources'] == ['bids:raw:sub-01/anat/sub-01_T2w.nii.gz']
    assert side['SpatialReference'] == 'bids:raw:sub-01/anat/sub-01_T2w.nii.gz'
    assert side['Manual'] is False and side['ModelName'] == 'head-tissue network, custom weights'
    (weights,) = side['ModelWeights']
    assert weights['File'] == 'tiny_head.pt' and weights['Source'] == 'argument'
    assert len(weights['SHA256']) == 64

    lut = (out / 'desc-head_dseg.tsv').read_text().splitlines()
    assert lut[0] == 'index\tname\tcolor' and len(lut) == 1 + 7
    assert lut[4].split('\t')[:2] == ['3', 'Bone']

    header, row = (anat / 'sub-01_desc-head_volumes.tsv').read_text().splitlines()
    volumes = dict(zip(header.split('\t'), map(float, row.split('\t'))))
    assert list(volumes)[:3] == ['brain', 'csf', 'bone'] and volumes['bone'] > 0
    meta = json.loads((anat / 'sub-01_desc-head_volumes.json').read_text())
    assert meta['bone']['Units'] == 'mL' and 'SpatialReference' not in meta

    for image in ('sub-01', 'sub-01_space-T2w', 'sub-03_ses-1'):
        folder = out / ('sub-03/ses-1/anat' if image.startswith('sub-03') else 'sub-01/anat')
        for surface in SURFACES:
            stem = folder / f'{image}_desc-head_{surface}'
            points = nib.load(f'{stem}.surf.gii').agg_data('NIFTI_INTENT_POINTSET')
            mesh = trimesh.load(f'{stem}.stl')
            assert mesh.is_watertight and mesh.volume > 0
            assert np.allclose(mesh.bounds, [points.min(0), points.max(0)], atol=1e-3)

    columns, *rows = (out / 'group_volumes.tsv').read_text().splitlines()
    columns = columns.split('\t')
    at = columns.index('brain mask')
    head = ['brain', 'csf', 'bone', 'skin', 'eyes', 'other_soft_tissue']
    assert columns[at + 1 : at + 7] == [f'head_{c}_ml' for c in head]
    assert all(float(r.split('\t')[columns.index('head_bone_ml')]) > 0 for r in rows)
    group = json.loads((out / 'group_volumes.json').read_text())
    assert group['head_bone_ml']['Units'] == 'mL'


def check_reports(out: Path, tmp_path: Path) -> None:
    browser.chromium()
    qc = [row.split('\t') for row in (out / 'group_qc.tsv').read_text().splitlines()[1:]]
    flagged = {row[0] for row in qc if row[-1] != '0'}
    for sub, n_images in (('01', 2), ('02', 2), ('03', 2)):
        dom = browser.dump_dom(out / f'sub-{sub}.html')
        assert f'<title>synthbids report: sub-{sub}</title>' in dom
        states = re.findall(r'<img class="reportlet[^"]*"[^>]*data-state="(\w+)"', dom)
        assert states == ['loaded'] * (4 * n_images), states  # mask, segmentation, head, skull
        assert dom.count('<img class="reportlet skull"') == n_images
        assert dom.count('<table class="head-volumes">') == n_images
        assert 'Head tissues (desc-head)' in dom and '_desc-head_outerskull.surf.gii' in dom
        assert 'No errors to report!' in dom
        assert dom.count('<table class="qc">') == n_images
        assert 'Hoopes' in dom and 'Billot' in dom  # the boilerplate
        has_flags = any(name.startswith(f'sub-{sub}_') for name in flagged)
        assert ('score(s) below 0.65' in dom) == has_flags
    png = browser.screenshot(out / 'sub-02.html', tmp_path / 'sub-02.png')
    from PIL import Image

    pixels = np.asarray(Image.open(png).convert('L'), dtype=float)
    assert pixels.std() > 20  # text, tables and brain mosaics, not a blank page

    dom = browser.dump_dom(out / 'group.html')
    assert '<title>synthbids group report</title>' in dom
    assert dom.count('<svg') >= 3  # QC, volume and head-tissue distributions
    assert re.search(r'<div class="plot" id="head-plot">\s*<svg', dom)
    outliers = re.search(r'<table class="qc-outliers">(.*?)</table>', dom, re.S)
    listed = set(re.findall(r'>(sub-[^<]+)</a>', outliers.group(1))) if outliers else set()
    assert listed == flagged  # the images with a QC score below the threshold
    for name in flagged:  # their links (table and plotted points) open their report section
        anchor = name.replace('-', '_')
        assert f'href="sub-{name[4:6]}.html#{anchor}"' in dom


@pytest.mark.parametrize('level', ['participant'])
def test_failed_node_is_reported_and_other_images_finish(
    tmp_path, tiny_strip_ckpt, capsys, monkeypatch, level
):
    """MultiProc (forkserver workers): an image that fails in its node fails that node only;
    the crash file lands in sub-<label>/log/<run_uuid>/ and in the report's errors section;
    exit code 1. (A corrupt image is caught before the graph runs: the T2w is truncated once
    the graph is built, as a file changing under a running job.)"""
    import synthbids.cli.run as run_module
    from tests.app.conftest import write_dataset

    bids = write_dataset(
        tmp_path / 'bids',
        images=('sub-01/anat/sub-01_T1w.nii.gz', 'sub-01/anat/sub-01_T2w.nii.gz'),
    )
    t2 = bids / 'sub-01/anat/sub-01_T2w.nii.gz'
    build = run_module.build_workflow

    def build_then_truncate(settings, subjects):
        workflow = build(settings, subjects)
        t2.write_bytes(t2.read_bytes()[:200])
        return workflow

    monkeypatch.setattr(run_module, 'build_workflow', build_then_truncate)
    out, work = tmp_path / 'out', tmp_path / 'work'
    code = main(
        [
            str(bids),
            str(out),
            level,
            '--strip-model',
            str(tiny_strip_ckpt),
            '--no-seg',
            '--no-head',
            '-w',
            str(work),
            '--nprocs',
            '2',
            '--skip-bids-validation',
            '--clean-workdir',
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and (work / 'synthbids_wf').is_dir()  # kept: the run failed
    assert 'some processing steps failed' in err
    assert (out / 'sub-01/anat/sub-01_desc-brain_mask.nii.gz').is_file()
    assert not list(out.rglob('*space-T2w*'))
    crashes = list(out.glob('sub-01/log/*/crash-*.txt'))
    assert len(crashes) == 1
    assert (
        'InputError: ' in crashes[0].read_text()
        and 'sub-01_T2w.nii.gz: ' in crashes[0].read_text()
    )
    report = (out / 'sub-01.html').read_text()
    assert 'No errors to report!' not in report and '1 failed step(s)' in report
    assert re.search(r'InputError: \S+sub-01_T2w.nii.gz: ', report)


def test_default_weights_are_named_as_what_they_are(tmp_path, capsys, packaged_only):
    """A run on the packaged default weights (SynthStrip, SynthSeg, head tissues): the sidecars
    record them as packaged (not as an argument the user never passed), with the early
    models' warnings; the report and the methods text never call the network plain "SynthSeg
    2.0" and show the warnings; with --clean-workdir the work folder is gone after the
    successful run."""
    import json

    from tests.app.conftest import write_dataset

    bids = write_dataset(tmp_path / 'bids', images=('sub-01/anat/sub-01_T1w.nii.gz',))
    out, work = tmp_path / 'out', tmp_path / 'work'
    argv = [str(bids), str(out), 'participant', '-w', str(work), '--nprocs', '2', '--no-qc']
    assert main([*argv, '--clean-workdir']) == 0, capsys.readouterr().err
    assert 'synthbids-seg: an early model' in capsys.readouterr().err
    assert not work.exists()

    mask = json.loads((out / 'sub-01/anat/sub-01_desc-brain_mask.json').read_text())
    dseg = json.loads((out / 'sub-01/anat/sub-01_desc-aseg_dseg.json').read_text())
    head = json.loads((out / 'sub-01/anat/sub-01_desc-head_dseg.json').read_text())
    for meta in (mask, dseg, head):
        (weights,) = meta['ModelWeights']
        assert weights['Source'] == 'packaged' and 'trained' in weights['Origin']
    assert 'Warning' not in mask['ModelWeights'][0]
    assert dseg['ModelWeights'][0]['Warning'].startswith('an early model')
    assert dseg['ModelName'] != 'SynthSeg 2.0' and 'synthbids' in dseg['ModelName']
    assert 'weights trained by synthbids' in head['ModelName']
    head_warning = head['ModelWeights'][0].get('Warning')  # while the head model is early

    methods = (out / 'logs/CITATION.md').read_text()
    report = browser.dump_dom(out / 'sub-01.html')
    for text in (methods, report):
        assert not re.search(r'SynthSeg 2\.0(?! network, weights trained by synthbids)', text)
        assert 'early model' in text
    assert report.count('<div class="warning"') == 2 + 2 * bool(head_warning)
    if head_warning:
        assert f'these weights are {head_warning}' in methods
    assert 'The network ran with weights trained and packaged by synthbids' in methods
