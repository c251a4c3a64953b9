"""The data of the reports' interactive viewer: one image's results, made small, as a
JavaScript file that a report opened from disk loads with a plain ``<script src>``.

Why a script file: browsers refuse ``fetch()`` of ``file://`` URLs, so NiiVue cannot load the
derivatives by URL from a report double-clicked in a copied or unzipped output folder, while a
classic ``<script src="relative/path.js">`` loads from disk everywhere. The script assigns one
JSON object to ``window.synthbidsViewer[<key>]``; the report stays small because the data is in
this file, loaded only when its viewer opens.

What it holds, on one grid (:func:`viewer_grid`: the input image's RAS grid cropped to the head,
voxels enlarged by a common factor until at most :data:`MAX_VOXELS` remain, about 1.5 mm for a
1 mm whole-head image), each as a gzipped NIfTI in base64:

* ``image``: the input image as uint8 (0.5-99.5 percentile window of the head), with
  ``scl_slope``/``scl_inter`` giving back its intensities;
* label volumes (``mask``, ``seg``, ``head``) as uint8 codes 1..n with a table per code: label
  value, name, colour and volume (from the derivative tables);

and the head surface meshes, decimated to at most :data:`MAX_FACES` faces, as gzipped MZ3 (the
compact mesh format NiiVue reads), vertices in scanner RAS+ mm rounded to 1/32 mm.

No Nipype and no files but the one written: :mod:`.viewer` gathers the inputs.
"""

from __future__ import annotations

import base64
import gzip
import json
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

#: Most voxels of the viewer's grid (2^21: a 128^3 cube).
MAX_VOXELS = 2**21
#: Most faces of each mesh in the viewer.
MAX_FACES = 20000
#: Voxels kept around the head's bounding box.
MARGIN = 2
#: Version of the data layout, checked by the viewer script.
FORMAT = 1


def _first_frame(img) -> nib.Nifti1Image:
    img = img if isinstance(img, nib.spatialimages.SpatialImage) else nib.load(str(img))
    if img.ndim > 3:
        img = img.slicer[..., 0]
    return img


def foreground(data: np.ndarray) -> np.ndarray:
    """Voxels above a tenth of the robust intensity range (the head, not the air)."""
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        return np.zeros(data.shape, bool)
    lo, hi = np.percentile(finite, [0.5, 99.5])
    return data > lo + 0.1 * (hi - lo)


def viewer_grid(
    reference: nib.Nifti1Image, keep: np.ndarray | None = None, max_voxels: int = MAX_VOXELS
) -> tuple[tuple[int, int, int], np.ndarray, float]:
    """``(shape, affine, factor)`` of the viewer's grid: ``reference``'s grid (canonical RAS
    expected) cropped to the bounding box of ``keep`` (plus :data:`MARGIN` voxels), its voxels
    enlarged ``factor`` times (never shrunk) so that at most ``max_voxels`` remain."""
    shape = np.array(reference.shape[:3])
    if keep is not None and keep.any():
        idx = np.argwhere(keep)
        lo = np.maximum(idx.min(axis=0) - MARGIN, 0)
        hi = np.minimum(idx.max(axis=0) + 1 + MARGIN, shape)
    else:
        lo, hi = np.zeros(3, int), shape
    size = hi - lo
    factor = max(1.0, float(np.prod(size) / max_voxels) ** (1 / 3))
    while True:
        out = np.maximum(np.ceil(size / factor - 1e-6).astype(int), 1)
        if np.prod(out) <= max_voxels:
            break
        factor *= 1.01
    vox = np.eye(4)
    vox[:3, :3] *= factor
    vox[:3, 3] = lo + (factor - 1) / 2  # centre of the new voxel 0, in old voxels
    return tuple(int(n) for n in out), reference.affine @ vox, factor


def resample(img, shape, affine, order: int, prefilter_factor: float = 1.0) -> np.ndarray:
    """``img`` (any grid) on the grid ``(shape, affine)``; 0 outside. ``order`` 0 for labels;
    ``prefilter_factor`` > 1 smooths first (anti-aliasing when voxels grow that much)."""
    img = _first_frame(img)
    data = np.asanyarray(img.dataobj)
    if not order and img.shape[:3] == tuple(shape) and np.allclose(img.affine, affine):
        return data  # labels already on the grid
    data = data.astype(np.float32) if order else data
    if order and prefilter_factor > 1.01:
        data = ndimage.gaussian_filter(data, sigma=(prefilter_factor - 1) / 2)
    vox2vox = np.linalg.inv(img.affine) @ affine
    return ndimage.affine_transform(
        data, vox2vox[:3, :3], vox2vox[:3, 3], tuple(shape), order=order, cval=0, mode='constant'
    )


def _nifti_b64(
    data: np.ndarray, affine: np.ndarray, slope=None, inter=None, window=None, outline=False
) -> str:
    img = nib.Nifti1Image(data, affine)
    if outline:  # NiiVue draws the borders of NIFTI_INTENT_LABEL volumes ("atlas outline")
        img.header.set_intent('label')
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    if slope is not None:
        img.header.set_slope_inter(slope, inter)
    if window is not None:  # the display window, in scaled units
        img.header['cal_min'], img.header['cal_max'] = window
    raw = gzip.compress(img.to_bytes(), compresslevel=6, mtime=0)
    return base64.b64encode(raw).decode('ascii')


def intensity_volume(image, shape, affine, factor: float) -> dict:
    """The image on the viewer grid as uint8, windowed on its head voxels."""
    data = resample(image, shape, affine, order=1, prefilter_factor=factor)
    head = foreground(data)
    values = data[head] if head.any() else data.ravel()
    lo, hi = (float(v) for v in np.percentile(values, [0.5, 99.5]))
    hi = hi if hi > lo else lo + 1
    u8 = np.clip(np.round((data - lo) / (hi - lo) * 255), 0, 255).astype(np.uint8)
    return {
        'id': 'image',
        'nifti': _nifti_b64(u8, affine, slope=(hi - lo) / 255, inter=lo, window=(lo, hi)),
        'window': [lo, hi],
    }


def label_volume(
    kind: str, labels: np.ndarray, affine: np.ndarray, table: dict[int, dict], outline=False
) -> dict:
    """A label volume as uint8 codes 1..n (0 background) with one entry per code:
    ``value`` (the label), ``name``, ``color``, ``volume`` and ``unit`` from ``table``
    (``{value: {name, color, volume, unit}}``; labels not in it get their value as name).
    ``outline``: drawn as its outline (NIfTI intent ``label``; only the mask is)."""
    labels = np.asarray(labels).astype(np.int64)
    values = [int(v) for v in np.unique(labels) if v != 0]
    if len(values) > 255:
        raise ValueError(f'{kind}: {len(values)} labels do not fit in uint8')
    lookup = np.zeros(max(values, default=0) + 1, np.uint8)
    entries = []
    for code, value in enumerate(values, start=1):
        lookup[value] = code
        info = table.get(value, {})
        entries.append(
            {
                'code': code,
                'value': value,
                'name': info.get('name') or str(value),
                'color': info.get('color') or '#ffff00',
                'volume': info.get('volume'),
                'unit': info.get('unit', ''),
            }
        )
    codes = lookup[np.clip(labels, 0, None)] if values else np.zeros(labels.shape, np.uint8)
    nifti = _nifti_b64(codes, affine, outline=outline)
    return {'id': kind, 'nifti': nifti, 'labels': entries, 'outline': outline}


def mz3_b64(vertices: np.ndarray, faces: np.ndarray) -> str:
    """A triangle mesh as gzipped MZ3 (faces and vertices) in base64; vertices rounded to
    1/32 mm (exact in float32, so they compress)."""
    vertices = np.round(np.asarray(vertices, np.float64) * 32) / 32
    faces = np.asarray(faces, np.int32)
    header = struct.pack('<HHIII', 23117, 3, len(faces), len(vertices), 0)
    raw = header + faces.astype('<i4').tobytes() + vertices.astype('<f4').tobytes()
    return base64.b64encode(gzip.compress(raw, compresslevel=6, mtime=0)).decode('ascii')


def mesh_entry(name: str, vertices, faces, color: str, max_faces: int = MAX_FACES) -> dict:
    from .surfaces import decimate_mesh

    n_source = len(faces)
    vertices, faces = decimate_mesh(vertices, faces, max_faces)
    return {
        'id': name,
        'mz3': mz3_b64(vertices, faces),
        'color': color,
        'faces': int(len(faces)),
        'source_faces': int(n_source),
    }


def viewer_script(key: str, data: dict) -> str:
    """The JavaScript file's text: ``data`` assigned to ``window.synthbidsViewer[key]``."""
    body = json.dumps(data, separators=(',', ':'), ensure_ascii=True)
    return (
        f'/* synthbids report viewer data of {json.dumps(key)} (generated) */\n'
        f'(window.synthbidsViewer = window.synthbidsViewer || {{}})[{json.dumps(key)}] = '
        f'{body};\n'
    )


def build_viewer_data(
    name: str,
    image,
    *,
    mask=None,
    seg=None,
    seg_table: dict[int, dict] | None = None,
    head=None,
    head_table: dict[int, dict] | None = None,
    meshes: dict[str, tuple] | None = None,
    mask_volume: float | None = None,
    max_voxels: int = MAX_VOXELS,
    max_faces: int = MAX_FACES,
) -> dict:
    """The viewer data of one image: ``image`` and each of ``mask``, ``seg``, ``head`` (file
    names or nibabel images, any grid) on the viewer grid, and ``meshes`` (``{surface:
    (vertices, faces, colour)}``). The grid covers the head: the image's foreground, the mask
    and the head labels."""
    reference = nib.as_closest_canonical(_first_frame(image))
    data = np.asanyarray(reference.dataobj).astype(np.float32)
    keep = foreground(data)
    for extra in (mask, head):
        if extra is not None:
            keep |= resample(extra, reference.shape[:3], reference.affine, order=0) > 0
    shape, affine, factor = viewer_grid(reference, keep, max_voxels)
    volumes = [intensity_volume(reference, shape, affine, factor)]
    volumes[0]['title'] = 'input image'
    if mask is not None:
        inside = resample(mask, shape, affine, order=1) >= 0.5
        table = {1: {'name': 'brain mask', 'color': '#ff3333', 'volume': mask_volume}}
        table[1]['unit'] = 'mm\u00b3'
        entry = label_volume('mask', inside, affine, table, outline=True)
        volumes.append({**entry, 'title': 'brain mask'})
    if seg is not None:
        labels = resample(seg, shape, affine, order=0)
        entry = label_volume('seg', labels, affine, seg_table or {})
        volumes.append({**entry, 'title': 'segmentation'})
    if head is not None:
        labels = resample(head, shape, affine, order=0)
        entry = label_volume('head', labels, affine, head_table or {})
        volumes.append({**entry, 'title': 'head tissues'})
    mesh_list = [
        {**mesh_entry(surface, v, f, color, max_faces), 'title': surface}
        for surface, (v, f, color) in (meshes or {}).items()
    ]
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    return {
        'format': FORMAT,
        'name': name,
        'grid': {
            'shape': list(shape),
            'zooms': [round(float(z), 3) for z in zooms],
            'factor': round(factor, 3),
            'source_zooms': [round(float(z), 3) for z in reference.header.get_zooms()[:3]],
        },
        'volumes': volumes,
        'meshes': mesh_list,
    }


def write_viewer_script(key: str, data: dict, out_file: Path) -> Path:
    from ..bids.files import write_text

    return write_text(Path(out_file), viewer_script(key, data))
