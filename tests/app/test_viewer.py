"""The report viewer's files: the data of each image (grid, volumes, label tables, meshes), the
vendored NiiVue bundle, and how the report links them. In a browser: test_viewer_browser.py."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
import struct

import nibabel as nib
import numpy as np
import pytest

from synthbids.bids.files import write_tsv
from synthbids.reports import viewer
from synthbids.reports.subject import generate_reports
from synthbids.reports.viewer_data import MARGIN, build_viewer_data, viewer_grid
from tests.app.conftest import head
from tests.conftest import REPO

SRC = {'Sources': ['bids:raw:sub-01/anat/sub-01_T1w.nii.gz']}
#: The raw image: left-to-right (LAS) voxels of 1.2 x 1 x 1.5 mm.
RAW_AFFINE = np.array([[-1.2, 0, 0, 24], [0, 1, 0, -22], [0, 0, 1.5, -27], [0, 0, 0, 1]])


def decode(volume: dict) -> nib.Nifti1Image:
    return nib.Nifti1Image.from_bytes(gzip.decompress(base64.b64decode(volume['nifti'])))


def read_mz3(b64: str) -> tuple[np.ndarray, np.ndarray]:
    raw = gzip.decompress(base64.b64decode(b64))
    magic, attr, n_faces, n_vertices, skip = struct.unpack('<HHIII', raw[:16])
    assert (magic, attr, skip) == (23117, 3, 0)
    faces = np.frombuffer(raw, '<i4', n_faces * 3, 16).reshape(-1, 3)
    vertices = np.frombuffer(raw, '<f4', n_vertices * 3, 16 + 12 * n_faces).reshape(-1, 3)
    return vertices, faces


def sphere(radius: float, centre) -> tuple[np.ndarray, np.ndarray]:
    import trimesh

    mesh = trimesh.creation.icosphere(subdivisions=4, radius=radius)
    return np.asarray(mesh.vertices) + centre, np.asarray(mesh.faces)


def write_gifti(path, vertices, faces) -> None:
    from nibabel.gifti import GiftiDataArray, GiftiImage

    arrays = [
        GiftiDataArray(vertices.astype(np.float32), intent='NIFTI_INTENT_POINTSET'),
        GiftiDataArray(faces.astype(np.int32), intent='NIFTI_INTENT_TRIANGLE'),
    ]
    nib.save(GiftiImage(darrays=arrays), str(path))


@pytest.fixture
def outputs(tmp_path):
    """A raw T1w and hand-made derivatives of it: mask, aseg labels on a 1 mm grid of their
    own (left half 2, right half 41, a block of 17), head labels and two meshes."""
    raw = tmp_path / 'bids/sub-01/anat/sub-01_T1w.nii.gz'
    raw.parent.mkdir(parents=True)
    image = nib.Nifti1Image(head(shape=(40, 44, 36)).astype(np.float32), RAW_AFFINE)
    image.to_filename(raw)
    out = tmp_path / 'out'
    anat = out / 'sub-01/anat'
    anat.mkdir(parents=True)
    links = {'DatasetLinks': {'raw': (tmp_path / 'bids').as_uri()}}
    (out / 'dataset_description.json').write_text(json.dumps(links))

    def save(data, affine, name):
        nib.Nifti1Image(data, affine).to_filename(anat / f'{name}.nii.gz')
        (anat / f'{name}.json').write_text(json.dumps(SRC))

    brain = image.get_fdata() > 60
    save(brain.astype(np.uint8), RAW_AFFINE, 'sub-01_desc-brain_mask')
    seg = np.zeros((50, 46, 56), np.int32)  # RAS 1 mm, x from -25 mm
    seg[5:25, 8:38, 10:46], seg[25:45, 8:38, 10:46] = 2, 41
    seg[12:20, 15:25, 20:30] = 17
    seg_affine = np.diag([1.0, 1, 1, 1])
    seg_affine[:3, 3] = [-25, -23, -28]
    save(seg, seg_affine, 'sub-01_desc-aseg_dseg')
    rows = [{'index': 2, 'name': 'Left-Cerebral-White-Matter', 'color': '#f5f5f5'}]
    rows += [{'index': 41, 'name': 'Right-Cerebral-White-Matter', 'color': '#00e100'}]
    rows += [{'index': 17, 'name': 'Left-Hippocampus', 'color': '#dcd814'}]
    write_tsv(out / 'desc-aseg_dseg.tsv', ['index', 'name', 'color'], rows)
    volumes = [{'name': 'total intracranial', 'volume': 90000.0}]
    volumes += [{'index': 2, 'name': 'left cerebral white matter', 'volume': 12000.0}]
    volumes += [{'index': 17, 'name': 'left hippocampus', 'volume': 4000.5}]
    write_tsv(anat / 'sub-01_desc-aseg_volumes.tsv', ['index', 'name', 'volume'], volumes)
    (anat / 'sub-01_desc-aseg_volumes.json').write_text(json.dumps(SRC))
    tissues = np.where(brain, 1, np.where(image.get_fdata() > 20, 3, 0)).astype(np.int32)
    save(tissues, RAW_AFFINE, 'sub-01_desc-head_dseg')
    columns = ['brain', 'csf', 'bone', 'skin', 'eyes', 'other_soft_tissue']
    row = dict(zip(columns, [30.25, 0.0, 12.5, 0.0, 0.0, 0.0]))
    write_tsv(anat / 'sub-01_desc-head_volumes.tsv', columns, [row])
    (anat / 'sub-01_desc-head_volumes.json').write_text(json.dumps(SRC))
    centre = RAW_AFFINE[:3, :3] @ ((np.array(image.shape) - 1) / 2) + RAW_AFFINE[:3, 3]
    for surface, radius in (('scalp', 20.0), ('brain', 12.0)):
        write_gifti(anat / f'sub-01_desc-head_{surface}.surf.gii', *sphere(radius, centre))
    return out


def test_the_grid_covers_the_head_within_the_voxel_budget():
    reference = nib.Nifti1Image(np.zeros((181, 217, 181), np.uint8), np.eye(4))
    shape, affine, factor = viewer_grid(reference, None, 2**21)
    assert np.prod(shape) <= 2**21 and 1.45 < factor < 1.6
    first = affine[:3, 3]
    last = affine[:3, :3] @ (np.array(shape) - 1) + affine[:3, 3]
    end = np.array([181, 217, 181]) - 0.5  # the image's edge, in its voxels
    assert np.allclose(first - factor / 2, -0.5)  # the grids start at the same edge
    assert np.all(last + factor / 2 >= end) and np.all(last - factor / 2 < end)  # and end

    keep = np.zeros((181, 217, 181), bool)
    keep[50:90, 60:100, 70:80] = True
    shape, affine, factor = viewer_grid(reference, keep, 2**21)
    assert factor == 1 and shape == (40 + 2 * MARGIN, 40 + 2 * MARGIN, 10 + 2 * MARGIN)
    assert np.allclose(affine[:3, 3], [50 - MARGIN, 60 - MARGIN, 70 - MARGIN])


def test_every_layer_lands_where_its_derivative_is(outputs):
    """Decoded from the viewer data, each layer gives at a world point what its file gives
    there: the labels of the segmentation's own grid, the mask, the image's intensities."""
    anat = outputs / 'sub-01/anat'
    raw = outputs.parent / 'bids/sub-01/anat/sub-01_T1w.nii.gz'
    data = build_viewer_data(
        'sub-01_T1w',
        raw,
        mask=anat / 'sub-01_desc-brain_mask.nii.gz',
        seg=anat / 'sub-01_desc-aseg_dseg.nii.gz',
        seg_table={17: {'name': 'Left-Hippocampus', 'color': '#dcd814', 'volume': 4000.5}},
        max_voxels=20000,  # voxels grow: the layers are resampled, not copied
    )
    assert data['grid']['factor'] > 1.3
    image, mask, seg = (decode(v) for v in data['volumes'])
    assert [v['id'] for v in data['volumes']] == ['image', 'mask', 'seg']
    for img in (image, mask, seg):
        assert img.get_data_dtype() == np.uint8 and img.shape == tuple(data['grid']['shape'])
        assert np.allclose(img.affine, image.affine) and int(img.header['sform_code']) == 1
    assert mask.header.get_intent()[0] == 'label' and data['volumes'][1]['outline']

    def at(img, world, scaled=False):
        vox = np.round(np.linalg.solve(img.affine, [*world, 1])[:3]).astype(int)
        return (img.get_fdata() if scaled else np.asanyarray(img.dataobj))[tuple(vox)]

    codes = {e['code']: e for e in data['volumes'][2]['labels']}
    for world, label in (([-16, 5, 5], 2), ([10, 0, 0], 41), ([-9, -3, -3], 17)):
        assert codes[at(seg, world)]['value'] == label
    assert codes[at(seg, [-9, -3, -3])]['volume'] == 4000.5
    assert at(mask, [0, 0, 0]) == 1 and at(mask, [-23, -21, -25]) == 0
    source = nib.load(raw)
    inside = at(source, [0, 0, 0], scaled=True)
    assert abs(at(image, [0, 0, 0], scaled=True) - inside) < 12  # window, smoothing
    assert image.header['cal_min'] < 30 < 100 < image.header['cal_max']  # shell, brain shown


def test_tables_and_meshes_of_the_viewer(outputs):
    from synthbids.reports.collect import collect_outputs

    (image,) = collect_outputs(outputs, '01')
    seg = viewer.seg_table(outputs, image)
    assert seg[17] == {'name': 'Left-Hippocampus', 'color': '#dcd814'} | {
        'volume': 4000.5,
        'unit': 'mm\u00b3',
    }
    tissues = viewer.head_table(outputs, image)
    assert tissues[3]['name'] == 'Bone' and (tissues[3]['volume'], tissues[3]['unit']) == (
        12.5,
        'mL',
    )
    meshes = viewer.head_meshes(outputs, image, tissues)
    assert sorted(meshes) == ['brain', 'scalp']
    assert meshes['scalp'][2] == tissues[4]['color']  # skin
    from synthbids.reports.viewer_data import mesh_entry

    vertices, faces, color = meshes['scalp']
    entry = mesh_entry('scalp', vertices, faces, color, max_faces=1000)
    v, f = read_mz3(entry['mz3'])
    assert entry['source_faces'] == len(faces) == 5120 and len(f) == entry['faces'] <= 1000
    assert f.min() == 0 and f.max() == len(v) - 1
    radius = np.linalg.norm(v - vertices.mean(axis=0), axis=1)
    assert np.all(np.abs(radius - 20) < 1.5)  # still the sphere, in world mm
    assert np.allclose(v * 32, np.round(v * 32))  # 1/32 mm steps


def viewer_div(html: str) -> dict[str, str]:
    (div,) = re.findall(r'<div class="viewer" ([^>]*)>', html)
    return dict(re.findall(r'data-(\w+)="([^"]*)"', div))


def test_the_report_links_its_viewer_files_and_stays_small(outputs):
    assert generate_reports(outputs, ['01']) == []
    html = (outputs / 'sub-01.html').read_text()
    assert len(html.encode()) < 80_000 and 'H4sI' not in html  # no gzip data inline
    div = viewer_div(html)
    assert div['key'] == 'sub_01_T1w'
    assert div['data'] == 'sub-01/figures/viewer/sub-01_T1w.js'
    assert div['bundle'] == f'viewer/niivue-{viewer.bundle_manifest()["version"]}.umd.js'
    for rel in (div['data'], div['bundle']):
        assert not rel.startswith(('/', 'http', 'file:')) and (outputs / rel).is_file()
    bundle = (outputs / div['bundle']).read_bytes()
    assert hashlib.sha256(bundle).hexdigest() == viewer.bundle_manifest()['sha256']
    assert (outputs / div['bundle'].replace('.umd.js', '.LICENSE.txt')).is_file()
    old = outputs / 'viewer/niivue-0.1.0.umd.js'  # an earlier release's
    old.write_text('')
    mtime = (outputs / div['bundle']).stat().st_mtime_ns
    assert viewer.install_bundle(outputs) == div['bundle'] and not old.exists()
    assert (outputs / div['bundle']).stat().st_mtime_ns == mtime  # the same copy kept
    script = (outputs / div['data']).read_text()
    prefix = '(window.synthbidsViewer = window.synthbidsViewer || {})["sub_01_T1w"] = '
    data = json.loads(script.split(prefix, 1)[1].rstrip().rstrip(';'))
    assert [v['id'] for v in data['volumes']] == ['image', 'mask', 'seg', 'head']
    assert [m['id'] for m in data['meshes']] == ['scalp', 'brain']
    assert data['shows'] == 'input image' and 'head surface meshes' in html
    assert '<script>' in html and 'synthbidsViewer' in html  # the viewer's own code, inline
    assert 'shows 1.2 × 1.0 × 1.5 mm voxels (the image has 1.2 × 1.0 × 1.5 mm)' in html


def test_the_skull_stripped_image_stands_in_for_a_missing_input(outputs):
    anat = outputs / 'sub-01/anat'
    nib.Nifti1Image(head(shape=(40, 44, 36)), RAW_AFFINE).to_filename(
        anat / 'sub-01_desc-brain_T1w.nii.gz'
    )
    (anat / 'sub-01_desc-brain_T1w.json').write_text(json.dumps(SRC))
    (outputs.parent / 'bids/sub-01/anat/sub-01_T1w.nii.gz').unlink()
    generate_reports(outputs, ['01'])
    html = (outputs / 'sub-01.html').read_text()
    assert 'The skull-stripped image (input not found) with its brain mask' in html
    assert (outputs / viewer_div(html)['data']).is_file()


@pytest.mark.parametrize('broken', ['data', 'bundle'])
def test_a_viewer_that_cannot_be_written_leaves_the_report(outputs, monkeypatch, caplog, broken):
    """The viewer's data or NiiVue's copy fails (memory, a full disk): the report is written
    with its figures and without the viewer, and the log says why."""
    import synthbids.reports.subject as subject
    import synthbids.reports.viewer_data as viewer_data

    def fail(*args, **kwargs):
        raise OSError('no room')

    if broken == 'data':
        monkeypatch.setattr(viewer_data, 'build_viewer_data', fail)
    else:
        monkeypatch.setattr(subject, 'install_bundle', fail)
    assert generate_reports(outputs, ['01']) == []
    html = (outputs / 'sub-01.html').read_text()
    assert 'class="viewer"' not in html and 'synthbidsViewer' not in html
    assert 'Volumes' in html  # the rest of the report
    assert not list((outputs / 'sub-01/figures').rglob('*.umd.js'))
    assert re.search(r'viewer of sub-0?1(_T1w)? (not written|left out): no room', caplog.text)


def test_the_vendored_niivue_is_the_recorded_release_with_its_licences():
    from synthbids.data import data_path

    manifest = viewer.bundle_manifest()
    folder = data_path('viewer')
    bundle = folder.joinpath(manifest['file']).read_bytes()
    assert manifest['package'] == '@niivue/niivue' and manifest['license'] == 'BSD-2-Clause'
    assert hashlib.sha256(bundle).hexdigest() == manifest['sha256']
    assert len(bundle) == manifest['bytes'] < 3_000_000  # the wheel stays reasonable
    assert manifest['integrity'].startswith('sha512-')
    assert bundle.startswith(b'(function(') and b'.niivue={}' in bundle[:600]  # UMD global
    assert not re.search(rb'(unpkg\.com|jsdelivr|cdnjs)', bundle)  # loads nothing remotely
    licences = folder.joinpath('LICENSE.txt').read_text()
    assert licences.startswith(f'NiiVue {manifest["version"]}') and 'BSD 2-Clause' in licences
    for name, version in manifest['bundled'].items():
        assert f'----- {name} {version} -----' in licences
    package_data = re.search(
        r'^"synthbids\.data" = \[(.*)\]$', (REPO / 'pyproject.toml').read_text(), re.M
    )
    assert '"viewer/*"' in package_data.group(1)  # in the wheel
