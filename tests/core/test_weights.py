"""Weights: resolution order and verification (fetching: tests/test_fetch.py)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

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


def test_packaged_early_model_warning_is_said_by_loaders_not_by_resolve(caplog):
    """No global warning state: resolving says nothing, each load says it once (the BIDS App's
    main process says it; its nodes load with warn=False and record it in the sidecar)."""
    from synthbids.core.segment import load_seg_model

    entry = W.packaged_entries()['synthbids-seg']
    assert entry.warning
    with caplog.at_level('WARNING'):
        first = W.resolve('seg')
        assert not [r for r in caplog.records if entry.warning in r.getMessage()]
        load_seg_model()
        load_seg_model()
        load_seg_model(warn=False)
    assert first.source == 'packaged' and first.warning == entry.warning
    said = [r.getMessage() for r in caplog.records if entry.warning in r.getMessage()]
    assert said == [f'synthbids-seg: {entry.warning}'] * 2
    assert first.describe()['Warning'] == entry.warning


def test_provenance_of_packaged_weights_passed_back_as_a_path():
    """A BIDS App node receives the path its main process resolved: still 'packaged', named
    for what it is (not the official model's name), with its model card's accuracy."""
    default = W.resolve('seg')
    again = W.resolve('seg', explicit=default.path, sha256=default.sha256)
    assert again.source == 'packaged' and again.origin == 'packaged'
    meta = again.describe()
    assert meta['Accuracy'] and meta['ModelCard'] == 'synthbids_seg.md'
    assert W.model_name('seg', again) != 'SynthSeg 2.0' and 'synthbids' in W.model_name(
        'seg', again
    )
    strip = W.resolve('strip')
    assert W.model_name('strip', strip) == 'SynthStrip network, weights trained by synthbids'


def test_official_and_custom_weights_are_named_as_such(tmp_path, monkeypatch):
    custom = tmp_path / 'mine.pt'
    custom.write_bytes(b'not official')
    found = W.resolve('strip', explicit=custom)
    assert found.origin == 'custom' and found.source == 'argument'
    assert W.model_name('strip', found) == 'SynthStrip network, custom weights'
    entry = W.official_entries()['synthstrip']
    official = W.WeightsFile(entry.name, custom, entry.sha256, 'cache', True, entry)
    assert official.origin == 'official' and W.model_name('strip', official) == 'SynthStrip'
    assert 'Accuracy' not in official.describe() and 'Warning' not in official.describe()


def test_unknown_official_hash_is_accepted_unverified(tmp_path, monkeypatch):
    env = tmp_path / 'env'
    env.mkdir()
    (env / 'synthseg_1.0.h5').write_bytes(b'weights')
    monkeypatch.setenv('SYNTHBIDS_MODELS', str(env))
    found = W.resolve('seg-v1')
    assert found.name == 'synthseg-1.0' and not found.verified
