"""Fixtures of the BIDS App tests: small BIDS datasets."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

#: The dataset of the end-to-end test: three participants, one with a session, T1w + T2w.
E2E_IMAGES = (
    'sub-01/anat/sub-01_T1w.nii.gz',
    'sub-01/anat/sub-01_T2w.nii.gz',
    'sub-02/anat/sub-02_T1w.nii.gz',
    'sub-02/anat/sub-02_T2w.nii.gz',
    'sub-03/ses-1/anat/sub-03_ses-1_T1w.nii.gz',
    'sub-03/ses-1/anat/sub-03_ses-1_T2w.nii.gz',
)


def head(shape=(40, 44, 36), radius=0.33, seed=0, t2=False) -> np.ndarray:
    """A bright noisy ellipsoid (the 'brain') with a dim shell (the 'skull') around it."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape).astype(float)
    centre = (np.array(shape) - 1)[:, None, None, None] / 2
    r = np.sqrt((((grid - centre) / (np.array(shape)[:, None, None, None])) ** 2).sum(0))
    brain = 100 + 20 * rng.random(shape)
    if t2:
        brain = 160 - 0.5 * brain
    out = np.where(r < radius, brain, 5 * rng.random(shape))
    out = np.where((r >= radius + 0.04) & (r < radius + 0.08), 30.0, out)
    return out.astype(np.int16)


def write_dataset(root: Path, images=E2E_IMAGES, name='synthbids test dataset') -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / 'dataset_description.json').write_text(
        json.dumps({'Name': name, 'BIDSVersion': '1.10.0', 'DatasetDOI': '10.0000/test'})
    )
    (root / 'participants.tsv').write_text(
        'participant_id\n' + ''.join(f'sub-0{i}\n' for i in (1, 2, 3))
    )
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = [-20, -22, -18]
    for i, rel in enumerate(images):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        radius = 0.28 + 0.02 * int(rel[5])  # a different brain size per participant
        img = nib.Nifti1Image(head(radius=radius, seed=i, t2='T2w' in rel), affine)
        img.set_qform(affine, code=1)
        img.set_sform(affine, code=1)
        img.to_filename(path)
        path.with_name(path.name.replace('.nii.gz', '.json')).write_text('{}')
    return root


@pytest.fixture
def bids_dataset(tmp_path) -> Path:
    return write_dataset(tmp_path / 'bids')


@pytest.fixture
def packaged_only(monkeypatch, tmp_path):
    """A machine with no official weights anywhere: runs use the packaged default weights."""
    monkeypatch.delenv('SYNTHBIDS_MODELS', raising=False)
    monkeypatch.delenv('FREESURFER_HOME', raising=False)
    monkeypatch.setenv('SYNTHBIDS_CACHE', str(tmp_path / 'empty-cache'))


@pytest.fixture(scope='session')
def tiny_head_ckpt(tmp_path_factory) -> Path:
    """A tiny head network (:func:`tests.conftest.write_tiny_head`) for the test heads:
    background below x = 0.1, bone between 0.1 and 0.4 (the dim shell of :func:`head`),
    brain above (the bright ellipsoid). Labels, volumes and all four surfaces exist."""
    from synthbids.core.labels import HEAD_CLASSES

    from ..conftest import write_tiny_head

    n = len(HEAD_CLASSES)
    slope = dict.fromkeys(range(n), 0.0) | {0: -30.0, 1: 30.0}
    bias = dict.fromkeys(range(n), -20.0) | {0: 3.0, 1: -12.0, 3: 0.0}  # 1 brain, 3 bone
    return write_tiny_head(
        tmp_path_factory.mktemp('tiny_head') / 'tiny_head.pt',
        [slope[c] for c in range(n)],
        [bias[c] for c in range(n)],
        {'voxsize': 1.0, 'min_shape': 64},
    )
