"""Keras HDF5 weights <-> PyTorch SynthSeg networks, mapped by layer name.

The official SynthSeg files (``synthseg_2.0.h5``, ...) are Keras weights files: one HDF5 group
per layer (at the root or under ``model_weights/``), each holding datasets named
``<layer>/<weight>:0``. Layer names carry the network prefix (``unet_``, ``l2l_``, ``unet2_``,
``unet_parc_``, ``qc_``), so several networks can share one file (the robust cascade does).

Layouts: a Keras Conv3D kernel is (kD, kH, kW, C_in, C_out), PyTorch wants
(C_out, C_in, kD, kH, kW); BatchNorm's gamma / beta / moving_mean / moving_variance become
weight / bias / running_mean / running_var (eps 1e-3 is set by ``seg_nets``). Widths, depth,
kernel size and the decoder merges are read from the kernel shapes, so narrower or wider
variants load as long as the layer names are the official ones.

:func:`write_keras_h5` writes the same layout from PyTorch networks, so weights trained here
can be shipped in the official format (and tests can make tiny SynthSeg files).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from .errors import WeightsError
from .qc_net import QCNet
from .seg_nets import SegUNet

#: Prefixes of the networks SynthSeg stores in its weights files.
PREFIXES = {
    'seg': 'unet_',
    'robust_s1': 'unet_',
    'robust_denoiser': 'l2l_',
    'robust_s2': 'unet2_',
    'parc': 'unet_parc_',
    'qc': 'qc_',
}

Weights = dict[str, dict[str, np.ndarray]]

_WEIGHT_NAME = re.compile(r'([^/]+?)(?::\d+)?$')


def read_keras_weights(path: str | os.PathLike) -> Weights:
    """``{layer name: {weight name: array}}`` for every layer with weights in a Keras HDF5
    file (weight names without ``:0``, e.g. ``kernel``, ``moving_mean``)."""
    import h5py

    path = Path(path)
    try:
        with h5py.File(path, 'r') as fh:
            root = fh['model_weights'] if 'model_weights' in fh else fh
            out: Weights = {}
            for layer, group in root.items():
                if not isinstance(group, h5py.Group):
                    continue
                arrays: dict[str, np.ndarray] = {}

                def collect(name, obj, arrays=arrays):
                    if isinstance(obj, h5py.Dataset):
                        key = _WEIGHT_NAME.search(name).group(1)
                        arrays[key] = np.asarray(obj[()], dtype=np.float32)

                group.visititems(collect)
                if arrays:
                    out[layer] = arrays
    except OSError as err:
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise WeightsError(
            f'not a readable Keras HDF5 weights file ({detail[:120]})', path
        ) from None
    if not out:
        raise WeightsError('HDF5 file holds no layer weights', path)
    return out


def read_keras_meta(path: str | os.PathLike) -> dict:
    """The ``synthbids`` metadata of weights we trained ({} for official files)."""
    import h5py

    with h5py.File(path, 'r') as fh:
        raw = fh.attrs.get('synthbids')
    if raw is None:
        return {}
    return json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))


def prefixes_in(weights: Mapping[str, object]) -> set[str]:
    """Which of SynthSeg's networks a weights mapping contains (by their first convolution)."""
    found = set()
    for prefix in set(PREFIXES.values()):
        if f'{prefix}conv_downarm_0_0' in weights:
            found.add(prefix)
    return found


# --------------------------------------------------------------------------- U-Net


def _kernel(weights: Weights, name: str) -> np.ndarray:
    try:
        kernel = weights[name]['kernel']
    except KeyError:
        raise KeyError(f'layer {name} (kernel) is missing') from None
    if kernel.ndim != 5:
        raise ValueError(f'layer {name} is not a 3-D convolution (kernel shape {kernel.shape})')
    return kernel


def _count(weights: Weights, pattern: str) -> int:
    n = 0
    while pattern.format(n) in weights:
        n += 1
    return n


def unet_layout(weights: Weights, prefix: str) -> dict:
    """Constructor arguments of :class:`SegUNet` read from the kernels under ``prefix``."""
    n_levels = _count(weights, prefix + 'conv_downarm_{}_0')
    n_convs = _count(weights, prefix + 'conv_downarm_0_{}')
    if n_levels < 2 or n_convs < 1:
        raise KeyError(f'no U-Net with prefix {prefix!r} in the weights')
    first = _kernel(weights, f'{prefix}conv_downarm_0_0')
    kernel = int(first.shape[0])
    encoder = [
        [int(_kernel(weights, f'{prefix}conv_downarm_{lv}_{c}').shape[-1]) for c in range(n_convs)]
        for lv in range(n_levels)
    ]
    decoder, merges = [], []
    prev = encoder[-1][-1]
    for m in range(n_levels - 1):
        name = f'{prefix}conv_uparm_{n_levels + m}'
        k0 = _kernel(weights, f'{name}_0')
        skip = encoder[n_levels - 2 - m][-1]
        if k0.shape[3] == prev + skip:
            merges.append(True)
        elif k0.shape[3] == prev:
            merges.append(False)
        else:
            raise ValueError(f'{name}_0 has {k0.shape[3]} input channels, expected {prev + skip}')
        decoder.append([int(_kernel(weights, f'{name}_{c}').shape[-1]) for c in range(n_convs)])
        prev = decoder[-1][-1]
    likelihood = _kernel(weights, f'{prefix}likelihood')
    return {
        'in_channels': int(first.shape[3]),
        'n_labels': int(likelihood.shape[-1]),
        'encoder': encoder,
        'decoder': decoder,
        'merges': merges,
        'kernel': kernel,
    }


def unet_keras_names(net: SegUNet, prefix: str) -> dict[str, str]:
    """Module path in ``net`` -> Keras layer name."""
    n_levels = len(net.down)
    names = {}
    for lv, convs in enumerate(net.down):
        for c in range(len(convs)):
            names[f'down.{lv}.{c}.conv'] = f'{prefix}conv_downarm_{lv}_{c}'
        names[f'bn_down.{lv}'] = f'{prefix}bn_down_{lv}'
    for m, convs in enumerate(net.up):
        for c in range(len(convs)):
            names[f'up.{m}.{c}.conv'] = f'{prefix}conv_uparm_{n_levels + m}_{c}'
        names[f'bn_up.{m}'] = f'{prefix}bn_up_{m}'
    names['likelihood'] = f'{prefix}likelihood'
    return names


def qc_layout(weights: Weights, prefix: str = 'qc_') -> dict:
    n_levels = _count(weights, prefix + 'conv_downarm_{}_0')
    n_convs = _count(weights, prefix + 'conv_downarm_0_{}')
    n_final = _count(weights, prefix + 'final_conv_{}')
    if n_levels < 1 or n_convs < 1 or n_final < 1:
        raise KeyError(f'no QC network with prefix {prefix!r} in the weights')
    first = _kernel(weights, f'{prefix}conv_downarm_0_0')
    encoder = [
        [int(_kernel(weights, f'{prefix}conv_downarm_{lv}_{c}').shape[-1]) for c in range(n_convs)]
        for lv in range(n_levels)
    ]
    return {
        'in_channels': int(first.shape[3]),
        'encoder': encoder,
        'expand': [f'{prefix}expand_down_merge_{lv}' in weights for lv in range(n_levels)],
        'final': [
            int(_kernel(weights, f'{prefix}final_conv_{i}').shape[-1]) for i in range(n_final)
        ],
        'kernel': int(first.shape[0]),
    }


def qc_keras_names(net: QCNet, prefix: str = 'qc_') -> dict[str, str]:
    names = {}
    for lv, convs in enumerate(net.down):
        for c in range(len(convs)):
            names[f'down.{lv}.{c}.conv'] = f'{prefix}conv_downarm_{lv}_{c}'
        if net.layout['expand'][lv]:
            names[f'expand.{lv}.conv'] = f'{prefix}expand_down_merge_{lv}'
        names[f'bn_down.{lv}'] = f'{prefix}bn_down_{lv}'
    for i in range(len(net.final)):
        names[f'final.{i}.conv'] = f'{prefix}final_conv_{i}'
    return names


# --------------------------------------------------------------------------- conversion

_BN = (('gamma', 'weight'), ('beta', 'bias'), ('moving_mean', 'running_mean'))


def _load_into(net: torch.nn.Module, names: Mapping[str, str], weights: Weights) -> None:
    state = {}
    for module, layer in names.items():
        arrays = weights.get(layer)
        if arrays is None:
            raise KeyError(f'layer {layer} is missing')
        if 'kernel' in arrays:
            kernel = arrays['kernel']
            state[f'{module}.weight'] = torch.from_numpy(
                np.ascontiguousarray(kernel.transpose(4, 3, 0, 1, 2))
            )
            state[f'{module}.bias'] = torch.from_numpy(
                arrays.get('bias', np.zeros(kernel.shape[-1], np.float32))
            )
        else:
            for keras, torch_name in _BN:
                state[f'{module}.{torch_name}'] = torch.from_numpy(arrays[keras])
            state[f'{module}.running_var'] = torch.from_numpy(arrays['moving_variance'])
            state[f'{module}.num_batches_tracked'] = torch.tensor(0)
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith('num_batches_tracked')]
    if missing or unexpected:
        raise ValueError(f'weights do not fit the network (missing {missing[:3]})')


def build_unet(weights: Weights, prefix: str, path: str | os.PathLike = '') -> SegUNet:
    """A :class:`SegUNet` with the widths of, and loaded with, the ``prefix`` layers."""
    try:
        net = SegUNet(**unet_layout(weights, prefix))
        _load_into(net, unet_keras_names(net, prefix), weights)
    except (KeyError, ValueError, RuntimeError) as err:
        detail = str(err).strip("'").splitlines()[0]
        raise WeightsError(f'not a SynthSeg network ({prefix}*): {detail[:160]}', path) from None
    return net.eval()


def build_qc(weights: Weights, path: str | os.PathLike = '', prefix: str = 'qc_') -> QCNet:
    try:
        net = QCNet(**qc_layout(weights, prefix))
        _load_into(net, qc_keras_names(net, prefix), weights)
    except (KeyError, ValueError, RuntimeError) as err:
        detail = str(err).strip("'").splitlines()[0]
        raise WeightsError(f'not a SynthSeg QC network: {detail[:160]}', path) from None
    return net.eval()


# --------------------------------------------------------------------------- writing


def keras_weights_of(net: torch.nn.Module, prefix: str) -> Weights:
    """Keras-layout arrays of a PyTorch :class:`SegUNet` or :class:`QCNet`."""
    names = (
        qc_keras_names(net, prefix) if isinstance(net, QCNet) else unet_keras_names(net, prefix)
    )
    modules = dict(net.named_modules())
    out: Weights = {}
    for module, layer in names.items():
        mod = modules[module]
        if isinstance(mod, torch.nn.Conv3d):
            w = mod.weight.detach().cpu().numpy()
            out[layer] = {
                'kernel': np.ascontiguousarray(w.transpose(2, 3, 4, 1, 0), dtype=np.float32),
                'bias': mod.bias.detach().cpu().numpy().astype(np.float32),
            }
        else:
            out[layer] = {
                'gamma': mod.weight.detach().cpu().numpy().astype(np.float32),
                'beta': mod.bias.detach().cpu().numpy().astype(np.float32),
                'moving_mean': mod.running_mean.cpu().numpy().astype(np.float32),
                'moving_variance': mod.running_var.cpu().numpy().astype(np.float32),
            }
    return out


_ORDER = ('kernel', 'bias', 'gamma', 'beta', 'moving_mean', 'moving_variance')


def write_keras_h5(
    nets: torch.nn.Module | Mapping[str, torch.nn.Module],
    path: str | os.PathLike,
    prefix: str = 'unet_',
    meta: dict | None = None,
) -> Path:
    """Write networks as a Keras weights-only HDF5 file, readable by ``mri_synthseg``
    (``load_weights(by_name=True)``) and by :func:`read_keras_weights`.

    ``nets`` is one network (stored under ``prefix``) or ``{prefix: network}`` for several
    (the robust cascade: ``{'unet_': s1, 'l2l_': denoiser, 'unet2_': s2}``). ``meta`` (weights
    trained by synthbids: task, recipe, the voxel size the network works at) is stored as a
    JSON root attribute ``synthbids``, which Keras ignores.
    """
    import h5py

    if isinstance(nets, torch.nn.Module):
        nets = {prefix: nets}
    layers: Weights = {}
    for pre, net in nets.items():
        layers.update(keras_weights_of(net, pre))
    path = Path(path)
    with h5py.File(path, 'w') as fh:
        fh.attrs['backend'] = b'tensorflow'
        fh.attrs['keras_version'] = b'2.4.0'
        if meta:
            fh.attrs['synthbids'] = json.dumps(meta)
        fh.attrs['layer_names'] = np.array([n.encode() for n in layers], dtype='S')
        for layer, arrays in layers.items():
            group = fh.create_group(layer)
            keys = [k for k in _ORDER if k in arrays]
            group.attrs['weight_names'] = np.array(
                [f'{layer}/{k}:0'.encode() for k in keys], dtype='S'
            )
            for k in keys:
                group.create_dataset(f'{layer}/{k}:0', data=arrays[k])
    return path
