"""``synthbids-train``: train SynthStrip / SynthSeg / head-tissue networks from label maps.

    synthbids-train strip --maps ../shared/data/label_maps --out runs/strip --steps 20000
    synthbids-train strip --out runs/strip --steps 30000        # resume the same run longer
    synthbids-train resume campaigns/head                       # continue with its own options
    synthbids-train export runs/strip/best.pt synthbids/data/weights/synthbids_strip.pt

The last ``--val-maps`` maps (sorted by name) are held out of training and used only for
validation on synthetic images. Runs resume from ``OUT/state.pt`` automatically.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

from .. import __version__
from ._common import run_main, set_threads, setup_logging

PROG = 'synthbids-train'
TASKS = ('strip', 'strip-nocsf', 'head', 'seg')


#: defaults of the options that define a run; resuming takes them from the run's recipe
RECIPE = {
    'voxsize': 2.0,
    'crop': [96, 96, 96],
    'features': 8,
    'max_features': 32,
    'levels': 5,
    'seed': 0,
    'val_maps': 2,
}


def recipe_options(args, previous: dict | None, out: Path) -> None:
    """Fill the recipe options of ``args``: given, else recorded by the run being resumed,
    else the defaults. A value that contradicts the recorded one is an error: the network
    would not fit the saved state, or the samples would silently change (a resumed 3 mm run
    must not continue at the 2 mm default)."""
    from ..core.errors import SynthbidsError

    recorded = {}
    if previous is not None:
        if previous.get('task') != args.task:
            raise SynthbidsError(
                f'{out / "run.json"}: this run trains {previous.get("task")}, not {args.task}'
            )
        net = previous.get('net', {})
        recorded = {
            'voxsize': previous.get('voxsize'),
            'crop': previous.get('crop'),
            'features': net.get('features'),
            'max_features': net.get('max_features'),
            'levels': net.get('levels'),
            'seed': previous.get('seed'),
            'val_maps': len(previous['val_maps']) if 'val_maps' in previous else None,
        }
    for key, default in RECIPE.items():
        given, before = getattr(args, key), recorded.get(key)
        if given is None:
            setattr(args, key, default if before is None else before)
        elif before is not None and not _same(given, before):
            option = '--' + key.replace('_', '-')
            shown = ' '.join(map(str, before)) if isinstance(before, list) else before
            raise SynthbidsError(
                f'{out / "run.json"}: the run was started with {option} {shown}; resuming '
                'keeps it (use a new --out for another recipe)'
            )


def _same(a, b) -> bool:
    if isinstance(a, list | tuple):
        return [float(x) for x in a] == [float(x) for x in b]
    return float(a) == float(b)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument('--version', action='version', version=f'{PROG} {__version__}')
    sub = p.add_subparsers(dest='task', required=True, metavar='TASK')
    for task in TASKS:
        t = sub.add_parser(task, help=f'train a {task} network')
        t.add_argument(
            '--maps',
            type=Path,
            nargs='+',
            help='label-map files or folders (default: those recorded in OUT)',
        )
        t.add_argument('--out', type=Path, required=True, help='run folder (resumable)')
        t.add_argument('--steps', type=int, default=1000, help='total iterations')
        # recipe options: a resumed run keeps the values recorded in OUT/run.json
        t.add_argument(
            '--val-maps',
            type=int,
            help=f'number of maps held out for validation (default: {RECIPE["val_maps"]})',
        )
        t.add_argument(
            '--voxsize',
            type=float,
            help="training resolution in mm, an integer multiple of the maps' "
            f'(default: {RECIPE["voxsize"]})',
        )
        t.add_argument(
            '--crop',
            type=int,
            nargs=3,
            metavar='N',
            help='default: ' + ' '.join(map(str, RECIPE['crop'])),
        )
        t.add_argument('--features', type=int, help=f'default: {RECIPE["features"]}')
        t.add_argument('--max-features', type=int, help=f'default: {RECIPE["max_features"]}')
        t.add_argument(
            '--levels',
            type=int,
            help=f'poolings (input multiple of 2^L; default: {RECIPE["levels"]})',
        )
        t.add_argument('--seed', type=int, help=f'default: {RECIPE["seed"]}')
        t.add_argument('--lr', type=float, default=1e-4, help='may change when resuming')
        t.add_argument('--warmup', type=int, default=0)
        t.add_argument('--val-every', type=int, default=250)
        t.add_argument('--val-samples', type=int, default=12)
        t.add_argument('--save-every', type=int, default=50)
        t.add_argument('--workers', type=int, default=0, help='data-generating processes')
        t.add_argument(
            '--freeze-bn',
            action='store_true',
            help='keep batch-norm statistics fixed, as at inference (fine-tuning seg nets)',
        )
        _add_run_options(t)
        t.add_argument('--cache', type=Path, help='cache of downsampled maps (default: OUT)')
        t.add_argument(
            '--init',
            type=Path,
            metavar='WEIGHTS',
            help="start a new run from exported .pt weights or a run's state.pt (fine-tuning)",
        )
        t.add_argument('-v', '--verbose', action='count', default=1)
    r = sub.add_parser(
        'resume',
        help="continue a run with the options it recorded (a campaign's one command)",
    )
    r.add_argument('run', type=Path, help='run folder with run.json and state.pt')
    r.add_argument('--steps', type=int, help='total iterations (default: recorded)')
    r.add_argument('--lr', type=float, help='default: recorded')
    for name in RESUMED:
        if name not in ('steps', 'lr', 'threads', 'workers'):
            r.add_argument('--' + name.replace('_', '-'), type=int, help='default: recorded')
    r.add_argument('--workers', type=int, help='data-generating processes (default: recorded)')
    _add_run_options(r)
    r.add_argument('-v', '--verbose', action='count', default=1)
    e = sub.add_parser('export', help='copy deployable weights, optionally as float16')
    e.add_argument('source', type=Path, help='best.pt or last.pt of a (strip or head) run')
    e.add_argument('dest', type=Path)
    e.add_argument('--half', action='store_true', help='store tensors as float16')
    e.add_argument('-v', '--verbose', action='count', default=1)
    return p


def _add_run_options(p) -> None:
    """Options of where and how long a run runs this time (never part of its recipe)."""
    p.add_argument('--device', default='auto', choices=('auto', 'cpu', 'cuda'))
    p.add_argument('-t', '--threads', type=int, help='CPU threads')
    p.add_argument(
        '--time-limit',
        type=float,
        metavar='MINUTES',
        help='save and stop after this much wall time (short GPU jobs); resume continues',
    )


#: training options recorded in run.json under "options", which ``resume`` reuses
RESUMED = (
    'steps',
    'lr',
    'warmup',
    'val_every',
    'val_samples',
    'save_every',
    'workers',
    'threads',
)


def resume_argv(args) -> list[str]:
    """The task command line that continues ``args.run``: its recorded options, each one
    given to ``resume`` replacing the recorded value."""
    from ..core.errors import SynthbidsError

    recipe_path = args.run / 'run.json'
    if not recipe_path.exists():
        raise SynthbidsError(f'{recipe_path}: no such file; resume needs a run folder')
    try:
        recipe = json.loads(recipe_path.read_text())
        task = recipe['task']
    except (ValueError, KeyError, TypeError):
        raise SynthbidsError(f'{recipe_path}: not a synthbids-train run record') from None
    options = {'lr': recipe.get('lr'), **recipe.get('options', {})}
    argv = [task, '--out', str(args.run), '--device', args.device]
    for name in RESUMED:
        value = getattr(args, name)
        value = options.get(name) if value is None else value
        if value is not None:
            argv += ['--' + name.replace('_', '-'), str(value)]
    if args.time_limit is not None:
        argv += ['--time-limit', str(args.time_limit)]
    return argv + ['-v'] * (args.verbose - 1)


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    if args.task == 'export':
        return run_main(PROG, lambda: _export(args), verbose=args.verbose > 1)
    if args.task == 'resume':
        resumed = run_main(PROG, lambda: resume_argv(args), verbose=args.verbose > 1)
        if isinstance(resumed, int):
            return resumed
        print(f'{PROG} {" ".join(resumed)}', flush=True)
        return main(resumed)
    return run_main(PROG, lambda: _train(args), verbose=args.verbose > 1)


def _map_files(sources, cache: Path | None = None, voxsize: float = 0.0) -> list[Path]:
    """The label-map files of ``sources`` (files or folders), sorted by name; a missing file
    is kept when ``cache`` holds its downsampled copy (a campaign carried without its maps)."""
    from ..core.errors import SynthbidsError
    from ..synth.labelmaps import cached_copy

    files = []
    for src in sources:
        src = Path(src)
        if src.is_dir():
            files += sorted(
                p for p in src.iterdir() if p.name.endswith(('.nii.gz', '.nii', '.mgz'))
            )
        elif src.exists() or cached_copy(src, cache, voxsize) is not None:
            files.append(src)
        else:
            raise SynthbidsError(f'{src}: no such label map or folder')
    if not files:
        raise SynthbidsError('no label maps found')
    return sorted(files, key=lambda p: p.name)


def train_device(choice: str):
    """The torch device for ``--device``; ``cuda`` without a usable GPU is a one-line error
    (the build has no CUDA support, or no device is visible)."""
    import torch

    from ..core.errors import SynthbidsError

    if choice == 'cpu' or (choice == 'auto' and not torch.cuda.is_available()):
        return torch.device('cpu')
    if torch.cuda.is_available():
        return torch.device('cuda')
    if torch.version.cuda is None and getattr(torch.version, 'hip', None) is None:
        why = f'this PyTorch build has no CUDA support (torch {torch.__version__})'
    else:
        why = f'no CUDA device is available (torch {torch.__version__})'
    raise SynthbidsError(f'--device cuda: {why}; use --device cpu or a machine with a GPU')


def _train(args) -> int:
    from ..core.errors import SynthbidsError
    from ..synth.generator import GeneratorConfig, SynthGenerator
    from ..synth.labelmaps import label_tables, load_label_maps
    from ..train.loop import TrainConfig, train
    from ..train.tasks import HeadTask, NetConfig, SegTask, StripTask

    device = train_device(args.device)  # before anything is read or written
    recipe_path = args.out / 'run.json'
    previous = json.loads(recipe_path.read_text()) if recipe_path.exists() else None
    sources = args.maps or (previous and previous['maps'])
    recipe_options(args, previous, args.out)
    # a frozen-batch-norm run stays frozen when resumed
    args.freeze_bn = args.freeze_bn or bool(previous and previous.get('freeze_bn'))
    if not sources:
        raise SynthbidsError('give --maps (no earlier run in the output folder)')
    cache = args.cache or args.out / 'maps-cache'
    files = _map_files(sources, cache, args.voxsize)
    if len(files) <= args.val_maps:
        raise SynthbidsError(f'{len(files)} maps: need more than --val-maps {args.val_maps}')
    train_files, val_files = files[: -args.val_maps or None], files[-args.val_maps :]
    set_threads(args.threads)
    net = NetConfig(args.features, args.max_features, args.levels)
    divisor = 2**args.levels
    if any(c % divisor for c in args.crop):
        raise SynthbidsError(
            f'--crop sizes must be multiples of {divisor} for {args.levels} levels'
        )
    tables = label_tables()
    task_cls = {'head': HeadTask, 'seg': SegTask}.get(args.task, StripTask)
    task = task_cls(name=args.task, tables=tables, voxsize=args.voxsize, net_config=net)
    gconf = GeneratorConfig.for_task(args.task, crop=tuple(args.crop), context=task.context)
    # samples are drawn on the GPU when it trains and no worker processes draw them
    gen_device = device if args.workers == 0 else 'cpu'
    generator = SynthGenerator(
        load_label_maps(train_files, args.voxsize, cache), gconf, device=gen_device
    )
    val_generator = SynthGenerator(
        load_label_maps(val_files, args.voxsize, cache), gconf, device=gen_device
    )
    recipe = {
        'task': args.task,
        'maps': [str(p) for p in files],
        'train_maps': [p.name for p in train_files],
        'val_maps': [p.name for p in val_files],
        'voxsize': args.voxsize,
        'crop': list(args.crop),
        'net': vars(net),
        'lr': args.lr,
        'seed': args.seed,
        'generator': vars(gconf),
        'options': {name: getattr(args, name) for name in RESUMED},
        'version': __version__,
    }
    # every TrainConfig field that is also an option (steps, lr, seed, warmup, init, ...)
    config = TrainConfig(
        **{f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    )
    if args.init or (previous and previous.get('init')):  # a resumed run keeps its lineage
        recipe['init'] = str(args.init or previous['init'])
    if args.freeze_bn:
        recipe['freeze_bn'] = True
    print(
        f'{PROG}: {args.task} on {device}, {len(train_files)} training maps, '
        f'{len(val_files)} held out ({", ".join(p.name for p in val_files)})',
        flush=True,
    )
    result = train(task, generator, val_generator, args.out, config, device, recipe)
    print(f'{PROG}: stopped at step {result["step"]}, best validation {result["best"]}')
    return 0


def _export(args) -> int:
    import torch

    from ..core.checkpoints import read_checkpoint

    ckpt = read_checkpoint(args.source)
    state = ckpt['model_state_dict']
    if args.half:
        state = {k: v.half() for k, v in state.items()}
    args.dest.parent.mkdir(parents=True, exist_ok=True)
    torch.save({'model_state_dict': state, 'synthbids': ckpt.get('synthbids', {})}, args.dest)
    print(f'{args.dest}: {args.dest.stat().st_size / 1e6:.2f} MB')
    return 0


if __name__ == '__main__':  # pragma: no cover
    sys.exit(main())
