"""Weights: resolution order, verification, fetching with resume, the models command."""

from __future__ import annotations

import functools
import hashlib
import http.server
import shutil
import threading
from pathlib import Path

import pytest

from synthbids.cli.models import main as models_main
from synthbids.core import weights as W
from synthbids.core.errors import WeightsError


@pytest.fixture
def fake_strip_file(tiny_strip_ckpt, tmp_path):
    path = tmp_path / 'synthstrip.1.pt'
    shutil.copy(tiny_strip_ckpt, path)
    return path


def put(folder: Path, src: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / 'synthstrip.1.pt'
    shutil.copy(src, dest)
    return dest


def test_resolution_order(fake_strip_file, tmp_path, monkeypatch):
    env, fs = tmp_path / 'env', tmp_path / 'fs'
    put(fs / 'models', fake_strip_file)
    monkeypatch.setenv('FREESURFER_HOME', str(fs))
    found = W.resolve('strip')
    assert found.source == 'freesurfer' and not found.verified
    assert found.name == 'custom (synthstrip.1.pt)'  # not the official SHA-256
    put(env, fake_strip_file)
    monkeypatch.setenv('SYNTHBIDS_MODELS', str(env))
    assert W.resolve('strip').source == 'environment'
    explicit = W.resolve('strip', explicit=fake_strip_file)
    assert explicit.source == 'argument' and explicit.path == fake_strip_file
    assert explicit.sha256 == hashlib.sha256(fake_strip_file.read_bytes()).hexdigest()


def test_corrupt_cached_file_is_refused(fake_strip_file):
    put(W.cache_dir(), fake_strip_file)
    with pytest.raises(WeightsError, match='synthbids-models fetch synthstrip --force'):
        W.resolve('strip')


def test_missing_weights_say_how_to_get_them(monkeypatch):
    monkeypatch.setattr(W, 'packaged_entries', lambda: {})
    with pytest.raises(WeightsError) as err:
        W.resolve('strip')
    text = str(err.value)
    assert 'synthbids-models fetch synthstrip' in text and 'SYNTHBIDS_MODELS' in text
    assert '\n' not in text


def test_packaged_early_model_warns_once_per_process(caplog, monkeypatch):
    """The packaged seg weights carry a warning; resolving them again in the same process (the
    BIDS App resolves, then each interface does) does not repeat it."""
    monkeypatch.setattr(W, '_WARNED', set())
    entry = W.packaged_entries()['synthbids-seg']
    assert entry.warning
    with caplog.at_level('WARNING'):
        first = W.resolve('seg')
        second = W.resolve('seg')
    assert first.source == second.source == 'packaged'
    said = [r.getMessage() for r in caplog.records if entry.warning in r.getMessage()]
    assert said == [f'synthbids-seg: {entry.warning}']


def test_unknown_official_hash_is_accepted_unverified(tmp_path, monkeypatch):
    env = tmp_path / 'env'
    env.mkdir()
    (env / 'synthseg_1.0.h5').write_bytes(b'weights')
    monkeypatch.setenv('SYNTHBIDS_MODELS', str(env))
    found = W.resolve('seg-v1')
    assert found.name == 'synthseg-1.0' and not found.verified


@pytest.fixture
def http_dir(tmp_path):
    """Serve a folder over HTTP on localhost (with Range support, as real servers have)."""
    root = tmp_path / 'www'
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def send_head(self):
            rng = self.headers.get('Range')
            path = Path(self.translate_path(self.path))
            if not rng or not path.is_file():
                return super().send_head()
            start = int(rng.split('=')[1].split('-')[0])
            data = path.read_bytes()
            self.send_response(206)
            self.send_header('Content-Length', str(len(data) - start))
            self.end_headers()
            self.wfile.write(data[start:])
            return None

    server = http.server.ThreadingHTTPServer(
        ('127.0.0.1', 0), functools.partial(Handler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f'http://127.0.0.1:{server.server_address[1]}'
    server.shutdown()


def entry_for(path: Path, name='test-weights') -> W.RegistryEntry:
    data = path.read_bytes()
    return W.RegistryEntry(
        name=name,
        file=path.name,
        kind='strip',
        sha256=hashlib.sha256(data).hexdigest(),
        bytes=len(data),
    )


def test_fetch_resumes_verifies_and_publishes_atomically(http_dir, tmp_path):
    root, url = http_dir
    payload = bytes(range(256)) * 4096
    (root / 'w.pt').write_bytes(payload)
    entry = entry_for(root / 'w.pt')
    dest = tmp_path / 'cache'
    dest.mkdir()
    (dest / '.w.pt.part').write_bytes(payload[:1000])  # an interrupted earlier download
    seen = []
    path = W.fetch(entry, dest=dest, mirror=url, progress=lambda d, t: seen.append(d))
    assert path.read_bytes() == payload
    assert seen[0] > 1000 and seen[-1] == len(payload)
    assert sorted(p.name for p in dest.iterdir()) == ['w.pt']


def test_fetch_rejects_a_wrong_file_and_publishes_nothing(http_dir, tmp_path):
    root, url = http_dir
    (root / 'w.pt').write_bytes(b'good contents')
    entry = entry_for(root / 'w.pt')
    (root / 'w.pt').write_bytes(b'evil contents')
    dest = tmp_path / 'cache'
    with pytest.raises(WeightsError, match='rejected: SHA-256'):
        W.fetch(entry, dest=dest, mirror=url)
    assert list(dest.iterdir()) == []


def test_models_command(fake_strip_file, http_dir, capsys, monkeypatch):
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
    put(Path(str(root)) / 'env', fake_strip_file)
    monkeypatch.setenv('SYNTHBIDS_MODELS', str(root / 'env'))
    assert models_main(['verify', 'synthstrip']) == 1
    assert 'BAD synthstrip (environment)' in capsys.readouterr().out
    assert models_main(['path', 'synthstrip']) == 0
    assert capsys.readouterr().out.strip() == str(root / 'env' / 'synthstrip.1.pt')
    assert models_main(['path', 'synthseg-2.0']) != 0
