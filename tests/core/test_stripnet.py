"""The SynthStrip network: official layout, golden unit outputs, slab-wise inference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthbids.core.checkpoints import read_checkpoint
from synthbids.core.errors import WeightsError
from synthbids.core.strip import build_strip_net
from synthbids.core.stripnet import StripUNet, infer_layout
from tests.golden import GOLDEN_STRIP, golden_strip_state


def unit_input() -> torch.Tensor:
    return torch.from_numpy(np.random.RandomState(0).rand(1, 1, 64, 64, 64).astype(np.float32))


def test_state_dict_has_exactly_the_official_keys_and_shapes():
    expected = {}
    for line in (GOLDEN_STRIP / 'strip_keys.txt').read_text().splitlines():
        if line.startswith('#') or not line.strip():
            continue
        key, shape, dtype = line.split('\t')
        expected[key] = (tuple(int(s) for s in shape.strip('()').split(',') if s.strip()), dtype)
    state = StripUNet().state_dict()
    assert list(state) == list(expected)
    for key, tensor in state.items():
        assert (tuple(tensor.shape), str(tensor.dtype).replace('torch.', '')) == expected[key]
    assert sum(t.numel() for t in state.values()) == 2_566_561


@pytest.mark.parametrize(('scaled', 'atol', 'rtol'), [(False, 1e-5, 0), (True, 5e-4, 1e-4)])
def test_unit_output_matches_reference(scaled, atol, rtol):
    net = StripUNet.from_state_dict(golden_strip_state(scaled)).eval()
    name = 'strip_random_scaled' if scaled else 'strip_random'
    ref = np.load(GOLDEN_STRIP / f'{name}_unit_output_64x64x64.npy')
    with torch.no_grad():
        out = net(unit_input()).numpy()
    np.testing.assert_allclose(out, ref, atol=atol, rtol=rtol)
    fast = net.to(memory_format=torch.channels_last_3d).predict(unit_input(), slab=24).numpy()
    np.testing.assert_allclose(fast, ref, atol=atol, rtol=rtol)


@pytest.mark.parametrize('slab', [1, 5, 64, 500])
def test_slabwise_prediction_equals_whole_volume(slab):
    torch.manual_seed(3)
    net = StripUNet(encoder=[[4, 4], [8, 8]], decoder=[[8, 8], [4, 4]], tail=[4, 4, 1]).eval()
    x = torch.rand(1, 1, 20, 12, 8)  # odd number of slabs, non-cubic
    with torch.no_grad():
        whole = net(x)
    np.testing.assert_allclose(net.predict(x, slab=slab).numpy(), whole.numpy(), atol=1e-5)


def test_layout_is_read_from_weights():
    net = StripUNet(encoder=[[3, 3]] * 6, decoder=[[5, 5]] * 6, tail=[2, 2, 1])
    layout = infer_layout(net.state_dict())
    assert layout['encoder'] == [[3, 3]] * 6
    assert layout['decoder'] == [[5, 5]] * 6
    assert layout['tail'] == [2, 2, 1]
    assert StripUNet.from_state_dict(net.state_dict()).divisor == 64


def test_official_checkpoint_format_loads_unchanged(tmp_path):
    state = golden_strip_state(scaled=False)
    torch.save({'model_state_dict': state, 'epoch': 7}, tmp_path / 'ck.pt')
    net = build_strip_net(read_checkpoint(tmp_path / 'ck.pt'))
    for key, value in net.state_dict().items():
        assert torch.equal(value, state[key])


@pytest.mark.parametrize(
    ('content', 'message'),
    [
        (b'hello, not a model\n', 'not a PyTorch checkpoint'),
        (b'\x89HDF\r\n\x1a\n' + b'\0' * 64, 'Keras/HDF5'),
    ],
)
def test_wrong_kind_of_file_is_refused(tmp_path, content, message):
    path = tmp_path / 'model.pt'
    path.write_bytes(content)
    with pytest.raises(WeightsError, match=message):
        read_checkpoint(path)


def test_foreign_state_dict_is_refused(tmp_path):
    torch.save({'model_state_dict': torch.nn.Linear(2, 2).state_dict()}, tmp_path / 'x.pt')
    with pytest.raises(WeightsError, match='not a SynthStrip checkpoint'):
        build_strip_net(read_checkpoint(tmp_path / 'x.pt'), tmp_path / 'x.pt')
    bad = golden_strip_state(scaled=False)
    bad['encoder.0.0.conv.weight'] = bad['encoder.0.0.conv.weight'][:, :, :2]
    torch.save({'model_state_dict': bad}, tmp_path / 'y.pt')
    with pytest.raises(WeightsError, match='not a SynthStrip checkpoint'):
        build_strip_net(read_checkpoint(tmp_path / 'y.pt'), tmp_path / 'y.pt')


@pytest.mark.shared
def test_regenerated_golden_checkpoints_equal_the_shared_files(shared_dir):
    for scaled, name in [(False, 'strip_random.pt'), (True, 'strip_random_scaled.pt')]:
        ref = torch.load(shared_dir / 'golden/synthstrip' / name, weights_only=True)
        ours = golden_strip_state(scaled)
        assert all(torch.equal(ours[k], v) for k, v in ref['model_state_dict'].items())
