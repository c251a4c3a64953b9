"""``scripts/setup.sh``: PyTorch's CPU build from its own index where that index answers, the
default index otherwise; run against a stand-in interpreter that records the pip commands."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.test_fetch import UNREACHABLE

CPU_INDEX = 'https://download.pytorch.org/whl/cpu'


@pytest.fixture
def checkout(tmp_path):
    """A copy of the script whose ``.venv/bin/python`` logs its arguments; the index probe
    (``python -``) runs in the real interpreter."""
    root = tmp_path / 'repo'
    (root / 'scripts').mkdir(parents=True)
    shutil.copy(REPO / 'scripts' / 'setup.sh', root / 'scripts' / 'setup.sh')
    python = root / '.venv' / 'bin' / 'python'
    python.parent.mkdir(parents=True)
    python.write_text(
        '#!/usr/bin/env bash\n'
        'printf "%s\\n" "$*" >> "$SETUP_LOG"\n'
        f'if [ "$1" = - ]; then exec {sys.executable} "$@"; fi\n'
    )
    python.chmod(0o755)
    return root


def run_setup(root: Path, **env) -> list[str]:
    """Run the script; returns its ``pip install`` commands (the argument lists)."""
    log = root / 'calls.log'
    environ = {k: v for k, v in os.environ.items() if k not in ('TORCH_SPEC', 'TORCH_INDEX')}
    done = subprocess.run(
        ['bash', str(root / 'scripts' / 'setup.sh')],
        env={**environ, 'SETUP_LOG': str(log), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    return [c for c in calls if c.startswith('-m pip install') and '--upgrade pip' not in c]


@pytest.fixture
def index_server(tmp_path):
    """A package index on localhost that has a ``torch/`` page."""
    www = tmp_path / 'www'
    (www / 'torch').mkdir(parents=True)
    (www / 'torch' / 'index.html').write_text('<html></html>')
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{server.server_address[1]}'
    server.shutdown()


def test_the_cpu_index_is_the_default():
    text = (REPO / 'scripts' / 'setup.sh').read_text()
    assert f'TORCH_INDEX=${{TORCH_INDEX-{CPU_INDEX}}}' in text
    assert 'TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}' in text


def test_reachable_index_serves_torch(checkout, index_server):
    torch, package = run_setup(checkout, TORCH_INDEX=index_server)
    assert torch == f'-m pip install --quiet --extra-index-url {index_server} torch==2.13.0'
    assert package == '-m pip install --quiet -e .[test]'


def test_unreachable_index_falls_back_to_the_default_quickly(checkout):
    start = time.monotonic()
    torch, _ = run_setup(checkout, TORCH_INDEX=f'{UNREACHABLE}/whl/cpu')
    assert torch == '-m pip install --quiet torch==2.13.0'
    assert time.monotonic() - start < 30


def test_torch_spec_and_index_can_be_chosen(checkout):
    (torch, _) = run_setup(checkout, TORCH_INDEX='', TORCH_SPEC='torch==2.12.1')
    assert torch == '-m pip install --quiet torch==2.12.1'
    calls = (checkout / 'calls.log').read_text()
    assert '\n- ' not in '\n' + calls  # no index probed at all
