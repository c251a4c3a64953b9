"""ITK transform files, as ANTs writes them and fMRIPrep names them (``*_xfm.h5``, ``*_xfm.txt``).

Why this module exists: our registration (:mod:`.register`) must hand its result to the
tools that read fMRIPrep's derivatives (``antsApplyTransforms``, ITK/SimpleITK,
nitransforms) in their own format, and read such files back, without depending on ITK at
run time. ITK's rules, each checked against SimpleITK (ITK's own reader and writer) in
``tests/core/test_xfm_itk.py``:

* Coordinates: our transforms are in RAS world millimetres (nibabel's convention), ITK's in
  LPS (x and y negated); a RAS affine ``M`` is ``F M F`` in LPS, ``F = diag(-1, -1, 1, 1)``.
* Order: a composite transform applies the **last** transform of its queue first
  (``CompositeTransform([A, B])`` maps ``p`` to ``A(B(p))``), so the steps, given in the
  order they are applied to a point, are written in reverse.
* Direction: a file maps points of the fixed (reference) space to the moving space, the
  direction resampling pulls values along (:func:`resample`).
* HDF5 (``.h5``): ``/TransformGroup/0`` is the composite (``CompositeTransform_float_3_3``),
  ``/1``, ``/2``, ... its queue, each with ``TransformType`` (one variable-length ASCII
  string), ``TransformFixedParameters`` (float64) and ``TransformParameters`` (float32 or
  float64 as the precision in the type names says, chunked by at most 2**20 values and
  gzip level 5 compressed, as ANTs writes them); root datasets ``ITKVersion``,
  ``HDFVersion``, ``OSName``, ``OSVersion``; HDF5 1.8 file format. ITK before 5.0 spelled the
  datasets ``TranformParameters`` and ``TranformFixedParameters``: they are read too.
* An affine (``AffineTransform_<precision>_3_3``): parameters are the 3x3 matrix (row-major)
  then the translation, fixed parameters the centre ``c``: ``p -> M (p - c) + c + t``.
* A displacement field (``DisplacementFieldTransform_<precision>_3_3``): parameters are the
  vectors (LPS), component fastest, then x, y, z voxel index; fixed parameters the field
  image's size, origin, spacing and direction (row-major), in LPS. ITK interpolates it
  trilinearly, takes the edge value within half a voxel outside the outer voxel centres,
  and does not displace points farther out (:func:`field_at`).

fMRIPrep's ``antsRegistration`` runs in single precision (``--float 1``), so
:func:`write_itk_h5` writes ``float`` transforms by default; ``precision='double'`` writes
what ``antsRegistration`` writes by default.
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError

__all__ = [
    'Affine',
    'Displacement',
    'TransformFileError',
    'field_at',
    'map_points',
    'read_itk_affine_txt',
    'read_itk_h5',
    'resample',
    'write_itk_affine_txt',
    'write_itk_h5',
]

#: RAS <-> LPS (its own inverse).
_FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])
_LPS = np.array([-1.0, -1.0, 1.0])
#: ``<kind>_<precision>_<in>_<out>``, as ITK names its transform types.
_TYPE_NAME = re.compile(r'^(?P<kind>\w+?)_(?P<precision>double|float)_(?P<dims>\d+_\d+)$')
_LINEAR = ('AffineTransform', 'MatrixOffsetTransformBase')
_FIELD = 'DisplacementFieldTransform'
_COMPOSITE = 'CompositeTransform'
_DTYPES = {'float': np.float32, 'double': np.float64}
#: ITK's chunk size for compressed parameters (values) and gzip level.
_CHUNK = 1 << 20
_GZIP_LEVEL = 5
#: The ITK release whose file layout we follow (``/ITKVersion``; ITK's reader ignores it).
_ITK_VERSION = '5.4.0'


class TransformFileError(InputError, ValueError):
    """A transform file that cannot be read: one line, naming the file."""


@dataclass(eq=False)
class Affine:
    """``p -> matrix @ p``: a 4x4 affine in RAS millimetres."""

    matrix: np.ndarray

    def __post_init__(self):
        self.matrix = _affine_matrix(self.matrix, 'an Affine step')


@dataclass(eq=False)
class Displacement:
    """``p -> p + u(p)``: ``field`` (X, Y, Z, 3) float32 RAS displacements (mm) on the voxel
    grid of ``affine`` (voxel to RAS world), trilinear between voxels, as ITK outside them
    (:func:`field_at`)."""

    field: np.ndarray
    affine: np.ndarray

    def __post_init__(self):
        self.field = np.asarray(self.field, dtype=np.float32)
        if self.field.ndim != 4 or self.field.shape[3] != 3 or 0 in self.field.shape:
            raise ValueError(f'a displacement field is (X, Y, Z, 3), not {self.field.shape}')
        self.affine = _affine_matrix(self.affine, "a displacement field's grid")
        if abs(np.linalg.det(self.affine[:3, :3])) < 1e-12:
            raise ValueError("a displacement field's grid affine is singular")


def _affine_matrix(matrix, what: str) -> np.ndarray:
    m = np.array(matrix, dtype=np.float64)
    if m.shape != (4, 4) or not np.isfinite(m).all():
        raise ValueError(f'{what} needs a finite 4x4 matrix, not shape {m.shape}')
    if not np.allclose(m[3], [0, 0, 0, 1], atol=1e-9):
        raise ValueError(f'{what} needs a last row of 0 0 0 1, not {m[3].tolist()}')
    m[3] = [0, 0, 0, 1]
    return m


# --- our reference implementation ---------------------------------------------------------


def map_points(steps: list, points: np.ndarray) -> np.ndarray:
    """Where ``steps`` (applied in order, ``steps[0]`` first) send RAS ``points`` (..., 3)."""
    p = np.array(points, dtype=np.float64)
    shape = p.shape
    p = p.reshape(-1, 3)
    for step in steps:
        if isinstance(step, Affine):
            p = p @ step.matrix[:3, :3].T + step.matrix[:3, 3]
        elif isinstance(step, Displacement):
            p = p + field_at(step.field, step.affine, p)
        else:
            raise TypeError(f'not a transform step: {step!r}')
    return p.reshape(shape)


def field_at(field: np.ndarray, affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Displacements (N, 3) at RAS ``points`` (N, 3), as ITK evaluates a displacement field:
    trilinear between voxel centres, the edge value within half a voxel outside them, zero
    farther out (ITK's ``IsInsideBuffer``: continuous index in ``[-0.5, size - 0.5)``)."""
    vox = _to_voxels(points, affine)
    out = np.zeros((len(vox), 3))
    inside = _inside(vox, field.shape[:3])
    if inside.any():
        from scipy.ndimage import map_coordinates

        coords = vox[inside].T
        for c in range(3):
            out[inside, c] = map_coordinates(field[..., c], coords, order=1, mode='nearest')
    return out


def resample(
    data: np.ndarray,
    data_affine: np.ndarray,
    steps: list,
    ref_shape,
    ref_affine: np.ndarray,
    order: int = 1,
    cval: float = 0.0,
) -> np.ndarray:
    """Pull ``data`` (X, Y, Z[, C], voxel-to-RAS ``data_affine``) onto the reference grid
    (``ref_shape``, ``ref_affine``) as ITK's resampling does: the value at a reference point
    ``p`` is ``data`` at ``steps(p)`` (the steps map reference to data world points),
    trilinear (``order=1``) or nearest (``order=0``), with ITK's rule at the edges (the edge
    value within half a voxel outside the outer voxel centres, ``cval`` farther out)."""
    from scipy.ndimage import map_coordinates

    if order not in (0, 1):
        raise ValueError(f'order is 0 (nearest) or 1 (trilinear), not {order}')
    data = np.asarray(data)
    if data.ndim not in (3, 4):
        raise ValueError(f'data is (X, Y, Z) or (X, Y, Z, C), not {data.shape}')
    ref_shape = tuple(int(s) for s in ref_shape[:3])
    ref_affine = _affine_matrix(ref_affine, 'the reference grid')
    channels = data.reshape(data.shape[:3] + (-1,))
    dtype = data.dtype if order == 0 else np.result_type(data.dtype, np.float32)
    out = np.empty(ref_shape + (channels.shape[3],), dtype=dtype)
    size = np.array(data.shape[:3])
    step = max(1, (1 << 18) // max(1, ref_shape[1] * ref_shape[2]))
    for x0 in range(0, ref_shape[0], step):
        x1 = min(ref_shape[0], x0 + step)
        axes = (np.arange(x0, x1), np.arange(ref_shape[1]), np.arange(ref_shape[2]))
        ijk = np.stack(np.meshgrid(*axes, indexing='ij'), -1).reshape(-1, 3)
        world = map_points(steps, ijk @ ref_affine[:3, :3].T + ref_affine[:3, 3])
        vox = _to_voxels(world, data_affine)
        inside = _inside(vox, size)
        values = np.full((len(vox), channels.shape[3]), cval, dtype=dtype)
        if order == 0:  # ITK rounds half-way indices up
            idx = np.clip(np.floor(vox[inside] + 0.5).astype(np.intp), 0, size - 1)
            values[inside] = channels[idx[:, 0], idx[:, 1], idx[:, 2]]
        else:
            for c in range(channels.shape[3]):
                values[inside, c] = map_coordinates(
                    channels[..., c], vox[inside].T, order=1, mode='nearest'
                )
        out[x0:x1] = values.reshape((x1 - x0,) + ref_shape[1:] + (-1,))
    return out.reshape(ref_shape + data.shape[3:])


def _to_voxels(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    inv = np.linalg.inv(np.asarray(affine, dtype=np.float64))
    return np.asarray(points, dtype=np.float64).reshape(-1, 3) @ inv[:3, :3].T + inv[:3, 3]


def _inside(vox: np.ndarray, size) -> np.ndarray:
    size = np.asarray(size)[:3]
    return ((vox >= -0.5) & (vox < size - 0.5)).all(axis=1)


# --- RAS steps <-> ITK parameters --------------------------------------------------------------


def _affine_to_itk(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ITK parameters (matrix row-major, translation) and fixed parameters (centre 0)."""
    lps = _FLIP @ matrix @ _FLIP
    return np.concatenate([lps[:3, :3].ravel(), lps[:3, 3]]), np.zeros(3)


def _affine_from_itk(params: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """The RAS 4x4 of ITK's ``p -> M (p - c) + c + t`` (LPS)."""
    m = params[:9].reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = m
    lps[:3, 3] = params[9:12] + centre - m @ centre
    return _FLIP @ lps @ _FLIP


def _field_fixed(step: Displacement) -> np.ndarray:
    """Size, origin, spacing and direction (row-major) of the field's grid, in LPS."""
    lps = _FLIP @ step.affine
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    direction = lps[:3, :3] / spacing
    return np.concatenate([step.field.shape[:3], lps[:3, 3], spacing, direction.ravel()])


def _field_vectors(step: Displacement, dtype) -> np.ndarray:
    """The vectors in LPS, component fastest, then x, y, z (one copy of the field)."""
    out = np.empty(step.field.shape[2::-1] + (3,), dtype=dtype)
    np.multiply(np.transpose(step.field, (2, 1, 0, 3)), _LPS.astype(dtype), out=out)
    return out.reshape(-1)


# --- HDF5 --------------------------------------------------------------------------------------


def write_itk_h5(path: str | os.PathLike, steps: list, precision: str = 'float') -> Path:
    """Write ``steps`` (applied to a point in order, ``steps[0]`` first) as an ITK composite
    HDF5 transform file, atomically (a temporary file beside it, renamed into place).

    ``precision`` is ``'float'`` (as fMRIPrep's ``antsRegistration --float 1`` writes) or
    ``'double'`` (``antsRegistration``'s default)."""
    import h5py

    from .atomic import atomic_path

    if precision not in _DTYPES:
        raise ValueError(f"precision is 'float' or 'double', not {precision!r}")
    steps = list(steps)
    if not steps:
        raise ValueError('no transform to write')
    for step in steps:
        if not isinstance(step, (Affine, Displacement)):
            raise TypeError(f'not a transform step: {step!r}')
    dtype = _DTYPES[precision]
    path = Path(path)
    with atomic_path(path, makedirs=True) as tmp:
        # the staged file is already locked by us (core.atomic): HDF5 must not lock it again;
        # ITK writes the HDF5 1.8 file format (libver bounds V18, V18)
        with h5py.File(tmp, 'w', libver=('v108', 'v108'), locking=False) as f:
            _write_string(f, 'ITKVersion', _ITK_VERSION)
            _write_string(f, 'HDFVersion', f'HDF5 library version: {h5py.version.hdf5_version}')
            _write_string(f, 'OSName', platform.system())
            _write_string(f, 'OSVersion', platform.release())
            group = f.create_group('TransformGroup')
            _write_string(
                group.create_group('0'), 'TransformType', f'{_COMPOSITE}_{precision}_3_3'
            )
            for index, step in enumerate(reversed(steps), start=1):
                if isinstance(step, Affine):
                    kind = _LINEAR[0]
                    params, fixed = _affine_to_itk(step.matrix)
                else:
                    kind = _FIELD
                    params, fixed = _field_vectors(step, dtype), _field_fixed(step)
                sub = group.create_group(str(index))
                _write_string(sub, 'TransformType', f'{kind}_{precision}_3_3')
                sub.create_dataset('TransformFixedParameters', data=fixed.astype(np.float64))
                sub.create_dataset(
                    'TransformParameters',
                    data=params.astype(dtype, copy=False),
                    chunks=(min(params.size, _CHUNK),),
                    compression='gzip',
                    compression_opts=_GZIP_LEVEL,
                )
    return path


def _write_string(group, name: str, value: str) -> None:
    import h5py

    # one variable-length, null-terminated ASCII string, as ITK writes (and reads) them
    dtype = h5py.string_dtype(encoding='ascii')
    group.create_dataset(name, data=np.array([value.encode('ascii')], dtype=dtype))


def read_itk_h5(path: str | os.PathLike) -> list:
    """The steps (in the order they are applied to a point) of an ITK HDF5 transform file: a
    composite of affines and displacement fields, or one of them alone, in either precision.

    Anything else raises :class:`TransformFileError` (a ``ValueError``) naming the file."""
    import h5py

    path = Path(path)
    try:
        f = h5py.File(path, 'r', locking=False)
    except OSError as err:
        raise TransformFileError(path, f'not an HDF5 file ({_one_line(err)})') from None
    try:
        with f:
            return _read_h5(path, f)
    except TransformFileError:
        raise
    except (OSError, KeyError, TypeError, ValueError, IndexError) as err:
        raise TransformFileError(path, f'unreadable ITK transform ({_one_line(err)})') from None


def _read_h5(path: Path, f) -> list:
    import h5py

    group = f.get('TransformGroup')
    if not isinstance(group, h5py.Group):
        raise TransformFileError(path, 'not an ITK transform file (no /TransformGroup)')
    names = set(group)
    if not names:
        raise TransformFileError(path, 'the file holds no transform')
    if names != {str(i) for i in range(len(names))}:
        raise TransformFileError(path, f'transform groups are not numbered 0 to {len(names) - 1}')
    items = [group[str(i)] for i in range(len(names))]
    kinds = [_transform_type(path, item) for item in items]
    if kinds[0][0] == _COMPOSITE:
        items, kinds = items[1:], kinds[1:]
        if not items:
            raise TransformFileError(path, 'the composite transform holds no transform')
    elif len(items) > 1:
        raise TransformFileError(path, f'{len(items)} transforms, but no composite transform')
    queue = [_read_step(path, item, kind) for item, kind in zip(items, kinds)]
    return queue[::-1]  # ITK applies the last queued transform first


def _transform_type(path: Path, group) -> tuple[str, str]:
    """(kind, precision) of a transform group, checked to be 3-D."""
    name = _read_string(path, group['TransformType'])
    match = _TYPE_NAME.match(name)
    if match is None:
        raise TransformFileError(path, f'unsupported transform type {name!r}')
    if match['dims'] != '3_3':
        raise TransformFileError(path, f'{name} is not a 3-D transform')
    kind = match['kind']
    if kind == _COMPOSITE and group.name != '/TransformGroup/0':
        raise TransformFileError(path, f'a composite transform in {group.name}')
    if kind not in (_COMPOSITE, _FIELD, *_LINEAR):
        raise TransformFileError(path, f'unsupported transform type {name}')
    return kind, match['precision']


def _read_string(path: Path, dataset) -> str:
    value = np.asarray(dataset[()])
    if value.size != 1 or value.dtype.kind not in 'OSU':
        raise TransformFileError(path, f'{dataset.name} is not one string')
    value = value.reshape(-1)[0]
    return value.decode('ascii') if isinstance(value, bytes) else str(value)


def _dataset(path: Path, group, name: str):
    """``Transform<name>``, or ITK 4's misspelled ``Tranform<name>``: a 1-D float dataset."""
    for prefix in ('Transform', 'Tranform'):
        if prefix + name in group:
            dataset = group[prefix + name]
            if dataset.ndim != 1 or dataset.dtype.kind != 'f':
                raise TransformFileError(
                    path, f'{dataset.name} is not a 1-D float array ({dataset.dtype})'
                )
            return dataset
    raise TransformFileError(path, f'{group.name} has no Transform{name}')


def _read_step(path: Path, group, kind: tuple[str, str]):
    fixed = _dataset(path, group, 'FixedParameters')[()].astype(np.float64)
    dataset = _dataset(path, group, 'Parameters')
    name = f'{group.name} ({kind[0]})'
    if not np.isfinite(fixed).all():
        raise TransformFileError(path, f'{name}: fixed parameters are not finite')
    if kind[0] in _LINEAR:
        params = dataset[()].astype(np.float64)
        if params.size != 12 or fixed.size != 3:
            raise TransformFileError(
                path, f'{name}: {params.size} parameters and {fixed.size} fixed, not 12 and 3'
            )
        if not np.isfinite(params).all():
            raise TransformFileError(path, f'{name}: parameters are not finite')
        return Affine(_affine_from_itk(params, fixed))
    if fixed.size != 18:
        raise TransformFileError(path, f'{name}: {fixed.size} fixed parameters, not 18')
    size, origin, spacing = fixed[:3], fixed[3:6], fixed[6:9]
    direction = fixed[9:].reshape(3, 3)
    if (size < 1).any() or (size != np.round(size)).any() or (spacing <= 0).any():
        raise TransformFileError(path, f'{name}: bad size {size} or spacing {spacing}')
    size = size.astype(int)
    if dataset.size != 3 * size.prod():
        raise TransformFileError(
            path, f'{name}: {dataset.size} values for a {tuple(size)} field of 3-vectors'
        )
    if abs(np.linalg.det(direction)) < 1e-6:
        raise TransformFileError(path, f'{name}: singular direction matrix')
    vectors = np.empty(dataset.size, dtype=np.float32)
    dataset.read_direct(vectors)
    if not np.isfinite(vectors).all():
        raise TransformFileError(path, f'{name}: displacements are not finite')
    vectors = vectors.reshape(tuple(size[::-1]) + (3,))
    vectors[..., :2] *= -1  # LPS -> RAS components
    lps = np.eye(4)
    lps[:3, :3] = direction * spacing
    lps[:3, 3] = origin
    field = np.ascontiguousarray(np.transpose(vectors, (2, 1, 0, 3)))
    return Displacement(field, _FLIP @ lps)


def _one_line(err: BaseException) -> str:
    return ' '.join(str(err).split()) or type(err).__name__


# --- text (one affine) -------------------------------------------------------------------------


def write_itk_affine_txt(path: str | os.PathLike, affine_ras: np.ndarray) -> Path:
    """Write the RAS affine ``p -> affine_ras @ p`` as an ITK text transform file
    (``AffineTransform_double_3_3``, centre 0), atomically."""
    from .atomic import write_text

    params, fixed = _affine_to_itk(Affine(affine_ras).matrix)
    text = (
        '#Insight Transform File V1.0\n'
        '#Transform 0\n'
        f'Transform: {_LINEAR[0]}_double_3_3\n'
        f'Parameters: {_numbers(params)}\n'
        f'FixedParameters: {_numbers(fixed)}\n'
    )
    return write_text(path, text)


def _numbers(values: np.ndarray) -> str:
    """Shortest round-trip decimals, without a trailing ``.0`` (as ITK prints them)."""
    words = (repr(float(v) + 0.0) for v in values)  # + 0.0: no '-0'
    return ' '.join(w[:-2] if w.endswith('.0') else w for w in words)


def read_itk_affine_txt(path: str | os.PathLike) -> np.ndarray:
    """The RAS 4x4 affine of an ITK text transform file holding one affine transform
    (alone, or as the only transform of a composite)."""
    path = Path(path)
    try:
        lines = [line.strip() for line in path.read_text(encoding='ascii').splitlines()]
    except (OSError, UnicodeDecodeError) as err:
        raise TransformFileError(path, f'cannot read ({_one_line(err)})') from None
    lines = [line for line in lines if line]
    if not lines or not lines[0].startswith('#Insight Transform File'):
        raise TransformFileError(path, 'not an ITK text transform file')
    transforms: list[dict[str, str]] = []
    for line in lines[1:]:
        if line.startswith('#'):
            continue
        key, sep, value = line.partition(':')
        if not sep:
            raise TransformFileError(path, f'unexpected line {line[:60]!r}')
        if key == 'Transform':
            transforms.append({'Transform': value.strip()})
        elif key in ('Parameters', 'FixedParameters') and transforms:
            transforms[-1][key] = value
        else:
            raise TransformFileError(path, f'unexpected line {line[:60]!r}')
    if transforms and transforms[0]['Transform'].startswith(_COMPOSITE + '_'):
        transforms = transforms[1:]
    if len(transforms) != 1:
        raise TransformFileError(path, f'{len(transforms)} transforms, not one affine transform')
    item = transforms[0]
    match = _TYPE_NAME.match(item['Transform'])
    if match is None or match['kind'] not in _LINEAR or match['dims'] != '3_3':
        raise TransformFileError(path, f'not a 3-D affine transform ({item["Transform"]})')
    try:
        params = np.array(item.get('Parameters', '').split(), dtype=np.float64)
        fixed = np.array(item.get('FixedParameters', '0 0 0').split(), dtype=np.float64)
    except ValueError as err:
        raise TransformFileError(path, f'unreadable parameters ({_one_line(err)})') from None
    if params.size != 12 or fixed.size != 3:
        raise TransformFileError(
            path, f'{params.size} parameters and {fixed.size} fixed, not 12 and 3'
        )
    if not (np.isfinite(params).all() and np.isfinite(fixed).all()):
        raise TransformFileError(path, 'parameters are not finite')
    return _affine_from_itk(params, fixed)
