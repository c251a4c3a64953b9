"""Reading PyTorch checkpoints: the one place where synthbids calls ``torch.load``.

Three kinds of ``.pt`` files are read:

* **weights** (:func:`read_checkpoint`): the official SynthStrip layout
  ``{'model_state_dict': ..., ...}`` (synthbids' exported weights add a ``'synthbids'`` entry),
  or a bare SynthStrip state dict; read with ``weights_only=True`` (no code runs);
* **a training run's** ``state.pt`` (``read_checkpoint(path, full_state=True)``): network,
  optimiser, step, best score; read with ``weights_only=False``, so only for files synthbids
  wrote itself (the run folder being resumed);
* **network weights to start training from** (:func:`network_weights`): either of the above,
  read safely (``weights_only=True``).

Anything else (a Keras/HDF5 file, a truncated or foreign file) is a one-line
:class:`~synthbids.core.errors.WeightsError` naming the file.
"""

from __future__ import annotations

import os

import torch

from .errors import WeightsError

#: the first bytes of every HDF5 file (Keras ``.h5`` weights)
HDF5_MAGIC = b'\x89HDF'


class CheckpointError(WeightsError):
    """A file that is not the checkpoint asked for; ``problem`` is the message without the
    file name (for callers that say what they were doing with it)."""

    def __init__(self, problem: str, path: str | os.PathLike):
        self.problem = problem
        super().__init__(problem, path)


def _load(path: str | os.PathLike, what: str, trusted: bool = False, map_location='cpu'):
    """``torch.load`` with one-line errors; ``trusted`` allows arbitrary pickled objects."""
    path = os.fspath(path)
    try:
        with open(path, 'rb') as fh:
            magic = fh.read(8)
    except OSError as err:
        raise CheckpointError(f'cannot read it ({err.strerror})', path) from None
    if magic.startswith(HDF5_MAGIC):
        raise CheckpointError(f'is a Keras/HDF5 weights file (SynthSeg?), not a {what}', path)
    try:
        return torch.load(path, map_location=map_location, weights_only=not trusted)
    except Exception as err:
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f'not a PyTorch checkpoint ({detail[:120]})', path) from None


def _is_state_dict(obj) -> bool:
    """A bare SynthStrip state dict (official key names)."""
    return isinstance(obj, dict) and any(str(k).startswith('encoder.') for k in obj)


def _is_training_state(obj) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get('net'), dict) and 'step' in obj


def read_checkpoint(
    path: str | os.PathLike, *, full_state: bool = False, map_location='cpu'
) -> dict:
    """Load SynthStrip-layout weights as ``{'model_state_dict': state, ...}`` (a bare state
    dict is wrapped; other entries such as ``'synthbids'`` metadata are kept).

    With ``full_state``, load a training run's ``state.pt`` instead (``net``, ``optimizer``,
    ``step``, ``best``), unpickled with ``weights_only=False``: trusted files only.
    One-line :class:`WeightsError` naming the file for anything else."""
    if full_state:
        state = _load(path, 'training state', trusted=True, map_location=map_location)
        if not _is_training_state(state):
            raise CheckpointError("not a training state.pt (no 'net' and 'step')", path)
        return state
    ckpt = _load(path, 'SynthStrip checkpoint', map_location=map_location)
    if isinstance(ckpt, dict) and 'model_state_dict' in ckpt:
        return ckpt
    if _is_state_dict(ckpt):
        return {'model_state_dict': ckpt}
    raise CheckpointError("not a SynthStrip checkpoint (no 'model_state_dict')", os.fspath(path))


def network_weights(path: str | os.PathLike, map_location='cpu') -> dict:
    """The network's state dict from exported ``.pt`` weights or from a run's ``state.pt``
    (read safely): what a new training run starts from."""
    ckpt = _load(path, 'PyTorch checkpoint', map_location=map_location)
    if isinstance(ckpt, dict) and isinstance(ckpt.get('model_state_dict'), dict):
        return ckpt['model_state_dict']
    if _is_training_state(ckpt):
        return ckpt['net']
    if _is_state_dict(ckpt):
        return ckpt
    raise CheckpointError('neither exported weights nor a state.pt (no network weights)', path)
