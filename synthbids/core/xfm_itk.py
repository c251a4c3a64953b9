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
  direction resampling pulls values along (:func:`.xfm_steps.resample`).
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
  and does not displace points farther out (:func:`.xfm_steps.field_at`).

fMRIPrep's ``antsRegistration`` runs in single precision (``--float 1``), so
:func:`write_itk_h5` writes ``float`` transforms by default; ``precision='double'`` writes
what ``antsRegistration`` writes by default.
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

import numpy as np

from .errors import InputError
from .xfm_steps import Affine, Displacement

__all__ = [
    'Affine',
    'Displacement',
    'TransformFileError',
    'read_itk_h5',
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
