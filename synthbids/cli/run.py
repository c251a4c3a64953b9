"""``synthbids``: the BIDS App (``synthbids bids_dir output_dir participant|group``).

Participant level: index the dataset, select images, run SynthStrip and SynthSeg through a
Nipype graph, write BIDS derivatives and one HTML report per participant. Group level: gather
the per-image tables into ``group_volumes.tsv`` / ``group_qc.tsv`` and ``group.html``.
Exit codes follow the BIDS-Apps execution spec (see ``EXIT_CODES``).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import time
from pathlib import Path

from .. import __version__
from ._common import run_main, setup_logging

PROG = 'synthbids'
LEVELS = ('participant', 'group')
log = logging.getLogger('synthbids.run')

#: Exit codes (BIDS-Apps execution spec, sysexits.h).
EXIT_CODES = {
    0: 'success',
    1: 'processing failed (a node or a report failed; see the report and crash files)',
    16: 'BIDS validation failed',
    17: 'unknown analysis level',
    18: 'participant/session labels or the BIDS filter file selected no files',
    64: 'command-line usage error',
    65: 'an input image cannot be used',
    66: 'input dataset, outputs to aggregate, or model weights not found',
    70: 'the workflow could not be built (a bug: please report it)',
    73: 'an output or work folder cannot be created or is not allowed',
}


class UsageError(Exception):
    """Bad command-line usage (exit 64)."""


class _Parser(argparse.ArgumentParser):
    """argparse that exits with 64 (EX_USAGE), as BIDS Apps do, instead of 2."""

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(64, f'{self.prog}: error: {message}\n')


def get_parser() -> argparse.ArgumentParser:
    """The argument parser (no side effects: safe for documentation tools)."""
    p = _Parser(
        prog=PROG,
        description='SynthStrip skull stripping and SynthSeg segmentation of every anatomical '
        'image of a BIDS dataset, written as BIDS derivatives with visual reports.',
        epilog='Exit codes: '
        + '; '.join(f'{k} {v}' for k, v in EXIT_CODES.items())
        + '. Documentation: docs/usage.md.',
    )
    p.add_argument('bids_dir', type=Path, help='root of the input BIDS dataset')
    p.add_argument(
        'output_dir',
        type=Path,
        help='where derivatives are written (not inside bids_dir, except under its '
        'derivatives/ folder)',
    )
    p.add_argument(
        'analysis_level',
        metavar='{participant,group}',
        help='participant: process images (one or more participants per job); '
        'group: aggregate participant outputs',
    )

    g = p.add_argument_group('Selecting data')
    g.add_argument(
        '--participant-label',
        '--participant_label',
        dest='participant_label',
        nargs='+',
        metavar='LABEL',
        help='participants to process (with or without sub-; default: all)',
    )
    g.add_argument(
        '--session-label',
        '--session_label',
        dest='session_label',
        nargs='+',
        metavar='LABEL',
        help='sessions to process (with or without ses-; images without a session are kept)',
    )
    g.add_argument(
        '--bids-filter-file',
        type=Path,
        metavar='FILE',
        help='JSON {"t1w": {"acquisition": "mprage"}, "t2w": {...}}: pybids entities per '
        'suffix (null: entity absent, "*": any value)',
    )
    g.add_argument(
        '--bids-database-dir',
        type=Path,
        metavar='DIR',
        help='keep the pybids index here and reuse it on the next run (created if missing)',
    )
    g.add_argument(
        '--skip-bids-validation',
        '--skip_bids_validation',
        dest='skip_bids_validation',
        action='store_true',
        help='do not check the dataset description and input file names',
    )

    g = p.add_argument_group('Models')
    g.add_argument('--strip-model', type=Path, metavar='FILE', help='SynthStrip weights file')
    g.add_argument(
        '--seg-model', type=Path, metavar='FILE', help='SynthSeg weights file (or folder)'
    )
    g.add_argument(
        '--no-csf', action='store_true', help='exclude extra-cerebral CSF from the brain mask'
    )
    g.add_argument(
        '--border', type=float, default=1.0, metavar='MM', help='mask border in mm (default 1)'
    )
    g.add_argument('--no-seg', action='store_true', help='skull stripping only (no SynthSeg)')
    g.add_argument('--parc', action='store_true', help='parcellate the cortex (desc-aparcaseg)')
    g.add_argument('--robust', action='store_true', help='SynthSeg robust (clinical scans)')
    g.add_argument('--fast', action='store_true', help='SynthSeg without test-time flipping')
    g.add_argument('--no-qc', action='store_true', help='do not predict SynthSeg QC scores')
    g.add_argument(
        '--posteriors', action='store_true', help='also write the posteriors (4-D probseg)'
    )
    g.add_argument(
        '--keepgeom',
        action='store_true',
        help='write segmentations on the input grid (default: SynthSeg 1 mm grid)',
    )

    g = p.add_argument_group('Resources and execution')
    g.add_argument(
        '-w', '--work-dir', type=Path, metavar='DIR', help='work directory (default: ./work)'
    )
    g.add_argument(
        '--nprocs',
        '--nthreads',
        '--n-cpus',
        dest='nprocs',
        type=int,
        metavar='N',
        help='processes run in parallel (default: all CPUs)',
    )
    g.add_argument(
        '--omp-nthreads',
        type=int,
        metavar='N',
        help='threads per network (default: min(nprocs - 1, 8))',
    )
    g.add_argument(
        '--mem',
        '--mem-mb',
        dest='mem',
        metavar='MEM',
        help='memory limit for scheduling, e.g. 16G or 16000M (a plain number is MB)',
    )
    g.add_argument(
        '--use-plugin',
        type=Path,
        metavar='FILE',
        help='Nipype plugin YAML ("plugin: MultiProc", "plugin_args: {...}")',
    )
    g.add_argument('--gpu', action='store_true', help='run the networks on a CUDA GPU')
    g.add_argument(
        '--reports-only',
        action='store_true',
        help='only rebuild the reports from existing outputs (participant level)',
    )
    g.add_argument(
        '-v', '--verbose', action='count', default=0, help='more messages (-vv: debugging)'
    )
    g.add_argument('--version', action='version', version=f'{PROG} {__version__}')
    return p


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault('NIPYPE_NO_ET', '1')  # no version check over the network
    parser = get_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else 64
    if args.analysis_level not in LEVELS:
        print(
            f'{PROG}: error: unknown analysis level {args.analysis_level!r} '
            f'(choose from {", ".join(LEVELS)})',
            file=sys.stderr,
        )
        return 17
    setup_logging(args.verbose)
    return run_main(PROG, lambda: _run(args), verbose=args.verbose > 1)


def _run(args) -> int:
    try:
        settings = build_settings(args)
    except UsageError as err:
        print(f'{PROG}: error: {err}', file=sys.stderr)
        return 64
    if settings.execution.analysis_level == 'group':
        from ..reports.group import run_group

        written = run_group(settings.execution.output_dir)
        for path in written:
            print(f'wrote {path}')
        return 0
    return run_participant(settings)


# --------------------------------------------------------------------------- settings


def build_settings(args):
    """Check the command line and turn it into :class:`~synthbids.config.Settings`."""
    from ..bids.layout import check_dataset, load_filters, strip_prefix
    from ..config import ExecutionSettings, ModelSettings, NipypeSettings, Settings, new_run_uuid

    bids_dir = Path(args.bids_dir).expanduser().resolve()
    output_dir = Path(args.output_dir).expanduser().resolve()
    group = args.analysis_level == 'group'
    if not group:
        check_dataset(bids_dir)
    work_dir = Path(args.work_dir or Path.cwd() / 'work').expanduser().resolve()
    check_locations(
        bids_dir,
        output_dir,
        None if group else work_dir,  # the group level uses no work folder
        None if group else args.bids_database_dir,
    )

    nprocs = args.nprocs or _cpu_count()
    if nprocs < 1:
        raise UsageError(f'--nprocs must be at least 1 (got {nprocs})')
    omp = args.omp_nthreads or (min(nprocs - 1, 8) if nprocs > 1 else 1)
    if omp < 1:
        raise UsageError(f'--omp-nthreads must be at least 1 (got {omp})')
    if omp > nprocs:
        log.warning('--omp-nthreads %d is larger than --nprocs %d', omp, nprocs)
    mem_gb = parse_memory(args.mem) if args.mem else None
    plugin, plugin_args = load_plugin(args.use_plugin)
    if plugin == 'MultiProc':
        plugin_args = {
            'n_procs': nprocs,
            'raise_insufficient': False,
            'mp_context': 'forkserver',
            **({'memory_gb': mem_gb} if mem_gb else {}),
            **({'n_gpu_procs': 1} if args.gpu else {}),
            **plugin_args,
        }
    if args.border != args.border or args.border in (float('inf'), float('-inf')):
        raise UsageError(f'--border must be a finite number (got {args.border})')

    models = ModelSettings(
        strip_model=_absolute(args.strip_model),
        seg_model=_absolute(args.seg_model),
        no_csf=args.no_csf,
        border=args.border,
        segment=not args.no_seg,
        parc=args.parc,
        robust=args.robust,
        fast=args.fast,
        qc=not args.no_qc,
        posteriors=args.posteriors,
        keepgeom=args.keepgeom,
    )
    if args.no_seg and (args.parc or args.robust or args.seg_model or args.posteriors):
        raise UsageError('--no-seg cannot be combined with SynthSeg options')
    execution = ExecutionSettings(
        bids_dir=bids_dir,
        output_dir=output_dir,
        analysis_level=args.analysis_level,
        work_dir=work_dir,
        run_uuid=new_run_uuid(),
        participant_label=strip_prefix(args.participant_label, 'sub-'),
        session_label=strip_prefix(args.session_label, 'ses-'),
        bids_filters=load_filters(args.bids_filter_file),
        bids_database_dir=(
            Path(args.bids_database_dir).expanduser().resolve() if args.bids_database_dir else None
        ),
        skip_bids_validation=args.skip_bids_validation,
        reports_only=args.reports_only,
        verbose=args.verbose,
        version=__version__,
    )
    nipype = NipypeSettings(
        plugin=plugin,
        plugin_args=plugin_args,
        nprocs=nprocs,
        omp_nthreads=omp,
        mem_gb=mem_gb,
        gpu=args.gpu,
    )
    return Settings(execution=execution, models=models, nipype=nipype)


def _absolute(path: Path | None) -> Path | None:
    # nodes run in their own folders: relative paths would not resolve there
    return None if path is None else Path(path).expanduser().resolve()


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_locations(bids_dir: Path, output_dir: Path, work_dir: Path | None, database_dir) -> None:
    """Never write into the input dataset (its ``derivatives/`` folder excepted for outputs)."""
    from ..core.errors import OutputError

    if output_dir == bids_dir:
        raise OutputError(
            output_dir,
            'the output folder cannot be the input dataset '
            f'(use e.g. {bids_dir / "derivatives" / "synthbids"})',
        )
    if _inside(output_dir, bids_dir) and not _inside(output_dir, bids_dir / 'derivatives'):
        raise OutputError(
            output_dir,
            'the output folder is inside the input dataset '
            f'(use a folder outside it, or one under {bids_dir / "derivatives"})',
        )
    if _inside(bids_dir, output_dir):
        raise OutputError(output_dir, 'the output folder contains the input dataset')
    if work_dir is not None and _inside(work_dir, bids_dir):
        raise OutputError(
            work_dir, 'the work folder is inside the input dataset (choose another with -w)'
        )
    if database_dir is not None:
        database_dir = Path(database_dir).expanduser().resolve()
        if _inside(database_dir, bids_dir):
            raise OutputError(database_dir, 'the BIDS database folder is inside the dataset')


def parse_memory(text: str) -> float:
    """GB from ``16G``, ``16GB``, ``16000M``, ``512MB``, ``1T``; a plain number is MB."""
    match = re.fullmatch(r'\s*([0-9]*\.?[0-9]+)\s*([kKmMgGtT]?)[bB]?\s*', str(text))
    if not match:
        raise UsageError(f'--mem: cannot read {text!r} (e.g. 16G, 16000M)')
    value, unit = float(match.group(1)), (match.group(2) or 'm').lower()
    gb = value * {'k': 1e-6, 'm': 1e-3, 'g': 1.0, 't': 1e3}[unit]
    if gb <= 0:
        raise UsageError(f'--mem must be positive (got {text!r})')
    if gb < 1:
        log.warning('--mem %s is less than 1 GB; networks will run one at a time', text)
    return gb


def load_plugin(path: Path | None) -> tuple[str, dict]:
    """``(plugin, plugin_args)`` from a Nipype plugin YAML; MultiProc by default."""
    if path is None:
        return 'MultiProc', {}
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f'{path}: no such plugin file') from None
    except (OSError, yaml.YAMLError) as err:
        raise UsageError(f'{path}: not a valid YAML plugin file ({err})') from None
    if not isinstance(data, dict) or not isinstance(data.get('plugin'), str):
        raise UsageError(f'{path}: expected "plugin: <Nipype plugin name>" (e.g. MultiProc)')
    args = data.get('plugin_args') or {}
    if not isinstance(args, dict):
        raise UsageError(f'{path}: "plugin_args" must be a mapping')
    return data['plugin'], dict(args)


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS
        return os.cpu_count() or 1


# --------------------------------------------------------------------------- participant


def resolve_models(models):
    """Resolve default weights now, so a missing file fails before anything runs."""
    from dataclasses import replace

    from ..core.errors import WeightsError
    from ..core.weights import resolve as _resolve

    def resolve(kind, explicit=None):
        try:
            return _resolve(kind, explicit=explicit)
        except WeightsError as err:  # name this command's option, not synthbids-strip's
            option = '--strip-model' if kind.startswith('strip') else '--seg-model'
            raise WeightsError(str(err).replace('with --model', f'with {option}')) from None

    strip = resolve('strip-nocsf' if models.no_csf else 'strip', explicit=models.strip_model)
    seg_path = models.seg_model
    names = {'strip': f'{strip.name} (sha256 {strip.sha256[:12]})', 'seg': ''}
    if models.segment:
        kind = 'seg-robust' if models.robust else 'seg'
        if seg_path is not None and Path(seg_path).is_dir():  # official names in a folder
            from ..core.weights import official_entries

            file = next(e.file for e in official_entries().values() if e.kind == kind)
            seg = resolve(kind, explicit=Path(seg_path) / file)
        else:
            seg = resolve(kind, explicit=seg_path)
            seg_path = seg.path
        names['seg'] = f'{seg.name} (sha256 {seg.sha256[:12]})'
        if models.seg_model is None:  # companion networks: found by the same search
            if models.parc:
                resolve('seg-parc')
            if models.qc:
                try:
                    resolve('seg-qc')
                except WeightsError as err:
                    # QC is on by default, but synthbids packages no QC network: the
                    # segmentation still runs on the defaults, without QC scores
                    log.warning('QC scores skipped (use --no-qc to silence this): %s', err)
                    models = replace(models, qc=False)
    return replace(models, strip_model=strip.path, seg_model=seg_path), names


def run_participant(settings) -> int:
    from ..bids.citation import boilerplate, write_citation
    from ..bids.dataset import write_dataset_files
    from ..bids.files import write_text
    from ..bids.layout import check_dataset, collect_images, validate_selection
    from ..config import to_toml
    from ..core.errors import OutputError
    from ..reports.subject import generate_reports

    ex, nipype = settings.execution, settings.nipype
    if ex.reports_only:
        subjects = ex.participant_label or _subjects_with_outputs(ex.output_dir)
        failed = generate_reports(ex.output_dir, subjects, ex.run_uuid, ex.work_dir)
        return int(bool(failed))

    subjects = collect_images(
        ex.bids_dir,
        participant_label=ex.participant_label,
        session_label=ex.session_label,
        filters=ex.bids_filters,
        database_dir=ex.bids_database_dir,
        strict=not ex.skip_bids_validation,
    )
    images = [im for ims in subjects.values() for im in ims]
    if not ex.skip_bids_validation:
        validate_selection(ex.bids_dir, images)
    models, weight_names = resolve_models(settings.models)
    if nipype.gpu:  # fail now rather than in every network node
        from ._common import choose_device

        choose_device(True)
    from dataclasses import replace

    settings = replace(settings, models=models)
    print(
        f'{PROG} {ex.version}: {len(images)} image(s) of {len(subjects)} participant(s) '
        f'({", ".join("sub-" + s for s in subjects)}); run {ex.run_uuid}',
        flush=True,
    )
    for folder in (ex.output_dir, ex.work_dir):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputError(folder, f'cannot create: {err.strerror or err}') from None

    lookup = {}
    if models.segment:
        from ..bids.lut import lookup_rows

        lookup[models.seg_label] = lookup_rows(models.parc)
    write_dataset_files(
        ex.output_dir,
        version=ex.version,
        bids_dir=ex.bids_dir,
        raw_description=check_dataset(ex.bids_dir),
        lookup_tables=lookup,
    )
    write_citation(
        ex.output_dir,
        boilerplate(ex.version, models, weight_names['strip'], weight_names['seg']),
    )
    for label in subjects:
        write_text(
            ex.output_dir / f'sub-{label}' / 'log' / ex.run_uuid / 'synthbids.toml',
            to_toml(settings),
        )

    errors = 0
    start = time.monotonic()
    try:
        workflow = build_workflow(settings, subjects)
        errors = execute(workflow, settings)
    finally:
        failed = generate_reports(ex.output_dir, list(subjects), ex.run_uuid, ex.work_dir)
    took = time.monotonic() - start
    for label in subjects:
        print(f'report: {ex.output_dir / f"sub-{label}.html"}')
    if errors or failed:
        what = []
        if errors:
            what.append('some processing steps failed (crash files in sub-<label>/log/)')
        if failed:
            what.append(f'the report of {", ".join("sub-" + s for s in failed)} failed')
        print(f'{PROG}: error: {"; ".join(what)}', file=sys.stderr)
        return 1
    print(f'{PROG}: finished in {took:.1f} s; outputs in {ex.output_dir}', flush=True)
    return 0


def build_workflow(settings, subjects):
    from ..workflows.base import init_synthbids_wf

    ex, nipype = settings.execution, settings.nipype
    return init_synthbids_wf(
        subjects=subjects,
        output_dir=ex.output_dir,
        work_dir=ex.work_dir,
        models=settings.models,
        run_uuid=ex.run_uuid,
        omp_nthreads=nipype.omp_nthreads,
        use_gpu=nipype.gpu,
    )


def execute(workflow, settings) -> int:
    """Run the graph; returns the number of failures (0 when everything ran)."""
    ex = settings.execution
    restore = _quiet_nipype(ex.verbose, ex.work_dir)
    workflow.config['execution'] = {
        'crashdump_dir': str(ex.output_dir / 'logs' / ex.run_uuid),
        'crashfile_format': 'txt',
        'stop_on_first_crash': False,
        'remove_unnecessary_outputs': True,
    }
    if settings.nipype.plugin.upper().startswith('SLURM'):
        ensure_logname()  # Nipype's SLURM plugins name jobs after $LOGNAME
    try:
        workflow.run(plugin=settings.nipype.plugin, plugin_args=settings.nipype.plugin_args)
    except RuntimeError:  # Nipype: "Workflow did not execute cleanly" (details logged)
        return 1
    finally:
        restore()
    return 0


def ensure_logname() -> str:
    """Set ``$LOGNAME`` when it is missing (batch jobs, containers); returns its value."""
    if not os.environ.get('LOGNAME'):
        try:
            import getpass

            name = getpass.getuser()
        except (KeyError, OSError):  # a user id without a passwd entry (containers)
            name = f'uid{os.getuid()}'
        os.environ['LOGNAME'] = name
    return os.environ['LOGNAME']


def _quiet_nipype(verbose: int, work_dir: Path):
    """Nipype's log level, here and in worker processes (which read NIPYPE_CONFIG_DIR when
    they import Nipype); returns a function restoring the environment."""
    from nipype import config as nipype_config
    from nipype import logging as nipype_logging

    from ..bids.files import write_text

    level = 'WARNING' if verbose <= 0 else 'INFO' if verbose == 1 else 'DEBUG'
    levels = {'workflow_level': level, 'interface_level': level, 'utils_level': 'WARNING'}
    for key, value in levels.items():
        nipype_config.set('logging', key, value)
    nipype_logging.update_logging(nipype_config)
    previous = os.environ.get('NIPYPE_CONFIG_DIR')
    if previous is None:
        folder = work_dir / '.nipype'
        lines = ['[logging]'] + [f'{k} = {v}' for k, v in levels.items()]
        write_text(folder / 'nipype.cfg', '\n'.join(lines) + '\n')
        os.environ['NIPYPE_CONFIG_DIR'] = str(folder)

    def restore():
        if previous is None:
            os.environ.pop('NIPYPE_CONFIG_DIR', None)

    return restore


def _subjects_with_outputs(output_dir: Path) -> list[str]:
    return sorted(p.name[4:] for p in Path(output_dir).glob('sub-*') if p.is_dir())


if __name__ == '__main__':  # pragma: no cover
    sys.exit(main())
