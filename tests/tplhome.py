"""A small TemplateFlow home for tests, built from Debian's Colin27 (never downloaded).

``build_colin27_home(dest)`` writes ``tpl-MNIColin27/`` with TemplateFlow's names for a
template with two resolutions (as MNI152NLin2009cAsym has): ``res-01`` (Colin27's own 1 mm
grid) and ``res-02`` (2 mm, block averages), each with the T1w and the ``desc-brain`` mask
(``ch2bet`` > 0, largest component, holes filled). TemplateFlow's own MNIColin27 has a single
resolution without ``res-``; both layouts resolve (``synthbids.bids.templates``).
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

CH2 = Path('/usr/share/mricron/templates/ch2.nii.gz')
CH2BET = Path('/usr/share/mricron/templates/ch2bet.nii.gz')

DESCRIPTION = {
    'Identifier': 'MNIColin27',
    'Name': 'Colin 27 Average Brain (test copy from Debian mricron-data)',
    'Authors': ['Holmes CJ', 'Hoge R', 'Collins DL', 'Woods R', 'Toga AW', 'Evans AC'],
    'ReferencesAndLinks': ['https://doi.org/10.1097/00004728-199803000-00032'],
    'Species': 'Homo sapiens',
    'res': {'01': {'grid_spacing': [1, 1, 1]}, '02': {'grid_spacing': [2, 2, 2]}},
}


def _pool2(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    shape = [s // 2 * 2 for s in data.shape]
    cut = data[: shape[0], : shape[1], : shape[2]]
    out = cut.reshape(shape[0] // 2, 2, shape[1] // 2, 2, shape[2] // 2, 2).mean((1, 3, 5))
    scale = np.diag([2.0, 2.0, 2.0, 1.0])
    scale[:3, 3] = 0.5
    return out, affine @ scale


def _save(data, affine, path: Path, dtype) -> None:
    img = nib.Nifti1Image(data.astype(dtype), affine)
    img.set_qform(affine, code=4)
    img.set_sform(affine, code=4)
    img.header.set_xyzt_units('mm')
    nib.save(img, path)


def build_colin27_home(dest: Path) -> Path:
    """Write the test home under ``dest`` (created) and return it (a ``TEMPLATEFLOW_HOME``)."""
    dest = Path(dest)
    tpl = dest / 'tpl-MNIColin27'
    tpl.mkdir(parents=True, exist_ok=True)
    (tpl / 'template_description.json').write_text(json.dumps(DESCRIPTION, indent=2))
    t1 = nib.load(CH2)
    image = np.asarray(t1.dataobj, dtype=np.float32)
    mask = np.asarray(nib.load(CH2BET).dataobj) > 0
    labels, n = ndimage.label(mask)
    if n > 1:
        mask = labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1
    mask = ndimage.binary_fill_holes(mask)
    affine = t1.affine
    _save(image, affine, tpl / 'tpl-MNIColin27_res-01_T1w.nii.gz', np.float32)
    _save(mask, affine, tpl / 'tpl-MNIColin27_res-01_desc-brain_mask.nii.gz', np.uint8)
    image2, affine2 = _pool2(image, affine)
    mask2, _ = _pool2(mask.astype(np.float32), affine)
    _save(image2, affine2, tpl / 'tpl-MNIColin27_res-02_T1w.nii.gz', np.float32)
    _save(mask2 >= 0.5, affine2, tpl / 'tpl-MNIColin27_res-02_desc-brain_mask.nii.gz', np.uint8)
    return dest
