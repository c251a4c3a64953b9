"""Fetching official weights: the only code in synthbids that uses the network.

Used by ``synthbids-models`` (``fetch``, ``verify``, ``list``, ``path``), never by the core:
resolving weights (:mod:`synthbids.core.weights`) only looks in folders. :func:`fetch` resumes
an interrupted download from its hidden ``.part`` file, checks size and SHA-256, and publishes
the file atomically, under a lock so that two processes never write the same partial file.
"""

from __future__ import annotations

import contextlib
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from .core.errors import WeightsError
from .core.weights import RegistryEntry, cache_dir, packaged_path, search_dirs, sha256sum

#: what to do when a download cannot be made (said at the end of every network failure)
OFFLINE_HINT = (
    'download {url} on a machine with internet access and put it in $SYNTHBIDS_MODELS, '
    'or use --mirror DIR|URL'
)


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
    """Where ``entry`` is downloaded from: ``mirror`` (a base URL or a folder) or its own URL."""
    if mirror:
        if '://' not in mirror:
            mirror = Path(mirror).expanduser().resolve().as_uri()
        return mirror.rstrip('/') + '/' + entry.file
    if not entry.url:
        raise WeightsError(f'{entry.name} has no public download address; pass --mirror')
    return entry.url


class _Unreachable(Exception):
    """The download could not be made or was cut off (no answer, no network, a lost file)."""


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
        try:
            _download(url, part, entry.bytes, progress, timeout)
        except _Unreachable as err:
            raise WeightsError(_offline_message(entry, url, part, err)) from None
        ok, message = verify_file(entry, part)
        if not ok:
            part.unlink(missing_ok=True)
            raise WeightsError(f'download from {url} rejected: {message}', final)
        os.replace(part, final)
    return final


def _offline_message(entry: RegistryEntry, url: str, part: Path, err: _Unreachable) -> str:
    """Why the download failed, whether a partial file is kept, and what to do instead."""
    kept = part.stat().st_size if part.is_file() else 0
    if part.is_file() and not kept:
        part.unlink(missing_ok=True)  # an empty partial file resumes nothing
    resume = (
        f'partial file kept ({kept} bytes): run the same command again to resume, or '
        if kept
        else ''
    )
    hint = OFFLINE_HINT.format(url=entry.url or entry.file)
    return f'download failed from {url}: {err}; {resume}{hint}'


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
        raise _Unreachable(getattr(err, 'reason', None) or err) from None


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
