#!/usr/bin/env python
"""A BIDS App participant run on Colin27 with official-size networks, beside the same work done
by hand with the reference tools.

``synthbids bids out participant --no-head --no-qc`` (strip + seg; ``--nprocs``/``--omp-nthreads``
from ``--threads``) on a one-image dataset (Colin27 as ``sub-01``'s T1w), with the golden
full-size checkpoints: SynthStrip ``strip_random_scaled.pt`` (the cost of ``synthstrip.1.pt``)
and SynthSeg 2.0 ``synthseg2_random.h5`` under its official name. Alternating with it, the same
two steps run by hand with the reference tools: ``nipreps-synthstrip`` then FreeSurfer 7.3.2's
``mri_synthseg`` (environments made on first use by ``strip_benchmark.py`` and
``fs_synthseg_ref.py``). Wall time is measured around the whole run; memory is sampled every
0.5 s over the whole process tree (sum of PSS: shared pages counted once), and for the reference
the larger of its two steps. Results: ``benchmarks/results/participant-<time>.json``.

    python benchmarks/participant_benchmark.py [--repeats 2] [--no-reference] [-- EXTRA ARGS]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from measure import bench_cache, measure_tree

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CH2 = Path('/usr/share/mricron/templates/ch2.nii.gz')
STRIP = REPO.parent / 'shared/golden/synthstrip/strip_random_scaled.pt'


def dataset(root: Path, image: Path) -> Path:
    bids = root / 'bids'
    (bids / 'sub-01' / 'anat').mkdir(parents=True)
    desc = {'Name': 'Colin27', 'BIDSVersion': '1.10.0'}
    (bids / 'dataset_description.json').write_text(json.dumps(desc))
    shutil.copyfile(image, bids / 'sub-01' / 'anat' / 'sub-01_T1w.nii.gz')
    return bids


def main(argv=None) -> int:
    from fs_synthseg_ref import reference
    from seg_benchmark import full_size_weights
    from strip_benchmark import reference_env

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--image', type=Path, default=CH2)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--repeats', type=int, default=1)
    p.add_argument('--no-reference', action='store_true', help='time the BIDS App only')
    p.add_argument('--out', type=Path, default=HERE / 'results')
    p.add_argument('extra', nargs='*', help='more arguments for the participant run')
    args = p.parse_args(argv)
    for f in (args.image, STRIP):
        if not f.exists():
            raise SystemExit(f'{f}: not found')
    models = full_size_weights(bench_cache('synthseg-full-size'))
    env = {**os.environ, 'OMP_NUM_THREADS': str(args.threads)}
    env.pop('SYNTHBIDS_MODELS', None)
    runs: dict[str, list] = {'synthbids': []}
    refs = {}
    if not args.no_reference:
        refs['strip'] = reference_env(bench_cache('nipreps-synthstrip'))
        refs['seg'], ref_env = reference(bench_cache('fs732-synthseg'), models)
        runs['by hand'] = []
    t = str(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bids = dataset(tmp, args.image)
        for r in range(args.repeats):
            out, work = tmp / f'out{r}', tmp / f'work{r}'
            cmd = [str(Path(sys.executable).parent / 'synthbids'), str(bids), str(out)]
            cmd += ['participant', '-w', str(work), '--no-head', '--no-qc']
            cmd += ['--strip-model', str(STRIP), '--seg-model', str(models)]
            cmd += ['--nprocs', t, '--omp-nthreads', t, *args.extra]
            runs['synthbids'].append(measure_tree(cmd, env))
            print(r, 'synthbids', runs['synthbids'][-1], flush=True)
            if refs:
                strip = [str(refs['strip']), '-i', str(args.image), '-o', str(tmp / 'b.nii.gz')]
                strip += ['-m', str(tmp / 'm.nii.gz'), '--model', str(STRIP), '-n', t]
                seg = [*refs['seg'], '--i', str(args.image), '--o', str(tmp / 's.nii.gz')]
                seg += ['--vol', str(tmp / 'v.csv'), '--threads', t, '--cpu']
                a = measure_tree(strip, env)
                b = measure_tree(seg, {**env, **ref_env})
                both = {k: round(a[k] + b[k], 2) for k in ('wall_s', 'cpu_s')}
                both |= {k: max(a[k], b[k]) for k in a if k not in both}
                runs['by hand'].append(both | {'strip': a, 'seg': b})
                print(r, 'by hand', both, flush=True)
    med = {
        tool: {k: statistics.median(m[k] for m in ms) for k in ms[0] if k not in ('strip', 'seg')}
        for tool, ms in runs.items()
    }
    report = {
        'when': time.strftime('%Y-%m-%d %H:%M:%S'),
        'image': str(args.image),
        'threads': args.threads,
        'extra': args.extra,
        'load_average_after': os.getloadavg(),
        'medians': med,
        'runs': runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f'participant-{time.strftime("%Y%m%d-%H%M%S")}.json'
    path.write_text(json.dumps(report, indent=1))
    print(f'\nresults: {path}\n')
    # (CPU time is left out: Nipype's workers are not children of the process that is timed)
    print('| run | wall (s) | peak PSS, process tree (GB) | peak RSS sum, process tree (GB) |')
    print('| --- | ---: | ---: | ---: |')
    for tool, m in med.items():
        print(
            f'| {tool} | {m["wall_s"]:.1f} | {m["tree_peak_pss_gb"]:.2f} |'
            f' {m["tree_peak_rss_sum_gb"]:.2f} |'
        )
    if 'by hand' in med:
        a, b = med['synthbids'], med['by hand']
        print(f'\nratio: time {a["wall_s"] / b["wall_s"]:.2f}, ', end='')
        print(f'memory {a["tree_peak_pss_gb"] / b["tree_peak_pss_gb"]:.2f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
