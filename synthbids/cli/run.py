"""``synthbids``: the BIDS App (``synthbids bids_dir output_dir participant|group``).

Participant level: index the dataset, select images, run SynthStrip, SynthSeg and the
head-tissue network through a Nipype graph, write BIDS derivatives and one HTML report per
participant. Group level: gather the per-image tables into ``group_volumes.tsv`` /
``group_qc.tsv`` and ``group.html``.
Exit codes follow the BIDS-Apps execution spec (see ``EXIT_CODES``).

The command line is read in :mod:`.parser`, turned into settings in :mod:`.settings`, and the
graph is built and run in :mod:`.workflow`; this module runs the levels.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from ..core.errors import OutputError, RunAborted
from ._common import run_main, setup_logging
from .crashfiles import atomic_crash_files
from .parser import EXIT_CODES, IGNORED_OPTIONS, LEVELS, PROG, UsageError, get_parser
from .settings import build_settings, load_plugin, parse_memory, resolve_models
from .workflow import build_workflow, clean_workdir, ensure_logname, execute

__all__ = [
    'EXIT_CODES',
    'PROG',
    'UsageError',
    'build_settings',
    'build_workflow',
    'ensure_logname',
    'execute',
    'get_parser',
    'load_plugin',
    'main',
    'parse_memory',
    'resolve_models',
    'run_participant',
]

log = logging.getLogger('synthbids.run')


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
    verbose = -1 if args.quiet else args.verbose
    setup_logging(verbose)
    for dest, note in IGNORED_OPTIONS.items():
        if getattr(args, dest):
            _say(verbose, f'{PROG}: note: {note}')
    return run_main(PROG, lambda: _run(args), verbose=verbose > 1)


def _say(verbose: int, text: str) -> None:
    """Progress for the user on stdout; ``-q`` keeps only warnings and errors."""
    if verbose >= 0:
        print(text, flush=True)


def _run(args) -> int:
    try:
        settings = build_settings(args)
    except UsageError as err:
        print(f'{PROG}: error: {err}', file=sys.stderr)
        return 64
    if settings.execution.analysis_level == 'group':
        return run_group(settings)
    return run_participant(settings)


def run_group(settings) -> int:
    """Aggregate the outputs of the selected participants (all by default)."""
    from ..reports.group import participants_without_outputs
    from ..reports.group import run_group as write_group_outputs

    ex = settings.execution
    _remove_stale_partials(ex.output_dir, (), ex.verbose)
    written = write_group_outputs(
        ex.output_dir, participant_label=ex.participant_label, session_label=ex.session_label
    )
    for path in written:
        _say(ex.verbose, f'wrote {path}')
    missing = participants_without_outputs(ex.output_dir, ex.bids_dir, ex.participant_label)
    if missing:
        log.warning(
            'no outputs for %s (not in the group tables: run the participant level for them)',
            ', '.join(f'sub-{label}' for label in missing),
        )
    return 0


def run_participant(settings) -> int:
    ex = settings.execution
    if ex.reports_only:
        return _reports_only(settings)
    subjects = _select_images(settings)
    if not ex.boilerplate_only:  # every selected image, before any network loads
        from ..bids.inputs import check_images

        check_images(ex.bids_dir, [im for images in subjects.values() for im in images])
    models, weights = resolve_models(settings.models)
    if settings.nipype.gpu:  # fail now rather than in every network node
        from ._common import choose_device

        choose_device(True)
    settings = replace(settings, models=models)
    # the work folder first: a run that cannot have one leaves no output folder behind
    created = [] if ex.boilerplate_only else _create_folder(ex.work_dir)
    try:
        _create_folder(ex.output_dir)
        _write_run_files(settings, weights)
    except BaseException:
        _remove_empty(created)
        raise
    if ex.boilerplate_only:
        _say(ex.verbose, f'methods text: {ex.output_dir / "logs" / "CITATION.md"}')
        return 0
    n_images = sum(len(images) for images in subjects.values())
    _say(
        ex.verbose,
        f'{PROG} {ex.version}: {n_images} image(s) of {len(subjects)} participant(s) '
        f'({", ".join("sub-" + s for s in subjects)}); run {ex.run_uuid}',
    )
    return _process(settings, subjects)


def _reports_only(settings) -> int:
    from ..reports.subject import generate_reports

    ex = settings.execution
    subjects = ex.participant_label or _subjects_with_outputs(ex.output_dir)
    failed = generate_reports(ex.output_dir, subjects, ex.run_uuid, ex.work_dir)
    return int(bool(failed))


def _select_images(settings) -> dict:
    """The images of each selected participant (pybids), checked unless told otherwise."""
    from ..bids.layout import collect_images, validate_selection

    ex = settings.execution
    subjects = collect_images(
        ex.bids_dir,
        participant_label=ex.participant_label,
        session_label=ex.session_label,
        filters=ex.bids_filters,
        database_dir=ex.bids_database_dir,
        strict=not ex.skip_bids_validation,
    )
    if not ex.skip_bids_validation:
        validate_selection(ex.bids_dir, [im for ims in subjects.values() for im in ims])
    return subjects


def _write_run_files(settings, weights) -> None:
    """The dataset-level files and the methods text (what ran, with which weights)."""
    from ..bids.citation import boilerplate, write_citation
    from ..bids.dataset import write_dataset_files
    from ..bids.layout import check_dataset

    ex, models = settings.execution, settings.models
    lookup = {}
    if models.segment:
        from ..bids.lut import lookup_rows

        lookup[models.seg_label] = lookup_rows(models.parc)
    if models.head:
        from ..bids.lut import head_lookup_rows

        lookup['head'] = head_lookup_rows()
    write_dataset_files(
        ex.output_dir,
        version=ex.version,
        bids_dir=ex.bids_dir,
        raw_description=check_dataset(ex.bids_dir),
        lookup_tables=lookup,
    )
    text = boilerplate(ex.version, models, weights.strip, weights.seg, weights.head)
    write_citation(ex.output_dir, text)


def _process(settings, subjects) -> int:
    """Run the graph, write the reports, say how it went; the exit code."""
    from ..bids.files import write_text
    from ..config import to_toml
    from ..reports.subject import generate_reports

    ex = settings.execution
    _remove_stale_partials(ex.output_dir, subjects, ex.verbose)
    for label in subjects:
        log_dir = ex.output_dir / f'sub-{label}' / 'log' / ex.run_uuid
        write_text(log_dir / 'synthbids.toml', to_toml(settings))
    start = time.monotonic()
    try:
        with atomic_crash_files():
            errors = execute(build_workflow(settings, subjects), settings)
    except (RunAborted, OutputError):
        raise  # the output folder cannot be written: no report can be either
    except BaseException:
        generate_reports(ex.output_dir, list(subjects), ex.run_uuid, ex.work_dir)
        raise
    _remove_stale_partials(ex.output_dir, subjects, ex.verbose)  # also those now old enough
    failed = generate_reports(ex.output_dir, list(subjects), ex.run_uuid, ex.work_dir)
    took = time.monotonic() - start
    for label in subjects:
        _say(ex.verbose, f'report: {ex.output_dir / f"sub-{label}.html"}')
    if errors or failed:
        _report_failures(errors, failed)
        return 1
    if ex.clean_workdir:
        clean_workdir(ex.work_dir)
        _say(ex.verbose, f'removed the work folder {ex.work_dir} (--clean-workdir)')
    _say(ex.verbose, f'{PROG}: finished in {took:.1f} s; outputs in {ex.output_dir}')
    return 0


def _create_folder(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; returns those created, deepest first
    (OutputError, with nothing left behind, when it cannot be created)."""
    missing = []
    path = Path(folder)
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        _remove_empty(missing)
        raise OutputError(folder, f'cannot create: {err.strerror or err}') from None
    return missing


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders a run created (deepest first) while they are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            break


def _remove_stale_partials(output_dir: Path, subjects, verbose: int) -> None:
    """Remove the temporary files that killed runs left where this run writes: the dataset
    files, ``logs/`` and the folders of ``subjects`` (never those of other participants, which
    other jobs may be writing, nor any file that is not a temporary file of synthbids')."""
    from ..core.atomic import remove_stale_partials

    removed = remove_stale_partials(output_dir, recursive=False)
    for folder in ('logs', *(f'sub-{label}' for label in subjects)):
        removed += remove_stale_partials(Path(output_dir) / folder)
    if removed:
        _say(verbose, f'removed {len(removed)} unfinished file(s) left by an interrupted run')


def _report_failures(errors: int, failed: list[str]) -> None:
    what = []
    if errors:
        what.append('some processing steps failed (crash files in sub-<label>/log/)')
    if failed:
        what.append(f'the report of {", ".join("sub-" + s for s in failed)} failed')
    print(f'{PROG}: error: {"; ".join(what)}', file=sys.stderr)


def _subjects_with_outputs(output_dir: Path) -> list[str]:
    return sorted(p.name[4:] for p in Path(output_dir).glob('sub-*') if p.is_dir())


if __name__ == '__main__':  # pragma: no cover
    sys.exit(main())
