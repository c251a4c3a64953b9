#!/usr/bin/env python
"""Whole-process time and peak memory of ``synthbids-strip`` beside ``nipreps-synthstrip``.

Both tools run the same checkpoint on the same image with the same thread count, alternately,
``--repeats`` times each; wall time is measured around the process and peak RSS comes from
``wait4``. Ratios (ours / reference) use the medians. A second, in-process run of synthbids
reports where its time goes (load, conform, network, post-processing, writing).

The reference runs from its own virtual environment (created on first use with
``torch==2.13.0`` and PyPI's ``nipreps-synthstrip``), so nothing of it enters this project.

    python benchmarks/strip_benchmark.py                      # Colin27, golden checkpoint
    python benchmarks/strip_benchmark.py --model synthstrip.1.pt --image T1w.nii.gz
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from measure import bench_cache, measure

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CH2 = Path('/usr/share/mricron/templates/ch2.nii.gz')
GOLDEN = REPO.parent / 'shared/golden/synthstrip/strip_random_scaled.pt'


def reference_env(path: Path) -> Path:
    exe = path / 'bin' / 'nipreps-synthstrip'
    if exe.exists():
        return exe
    print(f'creating the reference environment in {path} ...', flush=True)
    subprocess.run([sys.executable, '-m', 'venv', str(path)], check=True)
    pip = [str(path / 'bin' / 'python'), '-m', 'pip', 'install', '-q']
    subprocess.run([*pip, 'torch==2.13.0'], check=True)
    subprocess.run([*pip, 'nipreps-synthstrip==0.0.1'], check=True)
    return exe


def stages(image: Path, model: Path, threads: int, out: Path) -> dict[str, float]:
    """Time each step of the synthbids pipeline in this process."""
    import torch

    from synthbids.core import masks, strip
    from synthbids.core.geometry import Grid, resample_to
    from synthbids.core.imageio import OutputSet, image_like, load_volume

    torch.set_num_threads(threads)
    times, t0 = {}, time.perf_counter()

    def lap(name):
        nonlocal t0
        now = time.perf_counter()
        times[name] = round(now - t0, 3)
        t0 = now

    m = strip.load_strip_model(model)
    lap('load model')
    vol = load_volume(image)
    lap('read image')
    conf = strip.conform_frame(vol.frame(0), vol.affine, vol.zooms, m.settings, m.net.divisor)
    lap('conform + normalise')
    sdt = strip.predict_sdt(m, conf)
    lap('network')
    sdt = masks.extend_sdt(sdt, 1.0, m.settings.voxsize, m.settings.band)
    sdt = resample_to(sdt, conf.grid, Grid(vol.shape, vol.affine), 100.0)
    mask = strip.mask_from_sdt(sdt, 1.0)
    lap('back to input grid + mask')
    stripped = vol.data.copy()
    stripped[~mask] = 0
    with OutputSet() as staged:
        staged.add(image_like(stripped, vol, out / 'b.nii.gz'), out / 'b.nii.gz')
        staged.add(image_like(mask.astype('uint8'), vol, out / 'm.nii.gz'), out / 'm.nii.gz')
    lap('write outputs')
    return times


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--image', type=Path, default=CH2)
    p.add_argument('--model', type=Path, default=GOLDEN)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--reference-env', type=Path, default=bench_cache('nipreps-synthstrip'))
    p.add_argument('--out', type=Path, default=HERE / 'results')
    args = p.parse_args(argv)
    for f in (args.image, args.model):
        if not f.exists():
            raise SystemExit(f'{f}: not found')

    ref = reference_env(args.reference_env)
    ours = Path(sys.executable).parent / 'synthbids-strip'
    env = {**os.environ, 'OMP_NUM_THREADS': str(args.threads)}
    runs = {'synthbids': [], 'nipreps': []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cmds = {
            'synthbids': [
                str(ours),
                '-i',
                str(args.image),
                '-o',
                str(tmp / 's.nii.gz'),
                '-m',
                str(tmp / 'sm.nii.gz'),
                '--model',
                str(args.model),
                '-t',
                str(args.threads),
            ],
            'nipreps': [
                str(ref),
                '-i',
                str(args.image),
                '-o',
                str(tmp / 'n.nii.gz'),
                '-m',
                str(tmp / 'nm.nii.gz'),
                '--model',
                str(args.model),
                '-n',
                str(args.threads),
            ],
        }
        for r in range(args.repeats):
            for name, cmd in cmds.items():
                m = measure(cmd, env)
                runs[name].append(m)
                print(
                    f'run {r + 1} {name:10s} {m["wall_s"]:6.1f} s {m["peak_rss_gb"]:5.2f} GB',
                    flush=True,
                )
        breakdown = stages(args.image, args.model, args.threads, tmp)

        import nibabel as nib
        import numpy as np

        a = np.asanyarray(nib.load(tmp / 'sm.nii.gz').dataobj) > 0
        b = np.asanyarray(nib.load(tmp / 'nm.nii.gz').dataobj) > 0
        dice = float(2 * (a & b).sum() / (a.sum() + b.sum()))

    med = {
        k: {m: statistics.median(r[m] for r in v) for m in ('wall_s', 'peak_rss_gb')}
        for k, v in runs.items()
    }
    ratio = {
        m: round(med['synthbids'][m] / med['nipreps'][m], 3) for m in ('wall_s', 'peak_rss_gb')
    }
    result = {
        'image': str(args.image),
        'model': str(args.model),
        'threads': args.threads,
        'cpu_count': os.cpu_count(),
        'runs': runs,
        'median': med,
        'ratio': ratio,
        'synthbids_stages_s': breakdown,
        'mask_dice_synthbids_vs_nipreps': round(dice, 4),
        'date': time.strftime('%Y-%m-%d %H:%M'),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f'strip-{time.strftime("%Y%m%d-%H%M%S")}.json'
    path.write_text(json.dumps(result, indent=1))
    print('\n| tool | wall time (s) | peak RSS (GB) |\n| --- | ---: | ---: |')
    for k in ('synthbids', 'nipreps'):
        print(f'| {k} | {med[k]["wall_s"]:.1f} | {med[k]["peak_rss_gb"]:.2f} |')
    print(f'| ratio | {ratio["wall_s"]:.2f}x | {ratio["peak_rss_gb"]:.2f}x |')
    print('\nsynthbids stages (s):', json.dumps(breakdown))
    print(
        f'mask Dice synthbids vs nipreps: {dice:.4f} (different pipelines, see golden README 2.6)'
    )
    print(f'saved {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
