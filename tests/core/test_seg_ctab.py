"""``--addctab``: FreeSurfer's colour table embedded in ``.mgz`` label images, read back."""

from __future__ import annotations

import gzip
import struct

import nibabel as nib
import numpy as np
import pytest

from synthbids.core import labels as L
from synthbids.core import seg_ctab as C
from synthbids.core.errors import InputError
from synthbids.core.segment import load_seg_model, segment_file

LUT = """#$Id: a hand-made FreeSurferColorLUT.txt
#No. Label Name:                            R   G   B   A

0   Unknown                                 0   0   0   0
2   Left-Cerebral-White-Matter              245 245 245 0
3   Left-Cerebral-Cortex                    205 62  78  0   # a comment
24  CSF                                     60  60  60  0
77  WM-hypointensities                      200 70  255 0
1001    ctx-lh-bankssts                     25  100 40  10
"""


def parse_tag_independently(raw: bytes, data_bytes: int) -> dict:
    """The colour-table tag read byte by byte after the header, the voxels and the footer, as
    the MGH format lays them out (no code shared with the writer)."""
    pos = 284 + data_bytes + 20
    tag, version, slots, name_len = struct.unpack_from('>4i', raw, pos)
    assert (tag, version) == (1, -2)
    pos += 16
    source = raw[pos : pos + name_len]
    assert source.endswith(b'\0')
    pos += name_len
    (count,) = struct.unpack_from('>i', raw, pos)
    pos += 4
    entries = {}
    for _ in range(count):
        label, length = struct.unpack_from('>2i', raw, pos)
        pos += 8
        name = raw[pos : pos + length]
        assert name.endswith(b'\0') and b'\0' not in name[:-1]
        pos += length
        entries[label] = (name[:-1].decode(), struct.unpack_from('>4i', raw, pos))
        pos += 16
    assert slots == max(entries) + 1 and pos == len(raw)
    return entries


def test_lookup_table_text_is_parsed(tmp_path):
    path = tmp_path / 'FreeSurferColorLUT.txt'
    path.write_text(LUT)
    table = C.read_lut(path)
    assert sorted(table.entries) == [0, 2, 3, 24, 77, 1001]
    assert table.entries[3] == ('Left-Cerebral-Cortex', (205, 62, 78, 0))
    assert table.entries[1001] == ('ctx-lh-bankssts', (25, 100, 40, 10))
    path.write_text(LUT + '5 Left-Inf-Lat-Vent 196 58\n')
    with pytest.raises(InputError, match='line 10 is not "label name red green blue'):
        C.read_lut(path)


def test_default_table_is_freesurfers_when_it_can_be_found(tmp_path, monkeypatch):
    table = C.default_table({2: 'left cerebral white matter', 700: 'photo thing'})
    assert table.entries[2] == ('Left-Cerebral-White-Matter', (245, 245, 245, 0))
    assert table.entries[42] == (L.fs_name(42), (205, 62, 78, 0))
    assert table.entries[2035][0] == 'ctx-rh-insula' and table.entries[700][0] == 'photo-thing'
    assert set(L.SEG_LABELS_V2) | set(L.PARC_LABELS) <= set(table.entries)
    (tmp_path / 'FreeSurferColorLUT.txt').write_text(LUT)
    monkeypatch.setenv('FREESURFER_HOME', str(tmp_path))
    table = C.default_table({2: 'left cerebral white matter', 700: 'photo thing'})
    assert sorted(table.entries) == [0, 2, 3, 24, 77, 700, 1001]
    assert (
        table.source == 'FreeSurferColorLUT.txt' and table.entries[77][0] == 'WM-hypointensities'
    )


@pytest.mark.parametrize('ext', ['.mgz', '.mgh'])
def test_written_mgh_carries_the_table(tmp_path, ext):
    (tmp_path / 'FreeSurferColorLUT.txt').write_text(LUT)
    table = C.read_lut(tmp_path / 'FreeSurferColorLUT.txt')
    data = np.random.default_rng(0).choice([0, 2, 3, 24, 77, 1001], (9, 8, 7)).astype(np.int32)
    affine = np.array([[-1.0, 0, 0, 4], [0, 0, 1.2, -3], [0, -1, 0, 7], [0, 0, 0, 1]])
    path = tmp_path / f'seg{ext}'
    C.write_mgh(nib.MGHImage(data, affine), path, table)
    raw = path.read_bytes()
    assert (raw[:2] == b'\x1f\x8b') == (ext == '.mgz')
    raw = gzip.decompress(raw) if ext == '.mgz' else raw
    assert parse_tag_independently(raw, data.nbytes) == dict(table.entries)
    back = nib.load(path)  # nibabel ignores the tag: voxels and geometry are intact
    np.testing.assert_array_equal(np.asanyarray(back.dataobj), data)
    np.testing.assert_allclose(back.affine, affine, atol=1e-6)
    assert C.read_mgh_table(path) == table
    plain = tmp_path / f'plain{ext}'
    nib.save(nib.MGHImage(data, affine), plain)
    assert C.read_mgh_table(plain) is None


def test_surfa_reads_the_table(tmp_path):
    """FreeSurfer's own Python reader, where installed (not a synthbids dependency)."""
    sf = pytest.importorskip('surfa')
    table = C.default_table()
    data = np.zeros((6, 7, 8), np.int32)
    data[2:4, 2:5, 3:6] = 2
    data[0, 0, 0] = 1035
    path = tmp_path / 'seg.mgz'
    C.write_mgh(nib.MGHImage(data, np.eye(4)), path, table)
    try:
        vol = sf.load_volume(str(path))
    except ValueError as err:  # surfa <= 0.6.3 calls np.fromstring, gone in numpy 2
        if 'fromstring' not in str(err):
            raise
        pytest.skip(f'this surfa cannot read any MGZ file with numpy {np.__version__}')
    np.testing.assert_array_equal(vol.data, data)
    assert len(vol.labels) == len(table.entries)
    for label in (0, 2, 42, 1035, 2035):
        assert vol.labels[label].name == table.name(label)
        np.testing.assert_array_equal(vol.labels[label].color[:3], table.color(label))


def test_segment_file_embeds_it_in_mgz_only(tmp_path, make_nifti, tiny_seg_models, caplog):
    src = make_nifti()
    model = load_seg_model(tiny_seg_models)
    table = C.default_table()
    segment_file(src, model, tmp_path / 'plain.mgz', fast=True)
    segment_file(src, model, tmp_path / 'seg.mgz', ctab=table, fast=True)
    plain, seg = nib.load(tmp_path / 'plain.mgz'), nib.load(tmp_path / 'seg.mgz')
    np.testing.assert_array_equal(np.asanyarray(seg.dataobj), np.asanyarray(plain.dataobj))
    np.testing.assert_array_equal(seg.affine, plain.affine)
    assert C.read_mgh_table(tmp_path / 'seg.mgz') == table
    assert C.read_mgh_table(tmp_path / 'plain.mgz') is None
    segment_file(src, model, tmp_path / 'seg.nii.gz', ctab=table, fast=True)
    assert 'NIfTI files carry no colour table' in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        'img.nii.gz',
        'plain.mgz',
        'seg.mgz',
        'seg.nii.gz',
    ]
