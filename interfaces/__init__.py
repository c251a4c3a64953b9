"""Nipype interfaces over the synthbids cores (installed as ``synthbids.interfaces``)."""

from .bids import DerivativesDataSink, MeshesDataSink
from .head import HeadTissues, HeadTissuesRPT
from .synthseg import SynthSeg, SynthSegRPT
from .synthstrip import SynthStrip, SynthStripRPT

__all__ = [
    'DerivativesDataSink',
    'HeadTissues',
    'HeadTissuesRPT',
    'MeshesDataSink',
    'SynthSeg',
    'SynthSegRPT',
    'SynthStrip',
    'SynthStripRPT',
]
