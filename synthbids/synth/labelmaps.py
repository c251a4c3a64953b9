"""Training label maps and the tables that turn them into training targets.

The maps (SynthSeg's ``training_seg_*.nii.gz``: 256^3, 1 mm, LIA) hold FreeSurfer brain labels
and SimNIBS-CHARM-numbered extra-cerebral labels (``SPEC-synth.md`` §3.1). Everything the
generator needs is derived here: Gaussian classes for random contrasts, the left/right swap
for flips, brain masks with and without CSF, the 33 SynthSeg 2.0 labels and a head-tissue map.
Maps are stored as small integer *indices* into :data:`GENERATION_LABELS`.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from ..core import labels as L

log = logging.getLogger(__name__)

NEUTRAL = [0, 14, 15, 16, 24, 72, 85, 502, 506, 507, 508, 509, 511, 512, 514, 515, 516, 530]
_PAIRS = sorted(L.LR_PAIRS + L.TRAINING_LR_PAIRS)
LEFT = [left for left, _ in _PAIRS]
RIGHT = [right for _, right in _PAIRS]
#: All labels a training map may contain; maps are stored as indices into this list.
GENERATION_LABELS = sorted(NEUTRAL + LEFT + RIGHT)
#: Label pairs that share one random intensity distribution (SynthSeg's generation classes).
SHARED_CLASSES = [(4, 5), (17, 18), (136, 137), (43, 44), (53, 54), (163, 164)]

EXTRA_CEREBRAL = [502, 506, 507, 508, 509, 511, 512, 514, 515, 516, 530]
CSF = 24

#: SynthSeg 2.0 output labels (sorted) and the generation -> target mapping (§3.1).
SEG_LABELS_V2 = list(L.SEG_LABELS_V2)
_SEG_REMAP = {25: 2, 57: 41, 136: 4, 137: 5, 163: 43, 164: 44, 72: 0, 85: 0, 30: 0, 62: 0}

#: Head tissues for a skull / head-tissue model (the table lives in core.labels).
HEAD_CLASSES = list(L.HEAD_CLASSES)

#: Coarse tissue of each label, used by the CT- and PET-like intensity profiles.
TISSUE_TYPES = tuple(L.TISSUES)
_tissue = L.tissue


@dataclass(frozen=True)
class LabelTables:
    """Lookup tables indexed by generation-label index."""

    labels: np.ndarray  # index -> label value
    gaussian_class: np.ndarray  # index -> intensity class
    n_classes: int
    flip: np.ndarray  # index -> index after a left-right flip
    brain: np.ndarray  # index -> bool, brain incl. CSF
    brain_no_csf: np.ndarray  # index -> bool
    seg: np.ndarray  # index -> channel in SEG_LABELS_V2
    head: np.ndarray  # index -> HEAD_CLASSES channel
    tissue: np.ndarray  # index -> TISSUE_TYPES channel


def label_tables() -> LabelTables:
    labels = np.array(GENERATION_LABELS)
    index = {v: i for i, v in enumerate(GENERATION_LABELS)}
    classes = {}
    for a, b in SHARED_CLASSES:
        classes[b] = a
    uniq = sorted({classes.get(v, v) for v in GENERATION_LABELS})
    gaussian = np.array([uniq.index(classes.get(v, v)) for v in GENERATION_LABELS])
    swap = {**dict(zip(LEFT, RIGHT)), **dict(zip(RIGHT, LEFT))}
    flip = np.array([index[swap.get(v, v)] for v in GENERATION_LABELS])
    brain = np.array([v != 0 and v not in EXTRA_CEREBRAL for v in GENERATION_LABELS])
    no_csf = brain & (labels != CSF)
    seg = np.array(
        [
            SEG_LABELS_V2.index(0 if v in EXTRA_CEREBRAL else _SEG_REMAP.get(v, v))
            for v in GENERATION_LABELS
        ]
    )
    head = np.array([L.head_class(v) for v in GENERATION_LABELS])
    tissue = np.array([TISSUE_TYPES.index(_tissue(v)) for v in GENERATION_LABELS])
    return LabelTables(labels, gaussian, len(uniq), flip, brain, no_csf, seg, head, tissue)


def to_indices(data: np.ndarray, path: str | os.PathLike = '') -> np.ndarray:
    """Label values -> uint8 indices into GENERATION_LABELS (unknown labels -> background)."""
    values = np.rint(data).astype(np.int32)
    lut = np.zeros(int(values.max()) + 1, dtype=np.uint8)
    present = np.unique(values)
    unknown = [int(v) for v in present if v not in GENERATION_LABELS]
    if unknown:
        log.warning(
            '%s: labels %s are not generation labels; treated as background', path, unknown[:10]
        )
    for v in present:
        if v in GENERATION_LABELS:
            lut[v] = GENERATION_LABELS.index(int(v))
    return lut[values]


def mode_downsample(indices: np.ndarray, factor: int) -> np.ndarray:
    """Downsample an index map by an integer factor, keeping each block's most frequent label
    (thin structures such as skin and sulcal CSF survive better than with nearest)."""
    if factor == 1:
        return indices
    shape = tuple(s // factor for s in indices.shape)
    blocks = indices[: shape[0] * factor, : shape[1] * factor, : shape[2] * factor]
    blocks = blocks.reshape(shape[0], factor, shape[1], factor, shape[2], factor)
    blocks = blocks.transpose(0, 2, 4, 1, 3, 5).reshape(*shape, factor**3)
    best = np.zeros(shape, dtype=indices.dtype)
    best_count = np.zeros(shape, dtype=np.int16)
    for value in np.unique(blocks):
        count = (blocks == value).sum(-1, dtype=np.int16)
        better = count > best_count
        best[better] = value
        best_count[better] = count[better]
    return best


def ras_to_lia(data: np.ndarray) -> np.ndarray:
    """A RAS-canonical array in the generator's LIA voxel layout (SynthStrip's conformed
    orientation): (x, y, z) -> (x, z, y), then the first two axes reversed."""
    return np.flip(np.transpose(data, (0, 2, 1)), axis=(0, 1))


@dataclass
class LabelMap:
    """A training map at the generator's resolution (LIA), as generation-label indices."""

    name: str
    indices: np.ndarray
    voxsize: float


def cached_copy(path, cache: Path | None, voxsize: float) -> Path | None:
    """The cached downsampled copy of a map that is not on this machine (a GPU job carries a
    campaign's cache, not the 29 MB of maps): the one ``.npz`` of its name at ``voxsize`` for
    1 mm maps. The content key cannot be checked without the map: the cache is trusted."""
    if cache is None or Path(path).exists():
        return None
    stem = Path(path).name.split('.')[0]
    found = sorted(Path(cache).glob(f'{stem}-*-x{int(round(voxsize))}.npz'))
    return found[0] if len(found) == 1 else None


def load_label_maps(paths, voxsize: float = 2.0, cache: Path | None = None) -> list[LabelMap]:
    """Read maps, convert to indices and downsample to ``voxsize`` (an integer multiple of the
    maps' 1 mm); results are cached as ``.npz`` keyed by file content. A map missing here is
    read from its cached copy (:func:`cached_copy`)."""
    maps = []
    for path in sorted(Path(p) for p in paths):
        carried = cached_copy(path, cache, voxsize)
        if carried is not None:
            maps.append(LabelMap(path.name, np.load(carried)['indices'], voxsize))
            continue
        img = nib.load(path)
        zoom = float(img.header.get_zooms()[0])
        factor = int(round(voxsize / zoom))
        if factor < 1 or abs(factor * zoom - voxsize) > 1e-3:
            raise ValueError(f'{path}: cannot reach {voxsize} mm from {zoom} mm voxels')
        key = None
        if cache is not None:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
            key = Path(cache) / f'{path.name.split(".")[0]}-{digest}-x{factor}.npz'
            if key.exists():
                maps.append(LabelMap(path.name, np.load(key)['indices'], voxsize))
                continue
        canon = nib.as_closest_canonical(img)  # RAS, then to LIA below
        data = np.asanyarray(canon.dataobj)
        lia = ras_to_lia(data)
        indices = mode_downsample(to_indices(lia, path), factor)
        if key is not None:
            key.parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(key, indices=indices)
        maps.append(LabelMap(path.name, indices, voxsize))
    return maps
