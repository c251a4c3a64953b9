#!/usr/bin/env python
"""Per-label volume range (ml) of the 33 SynthSeg labels, and of the head tissues, over the
training label maps.

Tests use it to check that a segmentation's volumes are those of a human brain:
    python scripts/seg_volume_ranges.py ../shared/data/label_maps \
        > tests/data/seg_volume_ranges.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

from synthbids.core.labels import HEAD_CLASSES
from synthbids.synth.labelmaps import SEG_LABELS_V2, label_tables, to_indices


def main(argv=None) -> int:
    folder = Path((argv or sys.argv[1:])[0])
    tables = label_tables()
    values = np.asarray(SEG_LABELS_V2)[tables.seg]  # generation index -> SynthSeg label
    volumes: dict[int, list[float]] = {v: [] for v in SEG_LABELS_V2 if v}
    head: dict[str, list[float]] = {name: [] for name in HEAD_CLASSES[1:]}
    files = sorted(folder.glob('training_seg_*.nii.gz'))
    for path in files:
        img = nib.load(path)
        indices = to_indices(np.asanyarray(img.dataobj), path)
        seg = values[indices]
        tissues = np.bincount(tables.head[indices].ravel(), minlength=len(HEAD_CLASSES))
        ml = float(np.prod(img.header.get_zooms()[:3])) / 1000
        counts = np.bincount(seg.ravel(), minlength=max(SEG_LABELS_V2) + 1)
        for v in volumes:
            volumes[v].append(counts[v] * ml)
        for c, name in enumerate(HEAD_CLASSES[1:], start=1):
            head[name].append(tissues[c] * ml)
    out = {
        'source': f'{len(files)} training label maps ({folder.name})',
        'ml': {str(v): [round(min(x), 2), round(max(x), 2)] for v, x in volumes.items()},
        'head_ml': {k: [round(min(x), 1), round(max(x), 1)] for k, x in head.items()},
    }
    print(json.dumps(out, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
