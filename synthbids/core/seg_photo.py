"""Photo-SynthSeg (``--photo left|right|both``): 3-D reconstructed stacks of coronal dissection
photographs of the cerebrum, segmented by the standard SynthSeg network with its own weights.

What differs from SynthSeg 2.0 is data, not code: the label list, the CSV names and the
topological classes are read from the ``.npy`` files FreeSurfer keeps beside the weights
(never hard-coded here, they may change with the weights). ``both`` averages with the flipped
image, whose left/right pairs come from the list itself (5 neutral labels, then the left and
the right halves); ``left``/``right`` have no flip average, and ``right`` is mirrored before the
network and back after it, so that a right hemisphere is seen as a left one. Volumes are
1.0-style (no total intracranial).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UsageError, WeightsError

log = logging.getLogger(__name__)

MODES = ('left', 'right', 'both')
VERSION = 'Photo-SynthSeg 1.0'
#: Flags ``mri_synthseg`` refuses with ``--photo``, in the order it checks them.
INCOMPATIBLE = ('--robust', '--v1', '--ct', '--qc')
#: Labels at the head of a ``both`` list that are their own left/right counterpart.
NEUTRAL_LABELS = 5
#: The three lists, by the middle of their file names.
LISTS = ('segmentation_labels', 'segmentation_names', 'topological_classes')


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise UsageError(f'--photo must be left, right or both (got {mode!r})')
    return mode


def refuse(flag: str) -> UsageError:
    """The one-line error for a flag that Photo-SynthSeg does not take."""
    return UsageError(f'{flag} is not compatible with Photo-SynthSeg (--photo)')


def check_options(mode: str, **flags: bool) -> None:
    """Refuse the first flag of :data:`INCOMPATIBLE` that is set (``robust=``, ``v1=``,
    ``ct=``, ``qc=``), as ``mri_synthseg`` does, after checking ``mode``."""
    check_mode(mode)
    for flag in INCOMPATIBLE:
        if flags.get(flag.lstrip('-')):
            raise refuse(flag)


def kind(mode: str) -> str:
    """The weights kind of a mode: one network for both hemispheres, one for a single one."""
    return 'seg-photo-both' if check_mode(mode) == 'both' else 'seg-photo-single'


def variant(mode: str) -> str:
    return 'both' if check_mode(mode) == 'both' else 'single'


def list_files(weights: str | Path, mode: str) -> dict[str, Path]:
    """The ``.npy`` lists that go with a mode's weights file, beside it."""
    folder = Path(weights).parent
    return {what: folder / f'synthseg_{what}_photo_{variant(mode)}_1.0.npy' for what in LISTS}


@dataclass(frozen=True)
class PhotoLists:
    """The label set of a Photo-SynthSeg network, in its output (sorted) channel order."""

    mode: str
    labels: tuple[int, ...]
    names: tuple[str, ...]  # CSV names, one per label (background first)
    topology: tuple[int, ...]
    flip: tuple[int, ...] | None  # ``both``: channel of each label's counterpart

    @property
    def mirrored(self) -> bool:
        return self.mode == 'right'


def read_lists(weights: str | Path, mode: str) -> PhotoLists:
    """Read and check the three lists beside ``weights``; channel order = sorted unique
    labels, names and classes taken at each label's first entry (as the reference does)."""
    files = list_files(weights, mode)
    labels = _integers(files['segmentation_labels'])
    names = _load(files['segmentation_names'])
    topology = _integers(files['topological_classes'])
    for what, values in (('segmentation_names', names), ('topological_classes', topology)):
        if values.ndim != 1 or len(values) != len(labels):
            raise WeightsError(
                f'holds {values.size} entries; the label list beside it has {len(labels)}',
                files[what],
            )
    if names.dtype.kind not in 'US':
        raise WeightsError('is not a list of names (strings)', files['segmentation_names'])
    unique, first = np.unique(labels, return_index=True)
    flip = None
    if mode == 'both':
        flip = tuple(flip_indices(labels, NEUTRAL_LABELS, files['segmentation_labels']))
    return PhotoLists(
        mode=mode,
        labels=tuple(int(v) for v in unique),
        names=tuple(_text(v) for v in names[first]),
        topology=tuple(int(v) for v in topology[first]),
        flip=flip,
    )


def flip_indices(raw, n_neutral: int, path: str | Path | None = None) -> list[int]:
    """For each sorted unique label of the list ``raw``, the channel of its left/right
    counterpart: the first ``n_neutral`` entries are their own; the rest is a left half and a
    right half whose entries pair up in order (pairs involving a neutral label, such as
    padding zeros, are ignored)."""
    raw = [int(v) for v in raw]
    sided = raw[n_neutral:]
    if len(raw) < n_neutral or len(sided) % 2:
        raise WeightsError(
            f'{len(raw)} labels do not split into {n_neutral} neutral labels and two '
            'halves (left, right)',
            path,
        )
    neutral = set(raw[:n_neutral])
    half = len(sided) // 2
    partner: dict[int, int] = {}
    for left, right in zip(sided[:half], sided[half:]):
        if left in neutral or right in neutral:
            continue
        if partner.get(left, right) != right or partner.get(right, left) != left:
            raise WeightsError(f'label {left} or {right} is paired twice', path)
        partner[left], partner[right] = right, left
    labels = sorted(set(raw))
    channel = {lab: i for i, lab in enumerate(labels)}
    return [
        i if lab in neutral else channel[partner.get(lab, lab)] for i, lab in enumerate(labels)
    ]


def _load(path: Path) -> np.ndarray:
    if not path.is_file():
        raise WeightsError(
            'not found beside the Photo-SynthSeg weights (copy it from the models folder of '
            'FreeSurfer, where the weights come from)',
            path,
        )
    try:
        values = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise WeightsError(f'not a readable .npy list ({detail[:120]})', path) from None
    if values.ndim == 2 and 1 in values.shape:  # saved as a row or a column
        values = values.reshape(-1)
    return values


def _integers(path: Path) -> np.ndarray:
    values = _load(path)
    if values.ndim != 1 or values.size == 0:
        raise WeightsError(f'is not a 1-D list (shape {values.shape})', path)
    if values.dtype.kind not in 'iuf' or not np.all(np.mod(values, 1) == 0):
        raise WeightsError('is not a list of integer labels', path)
    return values.astype(np.int64)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
