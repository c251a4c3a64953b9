"""Pure plotting functions for meshes: a shaded PNG rendering of a closed surface mesh (the
skull of the head-tissue reportlet), and the PNG that stands in for a figure that could not be
drawn. No Nipype: the interfaces call these, and tests call them directly.
"""

from __future__ import annotations

import io
from pathlib import Path

import nibabel as nib
import numpy as np

#: Views of :func:`plot_surface`: (title, elevation, azimuth) in degrees, for matplotlib's
#: camera in RAS+ world coordinates (azimuth 180: looking from the subject's left).
SURFACE_VIEWS = (('left', 5.0, 180.0), ('front', 5.0, 90.0))


def decimate_mesh(vertices: np.ndarray, faces: np.ndarray, max_faces: int):
    """A coarser copy of a triangle mesh with at most ``max_faces`` faces, by vertex
    clustering (vertices merged on a grid whose cell grows until the mesh is small enough;
    degenerate and repeated faces dropped). For drawing only: the topology is not kept."""
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    if len(faces) <= max_faces:
        return vertices, faces
    tri = vertices[faces]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    cell = np.sqrt(2 * area.sum() / max_faces)  # a grid of squares of this side: two faces each
    low = vertices.min(axis=0)
    while True:
        keys = np.floor((vertices - low) / cell).astype(np.int64)
        _, cluster, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
        cluster = cluster.ravel()
        merged = np.stack(
            [np.bincount(cluster, weights=vertices[:, k]) / counts for k in range(3)], axis=1
        )
        new = cluster[faces]
        keep = (new[:, 0] != new[:, 1]) & (new[:, 1] != new[:, 2]) & (new[:, 0] != new[:, 2])
        new = new[keep]
        _, first = np.unique(np.sort(new, axis=1), axis=0, return_index=True)
        new = new[np.sort(first)]
        if len(new) <= max_faces:
            return merged, new
        cell *= 1.2


def _load_surface(surface):
    """``(vertices, faces)`` of a GIfTI surface file, or of a ``(vertices, faces)`` pair."""
    if isinstance(surface, tuple | list):
        vertices, faces = surface
        return np.asarray(vertices, dtype=np.float64), np.asarray(faces, dtype=np.int64)
    img = nib.load(str(surface))
    vertices = img.agg_data('NIFTI_INTENT_POINTSET')
    faces = img.agg_data('NIFTI_INTENT_TRIANGLE')
    return np.asarray(vertices, dtype=np.float64), np.asarray(faces, dtype=np.int64)


def plot_surface(
    surface,
    out_file,
    *,
    color: str = '#fffaf0',
    max_faces: int = 30000,
    title: str | None = None,
    views=SURFACE_VIEWS,
) -> Path:
    """A closed surface mesh (a GIfTI file, or ``(vertices, faces)`` in RAS+ mm), shaded,
    seen from each of ``views`` side by side, as a PNG (orthographic views, millimetre
    aspect, black background). The mesh is decimated to ``max_faces`` faces for drawing, and
    faces turned away from the viewer are left out (the surface is closed and outward
    oriented), which keeps the drawing fast and free of sorting artefacts."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import to_rgb
    from matplotlib.figure import Figure
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    vertices, faces = decimate_mesh(*_load_surface(surface), max_faces)
    tri = vertices[faces]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    normals = normals / np.where(length > 0, length, 1)
    low, high = vertices.min(axis=0), vertices.max(axis=0)
    size = 3.2
    fig = Figure(figsize=(size * len(views), size + (0.3 if title else 0)), facecolor='black')
    FigureCanvasAgg(fig)
    base = np.array(to_rgb(color))
    for i, (name, elev, azim) in enumerate(views):
        ax = fig.add_subplot(1, len(views), i + 1, projection='3d', proj_type='ortho')
        ax.set_facecolor('black')
        e, a = np.radians(elev), np.radians(azim)
        toward = np.array([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)])
        light = toward + np.array([0.0, 0.0, 0.6])  # from the viewer, a little from above
        light /= np.linalg.norm(light)
        facing = normals @ toward > 0
        shade = 0.25 + 0.75 * np.clip(normals[facing] @ light, 0, 1)
        polys = Poly3DCollection(
            tri[facing], facecolors=shade[:, None] * base, edgecolors='none', antialiased=False
        )
        ax.add_collection3d(polys)
        ax.set_xlim(low[0], high[0])
        ax.set_ylim(low[1], high[1])
        ax.set_zlim(low[2], high[2])
        ax.set_box_aspect(tuple(np.maximum(high - low, 1e-3)))
        ax.view_init(elev=elev, azim=azim)
        ax.set_axis_off()
        ax.set_title(name, color='white', fontsize=8)
    if title:
        fig.suptitle(title, color='white', fontsize=9)
    fig.subplots_adjust(left=0, right=1, bottom=0, top=0.86 if title else 0.9, wspace=0)
    out_file = Path(out_file)
    buf = io.BytesIO()
    fig.savefig(buf, format='png', facecolor='black', dpi=100)
    out_file.write_bytes(buf.getvalue())
    return out_file


def plot_message(text: str, out_file, *, width: float = 6.4, height: float = 1.0) -> Path:
    """A PNG with one line of ``text`` on black: the figure of something that could not be
    drawn (a reportlet is never missing, it says why it is empty)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), facecolor='black')
    FigureCanvasAgg(fig)
    fig.text(0.5, 0.5, text, color='white', fontsize=9, ha='center', va='center')
    out_file = Path(out_file)
    buf = io.BytesIO()
    fig.savefig(buf, format='png', facecolor='black', dpi=100)
    out_file.write_bytes(buf.getvalue())
    return out_file
