#!/usr/bin/env python
"""Accuracy and CPU inference time of SynthStrip weights (default: the packaged ones).

* Colin27: Dice of the brain mask against ``ch2bet`` (an automated BET extraction);
* held-out label maps rendered as T1w, T2w, PDw, FLAIR, CT and PET at several resolutions:
  Dice against the maps' brain masks, per contrast and per resolution.

    python benchmarks/weights_eval.py                       # packaged default weights
    python benchmarks/weights_eval.py --model runs/strip/best.pt --maps m17.nii.gz m18.nii.gz
    python benchmarks/weights_eval.py --task seg --model runs/seg/best.h5 --quick

``--task seg`` measures SynthSeg weights instead: mean Dice over the 32 non-background labels
on the same synthetic images, and Colin27's label volumes and centroids (which side of the
midline every lateral label falls on). ``--task head`` measures head-tissue weights: Dice per
class on the held-out maps rendered as T1w, T2w, PDw, FLAIR and CT at 1 mm and with 5 mm slices,
and Colin27's tissue volumes with a picture of its labels (``--picture``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / 'shared'
HELD_OUT = [
    SHARED / 'data/label_maps/training_seg_17.nii.gz',
    SHARED / 'data/label_maps/training_seg_18.nii.gz',
]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--task', choices=('strip', 'seg', 'head'), default='strip')
    p.add_argument('--model', type=Path, help='weights file (default: resolution order)')
    p.add_argument('--no-csf', action='store_true')
    p.add_argument('--maps', type=Path, nargs='*', default=HELD_OUT)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--quick', action='store_true', help='T1w/T2w/CT at 1 mm and 5 mm only')
    p.add_argument('--out', type=Path, default=HERE / 'results')
    p.add_argument('--picture', type=Path, help='head, seg: PNG of the Colin27 labels')
    p.add_argument('--no-colin27', action='store_true', help='held-out maps only')
    p.add_argument('--fast', action='store_true', help='seg: no test-time flip (as --fast)')
    p.add_argument(
        '--refine',
        choices=('auto', 'on', 'off'),
        default='auto',
        help="seg: intensity refinement (auto: the weights' default)",
    )
    p.add_argument('--contrasts', nargs='+', help='contrasts to render (default: all)')
    p.add_argument(
        '--resolutions', nargs='+', help='voxel sizes to render, e.g. 1x1x1 1x1x5 (default: all)'
    )
    args = p.parse_args(argv)

    import torch

    from synthbids.core.head import load_head_model
    from synthbids.core.segment import load_seg_model
    from synthbids.core.strip import load_strip_model
    from synthbids.train.evaluate import (
        HEAD_ACQUISITIONS,
        HEAD_RESOLUTIONS,
        default_acquisitions,
        head_on_colin27,
        head_on_synthetic,
        seg_on_colin27,
        seg_on_synthetic,
        strip_on_colin27,
        strip_on_synthetic,
        summarize,
    )

    torch.set_num_threads(args.threads)
    seg, head = args.task == 'seg', args.task == 'head'
    if head:
        model = load_head_model(args.model)
    else:
        model = load_seg_model(args.model) if seg else load_strip_model(args.model, args.no_csf)
    refine = {'auto': None, 'on': True, 'off': False}[args.refine]
    if args.contrasts or args.resolutions:
        chosen = {}
        if args.contrasts:
            chosen['contrasts'] = tuple(args.contrasts)
        if args.resolutions:
            chosen['resolutions'] = [
                tuple(float(v) for v in r.split('x')) for r in args.resolutions
            ]
        acqs = default_acquisitions(**chosen)
    elif args.quick:
        acqs = default_acquisitions(('T1w', 'T2w', 'CT'), ((1, 1, 1), (1, 1, 5)))
    elif head:
        acqs = default_acquisitions(HEAD_ACQUISITIONS, HEAD_RESOLUTIONS)
    else:
        acqs = default_acquisitions()
    result = {
        'task': args.task,
        'weights': [w.as_dict() for w in model.weights] if seg else model.weights.as_dict(),
        'threads': args.threads,
        'fast': args.fast,
        'date': time.strftime('%Y-%m-%d %H:%M'),
    }
    ch2 = Path('/usr/share/mricron/templates/ch2.nii.gz')
    if ch2.exists() and not args.no_colin27:
        if head:
            result['colin27'] = head_on_colin27(model, ch2, args.picture)
            print('Colin27:', json.dumps(result['colin27']), flush=True)
        elif seg:
            result['colin27'] = seg_on_colin27(model, ch2, refine, args.picture)
            ranges = HERE.parent / 'tests' / 'data' / 'seg_volume_ranges.json'
            result['volume_ranges'] = json.loads(ranges.read_text())['ml']
            brief = {k: v for k, v in result['colin27'].items() if k != 'geometry'}
            print('Colin27:', json.dumps(brief), flush=True)
        else:
            result['colin27'] = strip_on_colin27(model, ch2, ch2.with_name('ch2bet.nii.gz'))
            print('Colin27:', json.dumps(result['colin27']), flush=True)
    maps = [m for m in args.maps if m.exists()]
    if maps:
        if head:
            rows = head_on_synthetic(model, maps, acqs)
        elif seg:
            rows = seg_on_synthetic(model, maps, acqs, refine, fast=args.fast)
        else:
            rows = strip_on_synthetic(model, maps, acqs, no_csf=args.no_csf)
        result['synthetic'] = rows
        result['by_contrast'] = summarize(rows, 'contrast')
        result['by_resolution'] = summarize(rows, 'voxel_mm')
        if seg:
            from synthbids.core.labels import name

            labels = rows[0]['dice_per_label']
            result['seg_by_label'] = {
                f'{name(int(k))} ({k})': round(
                    sum(r['dice_per_label'][k] for r in rows) / len(rows), 4
                )
                for k in labels
            }
        if head:
            classes = rows[0]['dice_per_class']
            result['head_by_class'] = {
                k: round(sum(r['dice_per_class'][k] for r in rows) / len(rows), 4) for k in classes
            }
            result['head_class_by_contrast'] = {
                f'{r["contrast"]} {"x".join(f"{v:g}" for v in r["voxel_mm"])}': {} for r in rows
            }
            for r in rows:
                key = f'{r["contrast"]} {"x".join(f"{v:g}" for v in r["voxel_mm"])}'
                cell = result['head_class_by_contrast'][key]
                for k, v in r['dice_per_class'].items():
                    cell.setdefault(k, []).append(v)
            for cell in result['head_class_by_contrast'].values():
                for k in cell:
                    cell[k] = round(sum(cell[k]) / len(cell[k]), 4)
            print('by class:', json.dumps(result['head_by_class']))
        result['mean_dice'] = round(sum(r['dice'] for r in rows) / len(rows), 4)
        result['mean_seconds'] = round(sum(r['seconds'] for r in rows) / len(rows), 2)
        print('by contrast:', json.dumps(result['by_contrast']))
        print('by resolution:', json.dumps(result['by_resolution']))
        print(f'mean Dice {result["mean_dice"]}, {result["mean_seconds"]} s per image')
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f'weights-{args.task}-{time.strftime("%Y%m%d-%H%M%S")}.json'
    path.write_text(json.dumps(result, indent=1))
    print(f'saved {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
