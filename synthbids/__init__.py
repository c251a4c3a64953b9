"""synthbids: SynthStrip and SynthSeg in PyTorch, packaged as a BIDS App."""

try:
    from ._version import __version__
except ImportError:  # pragma: no cover - source tree without setuptools-scm metadata
    __version__ = '0+unknown'

__all__ = ['__version__']
