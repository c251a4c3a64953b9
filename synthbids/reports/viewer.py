"""The interactive viewer of the participant report: the files it needs beside the report.

For each image, :func:`write_image_viewer` gathers the input image and its derivatives (brain
mask, segmentation with its lookup and volume tables, head tissues and their meshes) and writes
``sub-<label>/figures/viewer/<image name>.js`` (:mod:`.viewer_data`); :func:`install_bundle`
copies the vendored NiiVue bundle (``synthbids/data/viewer``, with its licences) once into the
output folder's ``viewer/``, which every participant's report shares (2.3 MB once, not per
participant). The report links both by relative paths, so the output folder can be moved,
copied or zipped and the report still opens from disk, offline; nothing is fetched from a
network. Both folders are in ``.bidsignore``.

The input image is read from the raw dataset (``DatasetLinks.raw`` of
``dataset_description.json``); when it cannot be read, the skull-stripped image stands in.
"""

from __future__ import annotations

import hashlib
import json
import logging
from functools import cache
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from ..bids.files import copy_file, read_tsv
from .collect import ImageOutputs, mask_volume, read_head_volumes, read_volumes

log = logging.getLogger(__name__)

#: Folder of the viewer files: the per-image data under ``sub-<label>/figures/``, the shared
#: NiiVue bundle at the top of the output folder.
FOLDER = 'viewer'
#: Head-tissue class (``desc-head_dseg.tsv`` index) whose colour each surface mesh takes...
MESH_CLASS = {'scalp': 4, 'innerskull': 2, 'brain': 1}
#: ... but the outer skull's: ivory, as in the skull figure.
SKULL_COLOR = '#efe6d2'


@cache
def bundle_manifest() -> dict:
    """``niivue.json`` of the vendored bundle: version, SHA-256, npm integrity, licences."""
    from ..data import data_path

    return json.loads(data_path('viewer').joinpath('niivue.json').read_text())


def bundle_name() -> str:
    return f'niivue-{bundle_manifest()["version"]}.umd.js'


def folder_relpath(subject: str) -> str:
    return f'sub-{subject}/figures/{FOLDER}'


def data_relpath(image: ImageOutputs) -> str:
    return f'{folder_relpath(image.source.subject)}/{image.source.bids_name}.js'


def install_bundle(output_dir: Path) -> str:
    """Copy NiiVue and its licences into ``output_dir/viewer`` (once: an identical copy is
    kept, another release's removed); the bundle's path relative to ``output_dir``. Copies
    are atomic, so participants' reports written at once may each install it."""
    from ..data import data_path

    manifest = bundle_manifest()
    source = data_path('viewer')
    folder = Path(output_dir) / FOLDER
    bundle = folder / bundle_name()
    if not bundle.is_file() or _sha256(bundle) != manifest['sha256']:
        with _as_file(source.joinpath(manifest['file'])) as path:
            if _sha256(path) != manifest['sha256']:
                raise RuntimeError(f'{path}: not the vendored NiiVue {manifest["version"]}')
            copy_file(path, bundle)
    notice = folder / f'niivue-{manifest["version"]}.LICENSE.txt'
    if not notice.is_file():
        with _as_file(source.joinpath('LICENSE.txt')) as path:
            copy_file(path, notice)
    for old in folder.glob('niivue-*'):  # another release's, from an earlier run
        if old not in (bundle, notice):
            old.unlink(missing_ok=True)  # a concurrent report may be first
    return bundle.relative_to(output_dir).as_posix()


def _as_file(traversable):
    from importlib.resources import as_file

    return as_file(traversable)


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def input_image(output_dir: Path, image: ImageOutputs) -> tuple[Path | None, str]:
    """The image to show and what it is: the raw input (through ``DatasetLinks.raw``), else
    the skull-stripped image, else none."""
    import nibabel as nib

    try:
        desc = json.loads((Path(output_dir) / 'dataset_description.json').read_text())
        uri = urlparse(desc['DatasetLinks']['raw'])
        if uri.scheme == 'file':
            path = Path(url2pathname(uri.path)) / image.source.relpath
            nib.load(str(path)).header  # noqa: B018 - readable (an annexed file may be absent)
            return path, 'input image'
    except (OSError, ValueError, KeyError, TypeError, nib.filebasedimages.ImageFileError):
        pass
    if image.brain:
        return Path(output_dir) / image.brain, 'skull-stripped image (input not found)'
    return None, ''


def _rows_by_index(path: Path, fallback) -> dict[int, dict]:
    rows = read_tsv(path)[1] if path.is_file() else fallback()
    out = {}
    for row in rows:
        try:
            out[int(row['index'])] = {'name': row.get('name'), 'color': row.get('color')}
        except (KeyError, TypeError, ValueError):
            continue
    return out


def seg_table(output_dir: Path, image: ImageOutputs) -> dict[int, dict]:
    """``{label: {name, color, volume, unit}}`` of the segmentation (lookup table of its
    ``desc-``, volumes of its table)."""
    from ..bids import lut

    output_dir = Path(output_dir)
    table = _rows_by_index(
        output_dir / f'desc-{image.seg}_dseg.tsv',
        lambda: lut.lookup_rows(parc=image.seg == 'aparcaseg'),
    )
    if image.volumes:
        for row in read_volumes(output_dir / image.volumes):
            try:
                index = int(row.get('index'))
            except (TypeError, ValueError):
                continue  # the total intracranial volume has no label
            table.setdefault(index, {}).update(volume=row['volume'], unit='mm\u00b3')
    return table


def head_table(output_dir: Path, image: ImageOutputs) -> dict[int, dict]:
    """``{class: {name, color, volume, unit}}`` of the head tissues (volumes in mL)."""
    from ..bids import lut
    from ..core.labels import HEAD_CLASSES

    output_dir = Path(output_dir)
    table = _rows_by_index(output_dir / 'desc-head_dseg.tsv', lut.head_lookup_rows)
    volumes = read_head_volumes(output_dir / image.head_volumes) if image.head_volumes else {}
    for index, name in enumerate(HEAD_CLASSES):
        value = volumes.get(name.replace(' ', '_'))
        if value is not None:
            table.setdefault(index, {}).update(volume=value, unit='mL')
    return table


def head_meshes(output_dir: Path, image: ImageOutputs, colors: dict[int, dict]) -> dict:
    """``{surface: (vertices, faces, colour)}`` of the image's GIfTI head meshes (an
    unreadable one is left out, with a warning)."""
    import nibabel as nib

    out = {}
    for rel in image.head_meshes:
        if not rel.endswith('.surf.gii'):
            continue
        surface = rel[: -len('.surf.gii')].rsplit('_', 1)[-1]
        try:
            gii = nib.load(str(Path(output_dir) / rel))
            vertices = gii.agg_data('NIFTI_INTENT_POINTSET')
            faces = gii.agg_data('NIFTI_INTENT_TRIANGLE')
        except Exception as err:  # an unreadable mesh is left out, the others shown
            log.warning('viewer: %s left out: %s', rel, err)
            continue
        color = colors.get(MESH_CLASS.get(surface, -1), {}).get('color') or SKULL_COLOR
        out[surface] = (vertices, faces, color)
    return out


def write_image_viewer(output_dir: Path, image: ImageOutputs) -> dict | None:
    """Write the viewer data of ``image``; the template's view of it (None: nothing to show,
    or it could not be written, which is logged: the report keeps its figures)."""
    from .viewer_data import build_viewer_data, write_viewer_script

    output_dir = Path(output_dir)
    source, shown = input_image(output_dir, image)
    if source is None:
        return None
    try:
        seg = head = None
        tables = {}
        if image.dseg and image.seg:
            seg = output_dir / image.dseg
            tables['seg_table'] = seg_table(output_dir, image)
        if image.head_dseg:
            head = output_dir / image.head_dseg
            tables['head_table'] = head_table(output_dir, image)
        meshes = head_meshes(output_dir, image, tables.get('head_table', {}))
        mask = output_dir / image.mask if image.mask else None
        data = build_viewer_data(
            image.source.bids_name,
            source,
            mask=mask,
            seg=seg,
            head=head,
            meshes=meshes,
            mask_volume=mask_volume(mask) if mask else None,
            **tables,
        )
        data['shows'] = shown
        rel = data_relpath(image)
        write_viewer_script(image.anchor, data, output_dir / rel)
    except Exception as err:  # the report must still be written, with its figures
        log.warning('viewer of %s not written: %s', image.source.bids_name, err)
        return None
    return {
        'data': rel,
        'key': image.anchor,
        'shows': shown,
        'layers': [v['title'] for v in data['volumes'][1:]]
        + (['head surface meshes'] if data['meshes'] else []),
        'zooms': data['grid']['zooms'],
        'source_zooms': data['grid']['source_zooms'],
        'bytes': (output_dir / rel).stat().st_size,
    }
