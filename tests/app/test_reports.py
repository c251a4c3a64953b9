"""Report pieces: the pure plotting functions, the subject report and the group tables."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from synthbids.bids.files import write_tsv
from synthbids.reports.group import robust_z, run_group
from synthbids.reports.reportlets import cuts_in_box, plot_mask, plot_segmentation, plot_strips
from synthbids.reports.subject import generate_reports, markdown
from tests.app.conftest import head


def test_mosaics_overlay_grids_that_differ(tmp_path):
    affine = np.diag([0.8, 0.8, 1.5, 1.0])  # anisotropic image, 1 mm segmentation
    image = tmp_path / 'img.nii.gz'
    nib.Nifti1Image(head(shape=(50, 50, 24)), affine).to_filename(image)
    seg = np.zeros((40, 40, 36), np.int16)
    seg[10:30, 10:30, 10:26] = 2
    seg[20:30, 10:30, 10:26] = 41
    nib.Nifti1Image(seg, np.eye(4)).to_filename(tmp_path / 'seg.nii.gz')
    nib.Nifti1Image((seg > 0).astype(np.uint8), np.eye(4)).to_filename(tmp_path / 'm.nii.gz')
    out = plot_segmentation(
        image,
        tmp_path / 'seg.nii.gz',
        tmp_path / 'seg.svg',
        {2: '#f5f5f5', 41: '#00e100'},
        title='t',
    )
    assert out.read_text().count('<image') == 21  # 3 rows x 7 cuts (labels composited in)
    out = plot_mask(image, tmp_path / 'm.nii.gz', tmp_path / 'm.svg', n_cuts=5)
    assert out.read_text().count('<image') == 15 and '<path' in out.read_text()

    from synthbids.reports.reportlets import _load_canonical, _on_grid

    img = _load_canonical(image)
    on_image = _on_grid(_load_canonical(tmp_path / 'seg.nii.gz'), img)
    assert on_image.shape == img.shape
    # world (15, 15, 15) mm is label 2 in the 1 mm segmentation; on the image grid it is the
    # voxel (15 / 0.8, 15 / 0.8, 15 / 1.5)
    assert on_image[19, 19, 10] == 2 and on_image[30, 19, 10] == 41 and on_image[0, 0, 0] == 0


def test_cuts_stay_inside_the_brain():
    mask = np.zeros((30, 30, 30), bool)
    mask[10:20, 5:25, 12:18] = True
    cuts = cuts_in_box(mask, 3)
    assert all(10 <= c < 20 for c in cuts['sagittal'])
    assert all(12 <= c < 18 for c in cuts['axial'])
    assert len(cuts_in_box(np.zeros((5, 5, 5), bool), 3)['coronal']) == 3


def test_strip_plots_link_each_point():
    svg = plot_strips(
        {'a': [(0.9, 'x', 'sub-1.html#x'), (0.3, 'y', 'sub-2.html#y')], 'b': [(None, 'x', 'u')]},
        threshold=0.65,
        xlim=(0, 1),
    )
    assert svg.startswith('<svg') and svg.count('xlink:href="sub-') == 2
    assert plot_strips({'b': [(None, 'x', 'u')]}) == ''


def test_markdown_subset():
    html = markdown('# T\n\nSome *emph* and [a](https://x.org) <b>.\n\n- one\n- two\n')
    assert html == (
        '<h3>T</h3>\n<p>Some <em>emph</em> and <a href="https://x.org">a</a> &lt;b&gt;.</p>\n'
        '<ul><li>one</li><li>two</li></ul>'
    )


@pytest.fixture
def outputs(tmp_path):
    """A hand-made derivatives tree: one image with tables, a crash file from the run."""
    out = tmp_path / 'out'
    anat = out / 'sub-01/anat'
    anat.mkdir(parents=True)
    src = 'bids:raw:sub-01/anat/sub-01_T1w.nii.gz'
    nib.Nifti1Image(np.ones((4, 4, 4), np.uint8), np.eye(4) * 2).to_filename(
        anat / 'sub-01_desc-brain_mask.nii.gz'
    )
    (anat / 'sub-01_desc-brain_mask.json').write_text(
        json.dumps(
            {
                'Sources': [src],
                'ModelName': 'SynthStrip',
                'ModelWeights': [
                    {
                        'Name': 'synthstrip',
                        'File': 'synthstrip.1.pt',
                        'SHA256': 'ab' * 32,
                        'Source': 'cache',
                        'Verified': True,
                    }
                ],
            }
        )
    )
    write_tsv(
        anat / 'sub-01_desc-aseg_volumes.tsv',
        ['index', 'name', 'volume'],
        [
            {'name': 'total intracranial', 'volume': 1500000.25},
            {'index': 17, 'name': 'left hippocampus', 'volume': 4000.5},
        ],
    )
    (anat / 'sub-01_desc-aseg_volumes.json').write_text(json.dumps({'Sources': [src]}))
    write_tsv(
        anat / 'sub-01_desc-aseg_qc.tsv',
        ['structure', 'score', 'flag'],
        [{'structure': 'general csf', 'score': 0.5, 'flag': 'fail'}],
    )
    (anat / 'sub-01_desc-aseg_qc.json').write_text(json.dumps({'Sources': [src]}))
    log = out / 'sub-01/log/20260101-000000_x'
    log.mkdir(parents=True)
    (log / 'crash-1.txt').write_text(
        'Node: synthbids_wf.single_subject_01_wf.anat_T2w_wf.skullstrip_wf.strip\n'
        'Working directory: /scratch/work/synthbids_wf/x\n\nTraceback:\n'
        'synthbids.core.errors.InputError: /data/sub-01_T2w.nii.gz: image is empty\n'
    )
    return out


def test_subject_report_from_outputs(outputs, tmp_path):
    assert generate_reports(outputs, ['01'], '20260101-000000_x', '/scratch/work') == []
    html = (outputs / 'sub-01.html').read_text()
    assert '<title>synthbids report: sub-01</title>' in html
    assert 'Node synthbids_wf.single_subject_01_wf.anat_T2w_wf.skullstrip_wf.strip' in html
    assert 'InputError: /data/sub-01_T2w.nii.gz: image is empty' in html
    assert '&lt;workdir&gt;/synthbids_wf/x' in html and '/scratch/work' not in html
    assert '1 score(s) below 0.65' in html and 'ab' * 32 in html
    assert '1\u2009500\u2009000' in html and 'left hippocampus' in html
    assert 'No brain-mask figure' in html  # no figure was written in this tree


def test_a_failed_report_is_logged_and_the_others_written(outputs, monkeypatch):
    import synthbids.reports.subject as subject

    real = subject._image_section

    def broken(output_dir, image):
        raise RuntimeError('boom')

    monkeypatch.setattr(subject, '_image_section', broken)
    assert generate_reports(outputs, ['01'], 'RUN') == ['01']
    assert 'boom' in (outputs / 'logs/report-RUN-01.err').read_text()
    monkeypatch.setattr(subject, '_image_section', real)


def test_group_tables(outputs):
    written = run_group(outputs)
    assert [p.name for p in written] == [
        'group_volumes.tsv',
        'group_volumes.json',
        'group_qc.tsv',
        'group_qc.json',
        'group.html',
    ]
    vols = (outputs / 'group_volumes.tsv').read_text().splitlines()
    assert vols[0].split('\t') == [
        'bids_name',
        'sub',
        'suffix',
        'seg',
        'brain mask',
        'total intracranial',
        'left hippocampus',
    ]
    assert vols[1].split('\t') == [
        'sub-01_T1w',
        '01',
        'T1w',
        'aseg',
        '512',
        '1500000.25',
        '4000.5',
    ]
    qc = (outputs / 'group_qc.tsv').read_text().splitlines()
    assert qc[1].split('\t') == ['sub-01_T1w', '01', 'T1w', '0.5', '0.5', '1']
    assert json.loads((outputs / 'group_qc.json').read_text())['qc_flags']['Description']


def test_robust_z():
    z = robust_z([10, 11, 9, 10, 50, None])
    assert z[-1] is None and z[4] > 3.5 and abs(z[0]) < 1
    assert robust_z([1, None]) == [None, None]
