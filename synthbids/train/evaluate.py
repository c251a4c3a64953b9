"""Accuracy of trained weights, measured the way users run them (whole inference pipeline).

* ``strip_on_synthetic``: held-out label maps rendered as named contrasts (T1w, T2w, PDw,
  FLAIR, CT, PET) and resolutions, skull-stripped with :func:`synthbids.core.strip.strip`,
  Dice against the map's brain mask on the acquisition grid;
* ``strip_on_colin27``: Dice of the mask of Colin27 against ``ch2bet`` (an automated BET
  extraction, itself imperfect);
* ``seg_on_synthetic``: per-label Dice of a segmentation against the map's 33 labels;
* ``head_on_synthetic``: per-class Dice of the head tissues (bone first) against the maps';
* ``head_on_colin27``: Colin27's head-tissue volumes and a picture of its labels.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from ..core.imageio import Volume, load_volume
from ..synth.contrasts import CONTRASTS, Acquisition, render, sample_like
from ..synth.labelmaps import label_tables, ras_to_lia, to_indices

DEFAULT_RESOLUTIONS = ((1, 1, 1), (1, 1, 5), (3, 3, 3), (5, 1, 1))


def default_acquisitions(contrasts=CONTRASTS, resolutions=DEFAULT_RESOLUTIONS):
    out = []
    for contrast in contrasts:
        for res in resolutions:
            if contrast == 'PET' and max(res) < 3:
                continue  # PET is never acquired at 1 mm
            out.append(Acquisition(contrast, tuple(float(r) for r in res)))
    return out


def load_map_1mm(path: str | Path) -> np.ndarray:
    """A label map as generation indices in LIA orientation at its native 1 mm."""
    canon = nib.as_closest_canonical(nib.load(path))
    data = np.asanyarray(canon.dataobj)
    lia = ras_to_lia(data)
    return np.ascontiguousarray(to_indices(lia, path))


def as_volume(image: np.ndarray, affine: np.ndarray, name: str) -> Volume:
    img = nib.Nifti1Image(image, affine)
    img.header.set_xyzt_units('mm')
    return Volume(
        path=Path(name),
        data=image,
        affine=affine,
        zooms=np.asarray(img.header.get_zooms()[:3], dtype=np.float64),
        header=img.header,
        image_class=nib.Nifti1Image,
    )


def dice(a, b) -> float:
    total = a.sum() + b.sum()
    return float(2 * np.logical_and(a, b).sum() / total) if total else 1.0


def rendered(map_files, lut: np.ndarray, acquisitions=None):
    """Yield ``(row, volume, truth)`` for every map and acquisition: the row's identity fields,
    the rendered image as a :class:`Volume`, and ``lut`` of the map on the acquisition grid."""
    for path in map_files:
        indices = load_map_1mm(path)
        truth = lut[indices]
        for k, acq in enumerate(acquisitions or default_acquisitions()):
            image, affine = render(indices, acq, seed=k)
            row = {
                'map': Path(path).name,
                'contrast': acq.contrast,
                'voxel_mm': list(acq.voxel_mm),
            }
            volume = as_volume(image, affine, f'{Path(path).name}:{acq.name}')
            yield row, volume, sample_like(truth, acq)


def strip_on_synthetic(
    model, map_files, acquisitions=None, border: float = 1.0, no_csf: bool = False
) -> list[dict]:
    from ..core.strip import strip

    tables = label_tables()
    rows = []
    lut = tables.brain_no_csf if no_csf else tables.brain
    for row, volume, truth in rendered(map_files, lut, acquisitions):
        start = time.perf_counter()
        result = strip(volume, model, border=border)
        row['dice'] = round(dice(result.mask, truth), 4)
        row['seconds'] = round(time.perf_counter() - start, 2)
        rows.append(row)
    return rows


def strip_on_colin27(model, image: str | Path, reference: str | Path, border: float = 1.0) -> dict:
    from ..core.strip import strip

    start = time.perf_counter()
    result = strip(load_volume(image), model, border=border)
    seconds = time.perf_counter() - start
    ref = np.asanyarray(nib.load(reference).dataobj) > 0
    return {
        'dice_vs_ch2bet': round(dice(result.mask, ref), 4),
        'mask_ml': round(
            float(result.mask.sum())
            * float(np.prod(nib.load(image).header.get_zooms()[:3]))
            / 1000,
            1,
        ),
        'reference_ml': round(float(ref.sum()) / 1000, 1),
        'seconds': round(seconds, 2),
    }


def seg_on_synthetic(
    model, map_files, acquisitions=None, refine=None, fast: bool = False
) -> list[dict]:
    """Per-label Dice of :func:`synthbids.core.segment.segment` on rendered held-out maps, on
    the acquisition grid (``keepgeom``), against the maps' 33 SynthSeg labels; ``refine`` and
    ``fast`` (no test-time flip) are passed to ``segment`` (None: the weights' default)."""
    from ..core.segment import segment
    from ..synth.labelmaps import SEG_LABELS_V2

    values = np.asarray(SEG_LABELS_V2)[label_tables().seg]
    rows = []
    for row, volume, truth in rendered(map_files, values, acquisitions):
        start = time.perf_counter()
        result = segment(volume, model, keepgeom=True, refine=refine, fast=fast)
        seconds = time.perf_counter() - start
        row['refined'] = result.refined
        per_label = {
            str(v): round(dice(result.labels == v, truth == v), 4) for v in SEG_LABELS_V2 if v
        }
        row['dice'] = round(float(np.mean(list(per_label.values()))), 4)
        row['dice_per_label'] = per_label
        row['seconds'] = round(seconds, 2)
        rows.append(row)
    return rows


#: What the head model is measured on: every MRI contrast and CT at 1 mm, and 5 mm slices.
HEAD_ACQUISITIONS = ('T1w', 'T2w', 'PDw', 'FLAIR', 'CT')
HEAD_RESOLUTIONS = ((1, 1, 1), (1, 1, 5))


def head_on_synthetic(model, map_files, acquisitions=None) -> list[dict]:
    """Per-class Dice of :func:`synthbids.core.head.head` on rendered held-out maps, on the
    acquisition grid, against the maps' head tissues; ``dice`` is the mean over the six
    tissue classes."""
    from ..core.head import head
    from ..core.labels import HEAD_CLASSES

    acquisitions = acquisitions or default_acquisitions(HEAD_ACQUISITIONS, HEAD_RESOLUTIONS)
    rows = []
    for row, volume, truth in rendered(map_files, label_tables().head, acquisitions):
        start = time.perf_counter()
        result = head(volume, model)
        seconds = time.perf_counter() - start
        per_class = {
            name: round(dice(result.labels == c, truth == c), 4)
            for c, name in enumerate(HEAD_CLASSES)
            if c
        }
        row['dice'] = round(float(np.mean(list(per_class.values()))), 4)
        row['dice_per_class'] = per_class
        row['seconds'] = round(seconds, 2)
        rows.append(row)
    return rows


def head_on_colin27(model, image: str | Path, picture: str | Path | None = None) -> dict:
    """Colin27's head-tissue volumes (mL, from the soft probabilities and from the labels)
    and, with ``picture``, a PNG of the labels over three orthogonal slices."""
    from ..core.head import head
    from ..core.labels import HEAD_CLASSES

    volume = load_volume(image)
    start = time.perf_counter()
    result = head(volume, model)
    seconds = time.perf_counter() - start
    ml = abs(float(np.linalg.det(result.affine[:3, :3]))) / 1000
    out = {
        'volumes_ml': {k: round(v, 1) for k, v in result.volumes.items() if k != 'background'},
        'label_ml': {
            name: round(float((result.labels == c).sum()) * ml, 1)
            for c, name in enumerate(HEAD_CLASSES)
            if c
        },
        'seconds': round(seconds, 2),
    }
    if picture is not None:
        head_picture(np.asarray(volume.data, dtype=np.float32), result.labels, picture)
        out['picture'] = str(picture)
    return out


def head_picture(image: np.ndarray, labels: np.ndarray, path: str | Path) -> None:
    """Labels (HEAD_COLORS, half transparent) over the central slices of the three axes."""
    import matplotlib

    matplotlib.use('Agg')
    from matplotlib import pyplot as plt
    from matplotlib.colors import ListedColormap

    from ..core.labels import HEAD_COLORS, HEAD_NAMES

    cmap = ListedColormap(HEAD_COLORS)
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4), facecolor='black')
    centre = [s // 2 for s in labels.shape]
    vmax = float(np.percentile(image, 99.5))
    for axis, ax in enumerate(axes):
        index = [slice(None)] * 3
        index[axis] = centre[axis]
        img = np.rot90(image[tuple(index)])
        lab = np.rot90(labels[tuple(index)]).astype(float)
        ax.imshow(img, cmap='gray', vmin=0, vmax=vmax)
        ax.imshow(
            np.ma.masked_equal(lab, 0),
            cmap=cmap,
            vmin=0,
            vmax=len(HEAD_COLORS) - 1,
            alpha=0.45,
            interpolation='nearest',
        )
        ax.axis('off')
    handles = [
        matplotlib.patches.Patch(color=c, label=n) for c, n in zip(HEAD_COLORS[1:], HEAD_NAMES[1:])
    ]
    fig.legend(handles=handles, loc='lower center', ncol=6, frameon=False, labelcolor='white')
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=80, facecolor='black')
    plt.close(fig)


def label_geometry(labels: np.ndarray, affine: np.ndarray) -> dict[int, dict]:
    """Volume (ml) and world (RAS) centroid of every non-zero label of a segmentation."""
    ml = abs(float(np.linalg.det(affine[:3, :3]))) / 1000
    out = {}
    for v in np.unique(labels):
        if v == 0:
            continue
        ijk = np.argwhere(labels == v)
        centroid = affine[:3, :3] @ ijk.mean(axis=0) + affine[:3, 3]
        ras = [round(float(c), 1) for c in centroid]
        out[int(v)] = {'ml': round(len(ijk) * ml, 2), 'ras': ras}
    return out


def seg_on_colin27(model, image: str | Path, refine=None, picture=None) -> dict:
    """Label volumes and centroids of Colin27's segmentation, and how many lateral labels lie
    on their own side of the midline; with ``picture``, a PNG of the cortex and white-matter
    boundaries (with the intensity refinement on, also the network's alone above them)."""
    from ..core.segment import segment
    from ..synth.labelmaps import LEFT, RIGHT

    start = time.perf_counter()
    result = segment(image, model, refine=refine)
    seconds = time.perf_counter() - start
    if picture is not None:
        panels = [('refined (default)' if result.refined else 'network', result.labels)]
        if result.refined:
            panels.insert(0, ('network alone', segment(image, model, refine=False).labels))
        title = f'Colin27 with {Path(model.weights[0].path).name}'
        seg_picture(image, result.affine, panels, title, picture)
    geometry = label_geometry(result.labels, result.affine)
    midline = np.mean([g['ras'][0] for g in geometry.values()])
    sided = [(v, -1) for v in LEFT if v in geometry] + [(v, 1) for v in RIGHT if v in geometry]
    correct = sum(np.sign(geometry[v]['ras'][0] - midline) == s for v, s in sided)
    return {
        'labels_found': len(geometry),
        'lateral_labels_on_their_side': f'{correct}/{len(sided)}',
        'geometry': {str(k): v for k, v in geometry.items()},
        'seconds': round(seconds, 2),
    } | ({'picture': str(picture)} if picture is not None else {})


def seg_picture(image, affine, panels, title: str, path: str | Path) -> None:
    """Cortex (red) and white-matter (blue) boundaries of each panel's labels (on the grid of
    ``image``, ``affine``) over a coronal slice through the lateral ventricles and an axial
    slice 20 mm above them, cropped to the brain: one row per panel."""
    import matplotlib

    matplotlib.use('Agg')
    from matplotlib import pyplot as plt

    def canonical(data):
        return np.asanyarray(nib.as_closest_canonical(nib.Nifti1Image(data, affine)).dataobj)

    img = canonical(np.asarray(nib.load(image).dataobj, dtype=np.float32))
    labels = [canonical(np.asarray(lab, dtype=np.int16)) for _, lab in panels]
    brain = np.argwhere(labels[-1] > 0)
    lo = np.maximum(brain.min(axis=0) - 4, 0)  # a margin: the outer boundary stays visible
    hi = np.minimum(brain.max(axis=0) + 5, img.shape[:3])
    ventricles = np.argwhere(np.isin(labels[-1], (4, 43))).mean(axis=0).astype(int)
    y, z = ventricles[1], min(ventricles[2] + 20, hi[2] - 1)
    views = [
        ('coronal', lambda a: np.rot90(a[lo[0] : hi[0], y, lo[2] : hi[2]])),
        ('axial', lambda a: np.rot90(a[lo[0] : hi[0], lo[1] : hi[1], z])),
    ]
    vmax = float(np.percentile(img, 99.5))
    fig, axes = plt.subplots(len(panels), 2, figsize=(8, 4.2 * len(panels)), squeeze=False)
    for row, ((name, _), lab) in enumerate(zip(panels, labels)):
        for ax, (view, cut) in zip(axes[row], views):
            ax.imshow(cut(img), cmap='gray', vmin=0, vmax=vmax)
            for values, colour in (((3, 42), 'tab:red'), ((2, 41), 'cornflowerblue')):
                ax.contour(
                    cut(np.isin(lab, values)).astype(float), [0.5], colors=colour, linewidths=0.8
                )
            ax.set_title(f'{name} \u2014 {view}', fontsize=10)
            ax.axis('off')
    fig.suptitle(f'{title}: cortex (red) and white matter (blue) boundaries', fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=80)
    plt.close(fig)
    from PIL import Image

    with Image.open(buffer) as im:  # 256 colours: a third of the bytes, kept in the repository
        im.convert('RGB').quantize(256).save(path, format='PNG', optimize=True)


def summarize(rows: list[dict], key: str = 'contrast') -> dict[str, float]:
    groups: dict[str, list[float]] = {}
    for row in rows:
        groups.setdefault(
            row[key] if key != 'voxel_mm' else 'x'.join(f'{v:g}' for v in row[key]), []
        ).append(row['dice'])
    return {k: round(float(np.mean(v)), 4) for k, v in groups.items()}
