"""Nipype interfaces over the synthbids cores (installed as ``synthbids.interfaces``)."""

from .bids import DerivativesDataSink
from .synthseg import SynthSeg, SynthSegRPT
from .synthstrip import SynthStrip, SynthStripRPT

__all__ = ['DerivativesDataSink', 'SynthSeg', 'SynthSegRPT', 'SynthStrip', 'SynthStripRPT']
