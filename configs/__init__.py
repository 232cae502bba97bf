"""Experiment configs, shipped inside the package as ``jaxsenti.configs`` (see jaxsenti/config.py)."""
