"""Building and running the Nipype graph of a participant run: Nipype's configuration and
logging, the plugin, crash files, and cleaning the work folder afterwards."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

#: The top workflow's name: its folder in the work directory.
WORKFLOW_NAME = 'synthbids_wf'
#: Where the worker processes find Nipype's logging configuration (in the work folder).
NIPYPE_CONFIG_FOLDER = '.nipype'


def build_workflow(settings, subjects):
    """The graph of every selected image (:func:`synthbids.workflows.base.init_synthbids_wf`)."""
    from ..workflows.base import init_synthbids_wf

    return init_synthbids_wf(subjects=subjects, settings=settings, name=WORKFLOW_NAME)


def execute(workflow, settings) -> int:
    """Run the graph; returns the number of failures (0 when everything ran).

    Raises :class:`~synthbids.cli.supervise.WorkerDied` (exit 1) when a worker process dies."""
    ex = settings.execution
    restore = _configure_nipype_logging(ex.verbose, ex.work_dir)
    workflow.config['execution'] = {
        'crashdump_dir': str(ex.output_dir / 'logs' / ex.run_uuid),
        'crashfile_format': 'txt',
        'stop_on_first_crash': settings.nipype.stop_on_first_crash,
        'remove_unnecessary_outputs': True,
    }
    if settings.nipype.plugin.upper().startswith('SLURM'):
        ensure_logname()  # Nipype's SLURM plugins name jobs after $LOGNAME
    try:
        workflow.run(plugin=make_plugin(settings), plugin_args=settings.nipype.plugin_args)
    except RuntimeError:  # Nipype: "Workflow did not execute cleanly" (details logged)
        return 1
    finally:
        restore()
    return 0


def make_plugin(settings):
    """The plugin to run the graph with: MultiProc (the default, or asked for by name) runs
    under :class:`~synthbids.cli.supervise.SupervisedMultiProcPlugin` (a killed worker ends
    the run with one line, no worker outlives the main process); other plugins by name."""
    from .supervise import SUPERVISED_PLUGINS, SupervisedMultiProcPlugin

    if settings.nipype.plugin in SUPERVISED_PLUGINS:
        return SupervisedMultiProcPlugin(
            plugin_args=dict(settings.nipype.plugin_args),
            notes_dir=settings.execution.work_dir / NIPYPE_CONFIG_FOLDER / 'workers',
        )
    return settings.nipype.plugin


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


def nipype_level(verbose: int) -> str:
    """Nipype's log level for synthbids' verbosity (-1 quiet, 0 default, 1 -v, 2 -vv)."""
    return 'WARNING' if verbose <= 0 else 'INFO' if verbose == 1 else 'DEBUG'


def _configure_nipype_logging(verbose: int, work_dir: Path):
    """Nipype's log level, here and in worker processes (which read NIPYPE_CONFIG_DIR when
    they import Nipype); returns a function restoring the environment."""
    from nipype import config as nipype_config
    from nipype import logging as nipype_logging

    from ..bids.files import write_text

    level = nipype_level(verbose)
    levels = {'workflow_level': level, 'interface_level': level, 'utils_level': 'WARNING'}
    for key, value in levels.items():
        nipype_config.set('logging', key, value)
    nipype_logging.update_logging(nipype_config)
    previous = os.environ.get('NIPYPE_CONFIG_DIR')
    if previous is None:
        folder = work_dir / NIPYPE_CONFIG_FOLDER
        lines = ['[logging]'] + [f'{k} = {v}' for k, v in levels.items()]
        write_text(folder / 'nipype.cfg', '\n'.join(lines) + '\n')
        os.environ['NIPYPE_CONFIG_DIR'] = str(folder)

    def restore():
        if previous is None:
            os.environ.pop('NIPYPE_CONFIG_DIR', None)

    return restore


def clean_workdir(work_dir: Path) -> list[Path]:
    """Delete what a run put in ``work_dir`` (the graph's folder and Nipype's configuration),
    then the folder itself if nothing else is left in it; returns what was removed.

    Only synthbids' own folders go: a work folder given as ``-w $HOME`` loses nothing else."""
    removed = []
    for name in (WORKFLOW_NAME, NIPYPE_CONFIG_FOLDER):
        path = Path(work_dir) / name
        if path.is_dir():
            shutil.rmtree(path)
            removed.append(path)
    try:
        Path(work_dir).rmdir()  # only when empty
        removed.append(Path(work_dir))
    except OSError:
        pass
    return removed
