"""ITK transform files (synthbids.core.xfm_itk), checked against ITK's own reader (SimpleITK,
the code ANTs uses) and against nitransforms (what fMRIPrep uses)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from synthbids.core.xfm_itk import (
    Affine,
    Displacement,
    map_points,
    read_itk_affine_txt,
    read_itk_h5,
    write_itk_affine_txt,
    write_itk_h5,
)

sitk = pytest.importorskip('SimpleITK', reason='SimpleITK (test extra) is not installed')

LPS = np.array([-1.0, -1.0, 1.0])


def _affine(seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    m = np.eye(4)
    m[:3, :3] = q * rng.uniform(0.9, 1.1, 3) if np.linalg.det(q) > 0 else -q
    m[:3, 3] = rng.uniform(-10, 10, 3)
    return m


def _field(seed=1) -> Displacement:
    """A smooth random field on an oblique, anisotropic grid."""
    rng = np.random.default_rng(seed)
    shape = (20, 24, 18)
    coarse = rng.normal(size=(4, 5, 4, 3))
    field = np.stack(
        [
            ndimage.zoom(coarse[..., c], np.array(shape) / coarse.shape[:3], order=1)
            for c in range(3)
        ],
        -1,
    ).astype(np.float32)
    grid = np.eye(4)
    rot, _ = np.linalg.qr(np.eye(3) + 0.2 * rng.normal(size=(3, 3)))
    grid[:3, :3] = rot * np.array([2.0, 2.5, 3.0])
    grid[:3, 3] = [-20, -30, -25]
    return Displacement(3 * field, grid)


def _points(n=300, seed=2) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-40, 40, size=(n, 3))  # inside and outside


def _sitk_map(transform, points) -> np.ndarray:
    return np.array([transform.TransformPoint(tuple(p * LPS)) for p in points]) * LPS


@pytest.mark.parametrize('order', ['field-then-affine', 'affine-then-field'])
def test_itk_reads_what_we_write(tmp_path, order):
    steps = [_field(), Affine(_affine())]
    if order == 'affine-then-field':
        steps = steps[::-1]
    path = write_itk_h5(tmp_path / 'xfm.h5', steps)
    points = _points()
    ours = map_points(steps, points)
    assert np.abs(ours - points).max() > 1  # not the identity
    theirs = _sitk_map(sitk.ReadTransform(str(path)), points)
    np.testing.assert_allclose(theirs, ours, atol=1e-3)


def test_we_read_what_itk_writes(tmp_path):
    """SimpleITK's composite of an affine and a double-precision field, read back."""
    aff = sitk.AffineTransform(3)
    aff.SetMatrix([1.05, 0.1, 0, -0.05, 0.95, 0.02, 0, 0.03, 1.0])
    aff.SetTranslation([1.0, -2.0, 3.0])
    aff.SetCenter([4.0, 5.0, -6.0])
    vectors = np.random.default_rng(3).normal(size=(6, 5, 4, 3))
    image = sitk.GetImageFromArray(vectors, isVector=True)
    image.SetSpacing([2.0, 3.0, 2.5])
    image.SetOrigin([-4.0, -6.0, -5.0])
    disp = sitk.DisplacementFieldTransform(image)
    path = tmp_path / 'sitk.h5'
    sitk.WriteTransform(sitk.CompositeTransform([aff, disp]), str(path))
    steps = read_itk_h5(path)
    assert [type(s) for s in steps] == [Displacement, Affine]  # the field is applied first
    points = np.random.default_rng(4).uniform(-8, 8, size=(100, 3))
    expected = _sitk_map(sitk.ReadTransform(str(path)), points)
    np.testing.assert_allclose(map_points(steps, points), expected, atol=1e-4)


def test_round_trip(tmp_path):
    steps = [_field(), Affine(_affine())]
    back = read_itk_h5(write_itk_h5(tmp_path / 'x.h5', steps))
    np.testing.assert_allclose(back[0].field, steps[0].field, atol=1e-6)
    np.testing.assert_allclose(back[0].affine, steps[0].affine, atol=1e-9)
    np.testing.assert_allclose(back[1].matrix, steps[1].matrix, atol=1e-12)


def test_text_affine(tmp_path):
    matrix = _affine(5)
    path = write_itk_affine_txt(tmp_path / 'a.txt', matrix)
    assert path.read_text().startswith('#Insight Transform File V1.0')
    np.testing.assert_allclose(read_itk_affine_txt(path), matrix, atol=1e-12)
    points = _points()
    np.testing.assert_allclose(
        _sitk_map(sitk.ReadTransform(str(path)), points),
        map_points([Affine(matrix)], points),
        atol=1e-6,
    )


def test_resampling_with_itk_matches_ours(tmp_path):
    """sitk.Resample pulls values through the file as ANTs' antsApplyTransforms does: the
    output voxel at p shows the input at steps(p)."""
    steps = [_field(), Affine(_affine(6))]
    path = write_itk_h5(tmp_path / 'xfm.h5', steps)
    rng = np.random.default_rng(7)
    data = ndimage.gaussian_filter(rng.normal(size=(40, 44, 36)), 3).astype(np.float32)
    moving = sitk.GetImageFromArray(np.transpose(data, (2, 1, 0)))
    moving.SetOrigin((40.0, 44.0, -36.0))  # LPS origin of a RAS grid with -2/-2/2 mm axes
    moving.SetSpacing((2.0, 2.0, 2.0))
    moving.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))
    reference = sitk.Image([20, 22, 18], sitk.sitkFloat32)
    reference.SetOrigin((20.0, 22.0, -18.0))
    reference.SetSpacing((2.0, 2.0, 2.0))
    reference.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))
    out = sitk.Resample(moving, reference, sitk.ReadTransform(str(path)), sitk.sitkLinear, 0.0)
    theirs = np.transpose(sitk.GetArrayFromImage(out), (2, 1, 0))
    # ours: reference voxel -> RAS point -> steps -> moving voxel, trilinear
    ref_ras = np.diag([2.0, 2.0, 2.0, 1.0])
    ref_ras[:3, 3] = [-20, -22, -18]
    mov_ras = np.diag([2.0, 2.0, 2.0, 1.0])
    mov_ras[:3, 3] = [-40, -44, -36]
    ijk = np.argwhere(np.ones(theirs.shape, bool))
    p = map_points(steps, ijk @ ref_ras[:3, :3].T + ref_ras[:3, 3])
    vox = (p - mov_ras[:3, 3]) / 2.0
    ours = ndimage.map_coordinates(data, vox.T, order=1, cval=0.0).reshape(theirs.shape)
    inside = (vox > 1).all(1) & (vox < np.array(data.shape) - 2).all(1)
    inside = inside.reshape(theirs.shape)
    assert inside.mean() > 0.3
    np.testing.assert_allclose(theirs[inside], ours[inside], atol=1e-3)


def test_nitransforms_reads_our_files(tmp_path):
    """fMRIPrep's reader: nitransforms loads the composite as a chain of two transforms and
    maps points the way ITK does (template points to image points)."""
    nt = pytest.importorskip('nitransforms', reason='nitransforms (test extra) is not installed')
    from nitransforms.io.itk import ITKCompositeH5

    steps = [_field(), Affine(_affine(8))]
    path = write_itk_h5(tmp_path / 'xfm.h5', steps)
    xfms = ITKCompositeH5.from_filename(str(path))
    assert len(xfms) == 2
    chain = nt.manip.load(str(path), fmt='itk')
    points = np.random.default_rng(9).uniform(-15, 15, size=(50, 3))
    mapped = np.asarray(chain.map(points))
    np.testing.assert_allclose(mapped, map_points(steps, points), atol=1e-2)


def test_bad_files_are_named_in_one_line(tmp_path):
    bad = tmp_path / 'bad.h5'
    bad.write_text('not hdf5')
    with pytest.raises(ValueError, match='bad.h5: not an ITK HDF5 transform file') as err:
        read_itk_h5(bad)
    assert '\n' not in str(err.value)
    txt = tmp_path / 'bad.txt'
    txt.write_text('#Insight Transform File V1.0\nTransform: BSplineTransform_double_3_3\n')
    with pytest.raises(ValueError, match='bad.txt: not an ITK affine'):
        read_itk_affine_txt(txt)


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(TypeError):
        write_itk_h5(tmp_path / 'x.h5', [Affine(np.eye(4)), 'not a step'])
    assert list(tmp_path.iterdir()) == []
