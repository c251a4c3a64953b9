"""Nipype interfaces over the synthbids cores (installed as ``synthbids.interfaces``)."""
