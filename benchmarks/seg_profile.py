#!/usr/bin/env python
"""Where the time of a SynthSeg run goes, ours beside FreeSurfer 7.3.2's ``mri_synthseg``.

Each tool runs once as its own process under ``cProfile`` (wall-clock timer), on the same image
with the same weights and threads; the stages are read off the profile as the cumulative time of
the functions that do them, and "start-up" is the rest of the process's wall time (interpreter,
imports, argument checks). Neither tool is modified: the profiler wraps the unmodified script.

    python benchmarks/seg_profile.py                   # Colin27, golden synthseg_2.0.h5, 2 threads

Results go to ``benchmarks/results/seg-profile-<time>.json`` and are printed as a table.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from measure import bench_cache

HERE = Path(__file__).resolve().parent
CH2 = Path('/usr/share/mricron/templates/ch2.nii.gz')

#: stage -> [(file name ending, function name)]; a stage's time is the sum of their cumtimes
OURS = {
    'load model': [('core/seg_model.py', 'load_seg_model')],
    'read image': [('core/imageio.py', 'load_volume')],
    'conform + normalise': [('core/seg_preprocess.py', 'preprocess')],
    'networks': [('core/seg_inference.py', 'run_networks')],
    'post-processing': [
        ('core/seg_postprocess.py', 'clean_posteriors'),
        ('core/seg_postprocess.py', 'argmax_channels'),
        ('core/seg_postprocess.py', 'channel_sums'),
        ('core/seg_postprocess.py', 'compute_volumes'),
        ('core/segment.py', '_to_output_grid'),
    ],
    'writing': [('core/segment.py', 'segment_file'), ('cli/seg.py', '_add_row')],
}
#: writing = segment_file minus segment (its computing part)
OURS_MINUS = {'writing': [('core/segment.py', 'segment')]}
REFERENCE = {
    'load model': [('mri_synthseg', 'build_model')],
    'read image': [('mri_synthseg', 'load_volume')],
    'conform + normalise': [('mri_synthseg', 'preprocess')],
    'networks': [('engine/training.py', 'predict')],
    'post-processing': [('mri_synthseg', 'postprocess')],
    'writing': [('mri_synthseg', 'save_volume'), ('mri_synthseg', 'write_csv')],
}
#: the reference reads inside preprocess
REFERENCE_MINUS = {'conform + normalise': [('mri_synthseg', 'load_volume')]}


def cumtime(stats: pstats.Stats, wanted) -> float:
    total = 0.0
    for (path, _, name), (_, _, _, ct, _) in stats.stats.items():
        if any(path.endswith(end) and name == fn for end, fn in wanted):
            total += ct
    return total


def stages(profile: Path, table: dict, minus: dict, wall: float) -> dict[str, float]:
    stats = pstats.Stats(str(profile))
    out = {}
    for stage, fns in table.items():
        out[stage] = cumtime(stats, fns) - cumtime(stats, minus.get(stage, []))
    out['start-up (interpreter, imports)'] = wall - sum(out.values())
    out['whole process'] = wall
    return {k: round(v, 2) for k, v in out.items()}


def profiled(cmd: list[str], env: dict, profile: Path) -> float:
    python, script, *args = cmd
    start = time.perf_counter()
    run = subprocess.run(
        [python, '-m', 'cProfile', '-o', str(profile), script, *args],
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    if run.returncode != 0:
        raise SystemExit(f'failed: {" ".join(cmd)}\n{run.stderr[-3000:]}')
    return wall


def main(argv=None) -> int:
    from fs_synthseg_ref import reference
    from seg_benchmark import full_size_weights

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--image', type=Path, default=CH2)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--out', type=Path, default=HERE / 'results')
    args = p.parse_args(argv)
    models = full_size_weights(bench_cache('synthseg-full-size'))
    prefix, ref_env = reference(bench_cache('fs732-synthseg'), models)
    ours = [sys.executable, str(Path(sys.executable).parent / 'synthbids-seg')]
    env = {**os.environ, 'SYNTHBIDS_MODELS': str(models), 'OMP_NUM_THREADS': str(args.threads)}
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        common = ['--i', str(args.image), '--vol', str(tmp / 'vol.csv')]
        common += ['--threads', str(args.threads), '--cpu']
        runs = {
            'synthbids': (ours, env, OURS, OURS_MINUS),
            'reference': (prefix, {**env, **ref_env}, REFERENCE, REFERENCE_MINUS),
        }
        for tool, (cmd, tool_env, table, minus) in runs.items():
            prof = tmp / f'{tool}.prof'
            wall = profiled([*cmd, *common, '--o', str(tmp / f'{tool}.nii.gz')], tool_env, prof)
            report[tool] = stages(prof, table, minus, wall)
            print(tool, report[tool], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f'seg-profile-{time.strftime("%Y%m%d-%H%M%S")}.json'
    meta = {'when': time.strftime('%Y-%m-%d %H:%M:%S'), 'image': str(args.image)}
    meta |= {'threads': args.threads, 'load_average_after': os.getloadavg()}
    path.write_text(json.dumps(meta | {'stages': report}, indent=1))
    print(f'\nresults: {path}\n')
    print('| stage | synthbids-seg (s) | mri_synthseg 7.3.2 (s) | ratio |')
    print('| --- | ---: | ---: | ---: |')
    for stage in report['synthbids']:
        a, b = report['synthbids'][stage], report['reference'][stage]
        print(
            f'| {stage} | {a:.2f} | {b:.2f} | {a / b:.2f} |'
            if b > 0
            else f'| {stage} | {a:.2f} | {b:.2f} | |'
        )
    return 0


if __name__ == '__main__':
    sys.exit(main())
