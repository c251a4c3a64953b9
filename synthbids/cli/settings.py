"""From the parsed command line to :class:`~synthbids.config.Settings`: checks, units, plugins
and the weights a run will use (resolved before anything runs)."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from .. import __version__
from ..core.errors import SynthbidsError
from .parser import UsageError

if TYPE_CHECKING:
    from ..core.weights import WeightsFile

log = logging.getLogger('synthbids.run')


def build_settings(args):
    """Check the command line and turn it into :class:`~synthbids.config.Settings`."""
    from ..bids.layout import check_dataset
    from ..config import Settings

    group = args.analysis_level == 'group'
    if not group:
        check_dataset(_absolute(args.bids_dir))
    execution = _execution(args)
    check_locations(
        execution.bids_dir,
        execution.output_dir,
        None if group else execution.work_dir,  # the group level uses no work folder
        None if group else execution.bids_database_dir,
    )
    settings = Settings(execution=execution, models=_models(args), nipype=_nipype(args))
    if execution.output_spaces and not group:
        _check_spaces(settings)
    return settings


def _check_spaces(settings) -> None:
    """Before any work: registration goes through the segmentation, and every template's
    files must be in the local TemplateFlow cache (never downloaded during a run)."""
    from ..bids.templates import resolve_templates

    if not settings.models.segment:
        raise UsageError('--output-spaces needs the segmentation (registration goes through it)')
    if not settings.execution.reports_only:
        try:
            resolve_templates(settings.execution.output_spaces)
        except SynthbidsError as err:
            raise UsageError(str(err)) from None


def _execution(args):
    from ..bids.layout import load_filters, strip_prefix
    from ..config import ExecutionSettings, new_run_uuid

    return ExecutionSettings(
        bids_dir=_absolute(args.bids_dir),
        output_dir=_absolute(args.output_dir),
        analysis_level=args.analysis_level,
        work_dir=_absolute(args.work_dir or Path.cwd() / 'work'),
        run_uuid=new_run_uuid(),
        participant_label=strip_prefix(args.participant_label, 'sub-'),
        session_label=strip_prefix(args.session_label, 'ses-'),
        bids_filters=load_filters(args.bids_filter_file),
        bids_database_dir=_absolute(args.bids_database_dir),
        skip_bids_validation=args.skip_bids_validation,
        reports_only=args.reports_only,
        boilerplate_only=args.boilerplate_only,
        clean_workdir=args.clean_workdir,
        output_spaces=_output_spaces(args.output_spaces),
        verbose=-1 if args.quiet else args.verbose,
        version=__version__,
    )


def _output_spaces(values) -> tuple[str, ...]:
    from ..bids.templates import parse_output_spaces

    try:
        return tuple(space.fullname for space in parse_output_spaces(values))
    except SynthbidsError as err:
        raise UsageError(str(err)) from None


def _models(args):
    from ..config import ModelSettings

    if args.border != args.border or args.border in (float('inf'), float('-inf')):
        raise UsageError(f'--border must be a finite number (got {args.border})')
    if args.no_seg and (
        args.parc or args.robust or args.seg_model or args.posteriors or args.seg_refine
    ):
        raise UsageError('--no-seg cannot be combined with SynthSeg options')
    if args.no_head and args.head_model:
        raise UsageError('--no-head cannot be combined with --head-model')
    return ModelSettings(
        strip_model=_absolute(args.strip_model),
        seg_model=_absolute(args.seg_model),
        head_model=_absolute(args.head_model),
        head=not args.no_head,
        no_csf=args.no_csf,
        border=args.border,
        segment=not args.no_seg,
        parc=args.parc,
        robust=args.robust,
        fast=args.fast,
        qc=not args.no_qc,
        posteriors=args.posteriors,
        keepgeom=args.keepgeom,
        seg_refine=args.seg_refine,
    )


def _nipype(args):
    from ..config import NipypeSettings

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
    return NipypeSettings(
        plugin=plugin,
        plugin_args=plugin_args,
        nprocs=nprocs,
        omp_nthreads=omp,
        mem_gb=mem_gb,
        gpu=args.gpu,
        low_mem=args.low_mem,
        stop_on_first_crash=args.stop_on_first_crash,
    )


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


# --------------------------------------------------------------------------- weights


@dataclass(frozen=True)
class RunWeights:
    """The weights a participant run uses (:class:`~synthbids.core.weights.WeightsFile`):
    SynthStrip, SynthSeg (None without segmentation) and its companion networks, and the
    head-tissue network (None without head tissues)."""

    strip: WeightsFile
    seg: WeightsFile | None = None
    companions: tuple[WeightsFile, ...] = ()
    head: WeightsFile | None = None

    def all(self) -> list[WeightsFile]:
        found = (self.strip, self.seg, *self.companions, self.head)
        return [w for w in found if w is not None]


def resolve_models(models):
    """Resolve default weights now, so a missing file fails before anything runs.

    Returns the settings with resolved paths and the :class:`RunWeights`; the warning of an
    early packaged model is logged once here."""
    strip = _resolve('strip-nocsf' if models.no_csf else 'strip', models.strip_model)
    seg, companions, seg_path = None, (), models.seg_model
    if models.segment:
        seg = _resolve_seg(models)
        if seg_path is None or not Path(seg_path).is_dir():
            seg_path = seg.path  # a folder stays: the nodes find the companions in it
        if models.seg_model is None:
            models, companions = _resolve_companions(models)
    head = _resolve('head', models.head_model) if models.head else None
    weights = RunWeights(strip, seg, companions, head)
    for w in weights.all():
        if w.warning:
            log.warning('%s: %s', w.name, w.warning)
    hashes = {'strip_sha256': strip.sha256}  # hashed once here: the nodes reuse them
    if seg is not None and seg_path == seg.path:
        hashes['seg_sha256'] = seg.sha256
    if head is not None:
        hashes.update(head_model=head.path, head_sha256=head.sha256)
    return replace(models, strip_model=strip.path, seg_model=seg_path, **hashes), weights


def _resolve(kind: str, explicit=None):
    from ..core.errors import WeightsError
    from ..core.weights import resolve

    try:
        return resolve(kind, explicit=explicit)
    except WeightsError as err:  # name this command's option, not synthbids-strip's
        option = OPTION_OF_KIND.get(kind.split('-')[0], '--seg-model')
        message = str(err).replace('with --model', f'with {option}')
        if kind == 'head' and explicit is None:
            message += ' (or skip head tissues with --no-head)'
        raise WeightsError(message) from None


#: The option giving the weights of each network (model kinds by their first word).
OPTION_OF_KIND = {'strip': '--strip-model', 'seg': '--seg-model', 'head': '--head-model'}


def _resolve_seg(models):
    kind = 'seg-robust' if models.robust else 'seg'
    if models.seg_model is not None and Path(models.seg_model).is_dir():
        from ..core.weights import official_entries

        file = next(e.file for e in official_entries().values() if e.kind == kind)
        return _resolve(kind, Path(models.seg_model) / file)  # official names in a folder
    return _resolve(kind, models.seg_model)


def _resolve_companions(models):
    """Parcellation and QC networks, found by the default search."""
    from ..core.errors import WeightsError

    found = []
    if models.parc:
        found.append(_resolve('seg-parc'))
    if models.qc:
        try:
            found.append(_resolve('seg-qc'))
        except WeightsError as err:
            # QC is on by default, but synthbids packages no QC network: the segmentation
            # still runs on the defaults, without QC scores
            log.warning('QC scores skipped (use --no-qc to silence this): %s', err)
            models = replace(models, qc=False)
    return models, tuple(found)
