"""The head-tissue library call: its label contract, the soft volumes, the input grid, loading
only head weights, all-or-nothing writing, and the training side (label table, start from
strip weights)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from synthbids.core import labels as L
from synthbids.core.errors import OutputError, WeightsError
from synthbids.core.head import head, head_file, load_head_model


def test_head_classes_follow_the_contract():
    # 0 background, 1 brain, 2 CSF with the ventricles, 3 skull, 4 skin, 5 eyes, 6 soft tissue
    assert L.HEAD_CLASSES == (
        'background', 'brain', 'csf', 'bone', 'skin', 'eyes', 'other soft tissue'
    )  # fmt: skip
    expected = {
        0: 0,
        2: 1, 3: 1, 17: 1, 16: 1, 8: 1, 10: 1, 30: 1,  # white, cortex, hippocampus, stem, ...
        24: 2, 4: 2, 43: 2, 14: 2, 15: 2, 5: 2,  # CSF and every ventricle
        515: 3, 516: 3,  # cortical and cancellous bone
        511: 4,
        506: 5,
        507: 6, 508: 6, 509: 6, 502: 6, 514: 6, 530: 6,  # fat, muscle, mucosa, vessels, nerve
    }  # fmt: skip
    assert {v: L.head_class(v) for v in expected} == expected


def test_training_maps_cover_every_class():
    from synthbids.synth.labelmaps import GENERATION_LABELS, label_tables

    tables = label_tables()
    assert set(tables.head.tolist()) == set(range(len(L.HEAD_CLASSES)))
    assert [L.head_class(v) for v in GENERATION_LABELS] == tables.head.tolist()


@pytest.fixture(scope='module')
def tiny_model(banded_head_ckpt):
    return load_head_model(banded_head_ckpt)


def banded_image(tmp_path, affine=None, name='img.nii.gz'):
    """A 100 x 90 x 80 mm head-sized image of 1 mm voxels with six nested intensity shells."""
    shape = (100, 90, 80)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing='ij'))
    r = np.sqrt((grid**2).sum(0))
    data = np.clip(1.05 - r, 0, None) * 100  # bright centre, dark edge
    if affine is None:
        affine = np.diag([-1.0, 1.0, 1.0, 1.0])
        affine[:3, 3] = (40, -50, -30)
    img = nib.Nifti1Image(data.astype(np.float32), affine)
    img.set_sform(affine, 2)
    img.set_qform(affine, 1)
    path = tmp_path / name
    nib.save(img, path)
    return path, data


def test_labels_posteriors_and_volumes_agree(tmp_path, tiny_model):
    path, data = banded_image(tmp_path)
    with_post = head(path, tiny_model, posteriors=True)
    plain = head(path, tiny_model)
    labels, post = with_post.labels, with_post.posteriors
    assert labels.shape == data.shape and labels.dtype == np.int32
    np.testing.assert_array_equal(labels, plain.labels)  # posteriors change nothing
    assert post.shape == data.shape + (7,) and post.dtype == np.float32
    np.testing.assert_allclose(post.sum(-1), 1, atol=1e-4)
    # the label is the most probable class (ties aside)
    top = np.sort(post, axis=-1)
    clear = top[..., -1] - top[..., -2] > 1e-4
    np.testing.assert_array_equal(labels[clear], post.argmax(-1)[clear])
    # volumes are sums of the soft probabilities, in mL
    for c, name in enumerate(L.HEAD_CLASSES):
        assert with_post.volumes[name] == pytest.approx(post[..., c].sum() / 1000, rel=1e-4)
    # the tiny network labels intensity bands: bright centre -> high classes, dark edge -> 0
    centre = tuple(s // 2 for s in data.shape)
    assert labels[centre] == 6 and labels[0, 0, 0] == 0
    assert len(np.unique(labels)) == 7


def test_labels_land_on_the_input_grid_whatever_its_orientation(tmp_path, tiny_model):
    """The same head stored with its axes permuted and flipped gets the same labels, moved
    with the voxels (the conformed grid is a 2 mm LIA grid, the output the input's)."""
    path, data = banded_image(tmp_path)
    ref = head(path, tiny_model).labels
    img = nib.load(path)
    flipped = nib.Nifti1Image(
        np.ascontiguousarray(np.asanyarray(img.dataobj)[::-1].transpose(2, 0, 1)),
        img.affine @ _permute_flip(img.shape),
    )
    other = tmp_path / 'permuted.nii.gz'
    nib.save(flipped, other)
    moved = head(other, tiny_model).labels
    back = moved.transpose(1, 2, 0)[::-1]
    assert np.mean(back == ref) > 0.99


def _permute_flip(shape):
    """Voxel map of ``data[::-1].transpose(2, 0, 1)``: new (i, j, k) is old (n0-1-j, k, i)."""
    m = np.zeros((4, 4))
    m[0, 1], m[0, 3] = -1, shape[0] - 1
    m[1, 2] = 1
    m[2, 0] = 1
    m[3, 3] = 1
    return m


def test_head_file_writes_on_the_input_header_all_or_nothing(tmp_path, tiny_model):
    path, data = banded_image(tmp_path)
    out, post = tmp_path / 'head.nii.gz', tmp_path / 'post.nii.gz'
    result, _ = head_file(path, tiny_model, out, posteriors=post)
    img, src = nib.load(out), nib.load(path)
    assert img.get_data_dtype() == np.int32
    np.testing.assert_array_equal(np.asanyarray(img.dataobj), result.labels)
    np.testing.assert_allclose(img.affine, src.affine)
    assert int(img.header['sform_code']) == 2  # the input's codes are kept
    assert nib.load(post).shape == data.shape + (7,)
    # an output that cannot be written leaves nothing behind, not even the first file
    out2 = tmp_path / 'again.nii.gz'
    with pytest.raises(OutputError):
        head_file(path, tiny_model, out2, posteriors=tmp_path / 'missing' / 'post.nii.gz')
    assert not out2.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith('.')) == []


def test_only_head_weights_load(tiny_strip_ckpt):
    with pytest.raises(WeightsError, match='not head-tissue weights') as err:
        load_head_model(tiny_strip_ckpt)
    assert str(tiny_strip_ckpt) in str(err.value)


def test_head_network_starts_from_strip_weights(tiny_strip_ckpt, tmp_path):
    """``synthbids-train head --init strip.pt``: every tensor but the 7-channel output layer
    comes from the strip weights; weights sharing nothing with the network are refused."""
    from synthbids.synth.labelmaps import label_tables
    from synthbids.train.loop import load_matching
    from synthbids.train.tasks import HeadTask, NetConfig, StripTask

    config = NetConfig(features=4, max_features=8, levels=2)
    strip = StripTask(name='strip', tables=label_tables(), voxsize=2, net_config=config)
    weights = strip.make_net().state_dict()
    task = HeadTask(name='head', tables=label_tables(), voxsize=2, net_config=config)
    net = task.make_net()
    # the fresh output layer is zero: equal class probabilities at the start
    x = torch.rand(1, 1, 8, 8, 8)
    np.testing.assert_allclose(torch.softmax(net(x), 1).detach().numpy(), 1 / 7, atol=1e-6)
    said = load_matching(net, weights, tmp_path / 'strip.pt')
    assert 'new: remaining.2.conv.bias, remaining.2.conv.weight' in said
    state = net.state_dict()
    for k, v in weights.items():
        if not k.startswith('remaining.2'):
            assert torch.equal(state[k], v), k
    with pytest.raises(WeightsError, match='no tensor fits'):
        load_matching(net, {'other.weight': torch.zeros(3)}, tmp_path / 'x.pt')
