"""BIDS input and output: finding images, naming derivatives, dataset-level files."""
