"""Closed surface meshes of the head from head-tissue labels (:mod:`.head`).

Four nested surfaces (:data:`SURFACES`), outermost first:

``scalp``
    the outer boundary of the head: every labelled (non-background) voxel;
``outerskull``
    the outside of the skull: brain, CSF and bone;
``innerskull``
    the inside of the skull, the intracranial volume: brain and CSF;
``brain``
    the brain (class 1), its ventricles filled in.

Each surface is the boundary of a solid mask with its holes filled (:func:`surface_masks`),
kept to its largest connected part and one voxel (one marching-cubes step) inside the next
outer mask, so that the smoothed surfaces never touch or cross, the image's edge included: a
head cut by the field of view is closed along the cut. Meshes (:func:`build_meshes`) come from
marching cubes on the lightly smoothed mask (scikit-image), are smoothed with Taubin's
volume-preserving filter (trimesh) and are watertight, consistently wound, and oriented
outward (positive volume). Vertices are in the image's scanner coordinates (the voxel-to-world
affine, RAS+ mm), so they overlay the image in 3D Slicer, Freeview, FSLeyes or Connectome
Workbench; STL files open in MeshLab, Blender and the slicers of 3-D printers (units mm).

>>> meshes = build_meshes(result.labels, result.affine)   # {'scalp': trimesh.Trimesh, ...}
>>> with OutputSet() as staged:
...     stage_meshes(staged, result.labels, result.affine, 'meshes/')
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import ndimage

from .errors import OutputError

log = logging.getLogger(__name__)

#: The surfaces, outermost first (alphanumeric: the BIDS App uses them as ``desc-`` values).
SURFACES = ('scalp', 'outerskull', 'innerskull', 'brain')

#: Head classes (:data:`synthbids.core.labels.HEAD_CLASSES` indices) inside each surface;
#: ``None``: every non-background class.
SURFACE_CLASSES: dict[str, tuple[int, ...] | None] = {
    'scalp': None,
    'outerskull': (1, 2, 3),
    'innerskull': (1, 2),
    'brain': (1,),
}

#: File extensions written for each surface by :func:`stage_meshes`.
MESH_EXTENSIONS = ('surf.gii', 'stl')

#: Marching cubes samples the smoothed masks every ``step`` voxels: the most voxels spanning
#: at most this many mm (at least one voxel). The labels come from a network working on a
#: 2 mm grid; a head's surface at this spacing has about 100,000 faces (a 5 MB STL file).
STEP_MM = 2.0
#: Gaussian smoothing of the mask before marching cubes, in marching-cubes steps.
SIGMA_STEPS = 0.6
#: Taubin smoothing: passes (shrink and inflate alternately) and their factors.
TAUBIN_ITERATIONS = 10
TAUBIN_LAMBDA = 0.5
TAUBIN_NU = 0.52

_FACE_CONNECTIVITY = ndimage.generate_binary_structure(3, 1)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest face-connected part of ``mask`` (all False if it is empty)."""
    components, n = ndimage.label(mask, structure=_FACE_CONNECTIVITY)
    if n <= 1:
        return components > 0
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    return components == int(np.argmax(sizes))


def _solid(mask: np.ndarray) -> np.ndarray:
    """``mask`` with its holes filled, largest component kept."""
    return ndimage.binary_fill_holes(_largest_component(ndimage.binary_fill_holes(mask)))


def surface_masks(labels: np.ndarray, gap: int = 1) -> dict[str, np.ndarray]:
    """Solid, nested boolean masks of the :data:`SURFACES` (outermost first) of a head-label
    image (classes of :data:`synthbids.core.labels.HEAD_CLASSES`).

    Each mask is the union of its classes (:data:`SURFACE_CLASSES`) with its holes filled (the
    ventricles inside the brain, the CSF and brain inside the skull), kept to its largest
    connected component, and restricted to the next outer mask eroded by ``gap`` voxels:
    every mask lies strictly inside the next outer one, also where the head touches the
    image's edge (voxels outside the image count as background). A mask may be empty (e.g. no
    bone at all)."""
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f'head labels must be 3-D, not of shape {labels.shape}')
    masks = {surface: np.zeros(labels.shape, dtype=bool) for surface in SURFACES}
    head = labels > 0
    if not head.any():
        return masks
    # work in the head's bounding box with one voxel of background around it (the image's
    # edge where the head touches it): the same result, faster
    where = np.nonzero(head)
    box = tuple(
        slice(max(int(w.min()) - 1, 0), min(int(w.max()) + 2, n))
        for w, n in zip(where, labels.shape)
    )
    labels = labels[box]
    outer = None
    for surface in SURFACES:
        classes = SURFACE_CLASSES[surface]
        mask = labels > 0 if classes is None else np.isin(labels, classes)
        if outer is not None:
            inside = ndimage.binary_erosion(
                outer, structure=_FACE_CONNECTIVITY, iterations=gap, border_value=0
            )
            mask = _solid(mask & inside) & inside
            # filling may reconnect parts; the intersection can split them again
            mask = _largest_component(mask)
        else:
            mask = _solid(mask)
        masks[surface][box] = mask
        outer = mask
    return masks


def marching_step(affine: np.ndarray) -> int:
    """Marching-cubes step (voxels) for an image with this affine (:data:`STEP_MM`)."""
    zooms = np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)
    return max(1, int(np.floor(STEP_MM / float(zooms.min()) + 1e-6)))


def mask_mesh(mask: np.ndarray, affine: np.ndarray, step: int = 1):
    """The closed, smoothed, outward-oriented surface of a solid mask as a
    :class:`trimesh.Trimesh` in world coordinates (``affine``: voxel to world), or ``None``
    when the mask is empty or too thin to have a surface."""
    import trimesh
    from skimage.measure import marching_cubes

    if not mask.any():
        return None
    sigma = SIGMA_STEPS * step
    pad = int(np.ceil(3 * sigma)) + 1
    # smooth the mask's bounding box only, with room around it; the box starts on a multiple
    # of ``step`` so that every mask of an image is sampled on the same lattice (nesting)
    where = np.nonzero(mask)
    lo = np.array([int(w.min()) for w in where]) - pad
    lo -= lo % step
    hi = np.array([int(w.max()) for w in where]) + 1 + pad + step
    inner_lo = np.maximum(lo, 0)
    inner_hi = np.minimum(hi, mask.shape)
    box = mask[tuple(slice(a, b) for a, b in zip(inner_lo, inner_hi))]
    field = np.pad(box.astype(np.float32), list(zip(inner_lo - lo, hi - inner_hi)))
    field = ndimage.gaussian_filter(field, sigma=sigma, mode='constant')
    if field.max() <= 0.5:
        return None
    verts, faces, _, _ = marching_cubes(
        field, level=0.5, step_size=step, allow_degenerate=False, method='lewiner'
    )
    ijk = verts + lo  # indices in the padded box back to the image's voxel indices
    affine = np.asarray(affine, dtype=np.float64)
    xyz = ijk @ affine[:3, :3].T + affine[:3, 3]
    # marching cubes shares vertices between faces and drops degenerate ones: no processing
    mesh = trimesh.Trimesh(vertices=xyz, faces=faces, process=False, validate=False)
    if len(mesh.faces) == 0:
        return None
    parts = trimesh.graph.connected_components(
        mesh.face_adjacency, nodes=np.arange(len(mesh.faces)), min_len=1
    )
    if len(parts) > 1:  # keep the part with the largest enclosed volume
        meshes = [mesh.submesh([part], append=True, repair=False) for part in parts]
        mesh = max(meshes, key=lambda m: abs(m.volume))
        mesh.remove_unreferenced_vertices()
    if mesh.volume < 0:  # marching cubes winds inward; a left-handed affine flips it again
        mesh.invert()
    trimesh.smoothing.filter_taubin(
        mesh, lamb=TAUBIN_LAMBDA, nu=TAUBIN_NU, iterations=TAUBIN_ITERATIONS
    )
    if not (mesh.is_watertight and mesh.is_winding_consistent):
        trimesh.repair.fill_holes(mesh)
        trimesh.repair.fix_winding(mesh)
        if not mesh.is_watertight:
            log.warning('a head surface mesh is not watertight (%d faces)', len(mesh.faces))
    return mesh


def build_meshes(labels: np.ndarray, affine: np.ndarray) -> dict:
    """Closed surface meshes (:class:`trimesh.Trimesh`, scanner coordinates in mm) of the
    :data:`SURFACES` of a head-label image on the grid of ``affine``, outermost first. A
    surface without voxels (no bone at all, say) is left out with a warning."""
    step = marching_step(affine)
    masks = surface_masks(labels)
    meshes = {}
    for surface, mask in masks.items():
        mesh = mask_mesh(mask, affine, step=step)
        if mesh is None:
            log.warning('no %s surface: the head labels have no voxels for it', surface)
            continue
        meshes[surface] = mesh
    return meshes


def gifti_surface(mesh, surface: str | None = None):
    """A GIfTI surface (``nibabel.gifti.GiftiImage``) of ``mesh``: float32 coordinates in
    scanner space (NIFTI_INTENT_POINTSET) and int32 triangles (NIFTI_INTENT_TRIANGLE)."""
    from nibabel import gifti
    from nibabel.nifti1 import xform_codes

    scanner = xform_codes.code['scanner']
    coordsys = gifti.GiftiCoordSystem(dataspace=scanner, xformspace=scanner, xform=np.eye(4))
    meta = {'GeometricType': 'Anatomical'}
    if surface:
        meta['Name'] = surface
    points = gifti.GiftiDataArray(
        np.asarray(mesh.vertices, dtype=np.float32),
        intent='NIFTI_INTENT_POINTSET',
        datatype='NIFTI_TYPE_FLOAT32',
        coordsys=coordsys,
        meta=meta,
    )
    triangles = gifti.GiftiDataArray(
        np.asarray(mesh.faces, dtype=np.int32),
        intent='NIFTI_INTENT_TRIANGLE',
        datatype='NIFTI_TYPE_INT32',
    )
    return gifti.GiftiImage(darrays=[points, triangles])


def _default_name(surface: str, ext: str) -> str:
    return f'{surface}.{ext}'


def check_mesh_dir(mesh_dir: str | os.PathLike) -> Path:
    """Fail early (OutputError) if ``mesh_dir`` cannot be created or written; nothing is
    created. Returns it as a Path."""
    folder = Path(mesh_dir)
    if folder.exists() and not folder.is_dir():
        raise OutputError(folder, 'is a file, not a folder')
    probe_in = folder
    while not probe_in.exists():
        if probe_in.parent == probe_in:
            break
        probe_in = probe_in.parent
    if not probe_in.is_dir():
        raise OutputError(folder, f'cannot create the folder: {probe_in} is a file')
    try:
        fd, probe = tempfile.mkstemp(prefix='.synthbids-probe.', dir=probe_in)
    except OSError:
        raise OutputError(folder, f'folder {probe_in} is not writable') from None
    os.close(fd)
    os.unlink(probe)
    return folder


def make_mesh_dir(mesh_dir: str | os.PathLike) -> Path:
    """Create ``mesh_dir`` (and its parents) if missing; OutputError if it cannot be."""
    folder = Path(mesh_dir)
    if folder.exists() and not folder.is_dir():
        raise OutputError(folder, 'is a file, not a folder')
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(folder, f'cannot create the folder: {err.strerror or err}') from None
    return folder


def stage_meshes(
    staged,
    labels: np.ndarray,
    affine: np.ndarray,
    mesh_dir: str | os.PathLike,
    name: Callable[[str, str], str] | None = None,
) -> list[Path]:
    """Build the meshes of a head-label image (:func:`build_meshes`) and stage, for each
    surface, a GIfTI surface and a binary STL file in ``mesh_dir`` (created if missing)
    through ``staged`` (an :class:`~synthbids.core.imageio.OutputSet`: written all or nothing
    with the other outputs). ``name(surface, ext)`` gives each file name (``ext`` one of
    :data:`MESH_EXTENSIONS`; default ``'<surface>.<ext>'``). Returns the staged paths."""
    name = name or _default_name
    meshes = build_meshes(labels, affine)
    folder = make_mesh_dir(mesh_dir)
    paths = []
    for surface, mesh in meshes.items():
        gii = folder / name(surface, 'surf.gii')
        image = gifti_surface(mesh, surface)
        staged.add_written(gii, lambda tmp, image=image: Path(tmp).write_bytes(image.to_xml()), '')
        stl = folder / name(surface, 'stl')
        staged.add_written(
            stl, lambda tmp, mesh=mesh: mesh.export(file_obj=str(tmp), file_type='stl'), ''
        )
        paths += [gii, stl]
    return paths
