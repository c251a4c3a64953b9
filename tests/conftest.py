"""Shared fixtures: input images, tiny models, and access to data outside the repository.

Data outside the repository (``../shared`` and Debian's Colin27 head) is required in CI
(``CI=true``: a missing file fails the test) and skipped with a clear reason elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from tests.golden import write_golden_strip
from tests.seg_fixtures import write_tiny_models

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get('SYNTHBIDS_SHARED', REPO.parent / 'shared'))
CH2 = Path('/usr/share/mricron/templates/ch2.nii.gz')
CH2BET = Path('/usr/share/mricron/templates/ch2bet.nii.gz')
IN_CI = os.environ.get('CI', '').lower() in ('1', 'true', 'yes')


def require(path: Path, why: str) -> Path:
    """Return ``path`` if it exists; otherwise fail in CI and skip elsewhere."""
    if path.exists():
        return path
    message = f'{path} not found ({why})'
    if IN_CI:
        pytest.fail(message + ' - it must be present in CI')
    pytest.skip(message)


@pytest.fixture(scope='session')
def shared_dir() -> Path:
    return require(SHARED, 'the ../shared folder with golden vectors sits beside the repo in CI')


@pytest.fixture(scope='session')
def ch2() -> Path:
    return require(CH2, "Colin27 from Debian's mricron-data package")


@pytest.fixture(scope='session')
def ch2bet() -> Path:
    return require(CH2BET, "Colin27 brain from Debian's mricron-data package")


@pytest.fixture(autouse=True)
def _isolated_weights(tmp_path_factory, monkeypatch):
    """Never pick up weights from the user's cache or FreeSurfer during tests."""
    cache = tmp_path_factory.mktemp('cache')
    monkeypatch.setenv('SYNTHBIDS_CACHE', str(cache))
    monkeypatch.delenv('SYNTHBIDS_MODELS', raising=False)
    monkeypatch.delenv('FREESURFER_HOME', raising=False)


@pytest.fixture
def no_packaged_weights(monkeypatch):
    """A machine where synthbids ships no default weights (the "nothing found" messages)."""
    from synthbids.core import weights

    monkeypatch.setattr(weights, 'packaged_entries', lambda: {})


@pytest.fixture(scope='session')
def golden_strip_ckpts(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp('golden_ckpts')
    return {
        'random': write_golden_strip(root / 'strip_random.pt', scaled=False),
        'scaled': write_golden_strip(root / 'strip_random_scaled.pt', scaled=True),
    }


def carry_image(net) -> None:
    """Zero a 2-feature SynthStrip-layout network except identity taps that carry the
    normalised image through the first encoder level and the tail to the last convolution's
    channel 0 (the tiny test networks then only set that convolution)."""
    for p in net.parameters():
        p.zero_()
    net.encoder[0][0].conv.weight[0, 0, 1, 1, 1] = 1
    net.encoder[0][1].conv.weight[0, 0, 1, 1, 1] = 1
    net.remaining[0].conv.weight[0, 2, 1, 1, 1] = 1  # channel 0 of the level-0 skip
    net.remaining[1].conv.weight[0, 0, 1, 1, 1] = 1


@pytest.fixture(scope='session')
def tiny_strip_ckpt(tmp_path_factory) -> Path:
    """A 2-feature SynthStrip (official key names) wired to threshold intensity.

    Every weight is zero except identity taps that carry the normalised image through the
    first encoder level and the tail, whose last convolution gives ``sdt = 5 - 10 * x``:
    voxels brighter than 40 % of the 99th percentile fall inside the mask. Fast and
    deterministic, with a non-trivial mask for CLI and workflow tests. Its metadata lowers
    the minimum conformed size to 64 voxels (the official 192 is covered by parity tests).
    """
    from synthbids.core.stripnet import StripUNet

    net = StripUNet(encoder=[[2, 2]] * 6, decoder=[[2, 2]] * 6, tail=[2, 2, 1])
    with torch.no_grad():
        carry_image(net)
        net.remaining[2].conv.weight[0, 0, 1, 1, 1] = -10
        net.remaining[2].conv.bias[0] = 5
    path = tmp_path_factory.mktemp('tiny') / 'tiny_strip.pt'
    torch.save(
        {'model_state_dict': net.state_dict(), 'synthbids': {'conform': {'min_shape': 64}}}, path
    )
    return path


def write_tiny_head(path: Path, slope, bias, conform: dict) -> Path:
    """A 2-feature head-tissue network (SynthStrip layout, one output per head class) that
    carries the normalised image ``x`` to its tail as :func:`tiny_strip_ckpt` does, whose
    last convolution gives class ``c`` the logit ``slope[c] * x + bias[c]``. Saved with the
    metadata of trained head weights (classes, inference grid ``conform``)."""
    from synthbids.core.labels import HEAD_CLASSES
    from synthbids.core.stripnet import StripUNet

    n = len(HEAD_CLASSES)
    net = StripUNet(encoder=[[2, 2]] * 6, decoder=[[2, 2]] * 6, tail=[2, 2, n])
    with torch.no_grad():
        carry_image(net)
        for c in range(n):
            net.remaining[2].conv.weight[c, 0, 1, 1, 1] = slope[c]
            net.remaining[2].conv.bias[c] = bias[c]
    meta = {'task': 'head', 'classes': list(HEAD_CLASSES), 'conform': conform}
    torch.save({'model_state_dict': net.state_dict(), 'synthbids': meta}, path)
    return path


@pytest.fixture(scope='session')
def banded_head_ckpt(tmp_path_factory) -> Path:
    """A tiny head network labelling intensity bands (:func:`write_tiny_head`): class ``c``
    gets the logit ``20 (c x - c^2 / 12)``, so the most probable class is ``round(6 x)``
    (background below 1/12 of the 99th percentile, class 6 above 11/12). Its grid is 2 mm
    like trained head weights, with a 64-voxel minimum."""
    n = 7
    return write_tiny_head(
        tmp_path_factory.mktemp('tiny') / 'banded_head.pt',
        [20.0 * c for c in range(n)],
        [-20.0 * c * c / (2 * (n - 1)) for c in range(n)],
        {'voxsize': 2.0, 'min_shape': 64, 'max_shape': 160, 'interp': 'linear'},
    )


@pytest.fixture(scope='session')
def tiny_seg_models(tmp_path_factory) -> Path:
    """A folder with every official SynthSeg file name holding tiny networks (4 features;
    the 2.0/1.0 ones segment intensity bands, see ``tests/seg_fixtures.py``). Usable as
    ``--model`` or ``$SYNTHBIDS_MODELS``."""
    return write_tiny_models(tmp_path_factory.mktemp('tiny_seg'))


@pytest.fixture(scope='session')
def tiny_seg_h5(tiny_seg_models) -> Path:
    """A tiny SynthSeg 2.0 weights file in the official Keras layout."""
    return tiny_seg_models / 'synthseg_2.0.h5'


@pytest.fixture
def make_nifti(tmp_path):
    """Factory writing a small NIfTI image; returns its path."""

    def make(
        name='img.nii.gz',
        shape=(40, 48, 36),
        dtype=np.int16,
        affine=None,
        data=None,
        zooms=None,
        header=None,
    ):
        if data is None:
            rng = np.random.default_rng(0)
            grid = np.indices(shape[:3]).astype(float)
            center = (np.array(shape[:3]) - 1)[:, None, None, None] / 2
            r = np.sqrt(
                (((grid - center) / (np.array(shape[:3])[:, None, None, None] / 3)) ** 2).sum(0)
            )
            base = np.where(r < 1, 100 + 20 * rng.random(shape[:3]), 5 * rng.random(shape[:3]))
            if len(shape) == 4:
                base = np.stack([np.roll(base, t, axis=0) for t in range(shape[3])], -1)
            data = base.astype(dtype)
        if affine is None:
            affine = np.diag([*(zooms if zooms is not None else (1.0, 1.0, 1.0)), 1.0])
            affine[:3, 3] = -np.array(shape[:3]) / 2
        img = nib.Nifti1Image(data, affine, header=header)
        img.set_qform(affine, code=1)
        img.set_sform(affine, code=1)
        path = tmp_path / name
        img.to_filename(path)
        return path

    return make


def listdir_all(path: Path) -> list[str]:
    """Every entry of ``path``, hidden ones included, sorted."""
    return sorted(p.name for p in Path(path).iterdir())


@pytest.fixture
def small_fs(tmp_path):
    """Factory mounting a size-limited file system (tmpfs) on a new folder; unmounted after
    the test. Needs root (CI runs as root); skipped with the reason where mounting is not
    permitted."""
    import subprocess

    mounted = []

    def mount(size: str = '3m', name: str = 'small_fs') -> Path:
        path = tmp_path / name
        path.mkdir()
        if os.geteuid() != 0:
            pytest.skip('mounting a small tmpfs (a full disk) needs root')
        result = subprocess.run(
            ['mount', '-t', 'tmpfs', '-o', f'size={size},mode=0755', 'tmpfs', str(path)],
            capture_output=True,
            text=True,
        )
        if result.returncode:
            pytest.skip(f'cannot mount a small tmpfs (a full disk): {result.stderr.strip()}')
        mounted.append(path)
        return path

    try:
        yield mount
    finally:
        import gc

        gc.collect()  # file objects of a failed write may still hold the mount
        for path in reversed(mounted):
            if subprocess.run(['umount', str(path)], capture_output=True).returncode:
                subprocess.run(['umount', '-l', str(path)], capture_output=True)


def fill_disk(folder: Path, leave: int = 0) -> Path:
    """Fill the file system of ``folder`` with one file, leaving about ``leave`` bytes free."""
    stats = os.statvfs(folder)
    size = max(stats.f_bavail * stats.f_frsize - leave, 0)
    filler = Path(folder) / 'filler.bin'
    with open(filler, 'wb') as fh:
        fh.write(b'\0' * size)
    return filler


@pytest.fixture(scope='session')
def colin27_template_run(tmp_path_factory, ch2):
    """A participant run on Colin27 (as ``sub-01``'s T1w) with the packaged weights and
    ``--output-spaces MNIColin27 MNIColin27:res-2``, against a TemplateFlow home built for the
    test (``tests/tplhome.py``). Returns ``(bids_dir, output_dir, templateflow_home)``."""
    import json
    import os
    import shutil

    from synthbids.cli.run import main
    from tests.tplhome import build_colin27_home

    tmp = tmp_path_factory.mktemp('colin27_run')
    home = build_colin27_home(tmp / 'templateflow')
    bids = tmp / 'bids'
    (bids / 'sub-01' / 'anat').mkdir(parents=True)
    (bids / 'dataset_description.json').write_text(
        json.dumps({'Name': 'Colin27', 'BIDSVersion': '1.10.0'})
    )
    shutil.copyfile(ch2, bids / 'sub-01' / 'anat' / 'sub-01_T1w.nii.gz')
    (bids / 'sub-01' / 'anat' / 'sub-01_T1w.json').write_text('{}')
    out = tmp / 'derivatives' / 'synthbids'
    argv = [str(bids), str(out), 'participant', '--no-head', '--no-qc', '-w',
            str(tmp / 'work'), '--nprocs', '2', '--omp-nthreads', '2',
            '--output-spaces', 'MNIColin27', 'MNIColin27:res-2']  # fmt: skip
    before = os.environ.get('TEMPLATEFLOW_HOME')
    os.environ['TEMPLATEFLOW_HOME'] = str(home)
    try:
        assert main(argv) == 0
    finally:
        if before is None:
            os.environ.pop('TEMPLATEFLOW_HOME', None)
        else:
            os.environ['TEMPLATEFLOW_HOME'] = before
    return bids, out, home
