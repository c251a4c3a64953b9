"""The atomic writer (``synthbids.core.atomic``) on a full disk and after a killed writer:
every writer removes its temporary file on any error, and the temporary files that killed
writers leave are removed later, never a file being written or any other file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from synthbids.core.errors import OutputError
from tests.conftest import fill_disk, listdir_all

ENOSPC = os.strerror(28)  # 'No space left on device'


def _write_text(dest: Path, src: Path) -> None:
    from synthbids.bids.files import write_text

    write_text(dest.with_suffix('.txt'), 'x' * 10_000)


def _write_json(dest: Path, src: Path) -> None:
    from synthbids.bids.files import write_json

    write_json(dest.with_suffix('.json'), {'a': 'x' * 10_000})


def _write_tsv(dest: Path, src: Path) -> None:
    from synthbids.bids.files import write_tsv

    write_tsv(dest.with_suffix('.tsv'), ['a'], [{'a': 'x' * 10_000}])


def _copy_file(dest: Path, src: Path) -> None:
    from synthbids.bids.files import copy_file

    copy_file(src, dest)


def _write_table(dest: Path, src: Path) -> None:
    from synthbids.core.seg_tables import write_table

    write_table(dest.with_suffix('.csv'), 'a,b\r\n' * 5_000)


def _output_set(dest: Path, src: Path) -> None:
    from synthbids.core.imageio import OutputSet

    img = nib.Nifti1Image(np.random.default_rng(0).random((40, 40, 40)), np.eye(4))
    with OutputSet() as staged:
        staged.add(img, dest.with_name('a.nii'))
        staged.add(img, dest.with_name('b.nii.gz'))


def _crash_file(dest: Path, src: Path) -> None:
    from synthbids.cli.crashfiles import write_crash_file

    write_crash_file(dest.with_name('crash-1.txt'), {'traceback': ['x' * 10_000]})


WRITERS = {
    'write_text': _write_text,
    'write_json': _write_json,
    'write_tsv': _write_tsv,
    'copy_file': _copy_file,
    'write_table': _write_table,
    'OutputSet': _output_set,
    'crash file': _crash_file,
}


@pytest.mark.parametrize('writer', list(WRITERS))
def test_every_writer_leaves_nothing_on_a_full_disk(writer, small_fs, tmp_path):
    """A full disk (a 1 MB tmpfs, filled): one-line OutputError naming the file, and no
    temporary (or empty) file left beside it."""
    folder = small_fs('1m')
    src = tmp_path / 'source.bin'
    src.write_bytes(os.urandom(300_000))
    fill_disk(folder)
    with pytest.raises(OutputError) as caught:
        WRITERS[writer](folder / 'sub-01_desc-brain_mask.nii.gz', src)
    message = str(caught.value)
    assert message.startswith(str(folder)) and message.endswith(f'cannot write: {ENOSPC}')
    assert len(message.splitlines()) == 1
    assert listdir_all(folder) == ['filler.bin']


def _partial_of(dest: Path) -> list[Path]:
    return [p for p in dest.parent.iterdir() if p.name.startswith(f'.{dest.name}.')]


def _age(path: Path, seconds: float = 3600) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past), follow_symlinks=False)


def test_a_killed_writer_leaves_a_partial_file_that_the_next_run_removes(tmp_path):
    """A real writer (the atomic writer in another process, half-way through a file) is
    killed with SIGKILL: its temporary file stays. While the writer was alive the file was
    locked and kept, even when old; once it is killed the file is removed; files that are not
    temporary files of synthbids' writer, or are too young to judge, are never touched."""
    from synthbids.core.atomic import MIN_AGE_S, remove_stale_partials

    out = tmp_path / 'out'
    folder = out / 'sub-01' / 'anat'
    folder.mkdir(parents=True)
    dest = folder / 'sub-01_desc-brain_mask.nii.gz'
    code = (
        'import sys, time\n'
        'from synthbids.core.atomic import atomic_path\n'
        'with atomic_path(sys.argv[1]) as tmp, open(tmp, "wb") as fh:\n'
        '    fh.write(b"x" * 1000)\n'
        '    fh.flush()\n'
        '    print("writing", flush=True)\n'
        '    time.sleep(600)\n'
    )
    writer = subprocess.Popen(
        [sys.executable, '-c', code, str(dest)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout.readline().strip() == 'writing'
        (partial,) = _partial_of(dest)
        _age(partial)
        assert remove_stale_partials(out) == []  # locked by a live writer: kept
        assert partial.exists()
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    assert writer.returncode == -signal.SIGKILL and partial.exists() and not dest.exists()

    # what else is there: look-alikes, a user's files, a link, a folder, a young one
    others = {
        '.keep': 'file',
        'notes.partial': 'file',
        '.notes.partial': 'file',
        '.sub-01_T1w.nii.gz.ABCDEFGH.partial.nii.gz': 'file',  # not tempfile's characters
        '.sub-01_T1w.nii.gz.abcdefgh.partial.nii.gz.bak': 'file',
        '.sub-01_T1w.nii.gz.abcd_123.partial.nii.gz': 'young',
        '.sub-01_T2w.nii.gz.abcd_123.partial.nii.gz': 'link',
        '.sub-01_FLAIR.nii.gz.abcd_123.partial.nii.gz': 'folder',
    }
    victim = tmp_path / 'victim.txt'
    victim.write_text('keep me')
    for name, kind in others.items():
        path = folder / name
        if kind == 'link':
            path.symlink_to(victim)
        elif kind == 'folder':
            path.mkdir()
        else:
            path.write_text('x')
        if kind != 'young':
            _age(path)
    assert MIN_AGE_S > 1
    assert remove_stale_partials(out) == [partial]
    assert listdir_all(folder) == sorted(others)
    assert victim.read_text() == 'keep me'
