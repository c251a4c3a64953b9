"""ITK transform files, as ANTs writes them and fMRIPrep names them (``*_xfm.h5``, ``*.txt``).

Our transforms are in RAS world millimetres (nibabel's convention); ITK's are in LPS (x and y
negated). A file holds the steps applied to a point, written as an ITK composite transform:

* HDF5 (``.h5``): group ``/TransformGroup/0`` is the composite itself
  (``CompositeTransform_double_3_3``), then ``/1``, ``/2``, ... its queue, each with
  ``TransformType``, ``TransformParameters`` and ``TransformFixedParameters``. ITK applies the
  **last** transform of the queue first (checked against SimpleITK, which is ITK's own reader,
  in ``tests/core/test_xfm_itk.py``), so steps are written in reverse order.
* An affine (``AffineTransform_double_3_3``): parameters are the 3x3 matrix (row-major) and
  the translation, fixed parameters the centre (we write 0): ``p -> M p + t``.
* A displacement field (``DisplacementFieldTransform_float_3_3``, as ANTs writes them):
  parameters are the vectors, component fastest, then x, y, z voxel index; fixed parameters
  the field image's size, origin, spacing and direction (row-major), all in LPS. Outside the
  field's grid the displacement is zero (what ITK does).

nitransforms, ANTs' ``antsApplyTransforms`` and fMRIPrep read these files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    'Affine',
    'Displacement',
    'map_points',
    'read_itk_affine_txt',
    'read_itk_h5',
    'write_itk_affine_txt',
    'write_itk_h5',
]

#: RAS <-> LPS (its own inverse).
_FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])
_AFFINE_TYPES = tuple(
    f'{kind}_{precision}_3_3'
    for kind in ('AffineTransform', 'MatrixOffsetTransformBase')
    for precision in ('double', 'float')
)
_FIELD_TYPES = ('DisplacementFieldTransform_float_3_3', 'DisplacementFieldTransform_double_3_3')


@dataclass
class Affine:
    """``p -> matrix @ p`` (4x4, RAS mm)."""

    matrix: np.ndarray


@dataclass
class Displacement:
    """``p -> p + field(p)``: (X, Y, Z, 3) RAS displacements (mm) on the grid of ``affine``
    (voxel to RAS world), trilinear between voxels, zero outside."""

    field: np.ndarray
    affine: np.ndarray


def map_points(steps: list, points: np.ndarray) -> np.ndarray:
    """Where ``steps`` (applied in order) send RAS ``points`` (N, 3)."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    for step in steps:
        if isinstance(step, Affine):
            p = p @ step.matrix[:3, :3].T + step.matrix[:3, 3]
        else:
            p = p + field_at(step.field, step.affine, p)
    return p


def field_at(field: np.ndarray, affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Displacements (N, 3) at RAS ``points`` as ITK evaluates a displacement field:
    trilinear between voxel centres, the edge value within half a voxel outside them, zero
    farther out."""
    from scipy.ndimage import map_coordinates

    inv = np.linalg.inv(affine)
    vox = np.asarray(points, dtype=np.float64) @ inv[:3, :3].T + inv[:3, 3]
    size = np.array(field.shape[:3])
    inside = ((vox >= -0.5) & (vox < size - 0.5)).all(axis=1)
    out = np.zeros((len(vox), 3))
    if inside.any():
        coords = vox[inside].T
        for c in range(3):
            out[inside, c] = map_coordinates(field[..., c], coords, order=1, mode='nearest')
    return out


# --- HDF5 ------------------------------------------------------------------------------


def _affine_params(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lps = _FLIP @ np.asarray(matrix, dtype=np.float64) @ _FLIP
    return np.concatenate([lps[:3, :3].ravel(), lps[:3, 3]]), np.zeros(3)


def _field_params(step: Displacement) -> tuple[np.ndarray, np.ndarray]:
    field = np.asarray(step.field, dtype=np.float32)
    if field.ndim != 4 or field.shape[3] != 3:
        raise ValueError(f'a displacement field must be (X, Y, Z, 3), not {field.shape}')
    lps = _FLIP @ np.asarray(step.affine, dtype=np.float64)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    direction = lps[:3, :3] / spacing
    fixed = np.concatenate([field.shape[:3], lps[:3, 3], spacing, direction.ravel()])
    vectors = field * np.array([-1, -1, 1], dtype=np.float32)  # RAS -> LPS components
    params = np.ascontiguousarray(np.transpose(vectors, (2, 1, 0, 3))).ravel()
    return params, fixed.astype(np.float64)


def write_itk_h5(path: str | os.PathLike, steps: list) -> Path:
    """Write ``steps`` (applied to a point in order) as an ITK composite HDF5 file,
    atomically."""
    import h5py

    from .atomic import atomic_path

    if not steps:
        raise ValueError('no transform to write')
    path = Path(path)
    with atomic_path(path, ext='.h5') as tmp:
        # the staged file is already locked by us (core.atomic): HDF5 must not lock it again
        with h5py.File(tmp, 'w', locking=False) as f:
            _text(f, 'HDFVersion', 'HDF5 library version: ' + h5py.version.hdf5_version)
            _text(f, 'ITKVersion', '5.4.0')
            _text(f, 'OSName', 'Linux')
            _text(f, 'OSVersion', 'synthbids')
            group = f.create_group('TransformGroup')
            _text(group.create_group('0'), 'TransformType', 'CompositeTransform_double_3_3')
            for index, step in enumerate(reversed(steps), start=1):
                sub = group.create_group(str(index))
                if isinstance(step, Affine):
                    params, fixed = _affine_params(step.matrix)
                    kind, dtype = 'AffineTransform_double_3_3', np.float64
                elif isinstance(step, Displacement):
                    params, fixed = _field_params(step)
                    kind, dtype = 'DisplacementFieldTransform_float_3_3', np.float32
                else:
                    raise TypeError(f'not a transform step: {step!r}')
                _text(sub, 'TransformType', kind)
                sub.create_dataset('TransformParameters', data=params.astype(dtype))
                sub.create_dataset('TransformFixedParameters', data=fixed.astype(np.float64))
    return path


def _text(group, name: str, value: str) -> None:
    import h5py

    # variable-length ASCII strings, as ITK writes and reads them
    dtype = h5py.string_dtype(encoding='ascii')
    group.create_dataset(name, data=np.array([value.encode()], dtype=dtype))


def read_itk_h5(path: str | os.PathLike) -> list:
    """The steps (applied in order) of an ITK HDF5 transform file (composite or single)."""
    import h5py

    path = Path(path)
    try:
        with h5py.File(path, 'r') as f:
            groups = f['TransformGroup']
            items = [groups[k] for k in sorted(groups, key=int)]
            kinds = [_read_text(g['TransformType']) for g in items]
            if kinds[0].startswith('CompositeTransform'):
                items, kinds = items[1:], kinds[1:]
            queue = [_read_step(g, kind, path) for g, kind in zip(items, kinds)]
    except (OSError, KeyError, ValueError, IndexError) as err:
        if isinstance(err, ValueError) and str(err).startswith(str(path)):
            raise
        raise ValueError(f'{path}: not an ITK HDF5 transform file ({err})') from None
    if not queue:
        raise ValueError(f'{path}: the composite transform holds no transform')
    return queue[::-1]


def _read_text(dataset) -> str:
    value = dataset[()]
    value = value[0] if np.ndim(value) else value
    return value.decode() if isinstance(value, bytes) else str(value)


def _read_step(group, kind: str, path: Path):
    params = np.asarray(group['TransformParameters'][()], dtype=np.float64)
    fixed = np.asarray(group['TransformFixedParameters'][()], dtype=np.float64)
    if kind in _AFFINE_TYPES:
        if params.size != 12 or fixed.size != 3:
            raise ValueError(f'{path}: {kind} with {params.size} parameters')
        return Affine(_affine_from_itk(params, fixed))
    if kind in _FIELD_TYPES:
        if fixed.size != 18:
            raise ValueError(f'{path}: {kind} with {fixed.size} fixed parameters')
        size = fixed[:3].astype(int)
        if params.size != size.prod() * 3:
            raise ValueError(f'{path}: {kind} of size {tuple(size)} has {params.size} values')
        vectors = params.reshape(size[2], size[1], size[0], 3).transpose(2, 1, 0, 3)
        field = (vectors * np.array([-1, -1, 1])).astype(np.float32)
        lps = np.eye(4)
        lps[:3, :3] = fixed[9:18].reshape(3, 3) * fixed[6:9]
        lps[:3, 3] = fixed[3:6]
        return Displacement(field, _FLIP @ lps)
    raise ValueError(f'{path}: unsupported transform type {kind}')


def _affine_from_itk(params: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """RAS 4x4 of ITK's ``p -> M (p - c) + c + t`` (LPS)."""
    m = params[:9].reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = m
    lps[:3, 3] = params[9:12] + centre - m @ centre
    return _FLIP @ lps @ _FLIP


# --- text (one affine) -------------------------------------------------------------------


def write_itk_affine_txt(path: str | os.PathLike, matrix: np.ndarray) -> Path:
    """Write the RAS affine ``p -> matrix @ p`` as an ITK text transform, atomically."""
    from .atomic import write_text

    params, fixed = _affine_params(matrix)
    text = (
        '#Insight Transform File V1.0\n'
        '#Transform 0\n'
        'Transform: AffineTransform_double_3_3\n'
        f'Parameters: {" ".join(repr(float(v)) for v in params)}\n'
        f'FixedParameters: {" ".join(repr(float(v)) for v in fixed)}\n'
    )
    return write_text(path, text)


def read_itk_affine_txt(path: str | os.PathLike) -> np.ndarray:
    """The RAS 4x4 affine of an ITK text file holding one affine transform."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f'{path}: cannot read ({err})') from None
    fields = dict(line.split(':', 1) for line in lines if ':' in line and not line.startswith('#'))
    kind = fields.get('Transform', '').strip()
    if kind not in _AFFINE_TYPES:
        raise ValueError(f'{path}: not an ITK affine transform file ({kind or "no Transform"})')
    try:
        params = np.array(fields['Parameters'].split(), dtype=np.float64)
        fixed = np.array(fields.get('FixedParameters', '0 0 0').split(), dtype=np.float64)
    except (KeyError, ValueError) as err:
        raise ValueError(f'{path}: unreadable parameters ({err})') from None
    if params.size != 12 or fixed.size != 3:
        raise ValueError(f'{path}: {kind} with {params.size} parameters')
    return _affine_from_itk(params, fixed)
