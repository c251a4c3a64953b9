"""SynthSeg postprocessing, volumes, QC input shaping and the parcellation step."""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest
import torch

from synthbids.core import labels as L
from synthbids.core.seg_postprocess import (
    ParcellationSink,
    argmax_channels,
    channel_sums,
    clean_posteriors,
    compute_volumes,
    qc_crop,
    qc_scores,
    sequential_sum,
)

V2 = L.seg_labels()
TOPOLOGY = [L.TOPOLOGY_CLASS[lab] for lab in V2]


def read_csv(path):
    rows = list(csv.reader(path.open()))
    return rows[0][1:], [float(v) for v in rows[1][1:]]


@pytest.mark.shared
def test_reference_raw_output_gives_the_reference_labels_and_volumes(shared_dir):
    """The cropped run stores the complete raw network output: postprocessing alone must
    reproduce the reference label map and volumes exactly."""
    d = shared_dir / 'golden/synthseg/pipeline'
    info = json.loads((d / 'synthseg2_crop_info.json').read_text())
    raw = np.load(d / 'synthseg2_crop_raw_output0_full.npy')[0]
    post = np.ascontiguousarray(np.moveaxis(raw, -1, 0))
    cleaned = clean_posteriors(post, info['pad_idx'], TOPOLOGY, fast=False)
    labels = np.asarray(V2)[argmax_channels(cleaned)]
    c = info['crop_idx']
    ref = np.asanyarray(nib.load(d / 'synthseg2_crop_seg.nii.gz').dataobj)
    np.testing.assert_array_equal(labels, ref[c[0] : c[3], c[1] : c[4], c[2] : c[5]])
    assert not ref.sum() - ref[c[0] : c[3], c[1] : c[4], c[2] : c[5]].sum()
    volumes = compute_volumes(channel_sums(cleaned, float64=True), V2, [1, 1, 1], v1=False)
    names, values = read_csv(d / 'synthseg2_crop_vol.csv')
    assert list(volumes) == names
    np.testing.assert_array_equal(list(volumes.values()), info['volumes_from_postprocess'])
    np.testing.assert_array_equal(list(volumes.values()), values)


def test_fast_mode_thresholds_and_normalises():
    rng = np.random.default_rng(0)
    post = rng.dirichlet(np.ones(5) * 0.5, size=(12, 10, 8)).astype(np.float32)
    post = np.ascontiguousarray(np.moveaxis(post, -1, 0))
    before = post.copy()
    cleaned = clean_posteriors(post, (1, 1, 1, 11, 9, 7), [0, 1, 2, 3, 4], fast=True)
    assert cleaned.shape == (5, 10, 8, 6)
    np.testing.assert_allclose(cleaned.sum(0), 1, atol=1e-6)
    kept = before[:, 1:11, 1:9, 1:7]
    assert (cleaned[1:][kept[1:] <= 0.2] == 0).all()


def test_argmax_takes_the_first_maximum():
    post = np.zeros((3, 2, 1, 1), np.float32)
    post[:, 0, 0, 0] = 0.4, 0.4, 0.2
    post[:, 1, 0, 0] = 0.1, 0.45, 0.45
    np.testing.assert_array_equal(argmax_channels(post)[:, 0, 0], [0, 1])


def test_sums_are_float32_in_raster_order():
    values = np.full(3_000_000, 0.1, np.float32)
    assert sequential_sum(values) == np.cumsum(values, dtype=np.float32)[-1]
    assert sequential_sum(values, chunk=1000) == sequential_sum(values)
    assert abs(float(sequential_sum(values)) - 300000) > 1  # float32 drift, as the reference


def test_parcel_volumes_per_hemisphere_and_the_old_rule():
    seg_sums = np.arange(len(V2), dtype=np.float32) + 100
    parc_sums = np.ones(len(L.PARC_LABELS), np.float32)
    fixed = compute_volumes(seg_sums, V2, [1, 1, 1], False, parc_sums)
    lh = sum(v for k, v in fixed.items() if k.startswith('ctx-lh-'))
    rh = sum(v for k, v in fixed.items() if k.startswith('ctx-rh-'))
    assert lh == pytest.approx(fixed['left cerebral cortex'], abs=0.05)
    assert rh == pytest.approx(fixed['right cerebral cortex'], abs=0.05)
    old = compute_volumes(seg_sums, V2, [1, 1, 1], False, parc_sums, parc_compat=True)
    parcels = sum(v for k, v in old.items() if k.startswith('ctx-'))
    wm = old['left cerebral white matter'] + old['right cerebral white matter']
    assert parcels == pytest.approx(wm, abs=0.1)  # the reference's index shift (issue #123)
    assert list(old)[0] == L.TOTAL_NAME and list(old)[33] == 'ctx-lh-bankssts'
    v1 = compute_volumes(seg_sums[:-1], L.seg_labels(v1=True), [1, 1, 1], True, parc_sums, True)
    parcels = sum(v for k, v in v1.items() if k.startswith('ctx-'))
    assert parcels == pytest.approx(
        v1['left cerebral cortex'] + v1['right cerebral cortex'], abs=0.1
    )
    assert list(v1)[0] == 'left cerebral white matter'


def test_volumes_scale_with_the_voxel_size():
    sums = np.ones(len(V2), np.float32)
    assert compute_volumes(sums, V2, [0.5, 1, 2], False)['csf'] == 1.0
    assert compute_volumes(sums, V2, [1.2, 1, 1], False)['csf'] == pytest.approx(1.2)


def test_make_shape_centres_on_the_brain_and_compares_indices():
    index = np.zeros((100, 240, 90), np.uint8)
    index[10:30, 5:235, 40:50] = 3
    index[90, 0, 0] = 24  # index 24 is ignored (the reference compares indices, not labels)
    out = qc_crop(index, size=64)
    assert out.shape == (64, 64, 64)
    assert out.sum() == 3 * 20 * 64 * 10  # y: 230 voxels cut to 64 around the centre
    assert (out[22:42].sum(axis=(1, 2)) > 0).all() and out[:22].sum() == 0
    empty = qc_crop(np.zeros((10, 300, 20), np.uint8), size=16)
    assert empty.shape == (16, 16, 16)
    assert qc_scores(np.array([3, -1, 0.123456, 2, 0.5, 0.5, 0.5, 0.5, 0.5])) == dict(
        zip(L.QC_NAMES[1:], [0.0, 0.1235, 1.0, 0.5, 0.5, 0.5, 0.5, 0.5])
    )


def test_parcellation_sink_labels_cortex_only():
    seg = np.array([[[3, 42, 2, 0]]], np.int32).repeat(2, 0)  # (2, 1, 4) unpadded grid
    pad = (1, 0, 0, 3, 1, 4)
    probs = torch.zeros(1, len(L.PARC_LABELS), 4, 1, 4)
    probs[0, 5] = 0.6  # ctx-lh-cuneus... everywhere
    probs[0, 40] = 0.3
    probs[0, 0] = 0.1
    sink = ParcellationSink(seg, pad)
    sink(0, 4, probs.contiguous(memory_format=torch.channels_last_3d))
    assert seg[:, 0].tolist() == [[L.PARC_LABELS[5], L.PARC_LABELS[5], 2, 0]] * 2
    assert sink.sums[5] == pytest.approx(4 * 0.6 / 0.9 + 4 * 0.6 / 1.9, rel=1e-5)
