"""The command line of ``synthbids``: the argument parser, its exit codes and usage errors.

Building the parser has no side effects (documentation tools may import it); checking what
the options mean is :mod:`synthbids.cli.settings`' job.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import __version__

PROG = 'synthbids'
LEVELS = ('participant', 'group')

#: Exit codes (BIDS-Apps execution spec, sysexits.h).
EXIT_CODES = {
    0: 'success',
    1: 'processing failed (a node or a report failed; see the report and crash files)',
    16: 'BIDS validation failed',
    17: 'unknown analysis level',
    18: 'participant/session labels or the BIDS filter file selected no files',
    64: 'command-line usage error',
    65: 'an input image cannot be used (every selected image is checked before anything runs)',
    66: 'input dataset, outputs to aggregate, model weights, or the content of an input image '
    '(a DataLad/git-annex file not fetched: datalad get) not found',
    70: 'the workflow could not be built (a bug: please report it)',
    73: 'an output or work folder cannot be created or written (e.g. a full disk) or is not '
    'allowed',
}

#: Options of fMRIPrep-style wrappers that mean nothing here: accepted, and why they are
#: ignored is said once per run.
IGNORED_OPTIONS = {
    'fs_license_file': '--fs-license-file is ignored: synthbids runs no FreeSurfer tool and '
    'needs no FreeSurfer licence',
    'notrack': '--notrack is ignored: synthbids sends no telemetry (it never uses the network)',
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
        description='SynthStrip skull stripping, SynthSeg segmentation and head tissues of '
        'every anatomical image of a BIDS dataset, written as BIDS derivatives with visual '
        'reports.',
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
    _selection_options(p.add_argument_group('Selecting data'))
    _model_options(p.add_argument_group('Models'))
    _execution_options(p.add_argument_group('Resources and execution'))
    _output_options(p.add_argument_group('Messages and outputs'))
    _wrapper_options(p.add_argument_group('Accepted for fMRIPrep-style wrappers'))
    return p


def _selection_options(g) -> None:
    g.add_argument(
        '--participant-label',
        '--participant_label',
        dest='participant_label',
        nargs='+',
        metavar='LABEL',
        help='participants to process or aggregate (with or without sub-; default: all)',
    )
    g.add_argument(
        '--session-label',
        '--session_label',
        dest='session_label',
        nargs='+',
        metavar='LABEL',
        help='sessions to process or aggregate (with or without ses-; images without a '
        'session are kept)',
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


def _flags(group, flags: dict[str, str]) -> None:
    """On/off options: ``{flag: help}``."""
    for flag, text in flags.items():
        group.add_argument(flag, action='store_true', help=text)


def _model_options(g) -> None:
    g.add_argument('--strip-model', type=Path, metavar='FILE', help='SynthStrip weights file')
    g.add_argument(
        '--seg-model', type=Path, metavar='FILE', help='SynthSeg weights file (or folder)'
    )
    g.add_argument('--head-model', type=Path, metavar='FILE', help='head-tissue weights file')
    g.add_argument(
        '--border', type=float, default=1.0, metavar='MM', help='mask border in mm (default 1)'
    )
    _flags(
        g,
        {
            '--no-csf': 'exclude extra-cerebral CSF from the brain mask',
            '--no-seg': 'no SynthSeg segmentation',
            '--no-head': 'no head tissues (labels, volumes, surface meshes)',
            '--parc': 'parcellate the cortex (desc-aparcaseg)',
            '--robust': 'SynthSeg robust (clinical scans)',
            '--fast': 'SynthSeg without test-time flipping',
            '--no-qc': 'do not predict SynthSeg QC scores',
            '--posteriors': 'also write the posteriors (4-D probseg)',
            '--keepgeom': 'write segmentations on the input grid (default: SynthSeg 1 mm grid)',
        },
    )
    g.add_argument(
        '--seg-refine',
        action=argparse.BooleanOptionalAction,
        default=None,
        help='refine SynthSeg posteriors with intensity models fitted to each image '
        "(default: the weights' setting: on for synthbids' packaged weights, off for official)",
    )


def _execution_options(g) -> None:
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
        '--low-mem',
        '--low-memory',
        dest='low_mem',
        action='store_true',
        help='SynthSeg recomputes its full-resolution features instead of keeping them: about '
        '20 %% less peak memory for about 20 %% more time; same results',
    )
    g.add_argument(
        '--use-plugin',
        type=Path,
        metavar='FILE',
        help='Nipype plugin YAML ("plugin: MultiProc", "plugin_args: {...}")',
    )
    _flags(
        g,
        {
            '--gpu': 'run the networks on a CUDA GPU',
            '--stop-on-first-crash': 'stop at the first failed step (default: finish every '
            'other image)',
            '--clean-workdir': 'delete the work folder after a successful participant run',
        },
    )


def _output_options(g) -> None:
    g.add_argument(
        '--output-spaces',
        nargs='+',
        metavar='SPACE',
        help='TemplateFlow templates to register to and resample into (with :res-<label>, '
        ':cohort-<label>), e.g. MNI152NLin2009cAsym:res-2 MNIColin27; read from '
        '$TEMPLATEFLOW_HOME, never downloaded (scripts/fetch_templates.py; default: none)',
    )
    _flags(
        g, {'--reports-only': 'only rebuild the reports from existing outputs (participant level)'}
    )
    g.add_argument(
        '--boilerplate-only',
        '--boilerplate_only',
        dest='boilerplate_only',
        action='store_true',
        help='only write the methods text (logs/CITATION.md) and the dataset files, run '
        'nothing (participant level)',
    )
    loudness = g.add_mutually_exclusive_group()
    loudness.add_argument(
        '-v', '--verbose', action='count', default=0, help='more messages (-vv: debugging)'
    )
    loudness.add_argument(
        '-q', '--quiet', action='store_true', help='fewer messages: only warnings and errors'
    )
    g.add_argument('--version', action='version', version=f'{PROG} {__version__}')


def _wrapper_options(g) -> None:
    g.add_argument(
        '--fs-license-file',
        type=Path,
        metavar='FILE',
        help='ignored: synthbids needs no FreeSurfer licence',
    )
    _flags(g, {'--notrack': 'ignored: synthbids sends no telemetry'})
