"""The one atomic writer: every file synthbids writes appears whole or not at all.

A file is written under a hidden temporary name beside its destination
(``.<name>.<random>.partial<ext>``) and renamed into place; on any error, a full disk or an
interrupt included, the temporary file is removed, so nothing half-written survives.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import OutputError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def staging_path(dest: str | os.PathLike, ext: str = '') -> Path:
    """Create the hidden temporary file for ``dest`` (mode as for a new file), for callers
    that publish several files together (:class:`~.imageio.OutputSet`)."""
    dest = Path(dest)
    folder = dest.parent if str(dest.parent) else Path('.')
    try:
        fd, tmp = tempfile.mkstemp(prefix=f'.{dest.name}.', suffix=f'.partial{ext}', dir=folder)
    except OSError as err:
        raise OutputError(dest, f'cannot write: {err.strerror or err}') from None
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())
    return Path(tmp)


def discard(tmp: Path) -> None:
    with contextlib.suppress(OSError):
        tmp.unlink()


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, ext: str = '', makedirs: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write ``dest``'s content to; it replaces ``dest`` when the
    block ends, and is removed if the block (or the rename) fails."""
    dest = Path(dest)
    if makedirs:
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputError(dest.parent, f'cannot create: {err.strerror or err}') from None
    tmp = staging_path(dest, ext)
    try:
        yield tmp
        os.replace(tmp, dest)
    except OSError as err:
        discard(tmp)
        raise OutputError(dest, f'cannot write: {err.strerror or err}') from None
    except BaseException:
        discard(tmp)
        raise


def write_text(path: str | os.PathLike, text: str, newline: str | None = None) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically, creating its folder."""
    path = Path(path)
    with (
        atomic_path(path, makedirs=True) as tmp,
        open(tmp, 'w', encoding='utf-8', newline=newline) as fh,
    ):
        fh.write(text)
    return path
