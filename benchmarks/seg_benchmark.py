#!/usr/bin/env python
"""Whole-process time and peak memory of ``synthbids-seg`` on Colin27.

Runs ``synthbids-seg`` with ``--threads`` threads, ``--repeats`` times per case: default,
``--fast``, ``--robust``, ``--parc --qc`` and ``--low-memory`` (``--cases`` selects). Wall time
is measured around the process, CPU time and peak RSS come from ``wait4``. Results go to
``benchmarks/results/seg-<time>.json``; medians are printed as a Markdown table.

Weights are placed under their official names in a temporary ``$SYNTHBIDS_MODELS`` folder:
the golden random ``synthseg_2.0.h5`` (full size). Full-size golden weights of 1.0, robust,
parcellation and QC are not distributed, so those files are full-width networks with random
(seeded) weights written in the official layout: the same architecture and arithmetic cost,
only the postprocessing's data-dependent parts (connected components) may differ.

``--reference freesurfer`` runs FreeSurfer 7.3.2's own ``mri_synthseg`` script with the same
weights, alternating with ours (``fs_synthseg_ref.py`` builds its environment on first use);
any other value is a command template such as ``'mri_synthseg --i {image} --o {out} --threads
{threads} --cpu {flags}'`` (``{flags}`` gets the case's flags). Ratios are ours / reference.

    python benchmarks/seg_benchmark.py                          # all cases, 1 repeat
    python benchmarks/seg_benchmark.py --cases default fast --repeats 3 --reference freesurfer
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

from measure import bench_cache, measure

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CH2 = Path('/usr/share/mricron/templates/ch2.nii.gz')
GOLDEN = REPO.parent / 'shared/golden/synthseg/synthseg2_random.h5'

CASES = {
    'default': [],
    'fast': ['--fast'],
    'robust': ['--robust'],
    'parc-qc': ['--parc', '--qc', '{out_dir}/qc.csv'],
    'low-memory': ['--low-memory'],
}


def full_size_weights(folder: Path) -> Path:
    """Official file names with full-width networks (golden 2.0, seeded random others)."""
    import torch

    from synthbids.core import labels as L
    from synthbids.core.qc_net import QCNet
    from synthbids.core.seg_keras import write_keras_h5
    from synthbids.core.seg_nets import SegUNet

    folder.mkdir(parents=True, exist_ok=True)

    def unet(cin, nout, width=24, kernel=3, merges=None):
        enc = [[width * 2**lv] * 2 for lv in range(5)]
        dec = [[width * 2 ** (3 - m)] * 2 for m in range(4)]
        return SegUNet(cin, nout, enc, dec, merges=merges, kernel=kernel).eval()

    target = folder / 'synthseg_2.0.h5'
    if not target.exists():
        target.symlink_to(GOLDEN)
    makers = {
        'synthseg_1.0.h5': lambda: {'unet_': unet(1, len(L.SEG_LABELS_V1))},
        'synthseg_robust_2.0.h5': lambda: {
            'unet_': unet(1, L.DENOISER_GROUPS),
            'l2l_': unet(5, 5, width=16, kernel=5, merges=[True, True, False, False]),
            'unet2_': unet(6, len(L.SEG_LABELS_V2)),
        },
        'synthseg_parc_2.0.h5': lambda: {'unet_parc_': unet(3, len(L.PARC_LABELS))},
        'synthseg_qc_2.0.h5': lambda: {
            'qc_': QCNet(9, [[24, 24], [48, 48], [96, 96], [192, 192]], [True] * 4, [9, 9], 5)
        },
    }
    for i, (name, make) in enumerate(makers.items()):
        if not (folder / name).exists():
            torch.manual_seed(i)
            write_keras_h5(make(), folder / name)
    return folder


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--image', type=Path, default=CH2)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--repeats', type=int, default=1)
    p.add_argument('--cases', nargs='+', choices=sorted(CASES), default=list(CASES))
    p.add_argument(
        '--reference', metavar='COMMAND', help="'freesurfer' or a reference command template"
    )
    p.add_argument('--weights', type=Path, default=bench_cache('synthseg-full-size'))
    p.add_argument('--out', type=Path, default=HERE / 'results')
    args = p.parse_args(argv)
    for f in (args.image, GOLDEN):
        if not f.exists():
            raise SystemExit(f'{f}: not found')

    models = full_size_weights(args.weights)
    ours = Path(sys.executable).parent / 'synthbids-seg'
    env = {
        **os.environ,
        'SYNTHBIDS_MODELS': str(models),
        'OMP_NUM_THREADS': str(args.threads),
    }
    if args.reference == 'freesurfer':
        from fs_synthseg_ref import reference

        prefix, ref_env = reference(bench_cache('fs732-synthseg'), models)
        env = {**env, **ref_env}
        args.reference = ' '.join(
            [*map(shlex.quote, prefix), '--i {image} --o {out} --vol {vol}']
            + ['--threads {threads} --cpu {flags}']
        )
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for case in args.cases:
            flags = [f.format(out_dir=tmp) for f in CASES[case]]
            runs = {'synthbids': []}
            for r in range(args.repeats):
                cmd = [
                    str(ours), '--i', str(args.image), '--o', str(tmp / 'seg.nii.gz'),
                    '--vol', str(tmp / 'vol.csv'), '--threads', str(args.threads), '--cpu',
                    *flags,
                ]  # fmt: skip
                runs['synthbids'].append(measure(cmd, env))
                print(case, 'synthbids', r, runs['synthbids'][-1], flush=True)
                if args.reference:
                    ref = args.reference.format(
                        image=args.image,
                        out=tmp / 'ref.nii.gz',
                        vol=tmp / 'ref_vol.csv',
                        threads=args.threads,
                        flags=' '.join(shlex.quote(f) for f in flags),
                    )
                    runs.setdefault('reference', []).append(measure(shlex.split(ref), env))
                    print(case, 'reference', r, runs['reference'][-1], flush=True)
            results[case] = {
                tool: {k: statistics.median(m[k] for m in ms) for k in ms[0]} | {'runs': ms}
                for tool, ms in runs.items()
            }
    load = os.getloadavg()
    report = {
        'when': time.strftime('%Y-%m-%d %H:%M:%S'),
        'image': str(args.image),
        'threads': args.threads,
        'repeats': args.repeats,
        'cpus': os.cpu_count(),
        'load_average_after': [round(v, 2) for v in load],
        'reference': args.reference,
        'results': results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f'seg-{time.strftime("%Y%m%d-%H%M%S")}.json'
    path.write_text(json.dumps(report, indent=1))
    print(f'\nresults: {path}\n')
    header = '| case | wall (s) | CPU (s) | peak RSS (GB) |'
    rule = '| --- | ---: | ---: | ---: |'
    if args.reference:
        header += ' time ratio | memory ratio |'
        rule += ' ---: | ---: |'
    print(header)
    print(rule)
    for case, res in results.items():
        m = res['synthbids']
        row = f'| {case} | {m["wall_s"]:.1f} | {m["cpu_s"]:.1f} | {m["peak_rss_gb"]:.2f} |'
        if 'reference' in res:
            ref = res['reference']
            time_ratio = m['wall_s'] / ref['wall_s']
            memory_ratio = m['peak_rss_gb'] / ref['peak_rss_gb']
            row += f' {time_ratio:.2f} | {memory_ratio:.2f} |'
        print(row)
    return 0


if __name__ == '__main__':
    sys.exit(main())
