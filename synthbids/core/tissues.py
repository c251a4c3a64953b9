"""Three tissue classes (GM, WM, CSF) from SynthSeg's posteriors.

sMRIPrep and fMRIPrep take a 3-class ``dseg`` (1 GM, 2 WM, 3 CSF) and ``label-GM|WM|CSF``
probability maps as precomputed derivatives (and then skip FSL FAST); template registration
matches the same three maps against a template's own. Each class is the sum of the posteriors
of its structures (:data:`.labels.TISSUES`: grey matter includes the deep grey nuclei, white
matter the brainstem and ventral diencephalon, CSF the ventricles), so the maps stay soft and
sum, with the background, to one.
"""

from __future__ import annotations

import numpy as np

from .geometry import Grid, resample_to
from .labels import TISSUES

#: Class names in BIDS label abbreviations, in dseg index order (1, 2, 3).
TISSUE_NAMES = ('GM', 'WM', 'CSF')
#: Colours of the tissue dseg lookup table (index 0 is background).
TISSUE_COLORS = ('#000000', '#b4b4b4', '#f5f5dc', '#3c78d8')
TISSUE_LONG_NAMES = ('Background', 'Gray matter', 'White matter', 'Cerebrospinal fluid')

_MEMBERS = {
    'GM': set(TISSUES['gm']) | set(TISSUES['deep_gm']),
    'WM': set(TISSUES['wm']),
    'CSF': set(TISSUES['csf']),
}


def tissue_index(label: int) -> int:
    """1 GM, 2 WM, 3 CSF or 0 (background, and labels of no brain tissue)."""
    label = int(label)
    if 1000 <= label < 3000:  # cortical parcels
        return 1
    for index, name in enumerate(TISSUE_NAMES, start=1):
        if label in _MEMBERS[name]:
            return index
    return 0


def tissue_probabilities(posteriors: np.ndarray, labels) -> np.ndarray:
    """(X, Y, Z, 3) float32 GM, WM, CSF probabilities from (X, Y, Z, C) posteriors whose
    frames are ``labels`` (FreeSurfer values)."""
    labels = [int(v) for v in labels]
    if posteriors.ndim != 4 or posteriors.shape[3] != len(labels):
        raise ValueError(
            f'posteriors of shape {posteriors.shape} do not match {len(labels)} labels'
        )
    out = np.zeros(posteriors.shape[:3] + (3,), dtype=np.float32)
    for frame, label in enumerate(labels):
        index = tissue_index(label)
        if index:
            out[..., index - 1] += posteriors[..., frame]
    return out


def tissue_dseg(probs: np.ndarray) -> np.ndarray:
    """uint8 labels 0-3: the most probable of background (1 - sum), GM, WM, CSF."""
    background = 1.0 - probs.sum(axis=3, keepdims=True)
    return np.argmax(np.concatenate([background, probs], axis=3), axis=3).astype(np.uint8)


def on_grid(probs: np.ndarray, source: Grid, target: Grid) -> np.ndarray:
    """Bring (X, Y, Z, 3) probabilities to another grid (exact copy when the grids differ by
    an axis flip/shift, trilinear otherwise; 0 outside the source)."""
    out = np.empty(target.shape + (probs.shape[3],), dtype=np.float32)
    for c in range(probs.shape[3]):
        out[..., c] = resample_to(probs[..., c], source, target, fill=0.0)
    return np.clip(out, 0.0, 1.0, out=out)


def lookup_rows() -> list[dict]:
    """Rows of the tissue ``dseg.tsv``: index, name (abbreviation), color, description."""
    names = ('BG',) + TISSUE_NAMES
    return [
        {'index': i, 'name': names[i], 'color': TISSUE_COLORS[i], 'description': desc}
        for i, desc in enumerate(TISSUE_LONG_NAMES)
    ]
