"""Where model weights come from: the registry of official files, the user cache, and the
resolution order used by every command (downloading is :mod:`synthbids.fetch`'s, not the core's).

Resolution order for a model kind (``strip``, ``strip-nocsf``, ``seg``, ...):

1. an explicit path (``--model``);
2. ``$SYNTHBIDS_MODELS/<official file name>``;
3. the user cache, ``$SYNTHBIDS_CACHE`` or ``${XDG_CACHE_HOME:-~/.cache}/synthbids/models``;
4. ``$FREESURFER_HOME/models/<official file name>``;
5. the weights packaged with synthbids (trained by this project; see their model cards).

Nothing is ever downloaded implicitly: ``synthbids-models fetch`` is the only network access.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ..data import data_path
from .errors import WeightsError

log = logging.getLogger(__name__)

#: Human names of the model kinds, for messages.
KIND_NAMES = {
    'strip': 'SynthStrip',
    'strip-nocsf': 'SynthStrip (--no-csf)',
    'seg': 'SynthSeg 2.0',
    'seg-v1': 'SynthSeg 1.0',
    'seg-robust': 'SynthSeg robust',
    'seg-parc': 'SynthSeg parcellation',
    'seg-qc': 'SynthSeg QC',
    'seg-photo-both': 'Photo-SynthSeg 1.0 (both hemispheres)',
    'seg-photo-single': 'Photo-SynthSeg 1.0 (single hemisphere)',
    'head': 'head-tissue',
}


@dataclass(frozen=True)
class RegistryEntry:
    """A known weights file: official (downloadable) or packaged with synthbids."""

    name: str
    file: str
    kind: str
    sha256: str | None
    bytes: int | None = None
    url: str | None = None
    description: str = ''
    packaged: bool = False
    card: str | None = None
    warning: str = ''  # said whenever these weights are used (packaged early models)
    accuracy: str = ''  # packaged weights: what their model card measured, in one line
    companions: tuple[str, ...] = ()  # files that must sit beside it (Photo-SynthSeg's lists)
    refine: bool = False  # segmentation weights measured with the intensity refinement on

    def __post_init__(self):
        object.__setattr__(self, 'companions', tuple(self.companions))

    def missing_companions(self, path: str | os.PathLike) -> list[str]:
        """The companion files absent from the folder of ``path``."""
        folder = Path(path).parent
        return [name for name in self.companions if not (folder / name).is_file()]


@dataclass(frozen=True)
class WeightsFile:
    """The weights a run actually uses: logged and returned with every result.

    ``source`` says where the file was found (``argument``, ``environment``, ``cache``,
    ``freesurfer``, ``packaged``); ``entry`` is the registry entry whose SHA-256 it matches
    (None for custom weights), which tells official from packaged weights."""

    name: str
    path: Path
    sha256: str
    source: str
    verified: bool
    entry: RegistryEntry | None = None

    @property
    def origin(self) -> str:
        """``official``, ``packaged`` (trained by synthbids) or ``custom``."""
        if self.entry is None or not self.verified:
            return 'custom'
        return 'packaged' if self.entry.packaged else 'official'

    @property
    def warning(self) -> str:
        """What a user must be told whenever these weights run (early packaged models)."""
        return self.entry.warning if self.entry is not None and self.verified else ''

    @property
    def refine(self) -> bool:
        """Whether segmentations with these weights are intensity-refined by default: as their
        model card measured them (packaged synthbids weights; never official or custom ones)."""
        return bool(self.entry is not None and self.verified and self.entry.refine)

    def as_dict(self) -> dict:
        return {
            'name': self.name,
            'file': self.path.name,
            'sha256': self.sha256,
            'source': self.source,
            'verified': self.verified,
        }

    def describe(self) -> dict:
        """Sidecar form (BIDS ``ModelWeights`` entry): which weights ran, where they came
        from and, for weights packaged with synthbids, their model card's measured accuracy."""
        out = {
            'Name': self.name,
            'File': self.path.name,
            'SHA256': self.sha256,
            'Source': self.source,
            'Verified': self.verified,
            'Origin': ORIGINS[self.origin],
        }
        if self.origin == 'packaged':
            if self.entry.card:
                out['ModelCard'] = self.entry.card
            if self.entry.accuracy:
                out['Accuracy'] = self.entry.accuracy
        if self.warning:
            out['Warning'] = self.warning
        return out


#: How each origin is named in sidecars, reports and the methods text.
ORIGINS = {
    'official': 'official weights published by the SynthStrip/SynthSeg authors',
    'packaged': 'default weights trained and packaged by synthbids',
    'custom': 'custom weights (not in the synthbids registry)',
}


def model_name(kind: str, weights: WeightsFile) -> str:
    """Human name of the network that ran: the official model's name only for the official
    weights (``SynthSeg 2.0``), otherwise what it is (a SynthSeg 2.0 network with weights
    trained by synthbids, or custom weights)."""
    base = KIND_NAMES.get(kind, kind)
    if weights.origin == 'official':
        return base
    if weights.origin == 'packaged':
        early = ' (early model)' if weights.warning else ''
        return f'{base} network, weights trained by synthbids{early}'
    return f'{base} network, custom weights'


def _load_json(name: str) -> dict:
    res = data_path(name)
    if not res.is_file():
        return {}
    return json.loads(res.read_text())


def official_entries() -> dict[str, RegistryEntry]:
    raw = _load_json('registry.json').get('official', {})
    return {k: RegistryEntry(name=k, **v) for k, v in raw.items()}


def packaged_entries() -> dict[str, RegistryEntry]:
    raw = _load_json('weights/index.json')
    return {
        k: RegistryEntry(name=k, packaged=True, **v)
        for k, v in raw.items()
        if not k.startswith('_')
    }


def registry() -> dict[str, RegistryEntry]:
    """Every known weights file, official first."""
    return {**official_entries(), **packaged_entries()}


def cache_dir() -> Path:
    env = os.environ.get('SYNTHBIDS_CACHE')
    if env:
        return Path(env).expanduser()
    base = os.environ.get('XDG_CACHE_HOME') or Path.home() / '.cache'
    return Path(base).expanduser() / 'synthbids' / 'models'


def search_dirs() -> list[tuple[str, Path]]:
    """(source label, folder) pairs searched for official file names, in order."""
    out = []
    if os.environ.get('SYNTHBIDS_MODELS'):
        out.append(('environment', Path(os.environ['SYNTHBIDS_MODELS']).expanduser()))
    out.append(('cache', cache_dir()))
    if os.environ.get('FREESURFER_HOME'):
        out.append(('freesurfer', Path(os.environ['FREESURFER_HOME']) / 'models'))
    return out


def packaged_path(entry: RegistryEntry) -> Path:
    return Path(str(data_path('weights').joinpath(entry.file)))


def sha256sum(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def identify(sha: str) -> RegistryEntry | None:
    """The registry entry whose SHA-256 is ``sha``, if any."""
    for entry in registry().values():
        if entry.sha256 == sha:
            return entry
    return None


def resolve(
    kind: str, explicit: str | os.PathLike | None = None, sha256: str | None = None
) -> WeightsFile:
    """Find the weights for ``kind`` following the documented order (module docstring).

    An explicit file that is the packaged one, or an official file in a searched folder, keeps
    that source (a BIDS App node receives the path its main process resolved, and its
    ``sha256``: a file is hashed once per run)."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise WeightsError('no such model file' if not path.exists() else 'not a file', path)
        sha = sha256 or sha256sum(path)
        entry = identify(sha)
        name = entry.name if entry else f'custom ({path.name})'
        source = _source_of(path, entry)
        return _found(WeightsFile(name, path, sha, source, entry is not None, entry))

    for entry in official_entries().values():
        if entry.kind != kind:
            continue
        for source, folder in search_dirs():
            path = folder / entry.file
            if path.is_file():
                return _found(_check_official(entry, path, source))
    for entry in packaged_entries().values():
        if entry.kind != kind:
            continue
        path = packaged_path(entry)
        if path.is_file():
            sha = sha256sum(path)
            if entry.sha256 and sha != entry.sha256:
                raise WeightsError(
                    'packaged weights do not match their recorded SHA-256: reinstall synthbids',
                    path,
                )
            return _found(WeightsFile(entry.name, path, sha, 'packaged', True, entry))
    raise WeightsError(_missing_message(kind))


def _source_of(path: Path, entry: RegistryEntry | None) -> str:
    if entry is None:
        return 'argument'
    real = path.resolve()
    if entry.packaged:
        return 'packaged' if real == packaged_path(entry).resolve() else 'argument'
    for source, folder in search_dirs():
        if real == (folder / entry.file).resolve():
            return source
    return 'argument'


def _check_official(entry: RegistryEntry, path: Path, source: str) -> WeightsFile:
    sha = sha256sum(path)
    if entry.sha256 is None:
        log.warning('%s has no published SHA-256; using it unverified', path)
        return WeightsFile(entry.name, path, sha, source, False, entry)
    if sha == entry.sha256:
        return WeightsFile(entry.name, path, sha, source, True, entry)
    if source == 'cache':
        raise WeightsError(
            f'cached file does not match the SHA-256 of {entry.name}: '
            f'run "synthbids-models fetch {entry.name} --force"',
            path,
        )
    log.warning(
        '%s does not match the official SHA-256 of %s; using it as custom weights',
        path,
        entry.file,
    )
    return WeightsFile(f'custom ({path.name})', path, sha, source, False)


def _found(weights: WeightsFile) -> WeightsFile:
    log.info(
        'weights: %s (%s, sha256 %s) from %s',
        weights.name,
        weights.path,
        weights.sha256,
        weights.source,
    )
    return weights


def _missing_message(kind: str) -> str:
    names = [e for e in official_entries().values() if e.kind == kind]
    what = KIND_NAMES.get(kind, kind)
    if not names:
        return f'no {what} weights found: pass a weights file with --model'
    e = names[0]
    fetch = (
        f'run "synthbids-models fetch {e.name}" on a machine with internet access, '
        if e.url
        else ''
    )
    return (
        f'no {what} weights found: {fetch}put {e.file} in $SYNTHBIDS_MODELS or '
        f'$FREESURFER_HOME/models, or pass the file with --model'
    )
