"""FreeSurfer colour lookup tables embedded in label images (``synthbids-seg --addctab``).

FreeSurfer's viewers and ``mri_info`` read the colours of a segmentation from a table carried
inside its ``.mgz``/``.mgh`` file, which nibabel can neither write nor read. The MGH format
(FreeSurfer's ``mghformat`` notes; the same layout as nibabel reads): a 284-byte header, the
voxels, an optional footer of five big-endian float32 scan parameters (TR, flip angle, TE, TI,
field of view), then *tags*, each an int32 id followed by its data. The colour table is tag 1
(``TAG_OLD_COLORTABLE``), which has no length field; its data is the binary colour table,
version 2, all integers big-endian int32:

    -2 (the version, negative), number of slots (largest label + 1),
    length of the source file name (with its NUL) and that name,
    number of entries, then per entry: label, length of the name (with its NUL), the name,
    red, green, blue, and the transparency column of the text table (0 = opaque).

The table is FreeSurfer's ``$FREESURFER_HOME/FreeSurferColorLUT.txt`` when it can be found,
as ``mri_synthseg --addctab`` embeds it; otherwise the FreeSurfer names and colours that
synthbids knows for every label it can write (:mod:`.labels`).
"""

from __future__ import annotations

import gzip
import io
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from . import labels as L
from .errors import InputError, SynthbidsError
from .imageio import split_ext

LUT_NAME = 'FreeSurferColorLUT.txt'
#: FreeSurfer's tag id of an embedded colour table (written without a length field).
COLORTABLE_TAG = 1
#: MGH bytes before the voxels, bytes per voxel of each MGH type, and footer size.
HEADER_BYTES = 284
VOXEL_BYTES = {0: 1, 1: 4, 3: 4, 4: 2, 10: 2}
FOOTER_BYTES = 20
#: Tags that have no length field, whose data cannot be skipped without knowing it (only
#: the colour table is parsed; reading stops at the others).
_LENGTHLESS = {1, 2, 10, 11, 12, 15, 20}
_OLD_XFORM = 30  # its length is an int32, not an int64
#: Colour of labels that synthbids has no FreeSurfer colour for.
GREY = (128, 128, 128)


@dataclass(frozen=True)
class ColorTable:
    """``label -> (name, (red, green, blue, transparency))``, and where it comes from."""

    entries: Mapping[int, tuple[str, tuple[int, int, int, int]]]
    source: str = ''

    def name(self, label: int) -> str:
        return self.entries[label][0]

    def color(self, label: int) -> tuple[int, int, int]:
        return self.entries[label][1][:3]


# --------------------------------------------------------------------------- tables


def read_lut(path: str | os.PathLike) -> ColorTable:
    """A FreeSurfer text lookup table: ``label name red green blue [transparency]`` per line,
    ``#`` starts a comment."""
    path = Path(path)
    try:
        text = path.read_text(encoding='utf-8', errors='replace')
    except OSError as err:
        raise InputError(path, f'cannot read the colour table: {err.strerror or err}') from None
    entries = {}
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split('#', 1)[0].split()
        if not fields:
            continue
        if len(fields) not in (5, 6) or not all(v.isdigit() for v in [fields[0], *fields[2:]]):
            raise InputError(
                path, f'line {number} is not "label name red green blue [alpha]" (whole numbers)'
            )
        values = [int(v) for v in fields[2:]] + [0] * (6 - len(fields))
        entries[int(fields[0])] = (fields[1], tuple(values))
    if not entries:
        raise InputError(path, 'the colour table has no entries')
    return ColorTable(entries, path.name)


def builtin_table(extra: Mapping[int, str] | None = None) -> ColorTable:
    """FreeSurfer names and colours of every label synthbids can write (segmentation and
    parcellation); ``extra`` names other labels (e.g. Photo-SynthSeg's), coloured grey."""
    entries = {}
    for label in sorted(set(L.SEG_LABELS_V2) | set(L.PARC_LABELS)):
        rgb = tuple(int(L.color(label)[i : i + 2], 16) for i in (1, 3, 5))
        entries[label] = (L.fs_name(label), (*rgb, 0))
    for label, name in (extra or {}).items():
        if label not in entries:
            entries[int(label)] = (str(name).replace(' ', '-'), (*GREY, 0))
    return ColorTable(entries, 'synthbids')


def default_table(extra: Mapping[int, str] | None = None) -> ColorTable:
    """What ``--addctab`` embeds: ``$FREESURFER_HOME/FreeSurferColorLUT.txt`` if present (as
    ``mri_synthseg``), else :func:`builtin_table`. Labels of ``extra`` missing from the
    FreeSurfer table are added (grey), so that every label written has an entry."""
    home = os.environ.get('FREESURFER_HOME')
    lut = Path(home) / LUT_NAME if home else None
    if lut is None or not lut.is_file():
        return builtin_table(extra)
    table = read_lut(lut)
    missing = {k: v for k, v in (extra or {}).items() if k not in table.entries}
    if not missing:
        return table
    entries = dict(table.entries)
    entries.update({k: (str(v).replace(' ', '-'), (*GREY, 0)) for k, v in missing.items()})
    return ColorTable(entries, table.source)


# --------------------------------------------------------------------------- binary form


def encode(table: ColorTable) -> bytes:
    """The colour-table tag (id and data) as FreeSurfer writes it into MGH files."""
    out = io.BytesIO()
    labels = sorted(table.entries)
    if labels and labels[0] < 0:
        raise SynthbidsError(f'colour table label {labels[0]} is negative')
    source = table.source.encode() + b'\0'
    out.write(
        struct.pack('>4i', COLORTABLE_TAG, -2, (labels[-1] + 1) if labels else 0, len(source))
    )
    out.write(source)
    out.write(struct.pack('>i', len(labels)))
    for label in labels:
        name, (r, g, b, t) = table.entries[label]
        raw = name.encode() + b'\0'
        out.write(struct.pack('>2i', label, len(raw)))
        out.write(raw)
        out.write(struct.pack('>4i', r, g, b, t))
    return out.getvalue()


def is_mgh(path: str | os.PathLike) -> bool:
    return split_ext(path)[1].lower() in ('.mgz', '.mgh')


def write_mgh(img, path: str | os.PathLike, table: ColorTable, compress: bool | None = None):
    """Write the nibabel MGH image ``img`` to ``path`` with ``table`` embedded after its
    footer (``compress``: gzip, default from the extension). Callers write to a staged
    temporary file (:class:`.imageio.OutputSet`), so ``path`` appears whole or not at all."""
    data = img.to_bytes() + encode(table)
    if compress is None:
        compress = os.fspath(path).lower().endswith(('.mgz', '.gz'))
    with open(path, 'wb') as fh:
        fh.write(gzip.compress(data, compresslevel=1) if compress else data)


def read_mgh_table(path: str | os.PathLike) -> ColorTable | None:
    """The colour table embedded in an ``.mgz``/``.mgh`` file, or None if it has none."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b'\x1f\x8b':
        raw = gzip.decompress(raw)
    if len(raw) < HEADER_BYTES:
        raise InputError(path, 'not an MGH image (shorter than its header)')
    dims = struct.unpack_from('>4i', raw, 4)
    kind = struct.unpack_from('>i', raw, 20)[0]
    if kind not in VOXEL_BYTES:
        raise InputError(path, f'unsupported MGH voxel type {kind}')
    size = VOXEL_BYTES[kind]
    for d in dims:
        size *= d
    pos = HEADER_BYTES + size + FOOTER_BYTES
    while pos + 4 <= len(raw):
        tag = struct.unpack_from('>i', raw, pos)[0]
        pos += 4
        if tag == COLORTABLE_TAG:
            return _decode(raw, pos, path)
        if tag == 0 or tag in _LENGTHLESS:
            return None
        if tag == _OLD_XFORM:
            length = struct.unpack_from('>i', raw, pos)[0]
            pos += 4
        else:
            length = struct.unpack_from('>q', raw, pos)[0]
            pos += 8
        pos += length
    return None


def _decode(raw: bytes, pos: int, path: Path) -> ColorTable:
    def ints(n):
        nonlocal pos
        values = struct.unpack_from(f'>{n}i', raw, pos)
        pos += 4 * n
        return values

    def text(n):
        nonlocal pos
        value = raw[pos : pos + n].split(b'\0', 1)[0].decode(errors='replace')
        pos += n
        return value

    try:
        (version,) = ints(1)
        entries = {}
        if version >= 0:  # version 1: ``version`` is the number of entries, all present
            source = text(ints(1)[0])
            for label in range(version):
                name = text(ints(1)[0])
                entries[label] = (name, ints(4))
            return ColorTable(entries, source)
        if version != -2:
            raise InputError(path, f'unsupported colour table version {-version}')
        ints(1)  # number of slots
        source = text(ints(1)[0])
        for _ in range(ints(1)[0]):
            label, length = ints(2)
            entries[label] = (text(length), ints(4))
    except struct.error:
        raise InputError(path, 'the embedded colour table is cut short') from None
    return ColorTable(entries, source)
