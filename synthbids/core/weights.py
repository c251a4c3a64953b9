"""Where model weights come from: the registry of official files, the user cache, fetching
with resume and SHA-256 verification, and the resolution order used by every command.

Resolution order for a model kind (``strip``, ``strip-nocsf``, ``seg``, ...):

1. an explicit path (``--model``);
2. ``$SYNTHBIDS_MODELS/<official file name>``;
3. the user cache, ``$SYNTHBIDS_CACHE`` or ``${XDG_CACHE_HOME:-~/.cache}/synthbids/models``;
4. ``$FREESURFER_HOME/models/<official file name>``;
5. the weights packaged with synthbids (trained by this project; see their model cards).

Nothing is ever downloaded implicitly: ``synthbids-models fetch`` is the only network access.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Callable
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


@dataclass(frozen=True)
class WeightsFile:
    """The weights a run actually uses: logged and returned with every result."""

    name: str
    path: Path
    sha256: str
    source: str
    verified: bool

    def as_dict(self) -> dict:
        return {
            'name': self.name,
            'file': self.path.name,
            'sha256': self.sha256,
            'source': self.source,
            'verified': self.verified,
        }


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


def resolve(kind: str, explicit: str | os.PathLike | None = None) -> WeightsFile:
    """Find the weights for ``kind`` following the documented order (module docstring)."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise WeightsError('no such model file' if not path.exists() else 'not a file', path)
        sha = sha256sum(path)
        entry = identify(sha)
        name = entry.name if entry else f'custom ({path.name})'
        return _found(WeightsFile(name, path, sha, 'argument', entry is not None))

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
            if entry.warning and entry.name not in _WARNED:
                _WARNED.add(entry.name)
                log.warning('%s: %s', entry.name, entry.warning)
            return _found(WeightsFile(entry.name, path, sha, 'packaged', True))
    raise WeightsError(_missing_message(kind))


#: packaged entries whose warning this process has logged (once is enough)
_WARNED: set[str] = set()


def _check_official(entry: RegistryEntry, path: Path, source: str) -> WeightsFile:
    sha = sha256sum(path)
    if entry.sha256 is None:
        log.warning('%s has no published SHA-256; using it unverified', path)
        return WeightsFile(entry.name, path, sha, source, False)
    if sha == entry.sha256:
        return WeightsFile(entry.name, path, sha, source, True)
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


# --------------------------------------------------------------------------- fetching


def locate(entry: RegistryEntry) -> list[tuple[str, Path]]:
    """Every place where ``entry``'s file is present, as (source, path)."""
    if entry.packaged:
        path = packaged_path(entry)
        return [('packaged', path)] if path.is_file() else []
    return [(s, d / entry.file) for s, d in search_dirs() if (d / entry.file).is_file()]


def verify_file(entry: RegistryEntry, path: Path) -> tuple[bool, str]:
    """(ok, message) for ``path`` against the entry's size and SHA-256."""
    size = path.stat().st_size
    if entry.bytes and size != entry.bytes:
        return False, f'size {size} differs from the expected {entry.bytes} bytes'
    if entry.sha256 is None:
        return True, 'present (no published SHA-256 to check)'
    sha = sha256sum(path)
    if sha != entry.sha256:
        return False, f'SHA-256 {sha} differs from the expected {entry.sha256}'
    return True, 'SHA-256 verified'


def source_url(entry: RegistryEntry, mirror: str | None = None) -> str:
    if mirror:
        if '://' not in mirror:
            mirror = Path(mirror).expanduser().resolve().as_uri()
        return mirror.rstrip('/') + '/' + entry.file
    if not entry.url:
        raise WeightsError(f'{entry.name} has no public download address; pass --mirror')
    return entry.url


def fetch(
    entry: RegistryEntry,
    dest: Path | None = None,
    mirror: str | None = None,
    force: bool = False,
    progress: Callable[[int, int | None], None] | None = None,
    timeout: float = 60.0,
) -> Path:
    """Download ``entry`` into ``dest`` (default: the user cache), resuming a previous partial
    download, verifying size and SHA-256, and publishing it atomically. Returns the path."""
    dest = Path(dest) if dest is not None else cache_dir()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise WeightsError(f'cannot create the cache folder: {err.strerror}', dest) from None
    final = dest / entry.file
    if final.is_file() and not force:
        ok, _ = verify_file(entry, final)
        if ok:
            return final
    url = source_url(entry, mirror)
    part = dest / f'.{entry.file}.part'
    with _lock(dest / f'.{entry.file}.lock'):
        _download(url, part, entry.bytes, progress, timeout)
        ok, message = verify_file(entry, part)
        if not ok:
            part.unlink(missing_ok=True)
            raise WeightsError(f'download from {url} rejected: {message}', final)
        os.replace(part, final)
    return final


def _download(url, part: Path, total, progress, timeout) -> None:
    offset = part.stat().st_size if part.exists() else 0
    if total and offset >= total:
        return
    if not url.startswith(('http://', 'https://', 'file://')):
        raise WeightsError(f'unsupported download address {url}')
    request = urllib.request.Request(url, headers={'User-Agent': 'synthbids'})  # noqa: S310
    if offset and url.startswith(('http://', 'https://')):
        request.add_header('Range', f'bytes={offset}-')
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310
            status = getattr(resp, 'status', None)
            if offset and status != 206:
                offset = 0  # server ignored the range: start over
            mode = 'ab' if offset else 'wb'
            done = offset
            with open(part, mode) as fh:
                while block := resp.read(1 << 20):
                    fh.write(block)
                    done += len(block)
                    if progress:
                        progress(done, total)
    except urllib.error.HTTPError as err:
        raise WeightsError(f'download failed: HTTP {err.code} {err.reason} from {url}') from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, 'reason', None) or err
        raise WeightsError(
            f'download failed from {url}: {reason} (partial file kept; '
            'run the same command again to resume)'
        ) from None


@contextlib.contextmanager
def _lock(path: Path):
    """An exclusive lock so that two processes never write the same partial file."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    try:
        with open(path, 'w') as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
