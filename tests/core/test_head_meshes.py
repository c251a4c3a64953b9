"""Head surface meshes (``synthbids.core.head_meshes``): closed, outward, nested, in the
image's world coordinates, written as GIfTI and STL all or nothing."""

from __future__ import annotations

import logging

import nibabel as nib
import numpy as np
import pytest
import trimesh
from trimesh.ray.ray_util import contains_points

from synthbids.core import head_meshes as H
from synthbids.core.errors import OutputError
from synthbids.core.imageio import OutputSet
from tests.conftest import listdir_all

#: Nearly axis-aligned rays for inside/outside tests: trimesh's default oblique direction
#: makes every ray's bounding box span the whole mesh (gigabytes for a head).
RAY = [1.0, 1.1e-3, 1.7e-3]


def inside(outer: trimesh.Trimesh, points: np.ndarray) -> np.ndarray:
    return contains_points(outer.ray, np.asarray(points), check_direction=RAY)


def oblique_flipped_affine(zooms=(1.2, 1.0, 1.1)) -> np.ndarray:
    """Voxel to world: rotated about two axes, x flipped (negative determinant), off origin."""
    a, b = np.deg2rad(20), np.deg2rad(-12)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    aff = np.eye(4)
    aff[:3, :3] = rz @ rx @ np.diag([-zooms[0], zooms[1], zooms[2]])
    aff[:3, 3] = [31.5, -40.2, 17.7]
    assert np.linalg.det(aff) < 0
    return aff


def ellipsoid_radius(shape, radii) -> np.ndarray:
    grid = np.indices(shape).astype(float)
    center = (np.array(shape) - 1)[:, None, None, None] / 2
    return np.sqrt((((grid - center) / np.array(radii)[:, None, None, None]) ** 2).sum(0))


def layered_head(shape=(50, 58, 46)) -> np.ndarray:
    """Concentric ellipsoids: brain with a ventricle, CSF, bone, skin with an eye, other soft
    tissue, and a speck of skin away from the head."""
    r = ellipsoid_radius(shape, (np.array(shape) - 4) / 2)
    labels = np.zeros(shape, np.int32)
    labels[r < 1.0] = 4
    labels[(r < 0.92) & (r >= 0.84)] = 6
    labels[r < 0.84] = 3
    labels[r < 0.70] = 2
    labels[r < 0.60] = 1
    labels[r < 0.15] = 2  # a ventricle: inside the brain surface
    labels[shape[0] // 2 - 2 : shape[0] // 2 + 2, -6:-3, shape[2] // 2 : shape[2] // 2 + 3] = 5
    labels[1, 1, 1] = 4  # a speck: not part of the scalp
    return labels


def touching_head(shape=(44, 40, 42)) -> np.ndarray:
    """Brain directly against bone, bone the outermost: the masks are as close as can be."""
    r = ellipsoid_radius(shape, (np.array(shape) - 4) / 2)
    labels = np.zeros(shape, np.int32)
    labels[r < 1.0] = 3
    labels[r < 0.8] = 1
    return labels


def voxel_world(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    ijk = np.argwhere(mask).astype(float)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def check_closed(mesh: trimesh.Trimesh) -> None:
    assert mesh.is_watertight
    assert mesh.is_winding_consistent
    assert mesh.volume > 0  # outward normals
    assert len(mesh.split(only_watertight=False)) == 1


def check_nested(meshes: dict, sample: int | None = None) -> None:
    names = list(meshes)
    rng = np.random.default_rng(0)
    for outer, inner in zip(names, names[1:]):
        points = meshes[inner].vertices
        if sample and len(points) > sample:
            points = points[rng.choice(len(points), sample, replace=False)]
        ok = inside(meshes[outer], points)
        assert ok.all(), f'{(~ok).sum()} {inner} vertices outside the {outer} surface'
        # and apart: no vertex of an inner surface touches the outer one
        _, distance, _ = trimesh.proximity.closest_point(meshes[outer], points[:2000])
        assert distance.min() > 0.05, (inner, outer, distance.min())


# --------------------------------------------------------------------------- masks


def test_masks_are_solid_nested_and_single():
    labels = layered_head()
    masks = H.surface_masks(labels)
    assert list(masks) == list(H.SURFACES)
    center = tuple(s // 2 for s in labels.shape)
    assert labels[center] == 2 and masks['brain'][center]  # ventricle filled in
    assert not masks['scalp'][1, 1, 1]  # the speck is dropped
    assert masks['scalp'][labels == 5].all()  # eyes are inside the scalp
    from scipy import ndimage

    cross = ndimage.generate_binary_structure(3, 1)
    for outer, inner in zip(H.SURFACES, H.SURFACES[1:]):
        eroded = ndimage.binary_erosion(masks[outer], cross, border_value=0)
        assert masks[inner].any()
        assert not (masks[inner] & ~eroded).any(), f'{inner} touches {outer}'
    for surface, mask in masks.items():
        assert ndimage.label(mask, cross)[1] == 1, surface
        assert (ndimage.binary_fill_holes(mask) == mask).all(), surface
    # where the classes allow, the masks are the classes themselves
    assert masks['innerskull'].sum() == pytest.approx(np.isin(labels, (1, 2)).sum(), rel=0.02)


def test_masks_stay_inside_where_the_head_touches_the_image_edge():
    labels = layered_head()[:, :, 10:]  # the head cut by the field of view
    masks = H.surface_masks(labels)
    assert masks['scalp'][:, :, 0].any()
    for inner in H.SURFACES[1:]:
        assert not masks[inner][:, :, 0].any()
    assert H.surface_masks(np.zeros((8, 8, 8), np.int32))['scalp'].sum() == 0


def test_marching_step_follows_the_voxel_size():
    assert H.marching_step(np.diag([1.0, 1.0, 1.0, 1])) == 2
    assert H.marching_step(np.diag([0.5, 0.6, 0.5, 1])) == 4
    assert H.marching_step(np.diag([1.2, 1.2, 3.0, 1])) == 1
    assert H.marching_step(np.diag([-3.0, 3.0, 3.0, 1])) == 1


# --------------------------------------------------------------------------- meshes


@pytest.fixture(scope='module')
def synthetic():
    labels, affine = layered_head(), oblique_flipped_affine()
    return labels, affine, H.build_meshes(labels, affine)


def test_synthetic_meshes_are_closed_outward_and_nested(synthetic):
    _, _, meshes = synthetic
    assert list(meshes) == list(H.SURFACES)
    for mesh in meshes.values():
        check_closed(mesh)
    check_nested(meshes)


def test_synthetic_meshes_are_in_world_coordinates(synthetic):
    labels, affine, meshes = synthetic
    masks = H.surface_masks(labels)
    zooms = np.linalg.norm(affine[:3, :3], axis=0)
    voxel_ml = abs(np.linalg.det(affine[:3, :3])) / 1000
    for surface, mesh in meshes.items():
        world = voxel_world(masks[surface], affine)
        # the surface runs half a voxel outside the outermost voxel centres
        np.testing.assert_allclose(mesh.bounds[0], world.min(0), atol=2 * zooms.max())
        np.testing.assert_allclose(mesh.bounds[1], world.max(0), atol=2 * zooms.max())
        assert mesh.volume / 1000 == pytest.approx(masks[surface].sum() * voxel_ml, rel=0.05)
    # the mesh is where the head is, not mirrored: its centre maps to the image centre
    centre = affine[:3, :3] @ ((np.array(labels.shape) - 1) / 2) + affine[:3, 3]
    np.testing.assert_allclose(meshes['brain'].center_mass, centre, atol=1.0)


@pytest.mark.parametrize('zoom', [1.0, 1.5])
def test_sphere_volume_matches_its_voxels(zoom):
    shape = (48, 48, 48)
    radius_mm = 20.0
    affine = np.diag([zoom, zoom, zoom, 1.0])
    affine[:3, 3] = [-10, 5, 3]
    r = ellipsoid_radius(shape, [radius_mm / zoom] * 3)
    labels = np.where(r < 1, 1, 0).astype(np.int32)
    mask = H.surface_masks(labels)['scalp']
    mesh = H.build_meshes(labels, affine)['scalp']
    check_closed(mesh)
    voxels_mm3 = mask.sum() * zoom**3
    assert mesh.volume == pytest.approx(voxels_mm3, rel=0.03)
    assert mesh.volume == pytest.approx(4 / 3 * np.pi * radius_mm**3, rel=0.05)
    centre = affine[:3, :3] @ ((np.array(shape) - 1) / 2) + affine[:3, 3]
    np.testing.assert_allclose(mesh.center_mass, centre, atol=0.2)
    # a sphere of 20 mm: every vertex about 20 mm from the centre
    dist = np.linalg.norm(mesh.vertices - centre, axis=1)
    assert np.abs(dist - radius_mm).max() < 1.5 * zoom


def test_parts_joined_by_a_thread_give_the_largest_part():
    grid = np.indices((40, 30, 30)).astype(float)
    small = ((grid - np.array([10, 15, 15])[:, None, None, None]) ** 2).sum(0) < 36
    large = ((grid - np.array([29, 15, 15])[:, None, None, None]) ** 2).sum(0) < 64
    mask = small | large
    mask[10:30, 15, 15] = True  # one voxel wide: smoothed away
    mesh = H.mask_mesh(mask, np.eye(4), step=1)
    check_closed(mesh)
    np.testing.assert_allclose(mesh.center_mass, [29, 15, 15], atol=0.2)
    assert mesh.volume == pytest.approx(large.sum(), rel=0.05)


def test_touching_tissues_give_surfaces_that_do_not_touch():
    labels, affine = touching_head(), oblique_flipped_affine((1.0, 1.0, 1.0))
    meshes = H.build_meshes(labels, affine)
    assert list(meshes) == list(H.SURFACES)
    for mesh in meshes.values():
        check_closed(mesh)
    check_nested(meshes)


def test_head_cut_by_the_field_of_view_is_closed_and_nested():
    labels = layered_head()[:, :, 8:]
    meshes = H.build_meshes(labels, oblique_flipped_affine())
    for mesh in meshes.values():
        check_closed(mesh)
    check_nested(meshes)


def test_missing_surfaces_are_skipped_with_a_warning(caplog):
    labels = layered_head()
    labels[np.isin(labels, (1, 2, 3))] = 6  # no brain, CSF or bone: only a scalp
    with caplog.at_level(logging.WARNING, logger='synthbids'):
        meshes = H.build_meshes(labels, np.eye(4))
    assert list(meshes) == ['scalp']
    check_closed(meshes['scalp'])
    for surface in ('outerskull', 'innerskull', 'brain'):
        assert f'no {surface} surface' in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger='synthbids'):
        assert H.build_meshes(np.zeros((10, 10, 10), np.int32), np.eye(4)) == {}
    assert 'no scalp surface' in caplog.text


# --------------------------------------------------------------------------- files


def test_stage_meshes_writes_gifti_and_stl(synthetic, tmp_path):
    labels, affine, meshes = synthetic
    folder = tmp_path / 'new' / 'meshes'  # created
    with OutputSet() as staged:
        paths = H.stage_meshes(staged, labels, affine, folder)
    expected = sorted(f'{s}.{e}' for s in H.SURFACES for e in H.MESH_EXTENSIONS)
    assert sorted(p.name for p in paths) == expected
    assert listdir_all(folder) == expected  # no temporary files left
    for surface, mesh in meshes.items():
        gii = nib.load(folder / f'{surface}.surf.gii')
        points = gii.get_arrays_from_intent('NIFTI_INTENT_POINTSET')[0]
        triangles = gii.get_arrays_from_intent('NIFTI_INTENT_TRIANGLE')[0]
        assert points.data.dtype == np.float32 and triangles.data.dtype == np.int32
        scanner = nib.nifti1.xform_codes.code['scanner']
        assert points.coordsys.dataspace == scanner and points.coordsys.xformspace == scanner
        np.testing.assert_array_equal(points.data, mesh.vertices.astype(np.float32))
        np.testing.assert_array_equal(triangles.data, mesh.faces)
        stl = trimesh.load(folder / f'{surface}.stl', file_type='stl')
        assert stl.is_watertight and stl.volume > 0
        assert stl.volume == pytest.approx(mesh.volume, rel=1e-4)
        with open(folder / f'{surface}.stl', 'rb') as fh:
            assert not fh.read(5).startswith(b'solid')  # binary STL


def test_stage_meshes_names_and_all_or_nothing(tmp_path):
    labels = touching_head()

    def name(surface, ext):
        return f'sub-01_desc-{surface}_mask.{ext}'

    with OutputSet() as staged:
        H.stage_meshes(staged, labels, np.eye(4), tmp_path / 'a', name=name)
    assert 'sub-01_desc-scalp_mask.surf.gii' in listdir_all(tmp_path / 'a')
    assert len(listdir_all(tmp_path / 'a')) == 8

    class Boom(Exception):
        pass

    def fail_after_staging():
        with OutputSet() as staged:
            H.stage_meshes(staged, labels, np.eye(4), tmp_path / 'b')
            raise Boom

    with pytest.raises(Boom):
        fail_after_staging()
    assert listdir_all(tmp_path / 'b') == []


def test_mesh_dir_that_cannot_be_made_is_one_clear_error(tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    with pytest.raises(OutputError, match='is a file, not a folder'), OutputSet() as staged:
        H.stage_meshes(staged, touching_head(), np.eye(4), blocker)
    with pytest.raises(OutputError, match='cannot create the folder'), OutputSet() as staged:
        H.stage_meshes(staged, touching_head(), np.eye(4), blocker / 'sub')
    with pytest.raises(OutputError, match='is a file'):
        H.check_mesh_dir(blocker / 'sub' / 'deeper')
    assert H.check_mesh_dir(tmp_path / 'x' / 'y') == tmp_path / 'x' / 'y'
    assert not (tmp_path / 'x').exists()  # checking creates nothing
    assert listdir_all(tmp_path) == ['file']


# --------------------------------------------------------------------------- a real head


@pytest.fixture(scope='module')
def colin_labels(ch2):
    from synthbids.core.head import head, load_head_model

    result = head(ch2, load_head_model(warn=False))
    return result.labels, result.affine


def test_meshes_of_a_real_head(colin_labels):
    labels, affine = colin_labels
    meshes = H.build_meshes(labels, affine)
    assert list(meshes) == list(H.SURFACES)  # the preliminary weights find every tissue
    masks = H.surface_masks(labels)
    for surface, mesh in meshes.items():
        check_closed(mesh)
        assert len(mesh.faces) < 300_000, surface
        world = voxel_world(masks[surface], affine)
        np.testing.assert_allclose(mesh.bounds[0], world.min(0), atol=2.0)
        np.testing.assert_allclose(mesh.bounds[1], world.max(0), atol=2.0)
        assert mesh.volume / 1000 == pytest.approx(masks[surface].sum() / 1000, rel=0.03)
    check_nested(meshes, sample=5000)
