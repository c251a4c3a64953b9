"""What clusters and real datasets do to a participant run (issue 18, items 3-5): a full output
disk, temporary files of a killed run, DataLad/git-annex datasets, and bad images caught when
the graph is built. Each case is one line and a documented exit code, and leaves nothing
half-written behind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from synthbids.cli.run import main
from tests.app.conftest import head, write_dataset
from tests.conftest import IN_CI, fill_disk

ENOSPC = os.strerror(28)  # 'No space left on device'


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def strip_only(bids, out, work, strip_model, *options):
    """A participant run with the tiny SynthStrip, no segmentation and no head tissues."""
    return [bids, out, 'participant', '-w', work, '--strip-model', strip_model, '--no-seg',
            '--no-head', '--nprocs', '2', *options]  # fmt: skip


def files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob('*') if p.is_file())


def leftovers(root: Path) -> list[str]:
    """Temporary, empty and crash files under ``root`` (a run must leave none of them)."""
    return [
        p.relative_to(root).as_posix()
        for p in root.rglob('*')
        if p.is_file()
        and ('.partial' in p.name or p.stat().st_size == 0 or p.name.startswith('crash-'))
        and p.name != 'filler.bin'
    ]


# --------------------------------------------------------------------------- item 3


def test_a_full_output_disk_is_exit_73_in_one_line_and_leaves_nothing_half_written(
    small_fs, tmp_path, tiny_strip_ckpt, capsys
):
    """The output folder is a 3 MB tmpfs with room for the dataset files but not for the
    outputs: one line naming the file, exit 73, no temporary, empty or crash file, no
    report; with room again, the same command finishes and leaves no trace of the failure."""
    bids = write_dataset(tmp_path / 'bids', images=('sub-01/anat/sub-01_T1w.nii.gz',))
    out, work = small_fs('3m', 'out'), tmp_path / 'work'
    argv = strip_only(bids, out, work, tiny_strip_ckpt)
    filler = fill_disk(out, leave=24 * 1024)
    code, _, err = run(argv, capsys)
    lines = err.strip().splitlines()
    assert code == 73 and len(lines) == 1, err
    assert lines[0].startswith(f'synthbids: error: {out}/')
    assert lines[0].endswith(f': cannot write: {ENOSPC}')
    assert leftovers(out) == []
    assert not (out / 'sub-01.html').exists()

    filler.unlink()
    code, _, err = run(argv, capsys)
    assert code == 0, err
    assert leftovers(out) == []
    assert (out / 'sub-01/anat/sub-01_desc-brain_mask.nii.gz').is_file()
    assert (out / 'sub-01.html').is_file()


def test_a_crash_file_that_cannot_be_written_leaves_nothing(small_fs, tmp_path):
    """Nipype's crash file of a failed step goes through the atomic writer: on a full disk
    the run ends with one OutputError (exit 73) instead of an empty crash file and a bare
    OSError; with room, the crash file holds the node and its traceback."""
    from nipype.interfaces import utility as niu
    from nipype.pipeline import engine as pe

    from synthbids.cli.crashfiles import atomic_crash_files
    from synthbids.core.errors import OutputError

    def fail():
        raise ValueError('this step fails')

    def workflow(crash_dir: Path):
        wf = pe.Workflow('wf', base_dir=str(tmp_path / f'work-{crash_dir.name}'))
        node = pe.Node(niu.Function(function=fail, output_names=['x']), name='failing')
        node.config = {'execution': {'crashdump_dir': str(crash_dir), 'crashfile_format': 'txt'}}
        wf.add_nodes([node])
        return wf

    roomy = tmp_path / 'logs'
    roomy.mkdir()
    with atomic_crash_files(), pytest.raises(RuntimeError):
        workflow(roomy).run(plugin='Linear')
    (crash,) = roomy.iterdir()
    text = crash.read_text()
    assert text.startswith('Node: wf.failing\n') and 'ValueError: this step fails' in text

    full = small_fs('1m', 'full')
    fill_disk(full)
    with atomic_crash_files(), pytest.raises(OutputError) as caught:
        workflow(full).run(plugin='Linear')
    assert str(caught.value).endswith(f'cannot write: {ENOSPC}')
    assert sorted(p.name for p in full.iterdir()) == ['filler.bin']


def test_temporary_files_of_a_killed_run_are_removed_by_the_next_run(
    tmp_path, tiny_strip_ckpt, capsys
):
    """Temporary files that a killed run left (its writer held them locked; a dead process
    holds nothing) in the dataset-level files and the participant's folders are removed by
    the next run of that participant; another participant's folder (another job may be
    writing it) and every other file are left alone."""
    bids = write_dataset(tmp_path / 'bids', images=('sub-01/anat/sub-01_T1w.nii.gz',))
    out, work = tmp_path / 'out', tmp_path / 'work'
    stale = [
        out / 'sub-01/anat/.sub-01_desc-brain_mask.nii.gz.k2x9_q0a.partial',
        out / 'sub-01/figures/.sub-01_desc-brainmask_T1w.svg.a8b7c6d5.partial',
        out / '.dataset_description.json.zz11yy22.partial',
        out / 'logs/.CITATION.md.0a1b2c3d.partial',
    ]
    kept = [
        out / 'sub-02/anat/.sub-02_desc-brain_mask.nii.gz.k2x9_q0a.partial',  # not this run's
        out / 'sub-01/anat/.notes',
        out / 'sub-01/anat/my.partial',
        out / '.sub-01.html.partial',
    ]
    past = time.time() - 3600
    for path in stale + kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b'')
        os.utime(path, (past, past))
    code, stdout, err = run(
        strip_only(bids, out, work, tiny_strip_ckpt, '--participant-label', '01'), capsys
    )
    assert code == 0, err
    assert 'removed 4 unfinished file(s) left by an interrupted run' in stdout
    assert [p for p in stale if p.exists()] == []
    assert [p for p in kept if not p.exists()] == []
    assert (out / 'sub-01/anat/sub-01_desc-brain_mask.nii.gz').is_file()


# --------------------------------------------------------------------------- item 4


def annex_dataset(root: Path, content: bool = True) -> Path:
    """A dataset laid out as DataLad/git-annex leaves it, built by hand: the T1w is a relative
    link to ``.git/annex/objects/<2>/<2>/<key>/<key>`` (absent when not ``content``)."""
    plain = write_dataset(root.parent / f'{root.name}-plain', images=IMAGE)
    root.mkdir(parents=True)
    shutil.copy(plain / 'dataset_description.json', root)
    src = plain / IMAGE[0]
    data = src.read_bytes()
    import hashlib

    key = f'SHA256E-s{len(data)}--{hashlib.sha256(data).hexdigest()}.nii.gz'
    obj = root / '.git/annex/objects/Xq/7M' / key / key
    obj.parent.mkdir(parents=True)
    if content:
        obj.write_bytes(data)
    link = root / IMAGE[0]
    link.parent.mkdir(parents=True)
    link.symlink_to(os.path.relpath(obj, link.parent))
    return root


IMAGE = ('sub-01/anat/sub-01_T1w.nii.gz',)


def check_named_from_the_dataset(out: Path) -> None:
    """Derivative names and Sources come from the path in the dataset, not the link target."""
    assert (out / 'sub-01/anat/sub-01_desc-brain_mask.nii.gz').is_file()
    assert not [p for p in files(out) if 'SHA256E' in p or 'annex' in p]
    meta = json.loads((out / 'sub-01/anat/sub-01_desc-brain_mask.json').read_text())
    assert meta['Sources'] == ['bids:raw:sub-01/anat/sub-01_T1w.nii.gz']


@pytest.mark.parametrize('validation', ['validated', 'skip-bids-validation'])
def test_an_annex_dataset_is_processed_under_its_own_names(
    tmp_path, tiny_strip_ckpt, capsys, validation
):
    bids = annex_dataset(tmp_path / 'bids')
    options = ['--skip-bids-validation'] if validation != 'validated' else []
    code, _, err = run(
        strip_only(bids, tmp_path / 'out', tmp_path / 'work', tiny_strip_ckpt, *options), capsys
    )
    assert code == 0, err
    check_named_from_the_dataset(tmp_path / 'out')


def test_a_link_to_a_file_outside_the_dataset_is_processed(tmp_path, tiny_strip_ckpt, capsys):
    elsewhere = write_dataset(tmp_path / 'elsewhere', images=IMAGE) / IMAGE[0]
    bids = tmp_path / 'bids'
    (bids / 'sub-01/anat').mkdir(parents=True)
    shutil.copy(elsewhere.parents[2] / 'dataset_description.json', bids)
    (bids / IMAGE[0]).symlink_to(elsewhere)
    code, _, err = run(
        strip_only(bids, tmp_path / 'out', tmp_path / 'work', tiny_strip_ckpt), capsys
    )
    assert code == 0, err
    check_named_from_the_dataset(tmp_path / 'out')


@pytest.mark.parametrize('validation', ['validated', 'skip-bids-validation'])
def test_annex_content_not_fetched_is_one_line_saying_datalad_get(
    tmp_path, tiny_strip_ckpt, capsys, validation
):
    bids = annex_dataset(tmp_path / 'bids', content=False)
    options = ['--skip-bids-validation'] if validation != 'validated' else []
    out, work = tmp_path / 'out', tmp_path / 'work'
    code, _, err = run(strip_only(bids, out, work, tiny_strip_ckpt, *options), capsys)
    assert err.strip().splitlines() == [
        f'synthbids: error: {bids / IMAGE[0]}: the content of this DataLad/git-annex file has '
        f'not been fetched: run "datalad -C {bids} get {IMAGE[0]}" to fetch it'
    ]
    assert code == 66 and not out.exists() and not work.exists()


def test_broken_links_and_unlocked_annex_pointers(tmp_path, tiny_strip_ckpt, capsys):
    """A broken link that is not git-annex's names its target; an unlocked git-annex file
    without content (a small text file holding its key) asks for ``datalad get``."""
    from synthbids.bids.inputs import missing_content

    bids = write_dataset(tmp_path / 'bids', images=IMAGE)
    image = bids / IMAGE[0]
    image.unlink()
    image.symlink_to(tmp_path / 'gone.nii.gz')
    code, _, err = run(
        strip_only(bids, tmp_path / 'out', tmp_path / 'work', tiny_strip_ckpt), capsys
    )
    assert code == 66 and err.strip().splitlines() == [
        f'synthbids: error: {image}: broken symbolic link (its target '
        f'{tmp_path / "gone.nii.gz"} does not exist)'
    ]
    image.unlink()
    image.write_text('/annex/objects/SHA256E-s59632--0123abcd.nii.gz\n')
    assert missing_content(image) == 'annex'
    code, _, err = run(
        strip_only(bids, tmp_path / 'out', tmp_path / 'work', tiny_strip_ckpt), capsys
    )
    assert code == 66 and f'datalad -C {bids} get {IMAGE[0]}' in err


def test_an_unfetched_dataset_description_asks_for_datalad_get(tmp_path, capsys):
    bids = annex_dataset(tmp_path / 'bids')
    desc = bids / 'dataset_description.json'
    desc.unlink()
    desc.symlink_to('.git/annex/objects/Pq/Rs/MD5E-s80--0f0e.json/MD5E-s80--0f0e.json')
    code, _, err = run([bids, tmp_path / 'out', 'participant', '-w', tmp_path / 'work'], capsys)
    assert code == 66 and err.strip().splitlines() == [
        f'synthbids: error: {desc}: the content of this DataLad/git-annex file has not been '
        f'fetched: run "datalad -C {bids} get dataset_description.json" to fetch it'
    ]


def _git_annex_available() -> bool:
    if shutil.which('git') and shutil.which('git-annex'):
        return True
    if IN_CI:
        pytest.fail("git-annex not found (Debian's git-annex package): it must be present in CI")
    pytest.skip("git-annex not found (install Debian's git-annex package)")


def test_a_real_git_annex_dataset(tmp_path, tiny_strip_ckpt, capsys):
    """A dataset made with ``git annex add`` (how DataLad stores images): processed under its
    own names; once its content is dropped, one line saying what to run."""
    _git_annex_available()
    bids = write_dataset(tmp_path / 'bids', images=IMAGE)
    env = {
        **os.environ,
        'GIT_AUTHOR_NAME': 'synthbids tests',
        'GIT_AUTHOR_EMAIL': 'tests@example.org',
        'GIT_COMMITTER_NAME': 'synthbids tests',
        'GIT_COMMITTER_EMAIL': 'tests@example.org',
    }

    def git(*args):
        subprocess.run(['git', *args], cwd=bids, env=env, check=True, capture_output=True)

    git('init', '-q')
    git('annex', 'init', 'test')
    git('annex', 'add', IMAGE[0])
    git('add', 'dataset_description.json', 'participants.tsv')
    git('commit', '-q', '-m', 'dataset')
    image = bids / IMAGE[0]
    assert image.is_symlink() and '.git/annex/objects/' in os.readlink(image)

    out, work = tmp_path / 'out', tmp_path / 'work'
    code, _, err = run(strip_only(bids, out, work, tiny_strip_ckpt), capsys)
    assert code == 0, err
    check_named_from_the_dataset(out)

    git('annex', 'drop', '--force', IMAGE[0])
    assert not image.exists()
    code, _, err = run(strip_only(bids, tmp_path / 'out2', work, tiny_strip_ckpt), capsys)
    assert code == 66 and len(err.strip().splitlines()) == 1
    assert f'{image}: ' in err and f'"datalad -C {bids} get {IMAGE[0]}"' in err


# --------------------------------------------------------------------------- item 5


def _bad_image(kind: str, path: Path) -> str:
    """Write a bad image of ``kind`` at ``path``; returns the problem the message names."""
    affine = np.eye(4)
    data = head().astype(np.float32)
    if kind == '2-D':
        nib.Nifti1Image(data[:, :, 18], affine).to_filename(path)
        return 'image is 2-D (shape 40x44); a 3-D volume is required'
    if kind == 'truncated':
        nib.Nifti1Image(data, affine).to_filename(path)
        path.write_bytes(path.read_bytes()[:2000])
        return 'file is truncated or corrupt'
    if kind == 'NaN':
        data[3, 3, 3] = np.nan
        nib.Nifti1Image(data, affine).to_filename(path)
        return 'image contains 1 NaN or infinite voxel(s)'
    if kind == 'RGB':
        rgb = np.zeros(data.shape, dtype=[('R', 'u1'), ('G', 'u1'), ('B', 'u1')])
        rgb['R'] = np.clip(data, 0, 255).astype('u1')
        nib.Nifti1Image(rgb, affine).to_filename(path)
        return 'unsupported voxel type: RGB colour; a grey-scale image is required'
    if kind == 'no room for a head':
        nib.Nifti1Image(data[:3, :3, :3] + 1, affine).to_filename(path)
        return 'image is too small to hold a head (3x3x3 voxels, 3x3x3 mm)'
    raise ValueError(kind)


@pytest.mark.parametrize('kind', ['2-D', 'truncated', 'NaN', 'RGB', 'no room for a head'])
@pytest.mark.parametrize('validation', ['validated', 'skip-bids-validation'])
def test_a_bad_image_is_one_line_and_exit_65_before_anything_runs(
    tmp_path, capsys, kind, validation
):
    """Found when the graph is built, before the weights are even resolved (a missing
    ``--strip-model`` would be exit 66): one line with the file and the problem, exit 65,
    nothing written (no output or work folder)."""
    bids = write_dataset(tmp_path / 'bids', images=('sub-01/anat/sub-01_T1w.nii.gz',))
    image = bids / 'sub-01/anat/sub-01_T1w.nii.gz'
    problem = _bad_image(kind, image)
    options = ['--skip-bids-validation'] if validation != 'validated' else []
    out, work = tmp_path / 'out', tmp_path / 'work'
    start = time.monotonic()
    code, _, err = run(
        strip_only(bids, out, work, tmp_path / 'no-such-weights.pt', *options), capsys
    )
    lines = err.strip().splitlines()
    assert code == 65 and len(lines) == 1, err
    assert lines[0].startswith(f'synthbids: error: {image}: {problem}')
    assert not out.exists() and not work.exists()
    assert time.monotonic() - start < 20  # no Nipype start-up, no network


def test_several_bad_images_are_counted_in_the_line(tmp_path, capsys):
    images = ('sub-01/anat/sub-01_T1w.nii.gz', 'sub-01/anat/sub-01_T2w.nii.gz')
    bids = write_dataset(tmp_path / 'bids', images=images)
    for rel in images:
        _bad_image('NaN', bids / rel)
    code, _, err = run(
        strip_only(bids, tmp_path / 'out', tmp_path / 'work', tmp_path / 'none.pt'), capsys
    )
    assert code == 65 and err.strip().splitlines() == [
        f'synthbids: error: {bids / images[0]}: image contains 1 NaN or infinite voxel(s) '
        '(and 1 more image(s) that cannot be used: sub-01_T2w.nii.gz)'
    ]
