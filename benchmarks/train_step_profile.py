#!/usr/bin/env python
"""Where one training iteration's time goes: drawing the sample (generator + targets),
forward, loss, backward and the optimiser step, for the recipes of the committed campaigns and
the packaged strip weights, on this machine's CPU (or ``--device cuda``).

    python benchmarks/train_step_profile.py                 # strip, head, seg; 2 threads
    python benchmarks/train_step_profile.py --tasks seg --steps 20 --threads 2

Each part is timed around its own call (with ``torch.cuda.synchronize`` on a GPU) over
``--steps`` iterations after ``--warmup``; the sum of the parts is compared with the wall time of
the same iterations. Results go to ``benchmarks/results/train-steps-<date>.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MAPS = HERE.parent.parent / 'shared' / 'data' / 'label_maps'

#: (task, grid mm, crop, features, max features, levels): the recipes in use
RECIPES = {
    'strip': ('strip', 3.0, 64, 8, 32, 5),  # synthbids_strip.pt
    'head': ('head', 2.0, 64, 8, 32, 5),  # campaigns/head
    'seg': ('seg', 2.0, 64, 16, 64, 4),  # campaigns/seg
}


def profile(name: str, maps: list[Path], args) -> dict:
    import torch

    from synthbids.synth.generator import GeneratorConfig, SynthGenerator
    from synthbids.synth.labelmaps import label_tables, load_label_maps
    from synthbids.train.tasks import HeadTask, NetConfig, SegTask, StripTask, brain_weight

    task_name, voxsize, crop, features, max_features, levels = RECIPES[name]
    device = torch.device(args.device)
    cls = {'head': HeadTask, 'seg': SegTask}.get(task_name, StripTask)
    task = cls(
        name=task_name,
        tables=label_tables(),
        voxsize=voxsize,
        net_config=NetConfig(features, max_features, levels),
    )
    gconf = GeneratorConfig.for_task(task_name, crop=(crop,) * 3, context=task.context)
    loaded = load_label_maps(maps, voxsize, args.cache)
    generator = SynthGenerator(loaded, gconf, device=device)
    cl = torch.channels_last_3d
    net = task.make_net().to(device, memory_format=cl)
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)

    def sync():
        if device.type == 'cuda':
            torch.cuda.synchronize()

    parts = {'sample': [], 'forward': [], 'loss': [], 'backward': [], 'optimiser': []}
    walls = []
    gen = torch.Generator(device=device).manual_seed(0)
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        sample = generator.sample(gen)
        x, target, weight = sample.image, task.target(sample), brain_weight(sample)
        x = x.contiguous(memory_format=cl)
        sync()
        t1 = time.perf_counter()
        pred = net(x)
        sync()
        t2 = time.perf_counter()
        loss = task.loss(pred, target, weight)
        sync()
        t3 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        sync()
        t4 = time.perf_counter()
        opt.step()
        sync()
        t5 = time.perf_counter()
        if i >= args.warmup:
            for key, (a, b) in zip(parts, ((t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5))):
                parts[key].append(b - a)
            walls.append(t5 - t0)
    mean = {k: sum(v) / len(v) for k, v in parts.items()}
    wall = sum(walls) / len(walls)
    return {
        'recipe': dict(
            zip(('task', 'voxsize', 'crop', 'features', 'max', 'levels'), RECIPES[name])
        ),
        'seconds': {k: round(v, 4) for k, v in mean.items()},
        'share': {k: round(v / wall, 3) for k, v in mean.items()},
        'iteration_s': round(wall, 4),
        'parameters': sum(p.numel() for p in net.parameters()),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--tasks', nargs='+', choices=tuple(RECIPES), default=list(RECIPES))
    p.add_argument('--maps', type=Path, default=MAPS)
    p.add_argument('--cache', type=Path, default=Path('/tmp/synthbids-maps-cache'))
    p.add_argument('--steps', type=int, default=10)
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--device', default='cpu')
    p.add_argument('--out', type=Path, default=HERE / 'results')
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    maps = sorted(args.maps.glob('*.nii.gz'))[:4]  # the draw costs the same on any map
    if not maps:
        print(f'{args.maps}: no label maps', file=sys.stderr)
        return 2
    result = {'threads': args.threads, 'device': args.device, 'steps': args.steps}
    for name in args.tasks:
        result[name] = profile(name, maps, args)
        print(name, json.dumps(result[name]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f'train-steps-{time.strftime("%Y%m%d-%H%M%S")}.json'
    path.write_text(json.dumps(result, indent=1))
    print(f'saved {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
