"""``synthbids-models``: list, fetch, verify and path, and its messages."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from synthbids.cli.models import main as models_main
from synthbids.core import weights as W
from tests.test_fetch import UNREACHABLE, http_dir  # noqa: F401  (a fixture)


@pytest.fixture
def fake_strip_file(tiny_strip_ckpt, tmp_path):
    """A file named like the official SynthStrip weights that is not them."""
    path = tmp_path / 'synthstrip.1.pt'
    shutil.copy(tiny_strip_ckpt, path)
    return path


def test_models_command(fake_strip_file, http_dir, capsys, monkeypatch):  # noqa: F811
    root, url = http_dir
    assert models_main(['list']) == 0
    out = capsys.readouterr().out
    assert 'synthstrip.1.pt' in out and 'synthseg_2.0.h5' in out
    # the official file is not on the mirror: clear failure, non-zero exit
    assert models_main(['fetch', 'synthstrip', '--mirror', url]) == 1
    assert 'HTTP 404' in capsys.readouterr().err
    # a mirror serving the wrong file: rejected by its SHA-256
    shutil.copy(fake_strip_file, root / 'synthstrip.1.pt')
    assert models_main(['fetch', 'synthstrip', '--mirror', url]) == 1
    assert 'differs from the expected' in capsys.readouterr().err
    assert not (W.cache_dir() / 'synthstrip.1.pt').exists()
    assert models_main(['fetch', 'no-such-model']) == 1
    assert 'unknown weights name' in capsys.readouterr().err
    # verify reports a mismatching file found in $SYNTHBIDS_MODELS
    env = Path(str(root)) / 'env'
    env.mkdir()
    shutil.copy(fake_strip_file, env / 'synthstrip.1.pt')
    monkeypatch.setenv('SYNTHBIDS_MODELS', str(env))
    assert models_main(['verify', 'synthstrip']) == 1
    assert 'BAD synthstrip (environment)' in capsys.readouterr().out
    assert models_main(['path', 'synthstrip']) == 0
    assert capsys.readouterr().out.strip() == str(env / 'synthstrip.1.pt')
    assert models_main(['path', 'synthseg-2.0']) != 0


def test_fetch_offline_points_to_the_other_ways(capsys):
    """Offline, ``fetch`` keeps no partial file it never wrote and says how to get the weights
    anyway: the official address to download elsewhere, $SYNTHBIDS_MODELS, --mirror."""
    official = W.official_entries()['synthstrip'].url
    assert models_main(['fetch', 'synthstrip', '--mirror', UNREACHABLE]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f'synthbids-models: error: download failed from {UNREACHABLE}/')
    assert 'partial file kept' not in err
    assert err.endswith(
        f'download {official} on a machine with internet access and put it in '
        '$SYNTHBIDS_MODELS, or use --mirror DIR|URL'
    )
    assert not any(W.cache_dir().iterdir())
