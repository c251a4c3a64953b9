"""Model cards: what a packaged weights file is, how it was trained and how well it does.

The card is generated from the checkpoint's own ``'synthbids'`` metadata (task, recipe,
iterations, validation) and an evaluation result of ``benchmarks/weights_eval.py``, so the
numbers in it are the measured ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..core.checkpoints import read_checkpoint

GOALS = {
    'strip': 'Dice >= 0.97 against the true brain mask on real heads of every contrast',
    'strip-nocsf': 'Dice >= 0.97 against the true no-CSF brain mask on real heads',
    'seg': 'mean Dice >= 0.85 over the 32 foreground labels',
    'head': 'bone Dice >= 0.75 on every rendered held-out contrast, CT and 5 mm slices included',
}


def _table(mapping: dict, key: str, value: str) -> str:
    lines = [f'| {key} | {value} |', '| --- | ---: |']
    lines += [f'| {k} | {v:.3f} |' for k, v in mapping.items()]
    return '\n'.join(lines)


def _colin_volumes(geometry: dict, ranges: dict | None) -> list[str]:
    """Per-label volume of Colin27 next to the range of the training heads."""
    from ..core.labels import SEG_NAMES

    lines = [
        '| label | name | Colin27 (mL) | training heads (mL) |',
        '| ---: | --- | ---: | ---: |',
    ]
    for label, g in sorted(geometry.items(), key=lambda kv: int(kv[0])):
        lo_hi = (ranges or {}).get(str(label))
        span = f'{lo_hi[0]:g}–{lo_hi[1]:g}' if lo_hi else ''
        lines.append(f'| {label} | {SEG_NAMES.get(int(label), "")} | {g["ml"]:.2f} | {span} |')
    return [*lines, '']


def _grid(title: str, corner: str, columns: list[str], rows: dict[str, list[str]]) -> list[str]:
    """A titled Markdown table: one row per key of ``rows``, its cells under ``columns``."""
    lines = [
        title,
        '',
        f'| {corner} | ' + ' | '.join(columns) + ' |',
        '| --- |' + ' ---: |' * len(columns),
    ]
    lines += [f'| {name} | ' + ' | '.join(cells) + ' |' for name, cells in rows.items()]
    return [*lines, '']


def _head_table(by_acquisition: dict, by_class: dict) -> list[str]:
    """Dice per head tissue (columns) and rendered acquisition (rows), bone first."""
    classes = ['bone', *[c for c in by_class if c != 'bone']]
    rows = {acq: [f'{cell[c]:.3f}' for c in classes] for acq, cell in by_acquisition.items()}
    rows['**all**'] = [f'**{by_class[c]:.3f}**' for c in classes]
    title = 'Head-tissue Dice per class on the same synthetic images (acquisition grid):'
    return _grid(title, 'image', classes, rows)


def _contrast_by_resolution(rows: list[dict]) -> list[str]:
    """Mean Dice per rendered contrast (rows) and voxel size (columns)."""
    cells: dict[str, dict[str, list[float]]] = {}
    for row in rows:
        res = 'x'.join(f'{v:g}' for v in row['voxel_mm'])
        cells.setdefault(row['contrast'], {}).setdefault(res, []).append(row['dice'])
    columns = sorted({r for cell in cells.values() for r in cell})
    table = {
        contrast: [f'{np.mean(cell[r]):.3f}' if r in cell else '' for r in columns]
        for contrast, cell in cells.items()
    }
    return _grid('Mean Dice per contrast and voxel size (mm):', 'contrast', columns, table)


def _head_colin27(c: dict, weights: Path) -> list[str]:
    """Colin27's tissue volumes and the picture of its labels (kept beside the card)."""
    lines = [
        '**Colin27** (real T1w, 1 mm, whole head): skull (bone) '
        f'{c["volumes_ml"]["bone"]:.0f} mL; '
        f'{c["seconds"]} s on CPU (whole pipeline). Volumes (mL, soft probabilities):',
        '',
        '| ' + ' | '.join(c['volumes_ml']) + ' |',
        '|' + ' ---: |' * len(c['volumes_ml']),
        '| ' + ' | '.join(f'{v:.0f}' for v in c['volumes_ml'].values()) + ' |',
        '',
    ]
    if c.get('picture'):
        lines += [f'![Colin27 head tissues]({Path(c["picture"]).name})', '']
    return lines


def _read(weights: Path):
    """(metadata, parameter count, dtype name) of a .pt or Keras .h5 weights file."""
    if weights.suffix == '.h5':
        from ..core.seg_keras import read_keras_meta, read_keras_weights

        arrays = [a for layer in read_keras_weights(weights).values() for a in layer.values()]
        return read_keras_meta(weights), sum(a.size for a in arrays), str(arrays[0].dtype)
    ckpt = read_checkpoint(weights)
    tensors = list(ckpt['model_state_dict'].values())
    dtype = str(tensors[0].dtype).replace('torch.', '')
    return ckpt.get('synthbids', {}), sum(t.numel() for t in tensors), dtype


def model_card(weights: Path, evaluation: dict, sha256: str, name: str) -> str:
    meta, params, dtype = _read(weights)
    recipe = meta.get('recipe', {})
    task = meta.get('task', '?')
    net = meta.get('net', {})
    gen = recipe.get('generator', {})
    layout = 'SynthSeg (Keras layer names)' if task == 'seg' else 'SynthStrip (official keys)'
    grid = meta.get('conform') or {'voxsize': meta.get('voxsize')}
    lines = [
        f'# Model card: `{weights.name}` ({name})',
        '',
        f'* **Task**: {task} — trained by synthbids with `synthbids-train {task}`.',
        f'* **SHA-256**: `{sha256}`; {weights.stat().st_size / 1e6:.2f} MB, {params:,} '
        f'parameters stored as {dtype}.',
        f'* **Architecture**: {layout} U-Net, {net.get("levels")} poolings, '
        f'{net.get("features")} features doubling to {net.get("max_features")}.',
        f'* **Inference grid**: {json.dumps(grid)}.',
        f'* **Iterations**: {meta.get("iterations")} (batch 1, crops of '
        f'{recipe.get("crop")} voxels at {recipe.get("voxsize")} mm), Adam, '
        f'lr {recipe.get("lr")}'
        + (f'; fine-tuned from `{Path(recipe["init"]).name}`' if recipe.get('init') else '')
        + ('; batch norm frozen (inference statistics)' if recipe.get('freeze_bn') else '')
        + '.',
        '',
        *([evaluation['history'], ''] if evaluation.get('history') else []),
        '## Data',
        '',
        'Synthetic images drawn by the synthbids generator from '
        f'{len(recipe.get("train_maps", []))} whole-head label maps of the SynthSeg '
        'repository (Apache-2.0): '
        f'{", ".join(recipe.get("train_maps", []))}. Held out for validation and evaluation: '
        f'{", ".join(recipe.get("val_maps", []))}. No real image was used for training.',
        '',
        'Generator settings: random affine (rotation ±'
        f'{gen.get("rotation_deg")}°, scaling ±{gen.get("scaling")}), elastic deformation '
        f'(σ ≤ {gen.get("elastic_std_mm")} mm), Gaussian-mixture contrasts (means '
        f'{gen.get("mean_range")}, SDs {gen.get("std_range")}), CT-like p={gen.get("ct")}, '
        f'PET-like p={gen.get("pet")}, bias field p={gen.get("bias")}, gamma, random '
        f'resolution up to {gen.get("max_res_aniso")} mm slices, noise, partial field of view '
        f'p={gen.get("partial_fov")}, crops centred in the brain p={gen.get("focus", 0.0)}, '
        f'MRI contrasts drawn per tissue p={gen.get("tissue_contrast", 0.0)}.',
        '',
        '## Measured accuracy',
        '',
    ]
    val = meta.get('validation') or {}
    if val:
        lines += [
            'Validation on synthetic images of the held-out maps (random contrasts), at '
            'the saved iteration: '
            + ', '.join(f'{k} {v:.3f}' for k, v in val.items() if not k.startswith('dice_'))
            + '.',
            '',
        ]
    if 'colin27' in evaluation and task == 'head':
        lines += _head_colin27(evaluation['colin27'], weights)
    elif 'colin27' in evaluation and task == 'seg':
        c = evaluation['colin27']
        total = sum(g['ml'] for g in c['geometry'].values())
        lines += [
            f'**Colin27** (real T1w, 1 mm): {c["labels_found"]} of 32 labels found; lateral '
            f'labels on their own side of the midline: {c["lateral_labels_on_their_side"]}; '
            f'labelled brain {total:.0f} mL; {c["seconds"]} s on CPU (whole pipeline).',
            '',
            *_colin_volumes(c['geometry'], evaluation.get('volume_ranges')),
        ]
        if c.get('picture'):
            lines += [f'![Colin27: cortex and white-matter boundaries]({Path(c["picture"]).name})']
            lines += ['']
    elif 'colin27' in evaluation:
        c = evaluation['colin27']
        lines += [
            f'**Colin27** (real T1w, 1 mm): Dice {c["dice_vs_ch2bet"]:.3f} against '
            f'`ch2bet` (an automated BET extraction, itself imperfect); mask '
            f'{c["mask_ml"]} mL vs {c["reference_ml"]} mL; {c["seconds"]} s on CPU.',
            '',
        ]
    if 'by_contrast' in evaluation:
        truth = {
            'seg': 'mean Dice against the true labels',
            'head': 'mean Dice of the six tissues against the true labels',
        }.get(task, 'Dice against the true mask')
        lines += [
            'Held-out maps rendered as named contrasts and resolutions, whole inference '
            f'pipeline, {truth}:',
            '',
            _table(evaluation['by_contrast'], 'contrast', 'mean Dice'),
            '',
            _table(evaluation['by_resolution'], 'voxel size (mm)', 'mean Dice'),
            '',
            f'Mean Dice {evaluation["mean_dice"]:.3f} over {len(evaluation["synthetic"])} '
            f'images; {evaluation["mean_seconds"]} s per image (CPU, '
            f'{evaluation.get("threads")} threads).',
            '',
        ]
    if task == 'seg' and evaluation.get('synthetic'):
        lines += _contrast_by_resolution(evaluation['synthetic'])
    if 'head_class_by_contrast' in evaluation:
        lines += _head_table(evaluation['head_class_by_contrast'], evaluation['head_by_class'])
    if 'seg_by_label' in evaluation:
        lines += [
            'Segmentation Dice per label on the same synthetic images:',
            '',
            _table(evaluation['seg_by_label'], 'label', 'mean Dice'),
            '',
        ]
    goal = GOALS.get(task.split('-')[0] if task == 'seg' else task)
    if goal:
        lines += [
            '## Distance to the goals',
            '',
            f'Project goal: {goal}.',
            evaluation.get('gap', 'See the closing note of the training issue.'),
            '',
        ]
    official = (
        'no official head-tissue weights exist; pass your own with `--model`.'
        if task == 'head'
        else 'pass official weights with `--model` for FreeSurfer-identical results.'
    )
    lines += [
        '## Use',
        '',
        'These weights are found automatically when no other weights are '
        f'available (see `docs/weights.md`); {official}',
        '',
    ]
    return '\n'.join(lines)
