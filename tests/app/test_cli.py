"""``synthbids`` through ``main(argv)``: exit codes, guards and one-line messages."""

from __future__ import annotations

import json

import pytest
import tomllib

from synthbids import __version__
from synthbids.cli.parser import get_parser
from synthbids.cli.run import main
from synthbids.cli.settings import build_settings, parse_memory, resolve_models
from synthbids.config import from_toml, to_toml


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def participant(bids_dataset, tmp_path, *options):
    """A participant command line with its output in ``o`` and its work folder in ``w``."""
    return [bids_dataset, tmp_path / 'o', 'participant', '-w', tmp_path / 'w', *options]


def test_version_and_help(capsys):
    assert run(['--version'], capsys)[:2] == (0, f'synthbids {__version__}\n')
    code, out, _ = run(['--help'], capsys)
    assert code == 0 and 'participant' in out and '--participant-label' in out
    assert 'Exit codes: 0 success' in ' '.join(out.split())


def test_usage_errors_exit_64(bids_dataset, tmp_path, capsys):
    code, _, err = run([bids_dataset, tmp_path / 'o', 'participant', '--bogus'], capsys)
    assert code == 64 and 'unrecognized arguments: --bogus' in err
    code, _, err = run([bids_dataset], capsys)
    assert code == 64 and 'required' in err
    code, _, err = run([bids_dataset, tmp_path / 'o', 'participant', '--mem', 'lots'], capsys)
    assert (code, err.strip()) == (
        64,
        "synthbids: error: --mem: cannot read 'lots' (e.g. 16G, 16000M)",
    )
    plugin = tmp_path / 'p.yml'
    plugin.write_text('plugin_args: {}\n')
    code, _, err = run(
        [bids_dataset, tmp_path / 'o', 'participant', '--use-plugin', plugin], capsys
    )
    assert code == 64 and 'expected "plugin:' in err
    code, _, err = run([bids_dataset, tmp_path / 'o', 'participant', '--no-seg', '--parc'], capsys)
    assert code == 64 and '--no-seg cannot be combined' in err


def test_unknown_level_exits_17(bids_dataset, tmp_path, capsys):
    code, _, err = run([bids_dataset, tmp_path / 'o', 'session'], capsys)
    assert code == 17 and "unknown analysis level 'session'" in err


def test_missing_or_non_bids_input_exits_66(tmp_path, capsys):
    code, _, err = run([tmp_path / 'nope', tmp_path / 'o', 'participant'], capsys)
    assert code == 66 and err.strip().endswith('input dataset not found')
    (tmp_path / 'plain').mkdir()
    code, _, err = run([tmp_path / 'plain', tmp_path / 'o', 'participant'], capsys)
    assert code == 66 and 'not a BIDS dataset (no dataset_description.json)' in err


@pytest.mark.parametrize(
    ('output', 'work', 'message'),
    [
        ('.', None, 'cannot be the input dataset'),
        ('sub-01/out', None, 'inside the input dataset'),
        ('..', None, 'contains the input dataset'),
        ('../out', 'work', 'work folder is inside the input dataset'),
    ],
)
def test_never_writes_into_the_input_dataset(
    bids_dataset, tmp_path, capsys, output, work, message
):
    argv = [bids_dataset, (bids_dataset / output).resolve(), 'participant']
    if work:
        argv += ['-w', bids_dataset / work]
    before = sorted(p.relative_to(bids_dataset) for p in bids_dataset.rglob('*'))
    code, _, err = run(argv, capsys)
    assert code == 73 and message in err and len(err.strip().splitlines()) == 1
    assert sorted(p.relative_to(bids_dataset) for p in bids_dataset.rglob('*')) == before


def test_derivatives_folder_of_the_dataset_is_allowed(bids_dataset, tmp_path):
    args = get_parser().parse_args(
        [
            str(bids_dataset),
            str(bids_dataset / 'derivatives/synthbids'),
            'participant',
            '-w',
            str(tmp_path / 'w'),
        ]
    )
    assert build_settings(args).execution.output_dir == bids_dataset / 'derivatives/synthbids'


def test_filters_that_select_nothing_exit_18(bids_dataset, tmp_path, capsys):
    argv = [bids_dataset, tmp_path / 'o', 'participant', '-w', tmp_path / 'w']
    code, _, err = run([*argv, '--participant-label', 'sub-07'], capsys)
    assert code == 18 and 'participant label(s) not found' in err and 'sub-07' in err
    filters = tmp_path / 'filters.json'
    filters.write_text(json.dumps({'t1w': {'run': '5'}, 't2w': {'run': '5'}}))
    code, _, err = run([*argv, '--participant-label', '01', '--bids-filter-file', filters], capsys)
    assert code == 18 and 'no images to process' in err and 'BIDS filter file' in err
    assert not (tmp_path / 'o').exists()  # nothing written before the selection is known


def test_missing_default_weights_fail_with_the_weights_message(
    bids_dataset, tmp_path, capsys, no_packaged_weights
):
    code, _, err = run([bids_dataset, tmp_path / 'o', 'participant', '-w', tmp_path / 'w'], capsys)
    assert code == 66
    assert err.startswith('synthbids: error: no SynthStrip weights found')
    assert 'synthbids-models fetch synthstrip' in err and 'pass the file with --strip-model' in err
    assert not (tmp_path / 'o').exists()


def test_missing_head_weights(
    bids_dataset, tmp_path, tiny_strip_ckpt, tiny_seg_models, capsys, no_packaged_weights
):
    """Head tissues are on by default: without weights for them the run stops before
    anything runs, naming both ways out; --no-head runs without them."""
    argv = participant(bids_dataset, tmp_path, '--strip-model', tiny_strip_ckpt)
    argv += ['--seg-model', tiny_seg_models, '--boilerplate-only']
    code, _, err = run(argv, capsys)
    assert code == 66 and 'no head-tissue weights found' in err
    assert '--head-model' in err and '--no-head' in err
    code, _, err = run([*argv, '--no-head'], capsys)
    assert code == 0, err
    assert not (tmp_path / 'o/desc-head_dseg.tsv').exists()
    assert 'Head tissues' not in (tmp_path / 'o/logs/CITATION.md').read_text()
    code, _, err = run([*argv, '--no-head', '--head-model', tiny_strip_ckpt], capsys)
    assert code == 64 and '--no-head cannot be combined with --head-model' in err


def test_head_weights_are_resolved_once_with_their_hash(tiny_strip_ckpt, packaged_only):
    """The main process resolves the head weights (the packaged ones by default) and hands
    their path and SHA-256 to the nodes."""
    from synthbids.config import ModelSettings

    resolved, weights = resolve_models(ModelSettings(strip_model=tiny_strip_ckpt, segment=False))
    assert weights.head.source == 'packaged' and weights.head.entry.kind == 'head'
    assert resolved.head_model == weights.head.path and resolved.head_sha256 == weights.head.sha256
    assert resolved.head_inputs() == {
        'model': str(weights.head.path),
        'model_sha256': weights.head.sha256,
    }
    assert weights.head in weights.all()
    resolved, weights = resolve_models(
        ModelSettings(strip_model=tiny_strip_ckpt, segment=False, head=False)
    )
    assert weights.head is None and resolved.head_model is None


def test_missing_seg_weights(bids_dataset, tmp_path, tiny_strip_ckpt, capsys, no_packaged_weights):
    argv = participant(bids_dataset, tmp_path, '--strip-model', tiny_strip_ckpt)
    code, _, err = run(argv, capsys)
    assert code == 66 and 'no SynthSeg 2.0 weights found' in err and '--seg-model' in err


def test_settings_and_their_toml(bids_dataset, tmp_path, tiny_strip_ckpt):
    filters = tmp_path / 'f.json'
    filters.write_text(json.dumps({'t1w': {'acquisition': None}}))
    args = get_parser().parse_args(
        [
            str(bids_dataset),
            str(tmp_path / 'o'),
            'participant',
            '--participant_label',
            'sub-01',
            '02',
            '--session-label',
            'ses-1',
            '--nprocs',
            '4',
            '--mem',
            '8G',
            '--gpu',
            '--low-mem',
            '--parc',
            '--robust',
            '--fast',
            '--no-csf',
            '--strip-model',
            str(tiny_strip_ckpt),
            '--bids-filter-file',
            str(filters),
            '-w',
            str(tmp_path / 'w'),
        ]
    )
    s = build_settings(args)
    assert s.execution.participant_label == ('01', '02')
    assert s.execution.session_label == ('1',)
    assert s.nipype.omp_nthreads == 3 and s.nipype.mem_gb == 8.0 and s.nipype.low_mem
    assert s.nipype.plugin_args == {
        'n_procs': 4,
        'raise_insufficient': False,
        'mp_context': 'forkserver',
        'memory_gb': 8.0,
        'n_gpu_procs': 1,
    }
    assert s.models.seg_label == 'aparcaseg' and s.models.strip_model == tiny_strip_ckpt
    assert s.execution.run_uuid[8] == '-' and len(s.execution.run_uuid) == 15 + 1 + 36
    data = tomllib.loads(to_toml(s))
    assert data['models']['robust'] is True and data['nipype']['gpu'] is True
    assert data['execution']['bids_filters'] == {'t1w': {'acquisition': 'null'}}
    with pytest.raises(AttributeError):
        s.models.parc = False  # frozen
    assert s.models.seg_refine is None and 'refine' not in s.models.seg_inputs(ct=False)


@pytest.mark.parametrize(('flag', 'value'), [('--seg-refine', 'on'), ('--no-seg-refine', 'off')])
def test_seg_refine_reaches_the_interface(bids_dataset, tmp_path, tiny_strip_ckpt, flag, value):
    argv = participant(bids_dataset, tmp_path, '--strip-model', tiny_strip_ckpt, flag)
    s = build_settings(get_parser().parse_args([str(a) for a in argv]))
    assert s.models.seg_inputs(ct=False)['refine'] == value
    assert from_toml(to_toml(s)) == s


def test_seg_refine_needs_seg(bids_dataset, tmp_path, tiny_strip_ckpt, capsys):
    argv = participant(bids_dataset, tmp_path, '--strip-model', tiny_strip_ckpt)
    code, _, err = run([*argv, '--no-seg', '--seg-refine'], capsys)
    assert code == 64 and '--no-seg cannot be combined' in err


def test_the_toml_provenance_reads_back(bids_dataset, tmp_path, tiny_strip_ckpt):
    filters = tmp_path / 'f.json'
    filters.write_text(json.dumps({'t1w': {'acquisition': None, 'run': '1'}}))
    argv = participant(bids_dataset, tmp_path, '--participant-label', '01', '02', '--mem', '8G')
    argv += ['--bids-filter-file', filters, '--strip-model', tiny_strip_ckpt, '--no-csf', '-q']
    argv += ['--no-head']
    s = build_settings(get_parser().parse_args([str(a) for a in argv]))
    assert s.models.head is False and tomllib.loads(to_toml(s))['models']['head'] is False
    back = from_toml(to_toml(s))
    assert back == s  # every section, types included (paths, label tuples, None in filters)
    assert back.execution.participant_label == ('01', '02') and back.execution.verbose == -1
    assert (
        from_toml(
            '[models]\nparc = true\nsome_future_key = 1\n[execution]\n'
            'bids_dir = "/b"\noutput_dir = "/o"\nanalysis_level = "group"\n'
            'work_dir = "/w"\nrun_uuid = "x"\n'
        ).models.parc
        is True
    )


def test_memory_units():
    assert parse_memory('16G') == 16 and parse_memory('16gb') == 16
    assert parse_memory('16000M') == 16 and parse_memory('16000') == 16
    assert parse_memory('1.5T') == 1500


def test_reports_only_rebuilds_reports_without_running(bids_dataset, tmp_path, capsys):
    out = tmp_path / 'o'
    (out / 'sub-01').mkdir(parents=True)
    code, _, _ = run(
        [bids_dataset, out, 'participant', '--reports-only', '-w', tmp_path / 'w'], capsys
    )
    assert code == 0 and (out / 'sub-01.html').is_file()
    assert not (tmp_path / 'w').exists()


def test_group_without_outputs_exits_66(bids_dataset, tmp_path, capsys):
    code, _, err = run([bids_dataset, tmp_path / 'o', 'group'], capsys)
    assert code == 66 and 'run the participant level first' in err
    (tmp_path / 'o').mkdir()
    code, _, err = run([bids_dataset, tmp_path / 'o', 'group'], capsys)
    assert code == 66 and 'no participant outputs found' in err


@pytest.mark.parametrize('where', ['under a file', 'read-only folder'])
def test_a_work_folder_that_cannot_be_created_leaves_no_output_folder(
    bids_dataset, tmp_path, tiny_strip_ckpt, capsys, where
):
    """Exit 73 in one line naming the work folder; the output folder (here two levels that
    do not exist yet) is not created."""
    import os

    if where == 'under a file':
        (tmp_path / 'a-file').write_text('')
        work = tmp_path / 'a-file' / 'work'
    else:
        if os.geteuid() == 0:
            pytest.skip('root writes into read-only folders')
        (tmp_path / 'ro').mkdir(mode=0o555)
        work = tmp_path / 'ro' / 'work'
    out = tmp_path / 'deriv' / 'synthbids'
    argv = [bids_dataset, out, 'participant', '-w', work, '--strip-model', tiny_strip_ckpt]
    code, _, err = run([*argv, '--no-seg', '--no-head'], capsys)
    problem = os.strerror(20 if where == 'under a file' else 13)  # ENOTDIR, EACCES
    assert code == 73 and err.strip().splitlines() == [
        f'synthbids: error: {work}: cannot create: {problem}'
    ]
    assert not (tmp_path / 'deriv').exists() and not work.exists()


def test_an_output_folder_that_cannot_be_created_leaves_no_work_folder(
    bids_dataset, tmp_path, tiny_strip_ckpt, capsys
):
    (tmp_path / 'a-file').write_text('')
    out, work = tmp_path / 'a-file' / 'out', tmp_path / 'new' / 'work'
    argv = [bids_dataset, out, 'participant', '-w', work, '--strip-model', tiny_strip_ckpt]
    code, _, err = run([*argv, '--no-seg', '--no-head'], capsys)
    assert code == 73 and err.strip().splitlines() == [
        f'synthbids: error: {out}: cannot create: Not a directory'
    ]
    assert not (tmp_path / 'new').exists()


def test_a_qform_sform_mismatch_is_reported_once_with_the_file_name(
    bids_dataset, tmp_path, tiny_strip_ckpt, tiny_seg_models
):
    """The whole app in its own process (the workers' messages included): one warning with
    the file name, from the check of the inputs, none from the two network steps."""
    import subprocess
    import sys

    import nibabel as nib

    image = bids_dataset / 'sub-01/anat/sub-01_T1w.nii.gz'
    img = nib.load(image)
    sform = img.affine.copy()
    sform[0, 3] += 5
    img.set_sform(sform, code=1)
    img.to_filename(image)
    argv = participant(bids_dataset, tmp_path, '--participant-label', '01', '--nprocs', '2')
    argv += ['--strip-model', tiny_strip_ckpt, '--seg-model', tiny_seg_models, '--fast']
    filters = tmp_path / 'f.json'
    filters.write_text(json.dumps({'t2w': {'run': '9'}}))  # the T1w only
    argv += ['--bids-filter-file', filters]
    result = subprocess.run(
        [sys.executable, '-m', 'synthbids', *map(str, argv)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    mentions = [line for line in result.stderr.splitlines() if 'qform' in line]
    assert mentions == [
        f'WARNING: {image}: qform and sform disagree; outputs get the sform in both (the '
        'orientation nibabel and FreeSurfer use)'
    ]


def test_gpu_without_cuda_fails_before_running(bids_dataset, tmp_path, tiny_strip_ckpt, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip('a CUDA device is available here')
    argv = participant(bids_dataset, tmp_path, '--strip-model', tiny_strip_ckpt, '--no-seg')
    code, _, err = run([*argv, '--gpu'], capsys)
    assert code == 1 and '--gpu was given but no CUDA device is available' in err
    assert not (tmp_path / 'w').exists()


def test_seg_model_folder_must_hold_the_official_file(
    bids_dataset, tmp_path, tiny_strip_ckpt, capsys
):
    (tmp_path / 'models').mkdir()
    argv = participant(
        bids_dataset,
        tmp_path,
        '--strip-model',
        tiny_strip_ckpt,
        '--seg-model',
        tmp_path / 'models',
    )
    code, _, err = run(argv, capsys)
    assert code == 66 and 'models/synthseg_2.0.h5: no such model file' in err
    code, _, err = run([*argv, '--robust'], capsys)
    assert code == 66 and 'synthseg_robust_2.0.h5: no such model file' in err


def test_default_qc_is_skipped_with_a_warning_when_no_qc_network_is_found(
    tmp_path, tiny_seg_h5, tiny_strip_ckpt, monkeypatch, caplog, no_packaged_weights
):
    """synthbids packages a SynthSeg network but no QC network: with the defaults (QC on) the
    participant level segments without QC scores instead of failing."""
    import shutil

    from synthbids.config import ModelSettings

    models = tmp_path / 'models'
    models.mkdir()
    shutil.copy(tiny_seg_h5, models / tiny_seg_h5.name)  # the 2.0 network only
    monkeypatch.setenv('SYNTHBIDS_MODELS', str(models))
    settings = ModelSettings(strip_model=tiny_strip_ckpt, qc=True, head=False)
    resolved, weights = resolve_models(settings)
    assert resolved.qc is False and resolved.segment
    assert 'no SynthSeg QC weights found' in caplog.text and '--no-qc' in caplog.text
    assert weights.seg.path == models / tiny_seg_h5.name  # the segmentation itself still runs
    assert weights.seg.source == 'environment' and weights.companions == ()


def test_boilerplate_only_writes_the_methods_and_runs_nothing(
    bids_dataset, tmp_path, capsys, packaged_only
):
    """fMRIPrep-style wrappers' options are accepted; --fs-license-file and --notrack say
    once why they are ignored; the methods text names the packaged weights as what they are."""
    argv = participant(bids_dataset, tmp_path, '--boilerplate-only', '--notrack')
    argv += ['--fs-license-file', tmp_path / 'license.txt', '--stop-on-first-crash']
    code, out, err = run([*argv, '--clean-workdir'], capsys)
    assert code == 0, err
    assert out.count('needs no FreeSurfer licence') == 1 and out.count('no telemetry') == 1
    assert 'synthbids-seg: an early model' in err  # said whenever these weights are chosen
    written = sorted(p.relative_to(tmp_path / 'o').as_posix() for p in (tmp_path / 'o').rglob('*'))
    assert written == [
        '.bidsignore',
        'dataset_description.json',
        'desc-aseg_dseg.tsv',
        'desc-head_dseg.tsv',
        'descriptions.tsv',
        'logs',
        'logs/CITATION.bib',
        'logs/CITATION.md',
    ]
    assert not (tmp_path / 'w').exists()
    methods = (tmp_path / 'o/logs/CITATION.md').read_text()
    assert 'SynthSeg 2.0' not in methods and 'trained and packaged by synthbids' in methods
    assert '**Warning:** these weights are an early model' in methods
    assert 'Head tissues (brain, CSF, bone' in methods and '[@marching_cubes]' in methods
    head = json.loads((tmp_path / 'o/dataset_description.json').read_text())
    assert 'head tissues' in head['GeneratedBy'][0]['Description']

    code, out, err = run([*argv, '-q'], capsys)
    assert (code, out) == (0, '') and 'early model' in err  # -q: warnings and errors only


def test_stop_on_first_crash_reaches_nipype(tmp_path):
    """Two failing nodes: without the option both run (two crash files), with it Nipype stops
    at the first."""
    from nipype.interfaces import utility as niu
    from nipype.pipeline import engine as pe

    from synthbids.cli.workflow import execute
    from synthbids.config import ExecutionSettings, NipypeSettings, Settings

    def fail():
        raise ValueError('boom')

    crashes = []
    for stop in (False, True):
        workflow = pe.Workflow(name='wf', base_dir=str(tmp_path / f'work{stop}'))
        for name in ('a', 'b'):
            node = niu.Function(function=fail, input_names=[], output_names=['out'])
            workflow.add_nodes([pe.Node(node, name=name)])
        execution = ExecutionSettings(
            bids_dir=tmp_path,
            output_dir=tmp_path / f'out{stop}',
            analysis_level='participant',
            work_dir=tmp_path / f'work{stop}',
            run_uuid='RUN',
        )
        nipype = NipypeSettings(plugin='Linear', stop_on_first_crash=stop)
        assert execute(workflow, Settings(execution=execution, nipype=nipype)) == 1
        crashes.append(len(list((tmp_path / f'out{stop}/logs/RUN').glob('crash-*'))))
    assert crashes == [2, 1]


def test_clean_workdir_removes_only_what_synthbids_put_there(tmp_path):
    from synthbids.cli.workflow import clean_workdir

    work = tmp_path / 'w'
    (work / 'synthbids_wf' / 'node').mkdir(parents=True)
    (work / '.nipype').mkdir()
    assert clean_workdir(work) == [work / 'synthbids_wf', work / '.nipype', work]
    (work / 'synthbids_wf').mkdir(parents=True)
    (work / 'notes.txt').write_text('mine')
    clean_workdir(work)
    assert sorted(p.name for p in work.iterdir()) == ['notes.txt']


def test_usage_documents_every_option():
    """docs/usage.md has a row for every option of the parser."""
    from tests.conftest import REPO

    doc = (REPO / 'docs' / 'usage.md').read_text()
    options = [a.option_strings for a in get_parser()._actions if a.option_strings]
    missing = [o[-1] for o in options if o[-1] != '--help' and not any(f'`{s}' in doc for s in o)]
    assert missing == []
