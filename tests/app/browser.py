"""Headless Chromium for report tests: what a person opening the report would get."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from tests.conftest import require

CHROMIUM = Path('/usr/bin/chromium')
FLAGS = (
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
)


def chromium() -> Path:
    return require(CHROMIUM, "Debian's chromium package (apt-get install chromium)")


def _run(args: list[str], timeout: int = 90) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix='chromium-profile-') as profile:
        return subprocess.run(
            [str(chromium()), *FLAGS, f'--user-data-dir={profile}', *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def dump_dom(page: Path) -> str:
    """The DOM after the page (and its images) loaded and its scripts ran."""
    proc = _run(['--virtual-time-budget=5000', '--dump-dom', Path(page).resolve().as_uri()])
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def screenshot(page: Path, out: Path, size=(1200, 1600)) -> Path:
    proc = _run(
        [
            f'--window-size={size[0]},{size[1]}',
            f'--screenshot={out}',
            Path(page).resolve().as_uri(),
        ]
    )
    assert proc.returncode == 0 and out.is_file(), proc.stderr[-2000:]
    return out
