"""Flax NNX models, built by name from a config. Model files hold modules only."""
