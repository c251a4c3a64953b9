"""The weights packaged with synthbids work out of the box on a real head (Colin27).

Issue 4's bar for skull stripping: with nothing downloaded, ``synthbids-strip`` gives a plausible
brain mask (Dice against ``ch2bet``, an automated BET extraction, >= 0.90).
"""

from __future__ import annotations

import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from synthbids.core import weights as W
from synthbids.train.evaluate import dice


def packaged(kind: str) -> W.RegistryEntry:
    entries = [e for e in W.packaged_entries().values() if e.kind == kind]
    assert entries, f'no {kind} weights packaged in synthbids/data/weights/index.json'
    assert W.packaged_path(entries[0]).is_file(), entries[0].file
    return entries[0]


def test_packaged_weights_match_index_and_size_budget():
    total = 0
    for entry in W.packaged_entries().values():
        path = W.packaged_path(entry)
        assert W.sha256sum(path) == entry.sha256, entry.name
        assert path.stat().st_size == entry.bytes
        assert path.with_name(entry.card).is_file(), f'{entry.name} has no model card'
        total += entry.bytes
    assert 0 < total <= 40e6  # the budget for all packaged weights together


# --------------------------------------------------------------------------- strip


@pytest.fixture(scope='module')
def colin_strip(ch2):
    from synthbids.core.strip import load_strip_model, strip

    model = load_strip_model()  # search order with nothing installed: the packaged weights
    return model, strip(str(ch2), model)


def test_default_strip_weights_are_the_packaged_ones(colin_strip):
    model, _ = colin_strip
    assert model.weights.source == 'packaged'
    assert model.weights.sha256 == packaged('strip').sha256


def test_default_strip_colin27_mask_matches_bet(colin_strip, ch2bet):
    _, result = colin_strip
    ref = np.asanyarray(nib.load(ch2bet).dataobj) > 0
    assert result.mask.shape == ref.shape
    assert dice(result.mask, ref) >= 0.90
    # one connected brain of human size, not a head or a blob
    assert 1000 <= result.mask.sum() / 1000 <= 2200


def test_strip_cli_on_fresh_install(ch2, tmp_path):
    """No model flag, an empty HOME, no FreeSurfer: the command runs on the packaged weights."""
    env = {k: v for k, v in os.environ.items() if k not in ('FREESURFER_HOME', 'SYNTHBIDS_MODELS')}
    env.update(HOME=str(tmp_path / 'home'), SYNTHBIDS_CACHE=str(tmp_path / 'cache'))
    cmd = [sys.executable, '-m', 'synthbids.cli.strip', '-i', str(ch2), '-m', 'mask.nii.gz']
    run = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert f'Using {packaged("strip").name} ' in run.stdout + run.stderr
    mask = np.asanyarray(nib.load(tmp_path / 'mask.nii.gz').dataobj)
    assert set(np.unique(mask)) == {0, 1}
