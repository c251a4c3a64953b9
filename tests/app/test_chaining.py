"""Chaining into sMRIPrep/fMRIPrep: do their precomputed-derivative queries find our outputs?

``fmriprep ... --derivatives synthbids=<out>`` (and sMRIPrep's ``--derivatives``) index each
folder with pybids as a derivatives dataset (``validate=False``) and look, per participant (and
session), for the anatomical files described in sMRIPrep's ``data/io_spec.json`` "baseline"
queries. The queries below restate those facts (sMRIPrep 2026-08, ``collect_derivatives`` in
``smriprep/utils/bids.py``); the code is ours. sMRIPrep indexes with niworkflows' ``nipreps.json``
pybids configuration, which knows the entities these queries use but not ``seg-``; pybids' own
``derivatives`` configuration knows ``seg-`` (as ``segmentation``). Both are checked.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from synthbids.cli.run import main
from tests.app.conftest import write_dataset
from tests.conftest import REPO

ANAT = {'datatype': 'anat', 'space': None, 'extension': ['.nii.gz', '.nii']}
#: sMRIPrep's baseline queries for precomputed anatomical derivatives (key: query).
SMRIPREP_BASELINE = {
    'preproc': {**ANAT, 'desc': 'preproc', 'suffix': 'T1w'},
    'mask': {**ANAT, 'desc': 'brain', 'suffix': 'mask'},
    'dseg': {**ANAT, 'desc': None, 'suffix': 'dseg'},
    'tpms': {**ANAT, 'label': ['GM', 'WM', 'CSF'], 'suffix': 'probseg'},
    't2w_preproc': {**ANAT, 'desc': 'preproc', 'suffix': 'T2w'},
}
TISSUES = ('GM', 'WM', 'CSF')
#: The T1w images of the e2e dataset: (subject, session).
T1W = [('01', None), ('02', None), ('03', '1')]


def pybids_configs() -> dict[str, list]:
    """pybids' own configuration, and the same without the ``seg-`` entity (as nipreps.json)."""
    import bids.layout

    folder = Path(bids.layout.__file__).parent / 'config'
    bids = json.loads((folder / 'bids.json').read_text())
    derivatives = json.loads((folder / 'derivatives.json').read_text())
    no_seg = {
        **derivatives,
        'name': 'derivatives-without-seg',
        'entities': [e for e in derivatives['entities'] if e['name'] != 'segmentation'],
    }
    assert len(no_seg['entities']) == len(derivatives['entities']) - 1
    return {'pybids': ['bids', 'derivatives'], 'nipreps-like': [bids, no_seg]}


def collect(layout, subject: str, session: str | None) -> dict[str, list[str]]:
    """What sMRIPrep would take as precomputed: every baseline query that finds files."""
    found = {}
    for key, query in SMRIPREP_BASELINE.items():
        extra = {'session': session} if session else {}
        files = layout.get(subject=subject, return_type='filename', **query, **extra)
        if files:
            found[key] = sorted(files)
    return found


@pytest.fixture(scope='module')
def derivatives(
    tmp_path_factory, tiny_strip_ckpt, tiny_seg_models, tiny_head_ckpt
) -> tuple[Path, Path]:
    """``(bids, out)``: the e2e dataset after ``synthbids ... participant``."""
    root = tmp_path_factory.mktemp('chaining')
    bids = write_dataset(root / 'bids')
    out = root / 'derivatives' / 'synthbids'
    argv = [str(bids), str(out), 'participant', '--strip-model', str(tiny_strip_ckpt)]
    argv += ['--seg-model', str(tiny_seg_models), '--fast', '--no-qc', '-w', str(root / 'work')]
    argv += ['--head-model', str(tiny_head_ckpt)]
    assert main([*argv, '--nprocs', '2', '--omp-nthreads', '1']) == 0
    return bids, out


@pytest.mark.parametrize('config', ['pybids', 'nipreps-like'])
def test_smriprep_queries_find_our_mask_and_tissues_and_never_our_aseg(derivatives, config):
    """Per T1w: exactly our brain mask and our 3-class tissue dseg and GM/WM/CSF probsegs (on
    the T1w grid). Our SynthSeg labels are ``desc-aseg_dseg`` (fMRIPrep's and QSIPrep's name
    for aseg-like labels), so sMRIPrep's tissue query (a ``_dseg`` without ``desc``: 1 GM,
    2 WM, 3 CSF, used for BBR) does not take them, where label 2 is only the left white
    matter."""
    from bids import BIDSLayout

    bids, out = derivatives
    layout = BIDSLayout(out, config=pybids_configs()[config], validate=False)
    for subject, session in T1W:
        prefix = f'sub-{subject}' + (f'_ses-{session}' if session else '')
        anat = out / f'sub-{subject}' / (f'ses-{session}' if session else '') / 'anat'
        found = collect(layout, subject, session)
        assert found == {
            'mask': [str(anat / f'{prefix}_desc-brain_mask.nii.gz')],
            'dseg': [str(anat / f'{prefix}_dseg.nii.gz')],
            'tpms': sorted(str(anat / f'{prefix}_label-{t}_probseg.nii.gz') for t in TISSUES),
        }, found
        # sMRIPrep applies a precomputed mask to the T1w itself: same grid (and the tissues)
        raw = nib.load(bids / anat.relative_to(out) / f'{prefix}_T1w.nii.gz')
        mask = nib.load(found['mask'][0])
        assert mask.shape == raw.shape and np.allclose(mask.affine, raw.affine)
        assert set(np.unique(np.asanyarray(mask.dataobj))) == {0, 1}
        dseg = nib.load(found['dseg'][0])
        assert dseg.shape == raw.shape and np.allclose(dseg.affine, raw.affine)
        assert set(np.unique(np.asanyarray(dseg.dataobj))) <= {0, 1, 2, 3}
        # the aseg-like labels are found by their own name, with their lookup table
        extra = {'session': session} if session else {}
        aseg = layout.get(subject=subject, **ANAT, desc='aseg', suffix='dseg', **extra)
        assert [f.filename for f in aseg] == [f'{prefix}_desc-aseg_dseg.nii.gz']
    rows = [r.split('\t') for r in (out / 'desc-aseg_dseg.tsv').read_text().splitlines()[1:]]
    names = {int(index): name for index, name, *_ in rows}
    assert names[2] == 'left cerebral white matter' or 'Left' in names[2], names[2]


def test_mask_only_view_chains_the_mask_alone(derivatives, tmp_path):
    """scripts/chain-masks.sh copies the T1w-space brain masks and the dataset description:
    sMRIPrep's queries then find the mask and nothing else."""
    from bids import BIDSLayout

    _, out = derivatives
    view = tmp_path / 'synthbids-masks'
    subprocess.run(['bash', str(REPO / 'scripts/chain-masks.sh'), str(out), str(view)], check=True)
    assert json.loads((view / 'dataset_description.json').read_text())['DatasetType'] == (
        'derivative'
    )
    layout = BIDSLayout(view, config=pybids_configs()['nipreps-like'], validate=False)
    for subject, session in T1W:
        found = collect(layout, subject, session)
        assert list(found) == ['mask'], found
        assert Path(found['mask'][0]).name.endswith('_desc-brain_mask.nii.gz')
    # a second run refreshes the view (idempotent) and leaves no partial files
    subprocess.run(['bash', str(REPO / 'scripts/chain-masks.sh'), str(out), str(view)], check=True)
    assert not [p for p in view.rglob('*') if '.partial' in p.name]
    shutil.rmtree(view)
