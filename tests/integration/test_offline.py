"""Compute nodes without network and with a read-only or missing HOME (Singularity, clusters).

synthbids' networks work in each image's own space and it never downloads weights implicitly,
so without ``--output-spaces`` nothing needs prefetching beyond the weights themselves
(``synthbids-models fetch`` on a login node, docs/hpc.md); with it, the templates are read from
TEMPLATEFLOW_HOME and never fetched during a run (docs/templates.md). These tests prove it:
templateflow is imported only inside the functions that look templates up, and a participant run
succeeds in a network namespace with no interface up, with HOME and TEMPLATEFLOW_HOME pointing
below /dev/null (nothing can be created there, not even by root).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from tests.app.conftest import write_dataset
from tests.conftest import REPO
from tests.integration.conftest import require_system

UNUSABLE = '/dev/null/unusable'  # mkdir below a character device fails with ENOTDIR


def test_templateflow_only_where_templates_are_looked_up():
    """No module imports TemplateFlow at import time; only synthbids.bids.templates imports it,
    inside the functions that --output-spaces calls."""
    top_level = re.compile(r'^(import|from)\s+templateflow\b', re.M)
    anywhere = re.compile(r'^\s*(import|from)\s+templateflow\b', re.M)
    sources = [
        p
        for folder in ('synthbids', 'workflows', 'interfaces')
        for p in (REPO / folder).rglob('*.py')
    ]
    assert len(sources) > 20
    assert [p for p in sources if top_level.search(p.read_text())] == []
    users = [p.relative_to(REPO).as_posix() for p in sources if anywhere.search(p.read_text())]
    assert users == ['synthbids/bids/templates.py']
    requirements = metadata.requires('synthbids') or []
    assert [r for r in requirements if r.lower().startswith('templateflow')]


def test_participant_without_network_or_home(tmp_path, tiny_strip_ckpt, tiny_seg_models):
    require_system('unshare')
    bids = write_dataset(tmp_path / 'bids', images=('sub-01/anat/sub-01_T1w.nii.gz',))
    (bids / 'participants.tsv').write_text('participant_id\nsub-01\n')
    out = tmp_path / 'out'
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ('XDG_CACHE_HOME', 'MPLCONFIGDIR', 'SYNTHBIDS_CACHE', 'NIPYPE_CONFIG_DIR')
    }
    env.update(HOME=UNUSABLE, TEMPLATEFLOW_HOME=f'{UNUSABLE}/templateflow')
    probe = subprocess.run(
        [
            'unshare',
            '--net',
            sys.executable,
            '-c',
            'import socket; socket.create_connection(("pypi.org", 443), 5)',
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode != 0  # really offline: not even name resolution works
    cmd = [
        'unshare',
        '--net',
        str(Path(sys.executable).with_name('synthbids')),
        str(bids),
        str(out),
        'participant',
        '--strip-model',
        str(tiny_strip_ckpt),
        '--seg-model',
        str(tiny_seg_models),
        '--fast',
        '-w',
        str(tmp_path / 'work'),
        '--nprocs',
        '2',
        '--omp-nthreads',
        '1',
    ]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert (out / 'sub-01/anat/sub-01_desc-brain_mask.nii.gz').is_file()
    assert (out / 'sub-01/anat/sub-01_desc-aseg_dseg.nii.gz').is_file()
    assert 'Traceback' not in run.stderr
    assert 'templateflow' not in (run.stdout + run.stderr).lower()
