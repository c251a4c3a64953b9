"""Synth training: the generative model of random-contrast images and its targets."""
