"""What the network interfaces share: the device, threads, output names, and the networks a
worker process keeps between nodes.

The cache is explicit and lives here, not in the core: a worker keeps one loaded model
(SynthStrip, SynthSeg or head tissues), keyed by the network (``'strip'``, ``'seg'``,
``'head'``), what it was loaded from (weights file, its size and time stamp, options) and the
device, so a node asking for another network, other weights or another device never receives
a model that another caller is using.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from nipype.interfaces.base import BaseInterfaceInputSpec, traits

_LOADED: dict = {}


class NetworkInputSpec(BaseInterfaceInputSpec):
    """Inputs of every network node that never change its results (``nohash``)."""

    model_sha256 = traits.Str(nohash=True, desc='SHA-256 of the weights file, if known')
    use_gpu = traits.Bool(False, usedefault=True, nohash=True, desc='run on the GPU')
    num_threads = traits.Int(1, usedefault=True, nohash=True, desc='CPU threads for torch')


def device(use_gpu: bool):
    import torch

    if use_gpu and not torch.cuda.is_available():
        from synthbids.core.errors import SynthbidsError

        raise SynthbidsError('--gpu was given but no CUDA device is available')
    return torch.device('cuda' if use_gpu else 'cpu')


def set_threads(num_threads: int) -> None:
    import torch

    if num_threads and num_threads > 0:
        torch.set_num_threads(num_threads)


def weights_key(path: str | os.PathLike | None) -> tuple:
    """Identity of a weights file (or folder) for the cache: path, size and time stamp."""
    if not path:
        return (None,)
    path = Path(path).resolve()
    stat = path.stat()
    return (str(path), stat.st_size, stat.st_mtime_ns)


def loaded_model(key: tuple, load: Callable[[], object]):
    """The model loaded for ``key`` in this worker, loading it (and dropping any other) on
    first use."""
    if key not in _LOADED:
        _LOADED.clear()  # one model per worker is enough
        _LOADED[key] = load()
    return _LOADED[key]


def output_name(in_file: str, suffix: str) -> str:
    """``<input name without extension><suffix>.nii.gz``."""
    from synthbids.core.imageio import split_ext

    stem, _ = split_ext(Path(in_file).name)
    return f'{stem}{suffix}.nii.gz'


def in_memory(data, volume):
    """A nibabel image of ``data`` on ``volume``'s grid, for reportlets drawn from memory."""
    import nibabel as nib

    return nib.Nifti1Image(data, volume.affine)
