"""Fetching official weights (``synthbids.fetch``): resume, verification, atomic publication,
and what a user is told when the network is not there."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from synthbids import fetch as F
from synthbids.core import weights as W
from synthbids.core.errors import WeightsError

#: nothing listens on the discard port of localhost: the connection is refused at once
UNREACHABLE = 'http://127.0.0.1:9/models'


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


def entry_for(path: Path, name='test-weights', url=None) -> W.RegistryEntry:
    data = path.read_bytes()
    return W.RegistryEntry(
        name=name,
        file=path.name,
        kind='strip',
        sha256=hashlib.sha256(data).hexdigest(),
        bytes=len(data),
        url=url,
    )


def test_the_core_has_no_downloader():
    """Resolving weights never touches the network: the downloader lives outside the core."""
    source = Path(W.__file__).read_text()
    assert 'urllib' not in source and 'def fetch' not in source
    assert not hasattr(W, 'fetch') and not hasattr(W, 'locate')


def test_fetch_resumes_verifies_and_publishes_atomically(http_dir, tmp_path):
    root, url = http_dir
    payload = bytes(range(256)) * 4096
    (root / 'w.pt').write_bytes(payload)
    entry = entry_for(root / 'w.pt')
    dest = tmp_path / 'cache'
    dest.mkdir()
    (dest / '.w.pt.part').write_bytes(payload[:1000])  # an interrupted earlier download
    seen = []
    path = F.fetch(entry, dest=dest, mirror=url, progress=lambda d, t: seen.append(d))
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
        F.fetch(entry, dest=dest, mirror=url)
    assert list(dest.iterdir()) == []


def test_fetch_from_a_folder_mirror(tmp_path):
    """``--mirror DIR`` (a file:// address) publishes a verified copy in the cache."""
    mirror = tmp_path / 'mirror'
    mirror.mkdir()
    (mirror / 'w.pt').write_bytes(b'weights' * 100)
    entry = entry_for(mirror / 'w.pt')
    assert F.source_url(entry, str(mirror)) == (mirror / 'w.pt').as_uri()
    path = F.fetch(entry, dest=tmp_path / 'cache', mirror=str(mirror))
    assert path == tmp_path / 'cache' / 'w.pt' and path.read_bytes() == b'weights' * 100
    assert F.verify_file(entry, path) == (True, 'SHA-256 verified')


def test_offline_without_a_partial_file_says_what_to_do(tmp_path):
    """No network and nothing downloaded before: no "partial file kept", no empty .part left
    behind, and the message ends with the ways to get the file without this machine's
    network."""
    src = tmp_path / 'w.pt'
    src.write_bytes(b'x' * 64)
    entry = entry_for(src, url=f'{UNREACHABLE}/w.pt')
    dest = tmp_path / 'cache'
    with pytest.raises(WeightsError) as err:
        F.fetch(entry, dest=dest, timeout=5)
    text = str(err.value)
    assert text.startswith(f'download failed from {UNREACHABLE}/w.pt: ')
    assert 'partial' not in text and 'resume' not in text
    assert text.endswith(
        f'download {UNREACHABLE}/w.pt on a machine with internet access and put it in '
        '$SYNTHBIDS_MODELS, or use --mirror DIR|URL'
    )
    assert '\n' not in text
    assert list(dest.iterdir()) == []


def test_offline_with_a_partial_file_keeps_it_for_resuming(tmp_path):
    src = tmp_path / 'w.pt'
    src.write_bytes(b'x' * 64)
    entry = entry_for(src, url=f'{UNREACHABLE}/w.pt')
    dest = tmp_path / 'cache'
    dest.mkdir()
    (dest / '.w.pt.part').write_bytes(b'x' * 10)
    with pytest.raises(WeightsError) as err:
        F.fetch(entry, dest=dest, timeout=5)
    text = str(err.value)
    assert 'partial file kept (10 bytes): run the same command again to resume, or download ' in (
        text
    )
    assert text.endswith('or use --mirror DIR|URL')
    assert (dest / '.w.pt.part').read_bytes() == b'x' * 10


def test_missing_file_on_a_folder_mirror(tmp_path):
    """A folder mirror without the file fails like an unreachable server: nothing kept, and
    the official address to download by hand."""
    src = tmp_path / 'w.pt'
    src.write_bytes(b'x' * 64)
    entry = entry_for(src, url='https://example.org/models/w.pt')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(WeightsError) as err:
        F.fetch(entry, dest=tmp_path / 'cache', mirror=str(tmp_path / 'empty'))
    text = str(err.value)
    assert text.startswith(f'download failed from {(tmp_path / "empty" / "w.pt").as_uri()}: ')
    assert 'partial' not in text
    assert 'download https://example.org/models/w.pt on a machine with internet access' in text
    assert list((tmp_path / 'cache').iterdir()) == []
