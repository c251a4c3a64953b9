"""Package data (label tables, weights registry, packaged default weights)."""

from importlib.resources import files


def data_path(name: str):
    """Return a Traversable for a file shipped in ``synthbids/data``."""
    return files(__name__).joinpath(name)
