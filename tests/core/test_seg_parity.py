"""End-to-end parity with FreeSurfer 7.3.2 ``mri_synthseg`` on Colin27 (golden vectors).

One default run (flip test-time augmentation) of :func:`segment` with the golden full-size
2.0 weights, shared by every test of this module. Its intermediates are recorded on the way:
the raw graph output (before postprocessing) and the first, unflipped branch, which is
exactly the ``--fast`` graph output, so the ``--fast`` postprocessing and volumes are checked
without a second network run. The ``--crop 64 32 32`` run is cheap and runs end to end.
Only 2.0 has full-size golden weights: 1.0, robust, parcellation and QC pipelines are
compared at unit level (``test_seg_unit_parity``).
"""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest

from synthbids.core import seg_inference as I
from synthbids.core import seg_postprocess as P
from synthbids.core import segment as S
from synthbids.core.seg_postprocess import channel_sums, clean_posteriors, compute_volumes

pytestmark = pytest.mark.shared


def read_volumes(path):
    rows = list(csv.reader(path.open()))
    return dict(zip(rows[0][1:], (float(v) for v in rows[1][1:])))


def assert_volumes_close(volumes, reference, rtol=1e-3, atol=1.0):
    """Relative difference <= 1e-3 per structure (abs 1 mm^3 for tiny ones)."""
    assert list(volumes) == list(reference)
    for name, ref in reference.items():
        assert abs(volumes[name] - ref) <= max(rtol * abs(ref), atol), name


@pytest.fixture(scope='module')
def golden(shared_dir):
    return shared_dir / 'golden/synthseg'


@pytest.fixture(scope='module')
def model(golden, tmp_path_factory):
    folder = tmp_path_factory.mktemp('models')
    (folder / 'synthseg_2.0.h5').symlink_to(golden / 'synthseg2_random.h5')
    return S.load_seg_model(folder)


@pytest.fixture(scope='module')
def ch2_run(ch2, golden, model):
    """The default pipeline on ch2, with the raw graph output and the fast branch kept."""
    d = golden / 'pipeline'
    ijk = np.load(d / 'synthseg2_raw_output0_random_voxels.npz')['ijk']
    record = {}
    mp = pytest.MonkeyPatch()
    original_clean, original_predict = P.clean_posteriors, model.unet.predict

    def clean(post, pad_idx, topology, fast):
        record['voxels'] = post[:, ijk[:, 0], ijk[:, 1], ijk[:, 2]].T.copy()
        record['plane_k96'] = np.moveaxis(post[:, :, :, 96], 0, -1).copy()
        record['sums'] = post.reshape(post.shape[0], -1).sum(1, dtype=np.float64)
        record['argmax'] = P.argmax_channels(post)
        record['pad_idx'] = pad_idx
        return original_clean(post, pad_idx, topology, fast)

    def predict(x, sink, smooth=False, **kw):
        if 'fast' not in record:  # the unflipped branch = the --fast graph output
            fast = np.empty((len(model.labels), *x.shape[2:]), np.float32)
            record['fast'] = fast

            def both(a, b, probs):
                I.channels_first(probs, fast[:, a:b])
                sink(a, b, probs)

            return original_predict(x, both, smooth=smooth, **kw)
        return original_predict(x, sink, smooth=smooth, **kw)

    mp.setattr(S, 'clean_posteriors', clean)
    mp.setattr(model.unet, 'predict', predict)
    try:
        result = S.segment(ch2, model)
    finally:
        mp.undo()
    return result, record


def test_raw_posteriors_match(golden, ch2_run):
    _, record = ch2_run
    d = golden / 'pipeline'
    ref = np.load(d / 'synthseg2_raw_output0_random_voxels.npz')['values']
    np.testing.assert_allclose(record['voxels'], ref, atol=1e-4)
    plane = np.load(d / 'synthseg2_raw_output0_slice_k96_float16.npz')['values'].astype(np.float32)
    np.testing.assert_allclose(record['plane_k96'], plane, atol=5e-4)  # float16 storage
    np.testing.assert_allclose(
        record['sums'], np.load(d / 'synthseg2_raw_output0_channel_sums.npy'), rtol=1e-5
    )
    argmax = np.load(d / 'synthseg2_raw_output0_argmax.npz')['argmax']
    differ = record['argmax'] != argmax
    # near ties only: 0.071 % of the reference voxels have a top-2 margin below 1e-4
    assert differ.mean() < 0.0007


def test_labels_match(golden, ch2_run, ch2):
    result, _ = ch2_run
    ref = nib.load(golden / 'pipeline/synthseg2_seg.nii.gz')
    labels = np.asanyarray(ref.dataobj)
    assert result.labels.dtype == np.int32 and result.labels.shape == labels.shape
    assert (result.labels == labels).mean() >= 0.9999
    np.testing.assert_array_equal(result.affine, nib.load(ch2).affine)
    assert result.posteriors is None and result.resampled is None


def test_volumes_match_both_tensorflow_versions(golden, ch2_run):
    result, _ = ch2_run
    assert_volumes_close(result.volumes, read_volumes(golden / 'pipeline/synthseg2_vol.csv'))
    tf213 = read_volumes(golden / 'pipeline/synthseg2_qc_tf213_vol.csv')
    assert_volumes_close(result.volumes, tf213)
    assert result.volume_precision == 'float32' and result.qc is None


def test_fast_postprocessing_and_volumes_match(golden, ch2_run, model):
    _, record = ch2_run
    d = golden / 'pipeline'
    fast = record['fast']
    info = json.loads((d / 'synthseg2_fast_info.json').read_text())
    top = np.partition(fast, -2, axis=0)
    margin = ((top[-1] - top[-2]) < 1e-4).mean()
    assert margin == pytest.approx(info['raw_output0_margin_top2_lt_1e-4_fraction'], rel=0.02)
    cleaned = clean_posteriors(fast, record['pad_idx'], model.topology, fast=True)
    sums = channel_sums(cleaned)
    ref_sums = np.load(d / 'synthseg2_fast_postprocessed_posteriors_channel_sums.npy')
    np.testing.assert_allclose(sums, ref_sums, rtol=1e-3)
    volumes = compute_volumes(sums, model.labels, [1, 1, 1], v1=False)
    assert_volumes_close(volumes, read_volumes(d / 'synthseg2_fast_vol.csv'))


def test_crop_run_matches(golden, ch2, model):
    d = golden / 'pipeline'
    result = S.segment(ch2, model, crop=[64, 32, 32], posteriors=True)
    ref = np.asanyarray(nib.load(d / 'synthseg2_crop_seg.nii.gz').dataobj)
    np.testing.assert_array_equal(result.labels, ref)
    assert_volumes_close(result.volumes, read_volumes(d / 'synthseg2_crop_vol.csv'), rtol=1e-4)
    assert result.volume_precision == 'float64'
    post = result.posteriors
    assert post.shape == (*ref.shape, 33) and post.dtype == np.float32
    sums = np.load(d / 'synthseg2_crop_postprocessed_posteriors_channel_sums.npy')
    np.testing.assert_allclose(post.reshape(-1, 33).sum(0, dtype=np.float64), sums, rtol=1e-4)
