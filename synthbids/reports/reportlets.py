"""Pure plotting functions: SVG mosaics of an image with a mask contour or a segmentation.

Files in, one SVG out, no Nipype: the interfaces call these, and tests call them directly.
Images are shown in RAS orientation, with millimetre aspect ratios, in three rows (axial,
coronal, sagittal) of cuts spread over the brain's bounding box; overlays on another grid
(SynthSeg's 1 mm output) are resampled onto the image grid by nearest neighbour.
"""

from __future__ import annotations

import io
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

ROWS = ('axial', 'coronal', 'sagittal')
AXIS_OF_ROW = {'axial': 2, 'coronal': 1, 'sagittal': 0}


def _load_canonical(path) -> nib.Nifti1Image:
    img = nib.load(str(path))
    if img.ndim > 3:  # first frame of a series
        img = img.slicer[..., 0]
    return nib.as_closest_canonical(img)


def _on_grid(overlay: nib.Nifti1Image, reference: nib.Nifti1Image) -> np.ndarray:
    """``overlay`` voxels on ``reference``'s grid (nearest neighbour, 0 outside)."""
    data = np.asanyarray(overlay.dataobj)
    if data.ndim > 3:
        data = data[..., 0]
    if overlay.shape[:3] == reference.shape[:3] and np.allclose(
        overlay.affine, reference.affine, atol=1e-3
    ):
        return np.asarray(data)
    vox2vox = np.linalg.inv(overlay.affine) @ reference.affine
    return ndimage.affine_transform(
        np.asarray(data), vox2vox[:3, :3], vox2vox[:3, 3], reference.shape[:3], order=0, cval=0
    )


def cuts_in_box(mask: np.ndarray, n: int) -> dict[str, list[int]]:
    """``n`` evenly spread slice indices per row inside the bounding box of ``mask``."""
    if not mask.any():
        mask = np.ones_like(mask, dtype=bool)
    out = {}
    for row, axis in AXIS_OF_ROW.items():
        other = tuple(a for a in range(3) if a != axis)
        present = np.flatnonzero(mask.any(axis=other))
        lo, hi = present[0], present[-1]
        span = hi - lo
        out[row] = sorted({int(round(lo + span * (i + 1) / (n + 1))) for i in range(n)})
    return out


def _slice(data: np.ndarray, row: str, index: int) -> np.ndarray:
    """A 2-D slice ready for ``imshow(origin='lower')``: rows are the vertical axis."""
    axis = AXIS_OF_ROW[row]
    return np.take(data, index, axis=axis).T


def _aspect(zooms, row: str) -> float:
    axis = AXIS_OF_ROW[row]
    horiz, vert = [z for a, z in enumerate(zooms[:3]) if a != axis]
    return vert / horiz


def _window(data: np.ndarray, within: np.ndarray | None) -> tuple[float, float]:
    values = data[within] if within is not None and within.any() else data[data != 0]
    if values.size == 0:
        values = data.ravel()
    lo, hi = np.percentile(values, [0.5, 99.5])
    return float(lo), float(hi if hi > lo else lo + 1)


def _mosaic(image, n_cuts, draw, title: str | None, out_file, box_mask) -> Path:
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure

    data = np.asanyarray(image.dataobj).astype(np.float32)
    zooms = image.header.get_zooms()[:3]
    cuts = cuts_in_box(box_mask, n_cuts)
    vmin, vmax = _window(data, ndimage.binary_dilation(box_mask, iterations=3))
    fig = Figure(figsize=(1.6 * n_cuts, 1.7 * len(ROWS) + (0.3 if title else 0)))
    FigureCanvasSVG(fig)
    fig.patch.set_facecolor('black')
    axes = fig.subplots(len(ROWS), n_cuts, squeeze=False)
    for r, row in enumerate(ROWS):
        for c in range(n_cuts):
            ax = axes[r, c]
            ax.set_axis_off()
            if c >= len(cuts[row]):
                continue
            index = cuts[row][c]
            ax.imshow(
                _slice(data, row, index),
                cmap='gray',
                vmin=vmin,
                vmax=vmax,
                origin='lower',
                aspect=_aspect(zooms, row),
                interpolation='nearest',
            )
            draw(ax, row, index)
            ax.text(
                0.02,
                0.02,
                f'{row[0].upper()}={index}',
                color='white',
                fontsize=6,
                transform=ax.transAxes,
            )
    if title:
        fig.suptitle(title, color='white', fontsize=9)
    fig.subplots_adjust(
        left=0, right=1, bottom=0, top=0.94 if title else 1, wspace=0.02, hspace=0.02
    )
    buf = io.StringIO()
    fig.savefig(buf, format='svg', facecolor='black')
    out_file = Path(out_file)
    out_file.write_text(buf.getvalue())
    return out_file


def plot_mask(
    image_file, mask_file, out_file, *, n_cuts: int = 7, title: str | None = None
) -> Path:
    """Brain-mask contour (red) over the image."""
    image = _load_canonical(image_file)
    mask = _on_grid(_load_canonical(mask_file), image) > 0

    def draw(ax, row, index):
        section = _slice(mask, row, index).astype(float)
        if section.any() and not section.all():
            ax.contour(section, levels=[0.5], colors=['#ff3333'], linewidths=0.8, origin='lower')

    return _mosaic(image, n_cuts, draw, title, out_file, mask)


def plot_segmentation(
    image_file,
    dseg_file,
    out_file,
    colors: dict[int, str],
    *,
    n_cuts: int = 7,
    alpha: float = 0.45,
    title: str | None = None,
) -> Path:
    """Segmentation labels (their lookup-table colours, semi-transparent) over the image."""
    from matplotlib.colors import ListedColormap

    image = _load_canonical(image_file)
    labels = _on_grid(_load_canonical(dseg_file), image).astype(np.int64)
    values = np.unique(labels)
    values = values[values != 0]
    index = np.zeros(int(max(values.max(), 0) + 1) if values.size else 1, dtype=np.int64)
    index[values] = np.arange(1, values.size + 1)
    compact = index[np.clip(labels, 0, None)] if values.size else np.zeros_like(labels)
    palette = ['#000000'] + [colors.get(int(v), '#ffff00') for v in values]
    cmap = ListedColormap(palette)

    def draw(ax, row, i):
        section = _slice(compact, row, i)
        shown = np.ma.masked_equal(section, 0)
        ax.imshow(
            shown,
            cmap=cmap,
            vmin=0,
            vmax=len(palette) - 1,
            origin='lower',
            alpha=alpha,
            aspect=ax.get_aspect(),
            interpolation='nearest',
        )

    return _mosaic(image, n_cuts, draw, title, out_file, labels > 0)


def plot_strips(
    data: dict[str, list[tuple[float | None, str, str]]],
    *,
    threshold: float | None = None,
    xlim: tuple[float, float] | None = None,
    xlabel: str = '',
) -> str:
    """Inline SVG: one strip plot per measure, a point per image linking to its report.

    ``data`` maps a measure to ``(value, image name, url)`` triples; points below
    ``threshold`` are drawn in red, and the threshold as a dashed line.
    """
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure

    names = [n for n, points in data.items() if any(v is not None for v, _, _ in points)]
    if not names:
        return ''
    shared = xlim is not None  # one scale for all rows: tick labels only at the bottom
    row = 0.45 if shared else 0.85
    height = row * len(names) + 0.8
    fig = Figure(figsize=(7.5, height))
    FigureCanvasSVG(fig)
    axes = fig.subplots(len(names), 1, squeeze=False, sharex=shared)[:, 0]
    rng = np.random.default_rng(0)
    for ax, name in zip(axes, names):
        points = [(v, label, url) for v, label, url in data[name] if v is not None]
        values = np.array([p[0] for p in points], dtype=float)
        jitter = rng.uniform(-0.3, 0.3, size=values.size)
        bad = values < threshold if threshold is not None else np.zeros(values.size, bool)
        colors = np.where(bad, '#c62828', '#1f3a5f')
        sc = ax.scatter(values, jitter, s=18, c=list(colors), alpha=0.8, edgecolors='none')
        sc.set_urls([p[2] for p in points])
        if threshold is not None:
            ax.axvline(threshold, color='#c62828', linestyle='--', linewidth=0.8)
        if xlim is not None:
            ax.set_xlim(*xlim)
        ax.set_ylim(-0.5, 0.5)
        ax.set_yticks([])
        ax.set_ylabel(name, rotation=0, ha='right', va='center', fontsize=8)
        ax.tick_params(axis='x', labelsize=7)
        ax.ticklabel_format(axis='x', style='plain', useOffset=False)
        for side in ('top', 'right', 'left'):
            ax.spines[side].set_visible(False)
    axes[-1].set_xlabel(xlabel, fontsize=8)
    fig.subplots_adjust(
        left=0.33,
        right=0.97,
        top=1 - 0.15 / height,
        bottom=0.6 / height,
        hspace=0.25 if shared else 0.9,
    )
    buf = io.StringIO()
    fig.savefig(buf, format='svg')
    text = buf.getvalue()
    return text[text.index('<svg') :]
