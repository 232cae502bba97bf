"""Flax NNX models: modules and their hyperparameter dataclasses only (``jaxsenti.registry`` names them).

Checkpoint conversion lives beside them in its own modules (``hf_bert.py``: Hugging Face → NNX).
"""
