"""Nipype workflows of the BIDS App (installed as ``synthbids.workflows``)."""
