"""One checkpoint reader (``synthbids.core.checkpoints``): the layouts it accepts, one-line
errors naming the file for everything else, and full pickles only when asked for."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
import torch

from synthbids.core.checkpoints import network_weights, read_checkpoint
from synthbids.core.errors import WeightsError
from synthbids.core.stripnet import StripUNet

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope='module')
def state():
    torch.manual_seed(0)
    return StripUNet(encoder=[[2, 2]] * 3, decoder=[[2, 2]] * 3, tail=[2, 1]).state_dict()


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_official_layout_and_bare_state_dict(state, tmp_path):
    torch.save(
        {'model_state_dict': state, 'epoch': 7, 'synthbids': {'task': 'strip'}}, tmp_path / 'a.pt'
    )
    ckpt = read_checkpoint(tmp_path / 'a.pt')
    assert same(ckpt['model_state_dict'], state) and ckpt['epoch'] == 7
    assert ckpt['synthbids'] == {'task': 'strip'}
    torch.save(state, tmp_path / 'bare.pt')
    assert same(read_checkpoint(tmp_path / 'bare.pt')['model_state_dict'], state)


@pytest.mark.parametrize(
    ('content', 'message'),
    [
        (b'hello, not a model\n', r'not a PyTorch checkpoint \('),
        (
            b'\x89HDF\r\n\x1a\n' + b'\0' * 64,
            r'is a Keras/HDF5 weights file \(SynthSeg\?\), not a SynthStrip checkpoint$',
        ),
    ],
)
def test_other_files_are_one_line_errors_naming_the_file(tmp_path, content, message):
    path = tmp_path / 'model.pt'
    path.write_bytes(content)
    for read in (read_checkpoint, network_weights):
        with pytest.raises(WeightsError) as err:
            read(path)
        text = str(err.value)
        assert text.startswith(f'{path}: ') and '\n' not in text
    with pytest.raises(WeightsError, match=message):
        read_checkpoint(path)


def test_foreign_dict_is_not_a_checkpoint(tmp_path):
    torch.save({'weight': torch.zeros(2)}, tmp_path / 'x.pt')
    with pytest.raises(
        WeightsError, match=r"not a SynthStrip checkpoint \(no 'model_state_dict'\)$"
    ):
        read_checkpoint(tmp_path / 'x.pt')
    with pytest.raises(WeightsError, match='neither exported weights nor a state.pt'):
        network_weights(tmp_path / 'x.pt')
    with pytest.raises(WeightsError, match=r'cannot read it \('):
        read_checkpoint(tmp_path / 'missing.pt')


def test_same_messages_as_the_strip_loader(tmp_path):
    """``synthbids.core.strip`` reads SynthStrip weights with this reader (or one that says
    exactly the same)."""
    from synthbids.core import strip

    files = {
        'text.pt': b'hello',
        'keras.pt': b'\x89HDF\r\n\x1a\n' + b'\0' * 64,
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    torch.save({'weight': torch.zeros(2)}, tmp_path / 'foreign.pt')
    for name in [*files, 'foreign.pt']:
        messages = []
        for read in (read_checkpoint, strip.read_checkpoint):
            with pytest.raises(WeightsError) as err:
                read(tmp_path / name)
            messages.append(str(err.value))
        assert messages[0] == messages[1]


def test_training_state_only_when_asked_for(state, tmp_path):
    """A run's state.pt (optimiser included) is read whole only with ``full_state``; weights
    readers take its network, and never unpickle arbitrary objects."""
    net = StripUNet(encoder=[[2, 2]] * 3, decoder=[[2, 2]] * 3, tail=[2, 1])
    net.load_state_dict(state)
    opt = torch.optim.Adam(net.parameters())
    run = {'net': state, 'optimizer': opt.state_dict(), 'step': 12, 'best': 0.5}
    torch.save(run, tmp_path / 'state.pt')
    full = read_checkpoint(tmp_path / 'state.pt', full_state=True)
    assert full['step'] == 12 and full['best'] == 0.5 and same(full['net'], state)
    with pytest.raises(WeightsError, match="no 'model_state_dict'"):
        read_checkpoint(tmp_path / 'state.pt')
    assert same(network_weights(tmp_path / 'state.pt'), state)
    torch.save({'model_state_dict': state}, tmp_path / 'best.pt')
    assert same(network_weights(tmp_path / 'best.pt'), state)
    with pytest.raises(WeightsError, match=r"not a training state.pt \(no 'net' and 'step'\)"):
        read_checkpoint(tmp_path / 'best.pt', full_state=True)
    # an object that is not plain tensors and containers: refused unless explicitly trusted
    torch.save({**run, 'args': argparse.Namespace(lr=1)}, tmp_path / 'pickled.pt')
    with pytest.raises(WeightsError, match='not a PyTorch checkpoint'):
        network_weights(tmp_path / 'pickled.pt')
    assert read_checkpoint(tmp_path / 'pickled.pt', full_state=True)['args'].lr == 1


def test_torch_load_is_called_in_one_place():
    """Every checkpoint synthbids reads goes through ``synthbids.core.checkpoints``."""
    callers = []
    for folder in ('synthbids', 'scripts', 'benchmarks'):
        for path in sorted((REPO / folder).rglob('*.py')):
            if re.search(r'\btorch\.load\(', path.read_text()):
                callers.append(str(path.relative_to(REPO)))
    assert callers == ['synthbids/core/checkpoints.py']
