"""Helpers shared by the command-line tools: logging, devices, threads, error reporting."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from ..core.errors import InputError, OutputError, RunAborted, SynthbidsError, UsageError

log = logging.getLogger('synthbids')


def setup_logging(verbosity: int) -> None:
    level = (
        logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter('%(levelname)s: %(message)s'))
    root = logging.getLogger('synthbids')
    root.handlers[:] = [handler]
    root.setLevel(level)


def add_common_flags(parser, prog: str) -> None:
    """``-v/--verbose`` and ``--version``, as every single-image tool has them."""
    from .. import __version__

    parser.add_argument(
        '-v', '--verbose', action='count', default=0, help='more messages (-vv: debugging)'
    )
    parser.add_argument('--version', action='version', version=f'{prog} {__version__}')


def tool_main(prog: str, parser, run: Callable, argv: list[str] | None) -> int:
    """Parse ``argv``, set up logging, and run ``run(args)`` with one-line errors."""
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    return run_main(prog, lambda: run(args), verbose=args.verbose > 1)


def set_threads(threads: int | None) -> None:
    """Limit torch (and BLAS) to ``threads`` CPU threads; ``None`` keeps the defaults."""
    if threads is None:
        return
    if threads < 1:
        raise UsageError(f'--threads must be at least 1 (got {threads})')
    import torch

    torch.set_num_threads(threads)
    os.environ.setdefault('OMP_NUM_THREADS', str(threads))


def choose_device(gpu: bool):
    import torch

    if not gpu:
        return torch.device('cpu')
    if not torch.cuda.is_available():
        raise SynthbidsError('--gpu was given but no CUDA device is available')
    return torch.device('cuda')


def print_weights(weights, device) -> None:
    """Say which weights run, and where (every single-image tool prints this line)."""
    names = ', '.join(f'{w.name} (sha256 {w.sha256[:12]}...)' for w in weights)
    print(f'Using {names} on {device}', flush=True)


def run_each(prog: str, inputs: Sequence[Path], work: Callable[[int, Path], list]) -> int:
    """Run ``work(index, input)`` (which returns the paths it wrote) for every input, as the
    single-image tools do: a bad image among several is reported and skipped (exit 1 at the
    end, with the list); with one input its error ends the run."""
    failures = []
    total = len(inputs)
    for i, src in enumerate(inputs):
        start = time.perf_counter()
        if total > 1:
            print(f'[{i + 1}/{total}] {src}', flush=True)
        try:
            written = work(i, src)
        except InputError as err:
            if total == 1:
                raise
            failures.append(src)
            print(f'{prog}: error: {err}', file=sys.stderr, flush=True)
            continue
        outputs = ', '.join(str(p) for p in dict.fromkeys(written))
        print(f'{src}: done in {time.perf_counter() - start:.1f} s -> {outputs}', flush=True)
    if failures:
        print(f'{prog}: {len(failures)} of {total} images failed:', file=sys.stderr)
        for src in failures:
            print(f'  {src}', file=sys.stderr)
        return 1
    return 0


class Terminated(KeyboardInterrupt):
    """Raised on SIGTERM (e.g. a batch system's time limit): unwinds like Ctrl-C, so that
    staged outputs are deleted instead of being left half-written."""


def _terminate(signum, frame):
    raise Terminated


def run_main(prog: str, body: Callable[[], int], verbose: bool = False) -> int:
    """Run ``body``; turn known errors into ``prog: error: message`` and an exit code."""
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return body()
    except SynthbidsError as err:
        print(f'{prog}: error: {err}', file=sys.stderr)
        return err.exit_code
    except RunAborted as stop:
        print(f'{prog}: error: {stop.error}', file=sys.stderr)
        return stop.error.exit_code
    except KeyboardInterrupt as err:
        print(f'{prog}: interrupted', file=sys.stderr)
        return 143 if isinstance(err, Terminated) else 130
    except MemoryError:
        print(f'{prog}: error: out of memory', file=sys.stderr)
        return 1
    except Exception as err:  # unexpected: one line, traceback only with -v
        if verbose:
            traceback.print_exc()
        detail = str(err).splitlines()[0] if str(err) else ''
        print(
            f'{prog}: error: unexpected {type(err).__name__}: {detail} '
            '(run with -vv for a traceback)',
            file=sys.stderr,
        )
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)


def expand_outputs(
    option: str, values: Sequence[str] | None, inputs: Sequence[Path], suffix: str
) -> list[Path | None]:
    """Match an output option to the inputs: one value per input, or (several inputs) one
    existing folder in which ``<input name><suffix><ext>`` files are written."""
    from ..core.imageio import split_ext

    if not values:
        return [None] * len(inputs)
    if len(values) == len(inputs) and not (len(inputs) > 1 and Path(values[0]).is_dir()):
        return [Path(v) for v in values]
    if len(values) == 1 and Path(values[0]).is_dir():
        folder = Path(values[0])
        out = []
        for src in inputs:
            stem, ext = split_ext(src.name)
            out.append(folder / f'{stem}{suffix}{ext or ".nii.gz"}')
        return out
    raise UsageError(
        f'{option} needs one file per input ({len(inputs)}) or a single existing folder'
    )


def check_inputs_exist(paths: Sequence[Path]) -> None:
    for p in paths:
        if not p.exists():
            raise InputError(p, 'no such file')


def check_distinct(inputs: Sequence[Path], outputs: Sequence[Path]) -> None:
    """Refuse to overwrite an input with an output."""
    ins = {p.resolve() for p in inputs if p.exists()}
    for out in outputs:
        if out.resolve() in ins:
            raise OutputError(out, 'output would overwrite an input image')
    seen = set()
    for out in outputs:
        key = out.resolve()
        if key in seen:
            raise OutputError(out, 'the same output file is given twice')
        seen.add(key)
