"""The one atomic writer: every file synthbids writes appears whole or not at all.

A file is written under a hidden temporary name beside its destination
(``.<name>.<random>.partial<ext>``) and renamed into place; on any error, a full disk or an
interrupt included, the temporary file is removed, so nothing half-written survives.

Only a process killed outright (SIGKILL, the out-of-memory killer, a node that lost power)
leaves its temporary file behind. While it writes, the writer holds an advisory lock
(``flock``) on its temporary file, which the kernel releases when the process dies: the next
run removes the temporary files that nobody holds (:func:`remove_stale_partials`), never
those of a job still writing beside it, and never any other file.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import OutputError

try:  # POSIX; elsewhere temporary files are not locked and only their age tells
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

log = logging.getLogger(__name__)

#: The name of a temporary file of this writer: ``.<name>.<8 random characters>.partial<ext>``
#: (``tempfile``'s random names; ``<ext>``, given by the caller, is nothing or an image
#: extension, ``core.imageio.EXTENSIONS``).
PARTIAL_NAME = re.compile(r'^\.(?P<name>.+)\.[a-z0-9_]{8}\.partial(\.nii\.gz|\.nii|\.mgz|\.mgh)?$')

#: A temporary file modified more recently than this is never removed: it may not be locked
#: yet, or be written from another machine whose locks this one cannot see.
MIN_AGE_S = 10.0
#: Where locks cannot be taken (a file system without ``flock``), a temporary file this old is
#: taken as abandoned.
UNLOCKED_STALE_AGE_S = 3600.0


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _lock(fd: int) -> None:
    """Hold an exclusive advisory lock on ``fd`` while the file is being written (skipped on
    file systems that do not support locks)."""
    if fcntl is None:
        return
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


class Staged:
    """A hidden temporary file for ``dest``, created empty and held (locked) by this process
    until :meth:`publish` renames it into place or :meth:`discard` removes it."""

    def __init__(self, dest: str | os.PathLike, ext: str = ''):
        self.dest = Path(dest)
        self.published = False
        self._fd = None
        folder = self.dest.parent if str(self.dest.parent) else Path('.')
        prefix = f'.{self.dest.name}.'
        try:
            self._fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=f'.partial{ext}', dir=folder)
        except OSError as err:
            raise OutputError(self.dest, f'cannot write: {err.strerror or err}') from None
        self.path = Path(tmp)
        _lock(self._fd)
        try:
            os.fchmod(self._fd, 0o666 & ~_umask())
        except OSError as err:
            self.discard()
            raise OutputError(self.dest, f'cannot write: {err.strerror or err}') from None

    def publish(self) -> Path:
        """Rename the temporary file to its destination (OutputError, and the temporary file
        removed, if that fails)."""
        try:
            os.replace(self.path, self.dest)
        except OSError as err:
            self.discard()
            raise OutputError(self.dest, f'cannot write: {err.strerror or err}') from None
        self._release()
        self.published = True
        return self.dest

    def discard(self) -> None:
        """Remove the temporary file (nothing once it is published)."""
        if not self.published:
            with contextlib.suppress(OSError):
                self.path.unlink()
        self._release()

    def _release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)  # releases the lock
            self._fd = None


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
    staged = Staged(dest, ext)
    try:
        yield staged.path
    except OSError as err:
        staged.discard()
        raise OutputError(dest, f'cannot write: {err.strerror or err}') from None
    except BaseException:
        staged.discard()
        raise
    staged.publish()


def write_text(path: str | os.PathLike, text: str, newline: str | None = None) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically, creating its folder."""
    path = Path(path)
    with (
        atomic_path(path, makedirs=True) as tmp,
        open(tmp, 'w', encoding='utf-8', newline=newline) as fh,
    ):
        fh.write(text)
    return path


# --------------------------------------------------------------------------- stale files


def is_partial(name: str) -> bool:
    """Whether ``name`` is a temporary file name of this writer."""
    return PARTIAL_NAME.match(name) is not None


def _abandoned(path: Path, now: float) -> bool:
    """Remove ``path`` if it is a temporary file that no process is writing any more;
    returns whether it was removed."""
    try:
        fd = os.open(
            path, os.O_RDONLY | getattr(os, 'O_NOFOLLOW', 0) | getattr(os, 'O_NONBLOCK', 0)
        )
    except OSError:
        return False
    try:
        info = os.fstat(fd)
        age = now - info.st_mtime
        if not stat.S_ISREG(info.st_mode) or age < MIN_AGE_S:
            return False
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    return False  # a live writer holds it
                if age < UNLOCKED_STALE_AGE_S:  # no locks on this file system: age decides
                    return False
        elif age < UNLOCKED_STALE_AGE_S:  # pragma: no cover - no flock at all
            return False
        try:
            os.unlink(path)
        except OSError:
            return False
        return True
    finally:
        os.close(fd)


def remove_stale_partials(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Remove the temporary files that killed writers left in ``folder`` (and, if
    ``recursive``, in its subfolders; symbolic links are not followed); returns them.

    Only names of this writer (:data:`PARTIAL_NAME`) are considered, and of those only the
    files that no live process holds locked and that are older than :data:`MIN_AGE_S`."""
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    now = time.time()
    for root, dirs, files in os.walk(folder):
        for name in sorted(files):
            if is_partial(name) and _abandoned(Path(root) / name, now):
                removed.append(Path(root) / name)
        if not recursive:
            dirs[:] = []
    for path in removed:
        log.info('removed %s, left by an interrupted run', path)
    return removed
