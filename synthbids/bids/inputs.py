"""Checking the selected images before anything runs: content present, readable and usable.

A participant run checks every selected image when it builds its graph, whatever
``--skip-bids-validation`` says, so that a bad image is one line naming the file and the
problem (exit 65), and an image whose content is not on this machine (a DataLad/git-annex
file that was not fetched, a broken link) one line saying what to run (exit 66), before any
network is loaded.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..core.errors import ContentMissingError, InputError
from .naming import SourceImage

#: What the link target or pointer file of a git-annex file contains.
ANNEX_OBJECTS = '/annex/objects/'
#: Largest file that may be an unlocked git-annex pointer file (its key, in text).
_POINTER_MAX_BYTES = 1024
#: How many files one ``datalad get`` command names before it names their folders instead.
_MAX_NAMED = 5


def missing_content(path: str | os.PathLike) -> str | None:
    """Why the content of ``path`` is not on this machine: ``'annex'`` (a git-annex file that
    was not fetched: a broken link into ``.git/annex/objects``, or an unlocked pointer file),
    another sentence (a broken link), or None when it is here."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        target = os.readlink(path)
        if ANNEX_OBJECTS in target.replace(os.sep, '/'):
            return 'annex'
        return f'broken symbolic link (its target {target} does not exist)'
    try:
        if path.is_file() and path.stat().st_size <= _POINTER_MAX_BYTES:
            with open(path, 'rb') as fh:
                if fh.read(len(ANNEX_OBJECTS)) == ANNEX_OBJECTS.encode():
                    return 'annex'
    except OSError:
        return None  # reading it fails later, with its own message
    return None


def datalad_get(root: Path, relpaths: Sequence[str]) -> str:
    """The command that fetches ``relpaths`` of the dataset at ``root`` (their folders when
    there are many)."""
    names = list(relpaths)
    if len(names) > _MAX_NAMED:
        names = sorted({str(Path(r).parent.as_posix()) for r in names})
    return f'datalad -C {root} get {" ".join(names)}'


def check_content(root: Path, paths: Iterable[str | os.PathLike]) -> None:
    """ContentMissingError (one line, exit 66) when any of ``paths`` (files of the dataset at
    ``root``) has no content here."""
    from .naming import dataset_relpath

    annexed, broken = [], []
    for path in paths:
        why = missing_content(path)
        if why == 'annex':
            annexed.append(Path(path))
        elif why is not None:
            broken.append((Path(path), why))
    if annexed:
        rel = [dataset_relpath(p, root) for p in annexed]
        more = f' (and {len(annexed) - 1} more selected file(s))' if len(annexed) > 1 else ''
        raise ContentMissingError(
            annexed[0],
            f'the content of this DataLad/git-annex file has not been fetched{more}: run '
            f'"{datalad_get(root, rel)}" to fetch it',
        )
    if broken:
        path, why = broken[0]
        more = f' (and {len(broken) - 1} more selected file(s))' if len(broken) > 1 else ''
        raise ContentMissingError(path, why + more)


def check_images(root: Path, images: Sequence[SourceImage]) -> None:
    """Check every selected image up front (see the module docstring): content present
    (exit 66), then readable, 3-D or 4-D, finite, not empty, large enough for a head
    (:func:`synthbids.core.imageio.check_image`, exit 65). The first bad image is reported,
    with how many more there are."""
    from ..core.imageio import check_image

    check_content(root, [im.path for im in images])
    errors: list[InputError] = []
    for image in images:
        try:
            check_image(image.path)
        except InputError as err:
            errors.append(err)
    if errors:
        first = errors[0]
        if len(errors) > 1:
            others = ', '.join(Path(e.path).name for e in errors[1:4] if e.path)
            more = ', ...' if len(errors) > 4 else ''
            raise InputError(
                first.path,
                f'{first.problem} (and {len(errors) - 1} more image(s) that cannot be used: '
                f'{others}{more})',
            )
        raise first
