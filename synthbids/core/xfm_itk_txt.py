"""ITK text transform files holding one affine (fMRIPrep's ``*_xfm.txt``).

Why a module of its own: the text format is a second, small reader and writer beside the
HDF5 one in :mod:`.xfm_itk`, sharing its RAS <-> ITK (LPS, centred) conversion.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .xfm_itk import (
    _COMPOSITE,
    _LINEAR,
    _TYPE_NAME,
    TransformFileError,
    _affine_from_itk,
    _affine_to_itk,
    _one_line,
)
from .xfm_steps import Affine

__all__ = ['read_itk_affine_txt', 'write_itk_affine_txt']


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
