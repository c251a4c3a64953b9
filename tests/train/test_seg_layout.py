"""Seg weights are trained on LIA crops and exported for SynthSeg's RAS-aligned inputs."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import torch

from synthbids.synth.labelmaps import label_tables, ras_to_lia
from synthbids.train.tasks import NetConfig, SegTask, lia_to_ras, ras_network

LIA = np.array([[-1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]], dtype=float)


def test_lia_to_ras_matches_nibabel_canonical_orientation():
    data = np.arange(3 * 4 * 5).reshape(3, 4, 5).astype(np.float32)
    canonical = nib.as_closest_canonical(nib.Nifti1Image(data, LIA))
    assert nib.aff2axcodes(canonical.affine) == ('R', 'A', 'S')
    ours = lia_to_ras(torch.from_numpy(data)).numpy()
    assert np.array_equal(ours, np.asanyarray(canonical.dataobj))
    assert np.array_equal(ras_to_lia(ours), data)  # the training maps' conversion, inverted


def test_exported_network_on_ras_input_equals_trained_network_on_lia_input():
    torch.manual_seed(0)
    task = SegTask(name='seg', tables=label_tables(), voxsize=3, net_config=NetConfig(4, 8, 2))
    net = task.make_net().eval()
    for bn in [*net.bn_down, *net.bn_up]:  # non-trivial inference statistics
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    x = torch.rand(1, 1, 8, 12, 16)  # three different sizes: a wrong permutation cannot fit
    with torch.no_grad():
        expected = lia_to_ras(net(x))
        got = ras_network(net)(lia_to_ras(x).contiguous())
    assert got.shape == (1, net.n_labels, 8, 16, 12)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    # and it is not the identity: the untransformed network gives something else
    with torch.no_grad():
        assert not torch.allclose(net(lia_to_ras(x).contiguous()), expected, atol=1e-3)


def test_exported_h5_seeds_a_new_run_in_the_training_layout(tmp_path):
    """The packaged seg weights (RAS .h5) can start the next run: --init brings them back to
    the LIA layout the generator trains in, exactly."""
    from synthbids.core.seg_keras import write_keras_h5
    from synthbids.train.loop import init_weights

    torch.manual_seed(1)
    task = SegTask(name='seg', tables=label_tables(), voxsize=3, net_config=NetConfig(4, 8, 2))
    net = task.make_net().eval()
    for bn in [*net.bn_down, *net.bn_up]:
        bn.running_mean.uniform_(-0.5, 0.5)
    path = write_keras_h5(ras_network(net), tmp_path / 'best.h5')
    state = init_weights(path, 'cpu')
    fresh = task.make_net()
    fresh.load_state_dict(state)
    for key, value in net.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[key], value, rtol=0, atol=1e-7, msg=key)
