"""No hidden state in the core: every load returns networks of its own, on its own device."""

from __future__ import annotations

import torch

from synthbids.core.segment import load_seg_model
from synthbids.core.strip import load_strip_model


def _device(net: torch.nn.Module) -> str:
    return next(net.parameters()).device.type


def test_loading_for_another_device_never_moves_an_earlier_model(tiny_seg_models, tiny_strip_ckpt):
    """The old module-level cache returned one shared network: loading the same weights for a
    second device moved the first caller's parameters there too."""
    cpu = load_seg_model(tiny_seg_models, qc=True, parc=True, device='cpu')
    meta = load_seg_model(tiny_seg_models, qc=True, parc=True, device='meta')
    for a, b in [(cpu.unet, meta.unet), (cpu.qc, meta.qc), (cpu.parc, meta.parc)]:
        assert a is not b
        assert _device(a) == 'cpu' and _device(b) == 'meta'
    strip_cpu = load_strip_model(tiny_strip_ckpt, device='cpu')
    strip_meta = load_strip_model(tiny_strip_ckpt, device='meta')
    assert _device(strip_cpu.net) == 'cpu' and _device(strip_meta.net) == 'meta'


def test_worker_cache_is_keyed_by_weights_and_device(tiny_strip_ckpt, tmp_path):
    from synthbids.interfaces import loaded

    calls = []

    def load(tag):
        calls.append(tag)
        return tag

    key = ('strip', loaded.weights_key(tiny_strip_ckpt), False)
    assert loaded.loaded_model((*key, 'cpu'), lambda: load('a')) == 'a'
    assert loaded.loaded_model((*key, 'cpu'), lambda: load('b')) == 'a'  # reused
    assert loaded.loaded_model((*key, 'cuda'), lambda: load('c')) == 'c'  # another device
    other = tmp_path / 'other.pt'
    other.write_bytes(tiny_strip_ckpt.read_bytes())
    key2 = ('strip', loaded.weights_key(other), False, 'cuda')
    assert loaded.loaded_model(key2, lambda: load('d')) == 'd'  # other weights
    assert calls == ['a', 'c', 'd']
