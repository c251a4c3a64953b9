"""Regenerate the golden random-weight SynthStrip checkpoints bit-exactly (shared/golden §2.1)."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from synthbids.core.stripnet import StripUNet

DATA = Path(__file__).parent / 'data'
GOLDEN_STRIP = DATA / 'golden_strip'


def golden_strip_state(scaled: bool) -> dict:
    """``strip_random.pt`` (seed 0, default init) or ``strip_random_scaled.pt``."""
    torch.manual_seed(0)
    state = {k: v.clone() for k, v in StripUNet().state_dict().items()}
    if scaled:
        gain = math.sqrt(6 / 1.04)
        for key in state:
            if key.endswith('weight'):
                state[key] *= gain
        state['remaining.2.conv.weight'] *= 20
        state['remaining.2.conv.bias'] = 20 * state['remaining.2.conv.bias'] + 9
    return state


def write_golden_strip(path: Path, scaled: bool) -> Path:
    torch.save({'model_state_dict': golden_strip_state(scaled)}, path)
    return path
