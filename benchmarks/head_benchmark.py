#!/usr/bin/env python
"""Whole-process time and peak memory of ``synthbids-head`` on Colin27, beside ``synthbids-strip``.

Both use the packaged weights (or ``--model``) on the same image with the same thread count,
alternately, ``--repeats`` times each: ``synthbids-head`` with labels only, and with labels,
posteriors and meshes; ``synthbids-strip`` (mask only) is the reference run in the same job, so
the ratios hold on a loaded machine too. Medians; wall time around the process, peak RSS from
``wait4``.

    python benchmarks/head_benchmark.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from measure import measure

HERE = Path(__file__).resolve().parent
CH2 = Path('/usr/share/mricron/templates/ch2.nii.gz')


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--image', type=Path, default=CH2)
    p.add_argument('--model', type=Path, help='head weights (default: the packaged ones)')
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--repeats', type=int, default=2)
    p.add_argument('--out', type=Path, default=HERE / 'results')
    args = p.parse_args(argv)
    if not args.image.exists():
        raise SystemExit(f'{args.image}: no such image (apt-get install mricron-data)')
    bindir = Path(sys.executable).parent
    env = {**os.environ, 'OMP_NUM_THREADS': str(args.threads)}
    model = ['--model', str(args.model)] if args.model else []
    runs: dict[str, list[dict]] = {'head': [], 'head+posteriors+meshes': [], 'strip': []}
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        cases = {
            'head': [str(bindir / 'synthbids-head'), '-i', str(args.image), '-o',
                     str(t / 'head.nii.gz'), '-t', str(args.threads), *model],
            'head+posteriors+meshes': [str(bindir / 'synthbids-head'), '-i', str(args.image),
                                       '-o', str(t / 'head.nii.gz'), '--posteriors',
                                       str(t / 'post.nii.gz'), '--mesh', str(t / 'meshes'),
                                       '-t', str(args.threads), *model],
            'strip': [str(bindir / 'synthbids-strip'), '-i', str(args.image), '-m',
                      str(t / 'mask.nii.gz'), '-t', str(args.threads)],
        }  # fmt: skip
        for _ in range(args.repeats):
            for name, cmd in cases.items():
                runs[name].append(measure(cmd, env))
                print(name, runs[name][-1], flush=True)
    summary = {
        name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()
    }
    for name in ('head', 'head+posteriors+meshes'):
        summary[name]['wall_ratio_vs_strip'] = round(
            summary[name]['wall_s'] / summary['strip']['wall_s'], 2
        )
        summary[name]['rss_ratio_vs_strip'] = round(
            summary[name]['peak_rss_gb'] / summary['strip']['peak_rss_gb'], 2
        )
    result = {
        'image': str(args.image),
        'threads': args.threads,
        'repeats': args.repeats,
        'load_average': os.getloadavg()[0],
        'date': time.strftime('%Y-%m-%d %H:%M'),
        'runs': runs,
        'median': summary,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f'head-{time.strftime("%Y%m%d-%H%M%S")}.json'
    path.write_text(json.dumps(result, indent=1))
    print(json.dumps(summary, indent=1))
    print(f'saved {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
