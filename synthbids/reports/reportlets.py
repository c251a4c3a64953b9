"""Pure plotting functions: SVG mosaics of an image with a mask contour or a segmentation
(surface meshes: :mod:`.surfaces`).

Images in (file names or nibabel images), one SVG out, no Nipype: the interfaces call these,
and tests call them directly. Images are shown in RAS orientation (the subject's left on the
left, "neurological" view, marked L/R), with millimetre aspect ratios, in three rows (axial,
coronal, sagittal) of cuts spread over the brain's bounding box, each labelled with its world
coordinate in mm; overlays on another grid (SynthSeg's 1 mm output) are resampled onto the
image grid by nearest neighbour. Segmentations get a colour legend of the labels shown.
"""

from __future__ import annotations

import io
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

ROWS = ('axial', 'coronal', 'sagittal')
AXIS_OF_ROW = {'axial': 2, 'coronal': 1, 'sagittal': 0}
#: World axis named in each row's cut labels.
COORD_OF_ROW = {'axial': 'z', 'coronal': 'y', 'sagittal': 'x'}
#: What lies at the left and right edge of each row's cuts (canonical RAS, ``_slice``).
SIDES_OF_ROW = {'axial': ('L', 'R'), 'coronal': ('L', 'R'), 'sagittal': ('P', 'A')}

CELL_WIDTH = 1.6  # inches: one cut
ROW_HEIGHT = 1.7  # inches: one row of cuts, its label band included
LABEL_BAND = 0.16  # inches above each row's cuts for their labels
TITLE_HEIGHT = 0.3
LEGEND_ROW = 0.15  # inches per line of legend
LEGEND_COLUMNS = 6


def _load_canonical(image) -> nib.Nifti1Image:
    """``image`` (a file name or a nibabel image) in RAS orientation; first frame of a series."""
    img = image if isinstance(image, nib.spatialimages.SpatialImage) else nib.load(str(image))
    if img.ndim > 3:
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


def cut_label(image: nib.Nifti1Image, row: str, index: int) -> str:
    """The world coordinate (mm) of a cut, e.g. ``z=+12 mm``, at the centre of the slice."""
    axis = AXIS_OF_ROW[row]
    voxel = (np.array(image.shape[:3], dtype=float) - 1) / 2
    voxel[axis] = index
    world = image.affine[:3, :3] @ voxel + image.affine[:3, 3]
    return f'{COORD_OF_ROW[row]}={world[axis]:+.0f} mm'


def _slice(data: np.ndarray, row: str, index: int) -> np.ndarray:
    """A 2-D slice ready for ``imshow(origin='lower')``: rows are the vertical axis, and the
    first voxel axis of RAS data runs left to right (``SIDES_OF_ROW``)."""
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


def _label(fig, x: float, y: float, text: str, ha: str = 'center') -> None:
    """White text in the label band above a cut (never over the image, never clipped)."""
    fig.text(x, y, text, color='white', fontsize=6, ha=ha, va='center')


def _mosaic(image, n_cuts, draw, title, box_mask, legend=()):
    """The figure of three rows of cuts; ``draw(ax, row, index)`` adds the overlay of a cut;
    ``legend``: ``(colour, name)`` pairs drawn under the cuts."""
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    data = np.asanyarray(image.dataobj).astype(np.float32)
    zooms = image.header.get_zooms()[:3]
    cuts = cuts_in_box(box_mask, n_cuts)
    vmin, vmax = _window(data, ndimage.binary_dilation(box_mask, iterations=3))
    legend_height = LEGEND_ROW * (-(-len(legend) // LEGEND_COLUMNS) + 0.5) if legend else 0
    top = TITLE_HEIGHT if title else 0
    width, height = CELL_WIDTH * n_cuts, ROW_HEIGHT * len(ROWS) + top + legend_height
    fig = Figure(figsize=(width, height))
    FigureCanvasSVG(fig)
    fig.patch.set_facecolor('black')
    for r, row in enumerate(ROWS):
        row_top = height - top - r * ROW_HEIGHT  # inches from the bottom
        band = (row_top - LABEL_BAND / 2) / height
        for c, index in enumerate(cuts[row][:n_cuts]):
            left = c * CELL_WIDTH
            ax = fig.add_axes(
                (
                    (left + 0.02) / width,
                    (row_top - ROW_HEIGHT + 0.02) / height,
                    (CELL_WIDTH - 0.04) / width,
                    (ROW_HEIGHT - LABEL_BAND - 0.04) / height,
                )
            )
            ax.set_axis_off()
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
            _label(fig, (left + CELL_WIDTH / 2) / width, band, cut_label(image, row, index))
            low, high = SIDES_OF_ROW[row]
            _label(fig, (left + 0.06) / width, band, low, ha='left')
            _label(fig, (left + CELL_WIDTH - 0.06) / width, band, high, ha='right')
    if title:
        fig.text(0.5, 1 - top / 2 / height, title, color='white', fontsize=9, ha='center')
    if legend:
        fig.legend(
            handles=[Patch(facecolor=color, edgecolor='none') for color, _ in legend],
            labels=[name for _, name in legend],
            loc='lower center',
            ncol=LEGEND_COLUMNS,
            fontsize=6,
            labelcolor='white',
            frameon=False,
            handlelength=1.2,
            columnspacing=1.2,
            borderaxespad=0.2,
        )
    return fig


def _write_svg(fig, out_file) -> Path:
    buf = io.StringIO()
    fig.savefig(buf, format='svg', facecolor='black')
    out_file = Path(out_file)
    out_file.write_text(buf.getvalue())
    return out_file


def plot_mask(image, mask, out_file, *, n_cuts: int = 7, title: str | None = None) -> Path:
    """Brain-mask contour (red) over the image; each of ``image``, ``mask`` a file name or a
    nibabel image."""
    image = _load_canonical(image)
    mask = _on_grid(_load_canonical(mask), image) > 0

    def draw(ax, row, index):
        section = _slice(mask, row, index).astype(float)
        if section.any() and not section.all():
            ax.contour(section, levels=[0.5], colors=['#ff3333'], linewidths=0.8, origin='lower')

    return _write_svg(_mosaic(image, n_cuts, draw, title, mask), out_file)


def legend_entries(values, colors: dict[int, str], names: dict[int, str]) -> list[tuple]:
    """``(colour, name)`` per label shown, left/right pairs of one colour merged into one
    entry without their side (``Left-Hippocampus`` + ``Right-Hippocampus``: ``Hippocampus``)."""
    out: list[tuple[str, str]] = []
    for value in values:
        name = names.get(int(value), str(int(value)))
        color = colors.get(int(value), '#ffff00')
        for side in ('Left-', 'Right-', 'ctx-lh-', 'ctx-rh-'):
            if name.startswith(side):
                other = name.replace(side, _OTHER_SIDE[side], 1)
                if any(names.get(int(v)) == other and colors.get(int(v)) == color for v in values):
                    name = name[len(side) :]
                break
        if (color, name) not in out:
            out.append((color, name))
    return out


def _fs_name(lut, value) -> str:
    try:
        return lut.fs_names([value])[0]
    except (IndexError, KeyError):  # not a FreeSurfer label (custom weights)
        return str(int(value))


_OTHER_SIDE = {'Left-': 'Right-', 'Right-': 'Left-', 'ctx-lh-': 'ctx-rh-', 'ctx-rh-': 'ctx-lh-'}


def plot_segmentation(
    image,
    dseg,
    out_file,
    colors: dict[int, str] | None = None,
    *,
    n_cuts: int = 7,
    alpha: float = 0.45,
    title: str | None = None,
    legend: bool = True,
    names: dict[int, str] | None = None,
) -> Path:
    """Segmentation labels (their lookup-table colours, semi-transparent) over the image, with
    a legend; each of ``image``, ``dseg`` a file name or a nibabel image. ``colors``: label
    colours (default: FreeSurfer's, :mod:`synthbids.bids.lut`); ``names``: label names for
    the legend (default: FreeSurfer's)."""
    from matplotlib.colors import ListedColormap

    from ..bids import lut

    image = _load_canonical(image)
    labels = _on_grid(_load_canonical(dseg), image).astype(np.int64)
    values = np.unique(labels)
    values = values[values != 0]
    if colors is None:
        colors = lut.colors(parc=bool((values > 1000).any()))
    index = np.zeros(int(max(values.max(), 0) + 1) if values.size else 1, dtype=np.int64)
    index[values] = np.arange(1, values.size + 1)
    compact = index[np.clip(labels, 0, None)] if values.size else np.zeros_like(labels)
    palette = ['#000000'] + [colors.get(int(v), '#ffff00') for v in values]
    cmap = ListedColormap(palette)
    names = {int(v): (names or {}).get(int(v)) or _fs_name(lut, v) for v in values}
    entries = legend_entries(values, colors, names) if legend else ()

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

    return _write_svg(_mosaic(image, n_cuts, draw, title, labels > 0, entries), out_file)


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


def plot_normalization(
    image, template_mask, template_wm, out_file, *, n_cuts: int = 7, title: str | None = None
) -> Path:
    """An image resampled into a template's space with the template's own brain-mask contour
    (red) and white-matter boundary (blue, its WM probability at 0.5) over it: where the two
    disagree, the registration is off. Each argument a file name or a nibabel image on the
    template's grid."""
    image = _load_canonical(image)
    mask = _on_grid(_load_canonical(template_mask), image) > 0
    wm = _on_grid(_load_canonical(template_wm), image) >= 0.5

    def draw(ax, row, index):
        for data, color in ((mask, '#ff3333'), (wm, '#3c78d8')):
            section = _slice(data, row, index).astype(float)
            if section.any() and not section.all():
                ax.contour(section, levels=[0.5], colors=[color], linewidths=0.8, origin='lower')

    return _write_svg(_mosaic(image, n_cuts, draw, title, mask), out_file)
