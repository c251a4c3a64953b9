"""sMRIPrep reuses our derivatives: its own workflow, built with them, skips what they replace.

``tests/app/smriprep_graph.py`` runs in sMRIPrep's own environment (``.smriprep-venv``, made by
``bash scripts/smriprep_env.sh``: sMRIPrep 0.19.5, the newest for Python 3.11), parses
sMRIPrep's command line with sMRIPrep's parser, collects the precomputed derivatives with
sMRIPrep's ``collect_derivatives`` and builds the workflow with sMRIPrep's ``build_workflow``
(``--fs-no-reconall``: anatomical only). It prints the graph as JSON; nothing is run, because
the nodes that remain need ANTs binaries (listed by ``test_what_the_kept_nodes_need``) that
Debian does not package. The graph is built twice: with our derivatives, and with an empty
derivatives folder as the control, whose graph is sMRIPrep's full anatomical workflow.

The node names below were read from the control graph (sMRIPrep 0.19.5, niworkflows 1.14.5).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import REPO, require

VENV = Path(os.environ.get('SMRIPREP_VENV', REPO / '.smriprep-venv'))
SCRIPT = Path(__file__).with_name('smriprep_graph.py')
SPACE = 'MNIColin27'
#: The anatomical workflow of participant 01, as sMRIPrep names it.
ANAT = 'smriprep_wf.sub-01_wf.anat_preproc_wf.'
FIT = ANAT + 'anat_fit_wf.'
TISSUES = ('GM', 'WM', 'CSF')  # sMRIPrep's dseg labels 1, 2, 3 and its probseg order


# ---------------------------------------------------------------- inputs (Colin27, Debian) --


@pytest.fixture(scope='module')
def templateflow_home(colin27_template_run) -> Path:
    """TEMPLATEFLOW_HOME with MNIColin27 (tests/tplhome.py), as the synthbids run used."""
    return colin27_template_run[2]


@pytest.fixture(scope='module')
def colin27_bids(colin27_template_run) -> Path:
    """A BIDS dataset whose only T1w (sub-01) is Colin27."""
    return colin27_template_run[0]


@pytest.fixture(scope='module')
def synthbids_derivatives(colin27_template_run) -> Path:
    """What synthbids wrote for ``colin27_bids`` with ``--output-spaces MNIColin27`` (a real
    participant run with the packaged weights, shared with tests/integration)."""
    return colin27_template_run[1]


@pytest.fixture(scope='module')
def empty_derivatives(tmp_path_factory) -> Path:
    """The control: a derivatives folder with nothing sMRIPrep could reuse."""
    out = tmp_path_factory.mktemp('derivatives') / 'empty'
    out.mkdir()
    (out / 'dataset_description.json').write_text(
        json.dumps({'Name': 'empty', 'BIDSVersion': '1.10.0', 'DatasetType': 'derivative'})
    )
    return out


# ----------------------------------------------------------------- sMRIPrep's workflow graph --


@pytest.fixture(scope='module')
def smriprep_python() -> Path:
    return require(
        VENV / 'bin' / 'python', 'the sMRIPrep environment: run bash scripts/smriprep_env.sh'
    )


def smriprep_graph(python: Path, bids: Path, derivatives: Path, home: Path, work: Path) -> dict:
    """``tests/app/smriprep_graph.py`` with sMRIPrep's command line; its JSON report."""
    argv = [str(python), str(SCRIPT), str(bids), str(work / 'out'), 'participant']
    argv += ['--participant-label', '01', '--derivatives', str(derivatives)]
    argv += ['--output-spaces', SPACE, '-w', str(work / 'work'), '--fs-no-reconall']
    # the default skull-strip template (OASIS30ANTs) must exist in TEMPLATEFLOW_HOME for
    # sMRIPrep's parser to accept the command line, even when a brain mask is precomputed
    argv += ['--skull-strip-template', SPACE, '--nprocs', '1', '--omp-nthreads', '1']
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'VIRTUAL_ENV')}
    env.update(
        TEMPLATEFLOW_HOME=str(home),
        TEMPLATEFLOW_AUTOUPDATE='0',  # never download templates
        NIPYPE_NO_ET='1',  # nor ask the network for nipype's latest version
    )
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout)


@pytest.fixture(scope='module')
def graphs(
    smriprep_python,
    colin27_bids,
    synthbids_derivatives,
    empty_derivatives,
    templateflow_home,
    tmp_path_factory,
) -> dict[str, dict]:
    """``{'ours': report, 'control': report}``."""
    return {
        name: smriprep_graph(
            smriprep_python, colin27_bids, derivatives, templateflow_home,
            tmp_path_factory.mktemp(name),
        )
        for name, derivatives in (('ours', synthbids_derivatives), ('control', empty_derivatives))
    }  # fmt: skip


def nodes(report: dict) -> dict[str, dict]:
    return {node['name']: node for node in report['nodes']}


def matching(report: dict, prefix: str) -> list[str]:
    """The nodes whose full name starts with ``FIT + prefix`` (a node or a sub-workflow)."""
    return [n for n in nodes(report) if n.startswith(FIT + prefix)]


def reaches(report: dict, source: str, target: str, port: str) -> bool:
    """Whether ``source`` feeds ``target``'s input ``port`` through the flattened graph."""
    seen, todo = set(), [source]
    while todo:
        node = todo.pop()
        for src, dst, ports in report['edges']:
            if src != node:
                continue
            if dst == target and any(p == port for _, p in ports):
                return True
            if dst not in seen:
                seen.add(dst)
                todo.append(dst)
    return False


#: What our derivatives replace (pattern under anat_fit_wf: why), read from the control graph.
SKIPPED = {
    # antsBrainExtraction: antsAI, antsRegistration to the template, N4, Atropos
    'brain_extraction_wf.': 'brain extraction',
    'ds_t1w_mask_wf.': 'writing its own brain mask',
    # FSL FAST and the sinks of its dseg and probseg
    'fast': 'tissue segmentation (FSL FAST)',
    'fast2bids': 'FAST probseg reordering',
    'lut_t1w_dseg': 'FAST dseg relabelling',
    'ds_dseg_wf.': 'writing its own dseg',
    'ds_tpms_wf.': 'writing its own probseg',
    # SpatialNormalization (antsRegistration) to each template, and its transform sinks
    'register_template_wf.': 'registration to MNIColin27',
    'ds_template_registration_wf.': 'writing its own transforms',
}


# ------------------------------------------------------------------------------------ tests --


def test_smriprep_collects_our_derivatives(graphs):
    """``collect_derivatives`` finds our mask, dseg, probseg (GM, WM, CSF) and both
    transforms; not the ``space-`` images nor the aseg labels. The control finds nothing."""
    assert graphs['ours']['smriprep'] == '0.19.5'
    assert graphs['ours']['precomputed'] == {
        'sub-01': {
            't1w_mask': 'sub-01_desc-brain_mask.nii.gz',
            't1w_dseg': 'sub-01_dseg.nii.gz',
            't1w_tpms': [f'sub-01_label-{label}_probseg.nii.gz' for label in TISSUES],
            'transforms': {
                SPACE: {
                    'forward': f'sub-01_from-T1w_to-{SPACE}_mode-image_xfm.h5',
                    'reverse': f'sub-01_from-{SPACE}_to-T1w_mode-image_xfm.h5',
                }
            },
        }
    }
    assert graphs['control']['precomputed'] == {'sub-01': {'transforms': {}}}


@pytest.mark.parametrize('pattern', list(SKIPPED))
def test_replaced_steps_are_dropped(graphs, pattern):
    """Each step our derivatives replace is in the control graph and not in ours."""
    assert matching(graphs['control'], pattern), f'{SKIPPED[pattern]}: not in the control'
    assert not matching(graphs['ours'], pattern), f'{SKIPPED[pattern]}: still built'


def test_no_registration_segmentation_or_skull_strip_commands_remain(graphs):
    """By interface and command, not only by name: no FAST, antsAI, antsRegistration nor
    SpatialNormalization (which runs antsRegistration inside) with our derivatives."""
    ours, control = nodes(graphs['ours']), nodes(graphs['control'])
    dropped = {'fast', 'antsAI', 'antsRegistration', 'ThresholdImage'}
    assert dropped <= {n['command'] for n in control.values()}
    assert not dropped & {n['command'] for n in ours.values()}
    assert 'SpatialNormalization' in graphs['control']['internal_commands']
    assert graphs['ours']['internal_commands'] == {}
    assert len(ours) < len(control)


def test_what_still_runs_uses_our_files(graphs):
    """Kept: our mask applied to the T1w, then N4 (bias correction only); our dseg and probseg
    and our transforms passed on as sMRIPrep's own results; the T1w, mask, dseg and probseg
    resampled to MNIColin27 with our forward transform, and written by sMRIPrep's sinks."""
    report = graphs['ours']
    ours = nodes(report)
    used = {name: node['precomputed_inputs'] for name, node in ours.items()}
    assert used[FIT + 'apply_mask'] == {'in_mask': 'sub-01_desc-brain_mask.nii.gz'}
    assert used[FIT + 't1w_buffer'] == {'t1w_mask': 'sub-01_desc-brain_mask.nii.gz'}
    assert used[FIT + 'seg_buffer'] == {
        't1w_dseg': 'sub-01_dseg.nii.gz',
        't1w_tpms': [f'sub-01_label-{label}_probseg.nii.gz' for label in TISSUES],
    }
    assert used[FIT + 'anat2std_buffer'] == {
        'in1': [f'sub-01_from-T1w_to-{SPACE}_mode-image_xfm.h5']
    }
    assert used[FIT + 'std2anat_buffer'] == {
        'in1': [f'sub-01_from-{SPACE}_to-T1w_mode-image_xfm.h5']
    }
    # bias correction of the masked T1w (no skull-stripping)
    assert ours[FIT + 'n4_only_wf.inu_n4']['command'] == 'N4BiasFieldCorrection'
    assert reaches(report, FIT + 'apply_mask', FIT + 'n4_only_wf.inu_n4', 'input_image')
    assert ours[FIT + 'ds_template_wf.ds_anat_preproc']['interface'] == 'DerivativesDataSink'
    # the resampling to MNIColin27 with our transform, and its sinks
    volumes = ANAT + 'ds_anat_volumes_wf.'
    for kind in ('t1w', 'mask', 'dseg', 'tpms'):
        resample = ours[volumes + f'anat2std_{kind}']
        assert resample['command'] == 'antsApplyTransforms', resample
        assert reaches(report, FIT + 'anat2std_buffer', resample['name'], 'transforms')
        assert ours[volumes + f'ds_std_{kind}']['interface'] == 'DerivativesDataSink'
        assert reaches(report, resample['name'], volumes + f'ds_std_{kind}', 'in_file')
    for name in ('bidssrc', 'ds_report_summary', 'ds_report_about'):
        assert 'smriprep_wf.sub-01_wf.' + name in ours


def test_what_the_kept_nodes_need(graphs):
    """The external binaries of the graph with our derivatives (all ANTs): why the full run is
    not done here. Shown with ``pytest -rP``."""
    report = graphs['ours']
    commands = Counter(n['command'] for n in report['nodes'] if n['command'])
    print(f'sMRIPrep {report["smriprep"]}, with our derivatives, still runs:')
    for command, count in sorted(commands.items()):
        where = sorted(
            {n['name'].removeprefix(ANAT) for n in report['nodes'] if n['command'] == command}
        )
        print(
            f'  {command} x{count}: ' + ', '.join(where[:4]) + (' ...' if len(where) > 4 else '')
        )
    print(
        'missing here (sMRIPrep check_deps):', sorted({c for _, c in report['missing_commands']})
    )
    assert set(commands) == {
        'N4BiasFieldCorrection',  # bias correction (n4_only_wf, atropos_wf)
        'Atropos',  # n4_only_wf's Atropos refinement of the N4 mask
        'ImageMath',
        'MultiplyImages',
        'DenoiseImage',  # anat_template_wf: denoising of the T1w reference
        'antsApplyTransforms',  # resampling to MNIColin27 (outputs and report)
    }, commands
