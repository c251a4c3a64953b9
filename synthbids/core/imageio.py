"""Reading and writing NIfTI/MGZ volumes safely.

Reading validates everything a user can get wrong (extension, truncation, dimensionality,
non-finite values) and raises :class:`~synthbids.core.errors.InputError` with one line naming
the file and the problem. Writing goes through :class:`OutputSet`: every file of one result is
first written to a hidden temporary name beside its destination and renamed into place only
when all of them were written, so a failure never leaves half-written outputs behind.
Output headers keep the input's geometry exactly (pixdim, qform and sform), so outputs overlay
their input in every viewer and pass ITK's orthonormality checks.
"""

from __future__ import annotations

import logging
import os
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from .atomic import Staged
from .errors import InputError, OutputError

log = logging.getLogger(__name__)

EXTENSIONS = ('.nii.gz', '.nii', '.mgz', '.mgh')


def split_ext(path: str | os.PathLike) -> tuple[str, str]:
    """Split ``path`` into (path without extension, extension) for the supported formats;
    the extension is ``''`` when it is not one of them."""
    text = os.fspath(path)
    low = text.lower()
    for ext in EXTENSIONS:
        if low.endswith(ext):
            return text[: -len(ext)], text[-len(ext) :]
    return text, ''


@dataclass
class Volume:
    """An image as read from disk.

    ``data`` keeps the on-disk dtype unless the file has intensity scaling (then float).
    ``zooms`` are the header voxel sizes (NIfTI pixdim, MGH delta) as stored (float32
    precision); ``affine`` is nibabel's best voxel-to-world matrix (sform before qform).
    """

    path: Path
    data: np.ndarray
    affine: np.ndarray
    zooms: np.ndarray
    header: object = field(repr=False)
    image_class: type = field(repr=False)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def nframes(self) -> int:
        return 1 if self.data.ndim == 3 else self.data.shape[3]

    def frame(self, index: int) -> np.ndarray:
        return self.data if self.data.ndim == 3 else self.data[..., index]


def check_extension(path: str | os.PathLike) -> str:
    """Return the file's extension, or raise InputError for an unsupported one."""
    _, ext = split_ext(path)
    if not ext:
        suffix = Path(path).suffix or '(none)'
        raise InputError(
            path, f'unsupported file type {suffix!r}: expected .nii, .nii.gz, .mgz or .mgh'
        )
    return ext


def load_volume(
    path: str | os.PathLike, max_dims: int = 4, fdata: bool = False, warn_xforms: bool = True
) -> Volume:
    """Read and validate an image: 3-D, or 4-D (frames) when ``max_dims`` is 4.

    Trailing singleton dimensions beyond the third are dropped. Raises InputError for a
    missing, unreadable, truncated or corrupt file, a 2-D image, too many dimensions, and
    NaN or infinite voxels. With ``fdata`` the voxels are read as nibabel's ``get_fdata()``
    (float64, intensity scaling applied in float64), as SynthSeg reads its inputs. With
    ``warn_xforms`` a NIfTI header whose qform and sform disagree is reported (once, with the
    file name; outputs get the sform in both).
    """
    path = Path(path)
    check_extension(path)
    if not path.exists():
        raise InputError(path, 'no such file')
    if path.is_dir():
        raise InputError(path, 'is a directory, not an image file')
    if not os.access(path, os.R_OK):
        raise InputError(path, 'permission denied')
    try:
        img = nib.load(path)
        _check_voxel_type(path, img.get_data_dtype())
        data = img.get_fdata() if fdata else np.asanyarray(img.dataobj)
    except InputError:
        raise
    except (EOFError, zlib.error) as err:
        raise InputError(path, f'file is truncated or corrupt ({err})') from None
    except MemoryError:
        raise InputError(path, 'not enough memory to read the image') from None
    except Exception as err:  # nibabel raises many types for malformed files
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(path, f'cannot read image: {detail}') from None
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image | nib.MGHImage):
        raise InputError(path, f'unsupported image format ({type(img).__name__})')

    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    spatial = data.shape[:3]
    if data.ndim < 3 or min(spatial) < 2:
        raise InputError(
            path, f'image is 2-D (shape {_fmt_shape(img.shape)}); a 3-D volume is required'
        )
    if data.ndim > max_dims:
        what = '3-D volume' if max_dims == 3 else '3-D volume or a 4-D series of volumes'
        raise InputError(
            path,
            f'image has {data.ndim} dimensions (shape {_fmt_shape(data.shape)}); '
            f'expected a {what}',
        )
    _check_voxel_type(path, data.dtype)
    if data.dtype.kind == 'f':
        bad = np.count_nonzero(~np.isfinite(data))
        if bad:
            raise InputError(path, f'image contains {bad} NaN or infinite voxel(s)')
    zooms = np.asarray(img.header.get_zooms()[:3], dtype=np.float32).astype(np.float64)
    if not np.all(zooms > 0) or not np.all(np.isfinite(img.affine)):
        raise InputError(path, 'invalid voxel sizes or affine in the header')
    if warn_xforms and _xforms_disagree(img):
        log.warning(
            '%s: qform and sform disagree; outputs get the sform in both (the orientation '
            'nibabel and FreeSurfer use)',
            path,
        )
    return Volume(
        path=path,
        data=data,
        affine=np.asarray(img.affine, dtype=np.float64),
        zooms=zooms,
        header=img.header,
        image_class=type(img),
    )


def _check_voxel_type(path: Path, dtype: np.dtype) -> None:
    """InputError for voxels that are not one number each (RGB colour, complex)."""
    dtype = np.dtype(dtype)
    if dtype.fields is not None:
        names = ''.join(dtype.names or ())
        what = f'{names} colour' if names in ('RGB', 'RGBA') else f'structured ({dtype})'
        raise InputError(path, f'unsupported voxel type: {what}; a grey-scale image is required')
    if dtype.kind == 'c':
        raise InputError(
            path, f'unsupported voxel type: complex ({dtype}); a magnitude image is required'
        )


def _xforms_disagree(img) -> bool:
    hdr = img.header
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        return False
    if int(hdr['qform_code']) <= 0 or int(hdr['sform_code']) <= 0:
        return False
    return not np.allclose(hdr.get_qform(), hdr.get_sform(), atol=1e-4)


#: The smallest image the networks are given: at least this many voxels along every axis
#: (SynthSeg takes a third axis of 3 or fewer voxels for colour channels, as FreeSurfer does)...
MIN_VOXELS = 4
#: ... and this field of view (mm) along every axis: one voxel at the coarsest level of the
#: SynthSeg U-Net (its 1 mm grid halved four times; SynthStrip's is coarser still). No head
#: fits in less: the networks would see only padding.
MIN_FIELD_OF_VIEW_MM = 16.0


def require_head_size(volume: Volume) -> None:
    """Raise InputError if the image is too small (voxels or mm) to hold a head."""
    shape = np.asarray(volume.shape[:3])
    fov = shape * np.asarray(volume.zooms[:3], dtype=np.float64)
    if shape.min() < MIN_VOXELS or fov.min() < MIN_FIELD_OF_VIEW_MM:
        mm = 'x'.join(f'{v:g}' for v in np.round(fov, 1))
        raise InputError(
            volume.path,
            f'image is too small to hold a head ({_fmt_shape(shape)} voxels, {mm} mm); at '
            f'least {MIN_VOXELS} voxels and {MIN_FIELD_OF_VIEW_MM:g} mm along every axis are '
            'needed',
        )


def check_image(path: str | os.PathLike, max_dims: int = 4) -> tuple[int, ...]:
    """Everything that would make an input fail in the tools, checked up front: readable,
    3-D (or 4-D), finite, not empty or constant, large enough for a head (InputError, one line
    naming the file). Returns the image's shape; the voxels are read once and dropped."""
    volume = load_volume(path, max_dims=max_dims)
    require_signal(volume)
    require_head_size(volume)
    return volume.shape


def require_signal(volume: Volume) -> None:
    """Raise InputError if the image (or one of its frames) is empty or constant."""
    for f in range(volume.nframes):
        frame = volume.frame(f)
        lo, hi = frame.min(), frame.max()
        where = '' if volume.nframes == 1 else f'frame {f} of the '
        if hi == lo == 0:
            raise InputError(volume.path, f'{where}image is empty (all voxels are zero)')
        if hi == lo:
            raise InputError(volume.path, f'{where}image is constant (all voxels equal {lo})')


def _fmt_shape(shape) -> str:
    return 'x'.join(str(s) for s in shape)


# --------------------------------------------------------------------------- writing

_MGH_DTYPES = (np.uint8, np.int16, np.int32, np.float32)


def image_like(data: np.ndarray, reference: Volume, path: str | os.PathLike):
    """A nibabel image of ``data`` on the reference grid, in the format ``path`` asks for.

    Same format as the reference: its header is copied, so pixdim, units, qform and sform
    stay exactly as they were (if qform and sform disagree, both are set to the affine that
    nibabel and FreeSurfer use). Other format: a fresh header with the reference affine.
    """
    _, ext = split_ext(path)
    to_mgh = ext in ('.mgz', '.mgh')
    if to_mgh:
        data = _mgh_compatible(data)
        header = reference.header.copy() if reference.image_class is nib.MGHImage else None
        if header is not None:
            header.set_data_dtype(data.dtype)
        return nib.MGHImage(data, reference.affine, header=header)

    if reference.image_class in (nib.Nifti1Image, nib.Nifti2Image):
        header = reference.header.copy()
        header.set_data_dtype(data.dtype)
        header.set_slope_inter(None, None)
        img = reference.image_class(data, reference.affine, header=header)
        _make_xforms_consistent(img)
        return img
    img = nib.Nifti1Image(data, reference.affine)
    img.header.set_xyzt_units('mm', 'sec')
    img.set_qform(reference.affine, code=1)
    img.set_sform(reference.affine, code=1)
    return img


def image_on_grid(data: np.ndarray, reference: Volume, affine: np.ndarray, path):
    """Like :func:`image_like`, on another grid (``affine``, the shape of ``data``): the
    reference header is kept for everything but the geometry, and qform, sform and pixdim
    are all set from ``affine`` (codes kept; 1 where the reference had none), so they never
    disagree. Used for outputs on SynthSeg's 1 mm grid."""
    affine = np.asarray(affine, dtype=np.float64)
    if np.array_equal(affine, reference.affine) and data.shape[:3] == reference.shape[:3]:
        return image_like(data, reference, path)
    _, ext = split_ext(path)
    if ext in ('.mgz', '.mgh'):
        data = _mgh_compatible(data)
        header = reference.header.copy() if reference.image_class is nib.MGHImage else None
        if header is not None:
            header.set_data_dtype(data.dtype)
        return nib.MGHImage(data, affine, header=header)
    if reference.image_class in (nib.Nifti1Image, nib.Nifti2Image):
        cls, header = reference.image_class, reference.header.copy()
        qcode, scode = int(header['qform_code']), int(header['sform_code'])
        header.set_data_dtype(data.dtype)
        header.set_slope_inter(None, None)
    else:
        cls, header, qcode, scode = nib.Nifti1Image, None, 1, 1
    img = cls(data, affine, header=header)
    if header is None:
        img.header.set_xyzt_units('mm', 'sec')
    if qcode == 0 and scode == 0:
        qcode = scode = 1
    img.set_qform(affine, code=qcode)
    img.set_sform(affine, code=scode)
    return img


def _make_xforms_consistent(img) -> None:
    hdr = img.header
    qcode, scode = int(hdr['qform_code']), int(hdr['sform_code'])
    if qcode > 0 and scode > 0:
        q, s = hdr.get_qform(), hdr.get_sform()
        if not np.allclose(q, s, atol=1e-4):  # reported once, when the input was read
            zooms = hdr.get_zooms()
            img.set_qform(s, code=qcode)
            img.set_sform(s, code=scode)
            hdr.set_zooms(zooms)


def _mgh_compatible(data: np.ndarray) -> np.ndarray:
    if data.dtype == bool:
        return data.astype(np.uint8)
    if data.dtype.type in _MGH_DTYPES:
        return data
    if data.dtype.kind == 'f':
        return data.astype(np.float32)
    if data.dtype.kind in 'ui' and data.min() >= -(2**31) and data.max() < 2**31:
        return data.astype(np.int32)
    return data.astype(np.float32)


def check_output_path(path: str | os.PathLike) -> Path:
    """Fail early (before any computation) if ``path`` cannot be written.

    The folder is probed by creating and removing a hidden file in it, which also catches
    read-only file systems and folders that root cannot write either."""
    path = Path(path)
    _, ext = split_ext(path)
    if not ext:
        raise OutputError(
            path,
            f'unsupported output type {path.suffix or "(none)"!r}: '
            'use .nii, .nii.gz, .mgz or .mgh',
        )
    parent = path.parent if str(path.parent) else Path('.')
    if not parent.exists():
        raise OutputError(path, f'output folder {parent} does not exist')
    if not parent.is_dir():
        raise OutputError(path, f'{parent} is not a folder')
    if path.is_dir():
        raise OutputError(path, 'is a folder, not a file name')
    try:
        fd, probe = tempfile.mkstemp(prefix='.synthbids-probe.', dir=parent)
    except OSError:
        raise OutputError(path, f'output folder {parent} is not writable') from None
    os.close(fd)
    os.unlink(probe)
    return path


class OutputSet:
    """All-or-nothing writing of several files.

    ``add(img, path)`` writes ``img`` to a hidden temporary file in the destination folder;
    ``commit()`` renames every temporary file into place; ``discard()`` (also called when the
    ``with`` block raises) deletes them. Use as a context manager.
    """

    def __init__(self):
        self._staged: list[Staged] = []

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.discard()
        elif self._staged:
            self.commit()
        return False

    def add(self, img, path: str | os.PathLike) -> None:
        """Stage a nibabel image for ``path``."""
        _, ext = split_ext(path)
        self.add_written(path, lambda tmp: nib.save(img, tmp), ext)

    def add_written(self, path: str | os.PathLike, write, ext: str | None = None) -> None:
        """Stage any file: ``write(temporary_path)`` writes it (meshes, tables)."""
        path = Path(path)
        staged = Staged(path, path.suffix if ext is None else ext)
        self._staged.append(staged)
        try:
            write(staged.path)
        except OSError as err:
            self.discard()
            raise OutputError(path, f'cannot write: {err.strerror or err}') from None
        except BaseException:
            self.discard()
            raise

    def commit(self) -> list[Path]:
        done = []
        try:
            for staged in self._staged:
                done.append(staged.publish())
        finally:
            self.discard()  # what is left when a rename failed
        return done

    def discard(self) -> None:
        for staged in self._staged:
            staged.discard()
        self._staged = []
