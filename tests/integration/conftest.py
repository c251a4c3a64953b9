"""Fixtures of the integration tests: system tools (podman, SLURM) and app inputs that other
users (the container's ``synthbids`` user, batch jobs) can read.

These tests need root and Debian packages that ``.ci/run`` installs. In CI (``CI=true``) a
missing tool fails the test; elsewhere the test is skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.app.conftest import write_dataset
from tests.conftest import IN_CI


def require_system(*tools: str, root: bool = True) -> None:
    """Skip (fail in CI) unless every command in ``tools`` exists and, if asked, we are root."""
    reasons = []
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        reasons.append(f'{", ".join(missing)} not installed (.ci/run installs them)')
    if root and os.geteuid() != 0:
        reasons.append('needs root (rootful podman, SLURM daemons)')
    if reasons:
        message = '; '.join(reasons)
        if IN_CI:
            pytest.fail(message + ' - required in CI')
        pytest.skip(message)


def make_readable(root: Path) -> Path:
    """chmod a+rX below ``root`` (pytest's temporary folders are private to their owner)."""
    for path in [root, *root.rglob('*')]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return root


@pytest.fixture(scope='session')
def shared_inputs(tmp_path_factory, tiny_strip_ckpt, tiny_seg_models) -> dict[str, Path]:
    """The e2e dataset (3 participants, T1w + T2w, one session) and the tiny models, in a
    folder every user can read: ``{'bids': ..., 'strip': ..., 'seg': ...}``."""
    root = tmp_path_factory.mktemp('inputs')
    bids = write_dataset(root / 'bids')
    shutil.copy(tiny_strip_ckpt, root / 'tiny_strip.pt')
    shutil.copytree(tiny_seg_models, root / 'seg')
    make_readable(root)
    return {'root': root, 'bids': bids, 'strip': root / 'tiny_strip.pt', 'seg': root / 'seg'}
