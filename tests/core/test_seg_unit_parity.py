"""SynthSeg networks against the reference unit vectors (``../shared/golden``).

Full-size 2.0 weights (``synthseg/``) and reduced-width 1.0 / 2.0 / robust / parcellation / QC
weights with the official layer names (``small/``). Tolerances are those the golden README
measured between two TensorFlow versions: 1e-4 on probabilities, identical argmax except where
the top-2 margin is below 1e-4 (near ties). The robust cascade is compared stage by stage:
its argmax hand-offs turn a single near tie into a different downstream input.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthbids.core import labels as L
from synthbids.core.seg_inference import (
    _argmax_of,
    _one_hot,
    parcellation_input,
    run_networks,
    run_qc,
)
from synthbids.core.seg_keras import build_qc, build_unet, read_keras_weights
from synthbids.core.seg_model import SegModel

pytestmark = pytest.mark.shared
ATOL = 1e-4


@pytest.fixture(scope='module')
def golden(shared_dir):
    return shared_dir / 'golden'


@pytest.fixture(scope='module')
def small(golden):
    cache = {}

    def weights(name):
        if name not in cache:
            cache[name] = read_keras_weights(golden / 'small' / name)
        return cache[name]

    return weights


def channels_last(t: torch.Tensor) -> np.ndarray:
    return t[0].permute(1, 2, 3, 0).numpy()


def to_torch(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1)))


def near_tie(probs: np.ndarray, margin: float = 1e-4) -> np.ndarray:
    top = np.sort(probs, axis=-1)[..., -2:]
    return (top[..., 1] - top[..., 0]) < margin


def assert_argmax(probs: np.ndarray, ref_argmax: np.ndarray) -> int:
    differ = probs.argmax(-1) != ref_argmax
    assert not (differ & ~near_tie(probs)).any()
    return int(differ.sum())


def assert_matches_summary(probs: np.ndarray, summary) -> None:
    """``probs`` (X, Y, Z, C) against a golden ``.npz`` summary (voxels, sums, argmax)."""
    flat = probs.reshape(-1, probs.shape[-1])
    np.testing.assert_allclose(flat[summary['voxel_index']], summary['voxel_values'], atol=ATOL)
    np.testing.assert_allclose(flat.sum(0, dtype=np.float64), summary['channel_sums'], rtol=1e-4)
    assert_argmax(probs, summary['argmax'][0])


def test_full_size_2_0_unet_and_graph(golden):
    weights = read_keras_weights(golden / 'synthseg/synthseg2_random.h5')
    unet = build_unet(weights, 'unet_')
    x = np.load(golden / 'synthseg/unit/synthseg_unit_input.npy')
    with torch.no_grad():
        probs = channels_last(unet(to_torch(x)))
    ref = np.load(golden / 'synthseg/unit/synthseg2_unit_output_unet.npy')[0]
    np.testing.assert_allclose(probs, ref, atol=ATOL)
    assert_argmax(probs, ref.argmax(-1))
    model = SegModel(unet=unet, labels=L.seg_labels())
    graph = np.moveaxis(run_networks(model, x[0, ..., 0].copy(), fast=False).posteriors, 0, -1)
    ref = np.load(golden / 'synthseg/unit/synthseg2_unit_output_graph.npy')[0]
    np.testing.assert_allclose(graph, ref, atol=ATOL)
    assert_argmax(graph, ref.argmax(-1))


@pytest.mark.parametrize('version', ['2', '1'])
def test_small_unet_and_graph(golden, small, version):
    unet = build_unet(small(f'synthseg_{version}.0_small.h5'), 'unet_')
    x = np.load(golden / 'small/synthseg_unit_input.npy')
    with torch.no_grad():
        probs = channels_last(unet(to_torch(x)))
    assert_matches_summary(
        probs, np.load(golden / f'small/synthseg{version}_unit_output_unet.npz')
    )
    model = SegModel(unet=unet, labels=L.seg_labels(v1=version == '1'), v1=version == '1')
    graph = np.moveaxis(run_networks(model, x[0, ..., 0].copy(), fast=False).posteriors, 0, -1)
    assert_matches_summary(
        graph, np.load(golden / f'small/synthseg{version}_unit_output_graph.npz')
    )


def test_robust_cascade_stage_by_stage(golden, small):
    weights = small('synthseg_robust_2.0_small.h5')
    s1, denoiser, s2 = (build_unet(weights, p) for p in ('unet_', 'l2l_', 'unet2_'))
    d = golden / 'small'
    x = np.load(d / 'synthseg_unit_input.npy')
    with torch.no_grad():
        out1 = channels_last(s1(to_torch(x)))
        out2 = channels_last(denoiser(to_torch(np.load(d / 'synthseg_robust_unit_l2l_input.npy'))))
        out3 = channels_last(s2(to_torch(np.load(d / 'synthseg_robust_unit_unet2_input.npy'))))
    ref1 = np.load(d / 'synthseg_robust_unit_stage1_output.npy')[0]
    np.testing.assert_allclose(out1, ref1, atol=ATOL)
    np.testing.assert_array_equal(
        out1.argmax(-1), np.load(d / 'synthseg_robust_unit_stage1_argmax.npy')[0]
    )
    np.testing.assert_allclose(
        out2, np.load(d / 'synthseg_robust_unit_l2l_output.npy')[0], atol=ATOL
    )
    assert_matches_summary(out3, np.load(d / 'synthseg_robust_unit_unet2_output.npz'))
    # inside the cascade: stage 1 -> one-hot -> denoiser, as the pipeline runs it
    image = torch.from_numpy(x[0, ..., 0])[None, None]
    stage1 = _argmax_of(s1, image)
    np.testing.assert_array_equal(
        stage1.numpy(), np.load(d / 'synthseg_robust_unit_stage1_argmax.npy')[0]
    )
    stage2_probs = []
    denoiser.predict(_one_hot(stage1, 5), lambda a, b, p: stage2_probs.append(p))
    stage2 = np.moveaxis(torch.cat(stage2_probs, dim=2)[0].numpy(), 0, -1)
    ref2 = np.load(d / 'synthseg_robust_unit_stage2_argmax.npy')[0]
    assert assert_argmax(stage2, ref2) <= 1  # measured: one voxel, top-2 margin 1.7e-6
    # stage 3 on the reference stage-2 map reproduces the whole cascade's output
    x3 = torch.cat([image, _one_hot(torch.from_numpy(ref2), 5)], dim=1)
    with torch.no_grad():
        out = channels_last(s2(x3))
    assert_matches_summary(out, np.load(d / 'synthseg_robust_unit_output_graph.npz'))
    # and the pipeline's robust path is the same cascade
    model = SegModel(unet=s1, labels=L.seg_labels(), denoiser=denoiser, unet2=s2)
    raw = run_networks(model, x[0, ..., 0].copy(), fast=True).posteriors
    with torch.no_grad():
        expected = s2(
            torch.cat([image, _one_hot(_argmax_of(denoiser, _one_hot(stage1, 5)), 5)], 1)
        )
    np.testing.assert_allclose(raw, expected[0].numpy(), atol=ATOL)


def test_parcellation_unet_and_graph(golden, small):
    d = golden / 'small'
    parc = build_unet(small('synthseg_parc_2.0_small.h5'), 'unet_parc_')
    with torch.no_grad():
        probs = channels_last(parc(to_torch(np.load(d / 'synthseg_parc_unit_input.npy'))))
    assert_matches_summary(probs, np.load(d / 'synthseg_parc_unit_output_unet.npz'))
    unet = build_unet(small('synthseg_2.0_small.h5'), 'unet_')
    model = SegModel(unet=unet, labels=L.seg_labels(), parc=parc)
    image = np.load(d / 'synthseg_unit_input.npy')[0, ..., 0].copy()
    raw = run_networks(model, image, fast=False)
    seg = np.moveaxis(raw.posteriors, 0, -1)
    assert_matches_summary(seg, np.load(d / 'synthseg_parc_unit_graph_seg_output.npz'))
    out = []
    parc.predict(
        parcellation_input(model, image, raw.parc_index),
        lambda a, b, p: out.append(p),
        smooth=True,
    )
    parc_probs = np.moveaxis(torch.cat(out, dim=2)[0].numpy(), 0, -1)
    assert_matches_summary(parc_probs, np.load(d / 'synthseg_parc_unit_graph_parc_output.npz'))
    assert_argmax(parc_probs, np.load(d / 'synthseg_parc_unit_graph_parc_argmax.npy')[0])
    np.testing.assert_allclose(
        parc_probs.max(-1), np.load(d / 'synthseg_parc_unit_graph_parc_maxprob.npy')[0], atol=ATOL
    )


def test_qc_network_and_graph(golden, small):
    d = golden / 'small'
    qc = build_qc(small('synthseg_qc_2.0_small.h5'))
    summary = np.load(d / 'synthseg_qc_unit_input.npz')
    classes = summary['argmax'][0]
    one_hot = np.eye(9, dtype=np.float32)[classes]
    np.testing.assert_array_equal(
        one_hot.reshape(-1, 9)[summary['voxel_index']], summary['voxel_values']
    )
    raw = qc(to_torch(one_hot[None])).numpy()
    np.testing.assert_allclose(raw, np.load(d / 'synthseg_qc_unit_output.npy'), atol=1e-5)
    # the --qc graph: segmentation -> argmax -> MakeShape(224) -> QC classes -> network
    unet = build_unet(small('synthseg_2.0_small.h5'), 'unet_')
    model = SegModel(unet=unet, labels=L.seg_labels(), qc=qc)
    image = np.load(d / 'synthseg_unit_input.npy')[0, ..., 0].copy()
    out = run_networks(model, image, fast=False)
    assert_matches_summary(
        np.moveaxis(out.posteriors, 0, -1), np.load(d / 'synthseg_qc_unit_graph_seg_output.npz')
    )
    assert list(np.load(d / 'synthseg_qc_unit_graph_shape_input.npy')[0]) == list(image.shape)
    scores = run_qc(model, out.qc_index)
    np.testing.assert_allclose(
        scores, np.load(d / 'synthseg_qc_unit_graph_qc_output.npy')[0], atol=1e-5
    )
