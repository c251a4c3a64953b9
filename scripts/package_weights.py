#!/usr/bin/env python
"""Package trained weights as synthbids' defaults (developer tool).

Copies the weights into ``synthbids/data/weights/`` (optionally as float16), writes the model
card from the checkpoint metadata and an evaluation JSON (``benchmarks/weights_eval.py``), and
records name, kind, size and SHA-256 in ``synthbids/data/weights/index.json``.

    python scripts/package_weights.py runs/strip/best.pt --name synthbids-strip --kind strip \
        --eval benchmarks/results/weights-....json --gap "..."
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

import torch

from synthbids.core.checkpoints import read_checkpoint
from synthbids.train.cards import model_card

WEIGHTS = Path(__file__).resolve().parents[1] / 'synthbids' / 'data' / 'weights'


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('source', type=Path)
    p.add_argument('--name', required=True, help='registry name, e.g. synthbids-strip')
    p.add_argument('--kind', required=True, help='strip, strip-nocsf, seg, ...')
    p.add_argument('--file', help='file name in the package (default: <name>.pt)')
    p.add_argument('--eval', type=Path, help='evaluation JSON for the model card')
    p.add_argument('--gap', default='', help='paragraph on the distance to the goals')
    p.add_argument('--history', default='', help='paragraph on how the weights were trained')
    p.add_argument('--half', action='store_true', help='store float16 tensors')
    p.add_argument('--description', default='')
    p.add_argument('--warning', default='', help='logged whenever the weights are used')
    p.add_argument('--accuracy', default='', help='one line: what the model card measured')
    p.add_argument(
        '--refine',
        action='store_true',
        help='seg: the weights were measured with the intensity refinement, on by default',
    )
    args = p.parse_args(argv)

    file = args.file or args.name.replace('-', '_') + args.source.suffix
    dest = WEIGHTS / file
    if args.source.suffix == '.h5':  # SynthSeg layout: copied as is
        shutil.copyfile(args.source, dest)
    else:
        ckpt = read_checkpoint(args.source)
        state = ckpt['model_state_dict']
        if args.half:
            state = {k: v.half() for k, v in state.items()}
        torch.save({'model_state_dict': state, 'synthbids': ckpt.get('synthbids', {})}, dest)
    sha = hashlib.sha256(dest.read_bytes()).hexdigest()
    evaluation = json.loads(args.eval.read_text()) if args.eval else {}
    if args.gap:
        evaluation['gap'] = args.gap
    if args.history:
        evaluation['history'] = args.history
    picture = evaluation.get('colin27', {}).get('picture')
    if picture:  # the card shows it: kept beside the card, under a name of its own
        kept = dest.with_name(dest.stem + '_colin27.png')
        shutil.copyfile(picture, kept)
        evaluation['colin27']['picture'] = kept.name
    card = dest.with_suffix('.md')
    card.write_text(model_card(dest, evaluation, sha, args.name))
    index_path = WEIGHTS / 'index.json'
    index = json.loads(index_path.read_text())
    index[args.name] = {
        'file': file,
        'kind': args.kind,
        'sha256': sha,
        'bytes': dest.stat().st_size,
        'card': card.name,
        'description': args.description or f'synthbids-trained {args.kind} weights',
    }
    for key in ('warning', 'accuracy', 'refine'):
        if getattr(args, key):
            index[args.name][key] = getattr(args, key)
    index_path.write_text(json.dumps(index, indent=1) + '\n')
    print(f'{dest} ({dest.stat().st_size / 1e6:.2f} MB, sha256 {sha}); card {card}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
