"""Report pieces: the pure plotting functions, the subject report and the group tables."""

from __future__ import annotations

import json
import re

import nibabel as nib
import numpy as np
import pytest

from synthbids.bids.files import write_tsv
from synthbids.reports.collect import mask_volume
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


def test_cuts_are_marked_left_right_and_in_mm(tmp_path):
    """An image stored left-to-right (LAS) with a bright blob in the subject's right
    hemisphere (world x > 0): the blob is drawn on the side marked R, and cuts are labelled
    with world coordinates in mm, not voxel indices."""
    from synthbids.reports.reportlets import SIDES_OF_ROW, _load_canonical, _slice, cut_label

    data = np.zeros((20, 20, 20), np.int16)
    data[2:8, 4:16, 4:16] = 100  # voxel i = 2..7 of a flipped x axis: world x = 12..17 mm
    affine = np.diag([-1.0, 1.0, 2.0, 1.0])
    affine[:3, 3] = [19, -10, -20]
    image = nib.Nifti1Image(data, affine)
    canonical = _load_canonical(image)
    for row in ('axial', 'coronal'):
        section = _slice(np.asanyarray(canonical.dataobj), row, 10)
        columns = np.flatnonzero(section.any(axis=0))
        assert columns.min() > section.shape[1] / 2 and SIDES_OF_ROW[row] == ('L', 'R')
    assert cut_label(canonical, 'axial', 13) == 'z=+6 mm'  # -20 + 2 * 13
    assert cut_label(canonical, 'sagittal', 0) == 'x=+0 mm'  # the flipped axis: 19 - 19

    mask = nib.Nifti1Image((data > 0).astype(np.uint8), affine)
    svg = plot_mask(image, mask, tmp_path / 'm.svg', n_cuts=3).read_text()  # nibabel images
    labels = re.findall(r'<!-- (.+?) -->', svg)
    assert labels.count('L') == labels.count('R') == 6 and labels.count('A') == 3
    assert [t for t in labels if t.startswith('z=')] == ['z=-6 mm', 'z=+0 mm', 'z=+4 mm']
    assert not [t for t in labels if re.fullmatch(r'[ACS]=\d+', t)]  # no voxel indices


def test_segmentation_mosaic_has_a_legend(tmp_path):
    image = nib.Nifti1Image(head(shape=(30, 30, 30)), np.eye(4))
    seg = np.zeros((30, 30, 30), np.int16)
    seg[5:15, 5:25, 5:25], seg[15:25, 5:25, 5:25] = 17, 53  # left and right hippocampus
    seg[12:18, 12:18, 12:18] = 2
    svg = plot_segmentation(image, nib.Nifti1Image(seg, np.eye(4)), tmp_path / 's.svg')
    labels = re.findall(r'<!-- (.+?) -->', svg.read_text())
    assert 'Hippocampus' in labels and 'Left-Cerebral-White-Matter' in labels
    assert not {'Left-Hippocampus', 'Right-Hippocampus'} & set(labels)  # one colour, one entry
    assert '#dcd814' in svg.read_text()  # FreeSurfer's hippocampus colour, from the LUT


def test_a_4d_mask_counts_one_frame(tmp_path):
    """Dynamic PET is stripped frame by frame: each frame's mask is the brain once."""
    frame = np.zeros((10, 10, 10), np.uint8)
    frame[2:7, 2:7, 2:7] = 1
    nib.Nifti1Image(frame, np.eye(4) * 2).to_filename(tmp_path / 'm3.nii.gz')
    series = np.stack([frame, frame], axis=-1)
    nib.Nifti1Image(series, np.diag([2, 2, 2, 1.0])).to_filename(tmp_path / 'm4.nii.gz')
    assert mask_volume(tmp_path / 'm4.nii.gz') == mask_volume(tmp_path / 'm3.nii.gz') == 1000


def copy_participant(out, old, new):
    """Another participant with ``old``'s outputs (names and sidecar sources renamed)."""
    for path in sorted((out / f'sub-{old}').rglob('*')):
        if path.is_file():
            dest = out / path.relative_to(out).as_posix().replace(f'sub-{old}', f'sub-{new}')
            dest.parent.mkdir(parents=True, exist_ok=True)
            if path.suffix in ('.json', '.tsv'):
                dest.write_text(path.read_text().replace(f'sub-{old}', f'sub-{new}'))
            else:
                dest.write_bytes(path.read_bytes())


def test_group_level_honours_the_participant_label(outputs, tmp_path, capsys):
    from synthbids.cli.run import main

    copy_participant(outputs, '01', '02')
    copy_participant(outputs, '01', '03')
    argv = [str(tmp_path / 'bids'), str(outputs), 'group']
    assert main([*argv, '--participant-label', 'sub-02', '03']) == 0
    rows = (outputs / 'group_volumes.tsv').read_text().splitlines()[1:]
    assert [r.split('\t')[0] for r in rows] == ['sub-02_T1w', 'sub-03_T1w']
    assert 'sub-01' not in (outputs / 'group.html').read_text()
    assert main([*argv, '--participant-label', '07']) == 18
    assert 'no participant outputs for sub-07' in capsys.readouterr().err
    assert main(argv) == 0 and len((outputs / 'group_qc.tsv').read_text().splitlines()) == 4


def test_group_level_names_participants_without_outputs(outputs, tmp_path, capsys):
    """A participant whose run failed (a folder with only its log) and one of the dataset
    that was never run are named in one warning; the tables still hold the others."""
    from synthbids.cli.run import main

    (outputs / 'sub-02/log/20260101-000000_x').mkdir(parents=True)
    bids = tmp_path / 'bids'
    for label in ('01', '02', '03'):
        (bids / f'sub-{label}/anat').mkdir(parents=True)
    (bids / 'dataset_description.json').write_text('{"Name": "x", "BIDSVersion": "1.10.0"}')
    assert main([str(bids), str(outputs), 'group']) == 0
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        'WARNING: no outputs for sub-02, sub-03 (not in the group tables: run the participant '
        'level for them)'
    ]
    rows = (outputs / 'group_volumes.tsv').read_text().splitlines()[1:]
    assert [r.split('\t')[0] for r in rows] == ['sub-01_T1w']
    assert main([str(bids), str(outputs), 'group', '--participant-label', '01']) == 0
    assert capsys.readouterr().err == ''


def test_group_level_is_quiet_with_q(outputs, tmp_path, capsys):
    from synthbids.cli.run import main

    argv = [str(tmp_path / 'bids'), str(outputs), 'group']
    assert main(argv) == 0 and 'wrote ' in capsys.readouterr().out
    assert main([*argv, '-q']) == 0 and capsys.readouterr().out == ''
    assert main([*argv, '-q', '-v']) == 64
    assert 'not allowed with argument' in capsys.readouterr().err


def packaged_weights(kind):
    """The weights packaged with synthbids for ``kind``, resolved as a run resolves them."""
    from synthbids.core import weights

    entry = next(e for e in weights.packaged_entries().values() if e.kind == kind)
    return weights.resolve(kind, explicit=weights.packaged_path(entry))


def packaged_sidecar(kind):
    """Sidecar metadata of the weights packaged with synthbids, as the interfaces write it."""
    from synthbids.core.weights import model_name

    found = packaged_weights(kind)
    return {'ModelName': model_name(kind, found), 'ModelWeights': [found.describe()]}


def test_report_names_the_weights_and_warns_about_an_early_model(outputs):
    """Packaged SynthSeg weights: the report says they are synthbids' own (not "SynthSeg
    2.0"), with their measured accuracy, and shows their warning where it is seen."""
    anat = outputs / 'sub-01/anat'
    src = {'Sources': ['bids:raw:sub-01/anat/sub-01_T1w.nii.gz']}
    nib.Nifti1Image(np.ones((4, 4, 4), np.int16), np.eye(4)).to_filename(
        anat / 'sub-01_desc-aseg_dseg.nii.gz'
    )
    (anat / 'sub-01_desc-aseg_dseg.json').write_text(
        json.dumps({**src, **packaged_sidecar('seg')})
    )
    mask_meta = json.loads((anat / 'sub-01_desc-brain_mask.json').read_text())
    (anat / 'sub-01_desc-brain_mask.json').write_text(
        json.dumps({**mask_meta, **packaged_sidecar('strip')})
    )
    generate_reports(outputs, ['01'])
    html = (outputs / 'sub-01.html').read_text()
    assert html.count('<div class="warning"') == 2  # the summary and the image's weights
    assert 'Warning: synthbids-seg</strong> is an early model' in html
    assert 'default weights trained and packaged by synthbids' in html
    accuracy = packaged_sidecar('seg')['ModelWeights'][0]['Accuracy']
    assert accuracy.startswith('mean Dice') and accuracy.split(';')[0] in html  # the card's
    assert '>SynthSeg 2.0<' not in html and 'weights trained by synthbids' in html


def test_report_says_qc_was_not_run_and_renders_citations(outputs):
    from synthbids.bids.citation import boilerplate, write_citation
    from synthbids.config import ModelSettings

    for qc in (outputs / 'sub-01/anat').glob('*_qc.*'):
        qc.unlink()
    methods = boilerplate('1', ModelSettings(segment=False), packaged_weights('strip'))
    write_citation(outputs, methods)
    generate_reports(outputs, ['01'])
    html = (outputs / 'sub-01.html').read_text()
    assert 'QC not run' in html and '>none</span>' not in html.split('QC flags')[1][:200]
    assert '[@' not in html and '(Gorgolewski et al., 2011)' in html
    assert '(Hoopes et al., 2022) Hoopes A, Mora JS' in html  # the reference list


def test_mosaic_labels_are_neither_clipped_nor_over_the_cuts():
    """Every label (cut coordinates, L/R, title) and the legend lie inside the figure and
    outside every cut, even for narrow cuts of an anisotropic image."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from synthbids.reports.reportlets import _load_canonical, _mosaic

    image = _load_canonical(nib.Nifti1Image(head(shape=(12, 60, 40)), np.diag([3, 1, 1, 1.0])))
    legend = [('#ff0000', 'Left-Cerebral-White-Matter')] * 9
    fig = _mosaic(image, 7, lambda ax, row, i: None, 'sub-01_T1w', image.get_fdata() > 50, legend)
    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    frame = fig.bbox.padded(0.5)
    cuts = [ax.get_window_extent(renderer) for ax in fig.axes]
    labels = [t.get_window_extent(renderer) for t in fig.texts]
    labels += [legend.get_window_extent(renderer) for legend in fig.legends]
    assert len(labels) == 3 * len(cuts) + 2 and len(cuts) >= 18
    for box in labels:
        assert frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1)
        assert not any(box.overlaps(cut) for cut in cuts)


def add_head_outputs(out, bone=180.5):
    """Head-tissue outputs of ``sub-01_T1w`` in a hand-made tree: labels with their sidecar,
    the volume table, two meshes and the two figures."""
    from synthbids.bids.naming import SourceImage, figure_relpath

    anat = out / 'sub-01/anat'
    src = {'Sources': ['bids:raw:sub-01/anat/sub-01_T1w.nii.gz']}
    nib.Nifti1Image(np.ones((4, 4, 4), np.int32), np.eye(4)).to_filename(
        anat / 'sub-01_desc-head_dseg.nii.gz'
    )
    (anat / 'sub-01_desc-head_dseg.json').write_text(
        json.dumps({**src, 'Manual': False, **packaged_sidecar('head')})
    )
    columns = ['brain', 'csf', 'bone', 'skin', 'eyes', 'other_soft_tissue']
    values = [1200.25, 250.0, bone, 300.0, 15.0, 500.0]
    write_tsv(anat / 'sub-01_desc-head_volumes.tsv', columns, [dict(zip(columns, values))])
    (anat / 'sub-01_desc-head_volumes.json').write_text(json.dumps(src))
    for name in ('sub-01_desc-head_outerskull.surf.gii', 'sub-01_desc-head_outerskull.stl'):
        (anat / name).write_text('')
    source = SourceImage.from_relpath('sub-01/anat/sub-01_T1w.nii.gz')
    for desc, ext in (('head', '.svg'), ('skull', '.png')):
        figure = out / figure_relpath(source, desc, ext)
        figure.parent.mkdir(parents=True, exist_ok=True)
        figure.write_text('')


def test_report_has_a_head_panel(outputs):
    """The head tissues of an image: labels figure, skull rendering, volumes in mL, the
    meshes, the weights (with their warning while the packaged model is early), the bone
    volume in the summary; without head outputs the image says "not run"."""
    generate_reports(outputs, ['01'])
    assert 'Head tissues (desc-head)' not in (outputs / 'sub-01.html').read_text()
    add_head_outputs(outputs)
    generate_reports(outputs, ['01'])
    html = (outputs / 'sub-01.html').read_text()
    assert 'Head tissues (desc-head)' in html
    assert 'src="sub-01/figures/sub-01_desc-head_T1w.svg"' in html
    assert 'class="reportlet skull" src="sub-01/figures/sub-01_desc-skull_T1w.png"' in html
    table = re.search(r'<table class="head-volumes">(.*?)</table>', html, re.S).group(1)
    assert '<td>bone</td><td class="num">180.5</td>' in table
    assert '<td>other soft tissue</td>' in table
    assert 'href="sub-01/anat/sub-01_desc-head_outerskull.surf.gii"' in html
    assert '<td class="num">180.5</td>' in html.split('<table class="images">')[1]
    head = packaged_sidecar('head')['ModelWeights'][0]
    assert head['SHA256'] in html and 'head-tissue network' in html
    if head.get('Warning'):
        assert f'Warning: {head["Name"]}</strong> is {head["Warning"]}' in html


def test_group_tables_have_head_columns(outputs):
    """Head-tissue volumes come right after the brain mask, in mL, one column per class."""
    add_head_outputs(outputs, bone=180.5)
    run_group(outputs)
    header, row = (outputs / 'group_volumes.tsv').read_text().splitlines()
    head = ['brain', 'csf', 'bone', 'skin', 'eyes', 'other_soft_tissue']
    assert header.split('\t') == [
        'bids_name',
        'sub',
        'suffix',
        'seg',
        'brain mask',
        *(f'head_{c}_ml' for c in head),
        'total intracranial',
        'left hippocampus',
    ]
    assert row.split('\t')[5:11] == ['1200.25', '250', '180.5', '300', '15', '500']
    meta = json.loads((outputs / 'group_volumes.json').read_text())
    assert meta['head_bone_ml']['Units'] == 'mL' and 'bone' in meta['head_bone_ml']['Description']
    assert meta['head_other_soft_tissue_ml']['Description'].startswith(
        'Volume of other soft tissue'
    )
    html = (outputs / 'group.html').read_text()
    assert '<section id="head">' in html and '<th>Bone (mL)</th>' in html
    assert re.search(r'id="head-plot">\s*<svg', html)


def test_head_labels_mosaic_names_the_classes(tmp_path):
    from synthbids.core.labels import HEAD_COLORS, HEAD_NAMES

    image = nib.Nifti1Image(head(shape=(30, 30, 30)), np.eye(4))
    labels = np.zeros((30, 30, 30), np.int32)
    labels[5:25, 5:25, 5:25], labels[10:20, 10:20, 10:20] = 3, 1
    svg = plot_segmentation(
        image,
        nib.Nifti1Image(labels, np.eye(4)),
        tmp_path / 'h.svg',
        dict(enumerate(HEAD_COLORS)),
        names=dict(enumerate(HEAD_NAMES)),
    ).read_text()
    legend = re.findall(r'<!-- (.+?) -->', svg)
    assert 'Bone' in legend and 'Brain' in legend and 'Left-Cerebral-White-Matter' not in legend


def test_surface_rendering(tmp_path):
    """A closed mesh of many faces is decimated for drawing and rendered, lit from the viewer,
    in two views side by side (a PNG, the object bright in the middle of each view)."""
    import trimesh
    from PIL import Image

    from synthbids.reports.surfaces import decimate_mesh, plot_message, plot_surface

    sphere = trimesh.creation.icosphere(subdivisions=6, radius=80)  # 81 920 faces
    vertices, faces = decimate_mesh(sphere.vertices, sphere.faces, 10000)
    assert 5000 < len(faces) <= 10000 and faces.max() < len(vertices)
    assert np.allclose(np.linalg.norm(vertices, axis=1), 80, rtol=0.05)  # still the sphere
    assert len(decimate_mesh(vertices, faces, 10**6)[1]) == len(faces)  # small enough already

    path = tmp_path / 'mesh.gii'
    from synthbids.core.head_meshes import gifti_surface

    path.write_bytes(gifti_surface(sphere).to_xml())
    png = plot_surface(path, tmp_path / 'sphere.png', max_faces=10000, title='t')
    pixels = np.asarray(Image.open(png).convert('L'), dtype=float)
    height, width = pixels.shape
    assert width == 2 * round(3.2 * 100)
    for centre in (width // 4, 3 * width // 4):  # each view: a lit sphere on black
        assert (
            pixels[height // 2, centre] > 150 and pixels[height // 2, centre - width // 4 + 3] < 20
        )
    message = plot_message('nothing', tmp_path / 'm.png')
    assert Image.open(message).size == (640, 100)
