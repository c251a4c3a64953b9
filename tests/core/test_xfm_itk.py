"""ITK transform files (synthbids.core.xfm_itk, .xfm_itk_txt) and our point mapping and
resampling (.xfm_steps), checked against ITK's own reader and writer (SimpleITK: the code
ANTs uses) and against nitransforms (what fMRIPrep uses)."""

from __future__ import annotations

import warnings

import h5py
import numpy as np
import pytest
from scipy import ndimage

from synthbids.core import atomic, xfm_itk
from synthbids.core import xfm_steps as X
from synthbids.core.xfm_itk import read_itk_h5, write_itk_h5
from synthbids.core.xfm_itk_txt import read_itk_affine_txt, write_itk_affine_txt
from synthbids.core.xfm_steps import Affine, Displacement, map_points, resample

sitk = pytest.importorskip('SimpleITK', reason='SimpleITK (test extra) is not installed')

LPS = np.array([-1.0, -1.0, 1.0])
FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])
ORDERS = ['field-then-affine', 'affine-then-field']


# --- fixtures: oblique anisotropic grids, smooth fields, affines ---------------------------------


def _grid(shape, spacing, seed, left_handed=False) -> np.ndarray:
    """A voxel-to-RAS affine: oblique, anisotropic, its centre near the origin."""
    rng = np.random.default_rng(seed)
    rot, _ = np.linalg.qr(np.eye(3) + 0.4 * rng.normal(size=(3, 3)))
    rot *= np.sign(np.linalg.det(rot))
    if left_handed:
        rot[:, 0] *= -1
    grid = np.eye(4)
    grid[:3, :3] = rot * np.asarray(spacing, dtype=float)
    grid[:3, 3] = -grid[:3, :3] @ (np.array(shape) - 1) / 2 + rng.uniform(-3, 3, 3)
    return grid


def _world(shape, grid) -> np.ndarray:
    ijk = np.stack(np.meshgrid(*map(np.arange, shape), indexing='ij'), -1).reshape(-1, 3)
    return ijk @ grid[:3, :3].T + grid[:3, 3]


def _smooth_field(shape=(18, 22, 16), seed=1, left_handed=True) -> Displacement:
    """Sums of sines of world coordinates (a few mm), on an oblique, anisotropic grid."""
    rng = np.random.default_rng(seed)
    grid = _grid(shape, (2.0, 2.5, 3.0), seed, left_handed)
    world = _world(shape, grid)
    u = np.zeros_like(world)
    for _ in range(4):
        k = rng.normal(size=(3, 3)) * 2 * np.pi / 60
        u += rng.uniform(0.5, 1.5, 3) * np.sin(world @ k + rng.uniform(0, 2 * np.pi, 3))
    return Displacement(u.reshape(shape + (3,)), grid)


def _affine(seed=0) -> np.ndarray:
    """Rotation, anisotropic scaling, shear and translation."""
    rng = np.random.default_rng(seed)
    rot, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    rot *= np.sign(np.linalg.det(rot))
    m = np.eye(4)
    m[:3, :3] = (
        rot
        @ np.diag(rng.uniform(0.9, 1.1, 3))
        @ (np.eye(3) + 0.05 * np.triu(rng.normal(size=(3, 3)), 1))
    )
    m[:3, 3] = rng.uniform(-8, 8, 3)
    return m


def _field_points(field: Displacement, seed=2) -> tuple[np.ndarray, np.ndarray]:
    """RAS points inside the field's grid, in its half-voxel rim and outside it (labels 0, 1,
    2), where ITK's displacement is trilinear, the edge value, and zero."""
    rng = np.random.default_rng(seed)
    size = np.array(field.field.shape[:3])
    inside = rng.uniform(0, size - 1, size=(150, 3))
    rim = rng.uniform(0, size - 1, size=(60, 3))
    outside = rng.uniform(0, size - 1, size=(90, 3))
    axes = rng.integers(0, 3, size=150)
    for points, low, high in (
        (rim, (-0.5, -0.01), (0.01, 0.49)),
        (outside, (-8, -0.51), (0.51, 8)),
    ):
        for row, axis in zip(points, axes):
            if rng.random() < 0.5:
                row[axis] = rng.uniform(*low)
            else:
                row[axis] = size[axis] - 1 + rng.uniform(*high)
    vox = np.concatenate([inside, rim, outside])
    labels = np.repeat([0, 1, 2], [len(inside), len(rim), len(outside)])
    return vox @ field.affine[:3, :3].T + field.affine[:3, 3], labels


def _steps(order: str, field: Displacement, matrix: np.ndarray) -> list:
    steps = [field, Affine(matrix)]
    return steps if order == 'field-then-affine' else steps[::-1]


def _points_for(order: str, field_points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """The points whose field step is evaluated at ``field_points``."""
    if order == 'field-then-affine':
        return field_points
    inv = np.linalg.inv(matrix)
    return field_points @ inv[:3, :3].T + inv[:3, 3]


# --- SimpleITK helpers (RAS <-> LPS done here, independently of the module) ----------------------


def _sitk_map(transform, points) -> np.ndarray:
    return np.array([transform.TransformPoint(tuple(p * LPS)) for p in points]) * LPS


def _sitk_image(data: np.ndarray, affine: np.ndarray, vector=False):
    lps = FLIP @ affine
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    axes = (2, 1, 0, 3) if vector else (2, 1, 0)
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(data, axes)), isVector=vector)
    image.SetSpacing(spacing.tolist())
    image.SetOrigin(lps[:3, 3].tolist())
    image.SetDirection((lps[:3, :3] / spacing).ravel().tolist())
    return image


def _sitk_transform(step):
    """The SimpleITK transform of one step, built from SimpleITK's own classes."""
    if isinstance(step, Affine):
        lps = FLIP @ step.matrix @ FLIP
        t = sitk.AffineTransform(3)
        t.SetMatrix(lps[:3, :3].ravel().tolist())
        t.SetTranslation(lps[:3, 3].tolist())
        return t
    vectors = step.field.astype(np.float64) * LPS
    return sitk.DisplacementFieldTransform(_sitk_image(vectors, step.affine, vector=True))


# --- 1. ITK maps points as we do -----------------------------------------------------------------


def test_itk_composites_apply_the_last_queued_transform_first():
    """The fact the writer relies on: CompositeTransform([A, B]) maps p to A(B(p))."""
    shift = sitk.TranslationTransform(3, (10.0, 0.0, 0.0))
    scale = sitk.ScaleTransform(3, (2.0, 2.0, 2.0))
    assert sitk.CompositeTransform([shift, scale]).TransformPoint((1, 1, 1)) == (12, 2, 2)
    assert sitk.CompositeTransform([scale, shift]).TransformPoint((1, 1, 1)) == (22, 2, 2)


@pytest.mark.parametrize('precision', ['float', 'double'])
@pytest.mark.parametrize('order', ORDERS)
def test_itk_maps_points_as_we_do(tmp_path, order, precision):
    field, matrix = _smooth_field(), _affine()
    steps = _steps(order, field, matrix)
    path = write_itk_h5(tmp_path / 'xfm.h5', steps, precision=precision)
    field_points, labels = _field_points(field)
    points = _points_for(order, field_points, matrix)
    ours = map_points(steps, points)
    # the points cover a displaced inside and rim, and an undisplaced outside
    moved = np.linalg.norm(ours - map_points([Affine(matrix)], points), axis=1)
    assert (moved[labels < 2] > 0.05).mean() > 0.9
    assert (moved[labels == 2] == 0).all()
    theirs = _sitk_map(sitk.ReadTransform(str(path)), points)
    np.testing.assert_allclose(theirs, ours, atol=1e-3)


def _names(f) -> list[str]:
    names = []
    f.visit(names.append)  # (visititems stops at a callback's first non-None value)
    return names


def test_our_file_is_laid_out_as_itk_writes_it(tmp_path):
    """The same composite written by SimpleITK (ITK's writer) and by us: same groups, type
    names, dataset names, types and values; our single precision is ANTs' --float 1."""
    steps = [_smooth_field(), Affine(_affine())]
    theirs = tmp_path / 'sitk.h5'
    queue = [_sitk_transform(s) for s in reversed(steps)]  # ITK's queue: last applied first
    sitk.WriteTransform(sitk.CompositeTransform(queue), str(theirs))
    ours = write_itk_h5(tmp_path / 'ours.h5', steps, precision='double')
    single = write_itk_h5(tmp_path / 'single.h5', steps)

    def layout(path):
        found = {}
        assert path.read_bytes()[8] == 2  # superblock version 2: the HDF5 1.8 format
        with h5py.File(path) as f:
            for name in _names(f):
                found[name] = f[name][()] if isinstance(f[name], h5py.Dataset) else None
            strings = {
                n: f[n].id.get_type()
                for n in found
                if n.endswith('Type') or 'Version' in n or 'OSName' in n
            }
            for name, t in strings.items():
                assert t.is_variable_str() and t.get_cset() == h5py.h5t.CSET_ASCII, name
                assert f[name].shape == (1,), name
        return found

    a, b, c = layout(theirs), layout(ours), layout(single)
    assert sorted(a) == sorted(b) == sorted(c)
    for name in a:
        if name.endswith('TransformType'):
            assert a[name][0] == b[name][0], name
            assert c[name][0] == a[name][0].replace(b'_double_', b'_float_'), name
        elif name.endswith('Parameters'):
            np.testing.assert_allclose(b[name], a[name], rtol=1e-12, atol=1e-12, err_msg=name)
            np.testing.assert_allclose(c[name], a[name], rtol=1e-6, atol=1e-6, err_msg=name)
    assert a['TransformGroup/2/TransformType'][0] == b'DisplacementFieldTransform_double_3_3'
    with h5py.File(single) as f:
        for index in '12':
            params = f[f'TransformGroup/{index}/TransformParameters']
            assert params.dtype == np.float32 and params.compression == 'gzip'
            assert f[f'TransformGroup/{index}/TransformFixedParameters'].dtype == np.float64


def test_we_read_what_itk_writes(tmp_path):
    """SimpleITK's composite of an affine with a centre and an oblique field, read back."""
    aff = sitk.AffineTransform(3)
    aff.SetMatrix([1.05, 0.1, 0, -0.05, 0.95, 0.02, 0, 0.03, 1.0])
    aff.SetTranslation([1.0, -2.0, 3.0])
    aff.SetCenter([4.0, 5.0, -6.0])
    grid = _grid((6, 5, 4), (2.0, 3.0, 2.5), seed=3, left_handed=True)
    vectors = np.random.default_rng(3).normal(size=(6, 5, 4, 3))
    disp = sitk.DisplacementFieldTransform(_sitk_image(vectors, grid, vector=True))
    path = tmp_path / 'sitk.h5'
    sitk.WriteTransform(sitk.CompositeTransform([aff, disp]), str(path))
    steps = read_itk_h5(path)
    assert [type(s) for s in steps] == [Displacement, Affine]  # the field is applied first
    np.testing.assert_allclose(steps[0].affine, grid, atol=1e-12)
    np.testing.assert_allclose(steps[0].field, vectors * LPS, atol=1e-6)
    points = np.random.default_rng(4).uniform(-10, 10, size=(200, 3))
    expected = _sitk_map(sitk.ReadTransform(str(path)), points)
    np.testing.assert_allclose(map_points(steps, points), expected, atol=1e-4)


def test_itk4_spelling_is_read(tmp_path):
    """ITK before 5.0 (old ANTs) wrote ``Tranform[Fixed]Parameters``; ITK and we read both."""
    steps = [_smooth_field(), Affine(_affine())]
    path = write_itk_h5(tmp_path / 'old.h5', steps)
    with h5py.File(path, 'r+') as f:
        for index in '12':
            group = f[f'TransformGroup/{index}']
            for name in ('Parameters', 'FixedParameters'):
                group.move(f'Transform{name}', f'Tranform{name}')
    back = read_itk_h5(path)
    points, _ = _field_points(steps[0])
    np.testing.assert_allclose(map_points(back, points), map_points(steps, points), atol=1e-4)
    np.testing.assert_allclose(
        _sitk_map(sitk.ReadTransform(str(path)), points), map_points(steps, points), atol=1e-3
    )


# --- 2. nitransforms (fMRIPrep's reader) maps points as we do ------------------------------------
#
# Direction: nitransforms keeps ITK's. ``nitransforms.manip.load(path, fmt='itk')`` reverses the
# file's queue into a TransformChain (chain[0] is applied first, as ITK applies the last queued
# transform first), its Affine is ITK's matrix converted to RAS (``LPS @ M @ LPS``, with the
# centre folded in) and its DenseFieldTransform adds the field's displacement: ``chain.map(p)``
# is where ITK's TransformPoint sends ``p``, a point of the file's fixed/reference space (the
# template of a ``from-T1w_to-<template>`` file) sent to the moving space, not the inverse.
# It interpolates the field with cubic B-splines (``map_coordinates(order=3)``, padded with
# constants) and leaves points off its grid undisplaced: it equals ITK's trilinear field at
# the grid's nodes, off them only for fields that are linear (away from the padded edges).


def _nitransforms_chain(path):
    nt = pytest.importorskip('nitransforms', reason='nitransforms (test extra) is not installed')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', UserWarning)  # 'Reference space not set'
        chain = nt.manip.load(str(path), fmt='itk')
    return chain, lambda points: _quiet(chain.map, points)


def _quiet(fn, *args):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', UserWarning)  # 'Reference space not set'
        return np.asarray(fn(*args), dtype=np.float64)


@pytest.mark.parametrize('order', ORDERS)
def test_nitransforms_maps_points_as_we_do(tmp_path, order):
    field, matrix = _smooth_field(), _affine(5)
    steps = _steps(order, field, matrix)
    path = write_itk_h5(tmp_path / 'xfm.h5', steps)
    chain, nt_map = _nitransforms_chain(path)
    from nitransforms.linear import Affine as NtAffine
    from nitransforms.nonlinear import DenseFieldTransform

    kinds = {Affine: NtAffine, Displacement: DenseFieldTransform}
    assert [type(t) for t in chain.transforms] == [kinds[type(s)] for s in steps]
    # the field evaluated at the nodes of its grid
    nodes = _world(field.field.shape[:3], field.affine)
    points = _points_for(order, nodes, matrix)
    ours = map_points(steps, points)
    assert np.abs(ours - map_points([Affine(matrix)], points)).max() > 1  # not the identity
    np.testing.assert_allclose(nt_map(points), ours, atol=1e-4)
    # and beyond its rim, where neither displaces points
    field_points, labels = _field_points(field)
    points = _points_for(order, field_points[labels == 2], matrix)
    np.testing.assert_allclose(nt_map(points), map_points(steps, points), atol=1e-4)


def test_nitransforms_interpolates_a_linear_field_as_we_do(tmp_path):
    """Between nodes: a field linear in world coordinates, 7 voxels or more from the edges."""
    rng = np.random.default_rng(6)
    shape = (28, 30, 26)
    grid = _grid(shape, (1.5, 2.0, 1.75), seed=6, left_handed=True)
    b = 0.05 * rng.normal(size=(3, 3))
    u = _world(shape, grid) @ b.T + rng.normal(size=3)
    steps = [Displacement(u.reshape(shape + (3,)), grid), Affine(_affine(6))]
    _, nt_map = _nitransforms_chain(write_itk_h5(tmp_path / 'lin.h5', steps))
    vox = rng.uniform(7, np.array(shape) - 8, size=(300, 3))
    points = vox @ grid[:3, :3].T + grid[:3, 3]
    np.testing.assert_allclose(nt_map(points), map_points(steps, points), atol=1e-3)


def test_nitransforms_reads_our_text_affine(tmp_path):
    nt = pytest.importorskip('nitransforms', reason='nitransforms (test extra) is not installed')
    matrix = _affine(7)
    path = write_itk_affine_txt(tmp_path / 'a.txt', matrix)
    ras = nt.io.itk.ITKLinearTransform.from_filename(str(path)).to_ras()
    np.testing.assert_allclose(ras, matrix, atol=1e-5)  # nitransforms parses float32


# --- 3. ITK resamples images as we do ------------------------------------------------------------


def _near(values: np.ndarray, edges) -> np.ndarray:
    """Rows with a value within 1e-3 of one of ``edges`` (rows of per-axis edges)."""
    return np.any([(np.abs(values - e) < 1e-3).any(axis=1) for e in edges], axis=0)


@pytest.mark.parametrize('order', [1, 0])
def test_itk_resamples_as_we_do(tmp_path, order):
    """sitk.Resample pulls values through the file as antsApplyTransforms does: the output at
    a reference point p is the input at steps(p). Equal everywhere, the image's edges and
    beyond included, but for points within 1e-3 voxel of a boundary of ITK's rules."""
    rng = np.random.default_rng(8)
    shape = (30, 34, 28)
    data_affine = _grid(shape, (1.5, 2.0, 2.5), seed=8)
    if order == 1:
        data = ndimage.gaussian_filter(rng.normal(size=shape), 2).astype(np.float32)
        data /= data.std()
    else:
        data = rng.integers(0, 6, size=shape).astype(np.int16)
    ref_shape = (24, 26, 22)
    ref_affine = _grid(ref_shape, (2.5, 2.0, 2.2), seed=9, left_handed=True)
    field = _smooth_field()
    steps = [field, Affine(_affine(10))]
    path = write_itk_h5(tmp_path / 'xfm.h5', steps)
    interpolator = sitk.sitkLinear if order == 1 else sitk.sitkNearestNeighbor
    out = sitk.Resample(
        _sitk_image(data, data_affine),
        _sitk_image(np.zeros(ref_shape, np.float32), ref_affine),
        sitk.ReadTransform(str(path)),
        interpolator,
        -7.0,
    )
    theirs = np.transpose(sitk.GetArrayFromImage(out), (2, 1, 0)).reshape(-1)
    ours = resample(data, data_affine, steps, ref_shape, ref_affine, order=order, cval=-7.0)
    assert ours.shape == ref_shape and ours.dtype == (np.float32 if order else np.int16)
    ours = ours.reshape(-1)
    # where ITK's rules change value: the field's and the image's half-voxel rims (and, for
    # nearest, half-way between voxels)
    world = _world(ref_shape, ref_affine)
    fvox = X._to_voxels(world, field.affine)
    dvox = X._to_voxels(map_points(steps, world), data_affine)
    size_f, size_d = np.array(field.field.shape[:3]), np.array(shape)
    ambiguous = _near(fvox, [-0.5, size_f - 0.5]) | _near(dvox, [-0.5, size_d - 0.5])
    if order == 0:
        ambiguous |= _near(dvox - np.floor(dvox), [0.5])
    assert ambiguous.mean() < 0.01
    outside = ours == -7.0
    assert 0.05 < outside.mean() < 0.6  # the image's edges lie inside the reference grid
    keep = ~ambiguous
    np.testing.assert_allclose(theirs[keep], ours[keep], atol=1e-4)


# --- 4. round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize('precision', ['float', 'double'])
@pytest.mark.parametrize('order', ORDERS)
def test_h5_round_trip(tmp_path, order, precision):
    steps = _steps(order, _smooth_field(), _affine(11))
    back = read_itk_h5(write_itk_h5(tmp_path / 'x.h5', steps, precision=precision))
    assert [type(s) for s in back] == [type(s) for s in steps]
    for ours, theirs in zip(steps, back):
        if isinstance(ours, Affine):
            tol = 1e-12 if precision == 'double' else 1e-5
            np.testing.assert_allclose(theirs.matrix, ours.matrix, rtol=0, atol=tol)
        else:
            assert theirs.field.dtype == np.float32 and theirs.field.flags.c_contiguous
            np.testing.assert_array_equal(theirs.field, ours.field)
            np.testing.assert_allclose(theirs.affine, ours.affine, rtol=0, atol=1e-12)


def test_text_affine_round_trip_and_itk(tmp_path):
    matrix = _affine(12)
    path = write_itk_affine_txt(tmp_path / 'a.txt', matrix)
    lines = path.read_text().splitlines()
    assert lines[:3] == [
        '#Insight Transform File V1.0',
        '#Transform 0',
        'Transform: AffineTransform_double_3_3',
    ]
    assert lines[4] == 'FixedParameters: 0 0 0'
    np.testing.assert_array_equal(read_itk_affine_txt(path), matrix)  # exact decimals
    points = np.random.default_rng(12).uniform(-50, 50, size=(100, 3))
    np.testing.assert_allclose(
        _sitk_map(sitk.ReadTransform(str(path)), points),
        map_points([Affine(matrix)], points),
        atol=1e-9,
    )
    # and ITK's own text file, with a centre, read by us
    aff = sitk.AffineTransform(3)
    aff.SetMatrix([0.9, 0.1, 0, -0.2, 1.1, 0.05, 0, 0.03, 1.0])
    aff.SetTranslation([1.5, -2.0, 3.0])
    aff.SetCenter([10.0, -20.0, 5.0])
    theirs = tmp_path / 'sitk.txt'
    sitk.WriteTransform(aff, str(theirs))
    np.testing.assert_allclose(
        map_points([Affine(read_itk_affine_txt(theirs))], points),
        _sitk_map(aff, points),
        atol=1e-9,
    )


# --- 5. bad files, failed writes -----------------------------------------------------------------


def test_steps_are_checked():
    with pytest.raises(ValueError, match='4x4'):
        Affine(np.eye(3))
    with pytest.raises(ValueError, match='last row'):
        Affine(np.ones((4, 4)))
    with pytest.raises(ValueError, match='X, Y, Z, 3'):
        Displacement(np.zeros((2, 2, 2)), np.eye(4))
    with pytest.raises(ValueError, match='singular'):
        Displacement(np.zeros((2, 2, 2, 3)), np.diag([1.0, 0.0, 1.0, 1.0]))


def _h5(path, build):
    with h5py.File(path, 'w') as f:
        build(f)


def _edit(dataset, value):
    def build(f):
        good = write_itk_h5(f.filename + '.good.h5', [_smooth_field((3, 4, 5)), Affine(np.eye(4))])
        with h5py.File(good) as g:
            for name in g:
                g.copy(name, f)
        del f[dataset]
        if isinstance(value, str):
            f.create_dataset(
                dataset, data=np.array([value.encode()], dtype=h5py.string_dtype('ascii'))
            )
        elif value is not None:
            f.create_dataset(dataset, data=value)

    return build


BAD_H5 = {
    'text': (lambda p: p.write_text('not hdf5'), 'not an HDF5 file'),
    'no group': (lambda p: _h5(p, lambda f: f.create_group('Other')), 'no /TransformGroup'),
    'bspline': (
        lambda p: _h5(p, _edit('TransformGroup/1/TransformType', 'BSplineTransform_double_3_3')),
        'unsupported transform type',
    ),
    '2-D': (
        lambda p: _h5(p, _edit('TransformGroup/1/TransformType', 'AffineTransform_double_2_2')),
        'not a 3-D',
    ),
    'short affine': (
        lambda p: _h5(p, _edit('TransformGroup/1/TransformParameters', np.zeros(9))),
        '9 parameters',
    ),
    'field size': (
        lambda p: _h5(p, _edit('TransformGroup/2/TransformParameters', np.zeros(10))),
        '10 values',
    ),
    'no params': (
        lambda p: _h5(p, _edit('TransformGroup/2/TransformParameters', None)),
        'no TransformParameters',
    ),
    'int params': (
        lambda p: _h5(p, _edit('TransformGroup/1/TransformParameters', np.arange(12))),
        'not a 1-D float array',
    ),
    'gap': (lambda p: _h5(p, _edit('TransformGroup/1', None)), 'not numbered'),
}


@pytest.mark.parametrize('case', list(BAD_H5))
def test_bad_h5_files_are_named_in_one_line(tmp_path, case):
    make, message = BAD_H5[case]
    path = tmp_path / 'bad.h5'
    make(path)
    with pytest.raises(ValueError, match=message) as err:
        read_itk_h5(path)
    assert str(err.value).startswith(f'{path}: ') and '\n' not in str(err.value)


def test_missing_h5_file_is_named(tmp_path):
    with pytest.raises(ValueError, match='missing.h5: not an HDF5 file'):
        read_itk_h5(tmp_path / 'missing.h5')


BAD_TXT = {
    'not itk': ('hello\n', 'not an ITK text transform file'),
    'bspline': (
        '#Insight Transform File V1.0\n#Transform 0\nTransform: BSplineTransform_double_3_3\n'
        'Parameters: 1\nFixedParameters: 0\n',
        'not a 3-D affine',
    ),
    'two': (
        '#Insight Transform File V1.0\n'
        + 2 * 'Transform: AffineTransform_double_3_3\nParameters: 1 0 0 0 1 0 0 0 1 0 0 0\n',
        '2 transforms',
    ),
    'short': (
        '#Insight Transform File V1.0\nTransform: AffineTransform_double_3_3\nParameters: 1 0 0\n',
        '3 parameters',
    ),
    'words': (
        '#Insight Transform File V1.0\nTransform: AffineTransform_double_3_3\nParameters: a b\n',
        'unreadable parameters',
    ),
    'binary': (b'\x89HDF\r\n\x1a\n\xff', 'cannot read'),
}


@pytest.mark.parametrize('case', list(BAD_TXT))
def test_bad_text_files_are_named_in_one_line(tmp_path, case):
    content, message = BAD_TXT[case]
    path = tmp_path / 'bad.txt'
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ValueError, match=message) as err:
        read_itk_affine_txt(path)
    assert str(err.value).startswith(f'{path}: ') and '\n' not in str(err.value)


def test_failed_writes_leave_nothing_behind(tmp_path, monkeypatch):
    with pytest.raises(TypeError):
        write_itk_h5(tmp_path / 'x.h5', [Affine(np.eye(4)), 'not a step'])
    with pytest.raises(ValueError):
        write_itk_h5(tmp_path / 'x.h5', [Affine(np.eye(4))], precision='half')
    with pytest.raises(ValueError):
        write_itk_affine_txt(tmp_path / 'a.txt', np.full((4, 4), np.nan))
    assert list(tmp_path.iterdir()) == []
    # a failure half-way through the HDF5 file leaves an earlier file as it was
    steps = [_smooth_field((3, 4, 5)), Affine(_affine())]
    path = write_itk_h5(tmp_path / 'x.h5', steps)
    before = path.read_bytes()
    staged = []

    def fail(*args):
        staged.extend(p.name for p in tmp_path.iterdir() if p != path)
        raise RuntimeError('disk on fire')

    monkeypatch.setattr(xfm_itk, '_field_vectors', fail)
    with pytest.raises(RuntimeError, match='disk on fire'):
        write_itk_h5(path, steps)
    assert len(staged) == 1 and atomic.is_partial(staged[0])  # cleaned up by name if killed
    assert list(tmp_path.iterdir()) == [path] and path.read_bytes() == before
