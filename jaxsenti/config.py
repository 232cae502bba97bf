"""Frozen experiment configs: one ``configs/<experiment>.py`` defines ``get_config()``.

Overrides from the command line use dotted keys, ``--set optim.lr=3e-4 --set model.hidden_dim=128``;
values are parsed as Python literals. Everything is a frozen dataclass, so a config can't be
changed after it is built, only replaced.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import json
from pathlib import Path
from typing import Any


@dataclasses.dataclass(frozen=True)
class DataConfig:
    path: str | None = None  # None: $JAXSENTI_DATA_DIR/dianping.csv, then data/dianping.csv
    text_column: str = "comment"
    label_column: str = "sentiment"
    split: tuple = (1600, 200, 200)  # counts (the study's) or fractions
    max_chars: int = 5000


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    name: str = "adamw"  # adamw | adam | sgd
    lr: float = 1e-3
    schedule: str = "constant"  # constant | linear (warmup then linear decay to 0) | cosine
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0  # never applied to biases and LayerNorm scales (1-D params)
    clip_norm: float | None = 1.0
    b1: float = 0.9
    b2: float = 0.999


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    name: str  # experiment name, used for the output folder
    model_name: str  # "lstm" | "bert"
    model: Any  # LSTMConfig | BertConfig (vocab size / pretrained dims are filled in from data and checkpoint)
    data: DataConfig = DataConfig()
    optim: OptimConfig = OptimConfig()
    batch_size: int = 64
    eval_batch_size: int = 128
    epochs: int = 10
    patience: int = 3  # epochs without validation improvement before stopping; 0 disables
    monitor: str = "val_loss"  # val_loss (lower is better) | val_accuracy
    max_len: int = 256
    buckets: tuple = (32, 64, 128, 256)
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 0  # steps between mid-epoch checkpoints (0: end of epoch only)
    # scaling (docs/scaling.md): batch_size is the *global* batch, split over the devices of a ("data",) mesh
    grad_accum_steps: int = 1  # microbatches per optimizer step, summed inside the jitted step (same maths, less memory)
    mesh_devices: int | None = None  # devices to train on; None = every visible device (all hosts)
    fsdp: bool = False  # shard large params and their optimizer state over the devices instead of replicating
    # LSTM: vocabulary from the training split
    min_freq: int = 1
    # BERT: tokenizer and pretrained weights (local folder or hub id; None = random init)
    tokenizer: str | None = None
    pretrained: str | None = None


def load_config(path: str | Path) -> TrainConfig:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} not found")
    spec = importlib.util.spec_from_file_location(f"jaxsenti_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise AttributeError(f"{path} must define get_config()")
    return module.get_config()


def _parse_value(raw: str):
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw  # bare strings: --set model.pooling=mean


def override(cfg, key: str, value, _full: str | None = None):
    """A copy of ``cfg`` with the dotted ``key`` set to ``value``."""
    head, _, rest = key.partition(".")
    if not dataclasses.is_dataclass(cfg) or head not in {f.name for f in dataclasses.fields(cfg)}:
        fields = [f.name for f in dataclasses.fields(cfg)] if dataclasses.is_dataclass(cfg) else []
        raise KeyError(f"unknown config key {_full or key!r}; valid here: {fields}")
    if rest:
        return dataclasses.replace(cfg, **{head: override(getattr(cfg, head), rest, value, _full or key)})
    old = getattr(cfg, head)
    if isinstance(old, tuple) and isinstance(value, list):
        value = tuple(value)
    if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    return dataclasses.replace(cfg, **{head: value})


def apply_overrides(cfg, pairs: list[str]):
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise ValueError(f"override {pair!r} must look like key=value")
        cfg = override(cfg, key.strip(), _parse_value(raw.strip()))
    return cfg


def to_dict(cfg) -> dict:
    d = dataclasses.asdict(cfg)
    if dataclasses.is_dataclass(cfg.model):
        d["model"] = {"type": type(cfg.model).__name__, **dataclasses.asdict(cfg.model)}
    return d


def dump(cfg, path: str | Path) -> None:
    Path(path).write_text(json.dumps(to_dict(cfg), indent=2, ensure_ascii=False, default=str), encoding="utf-8")
