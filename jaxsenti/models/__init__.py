"""Flax NNX models, built by name from a config. Model files hold modules only."""

from __future__ import annotations

import dataclasses

from flax import nnx

MODEL_NAMES = ("lstm", "bert")


def config_class(name: str):
    if name == "lstm":
        from jaxsenti.models.lstm import LSTMConfig

        return LSTMConfig
    if name == "bert":
        from jaxsenti.models.bert import BertConfig

        return BertConfig
    raise ValueError(f"unknown model {name!r}; choose from {MODEL_NAMES}")


def config_from_dict(name: str, d: dict):
    """Rebuild a model config saved by ``dataclasses.asdict`` (extra keys such as ``type`` are ignored)."""
    cls = config_class(name)
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in names})


def build_model(name: str, cfg, *, rngs: nnx.Rngs) -> nnx.Module:
    if name == "lstm":
        from jaxsenti.models.lstm import LSTMClassifier

        return LSTMClassifier(cfg, rngs=rngs)
    if name == "bert":
        from jaxsenti.models.bert import BertClassifier

        return BertClassifier(cfg, rngs=rngs)
    raise ValueError(f"unknown model {name!r}; choose from {MODEL_NAMES}")
