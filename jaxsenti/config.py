"""Frozen experiment configs: ``configs/<experiment>.py`` defines ``get_config() -> TrainConfig``.

The experiment configs ship inside the package (``jaxsenti.configs``), so ``--config lstm_dianping``
works from any folder; ``--config path/to/file.py`` loads any other file. A config file is Python
that gets executed: only load files you trust.

Overrides from the command line use dotted keys, ``--set optim.lr=3e-4 --set model.hidden_dim=128``;
values are parsed as Python literals. Everything is a frozen dataclass, so a config can't be
changed after it is built, only replaced, and every field is checked when it is built: a wrong
type or range is one line naming the field.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.resources
import importlib.util
import json
import sys
import traceback
from pathlib import Path
from typing import Any

from jaxsenti import atomic, registry
from jaxsenti.fields import ConfigError, check_fields, require


def _check_types(obj, prefix: str = "") -> None:
    """The field checks of :mod:`jaxsenti.fields` (types, finite numbers, declared ranges), fields named with ``prefix``."""
    try:
        check_fields(obj)
    except ConfigError as e:
        raise e.under(prefix) from None



def _check_run(cfg, part: str) -> None:
    """Types of the config and its model and ``part`` configs, and the ranges of the loop fields both run configs share."""
    _check_types(cfg)
    # the name becomes a folder under runs/: one plain path component
    require(bool(cfg.name.strip()) and cfg.name not in (".", "..") and not any(c in cfg.name for c in "/\\\0"),
             "name", f"must be a plain folder name (no /, \\ or ..), got {cfg.name!r}")
    _check_types(cfg.model, "model.")
    _check_types(getattr(cfg, part), f"{part}.")
    for name in ("batch_size", "eval_batch_size", "epochs", "max_len", "log_every", "grad_accum_steps"):
        require(getattr(cfg, name) >= 1, name, "must be >= 1")
    for name in ("patience", "checkpoint_every"):
        require(getattr(cfg, name) >= 0, name, "must be >= 0")
    require(cfg.mesh_devices is None or cfg.mesh_devices >= 1, "mesh_devices", "must be >= 1 or None")
    # numpy's and scikit-learn's seeds are unsigned 32-bit numbers
    require(0 <= cfg.seed < 2**32, "seed", f"must be in [0, 2**32), got {cfg.seed}")
    require(cfg.monitor.startswith("val_"), "monitor", "must be val_<metric>, e.g. val_loss or val_accuracy")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    path: str | None = None  # None: $JAXSENTI_DATA_DIR/dianping.csv, then data/dianping.csv
    text_column: str = "comment"
    label_column: str = "sentiment"
    split: tuple = (1600, 200, 200)  # counts (the study's) or fractions
    max_chars: int = 5000  # longer reviews are truncated when loaded (counted in the load report)

    def __post_init__(self):
        _check_types(self, "data.")
        require(self.max_chars >= 1, "data.max_chars", "must be >= 1")
        require(len(self.split) == 3 and all(isinstance(s, (int, float)) and not isinstance(s, bool) and s > 0 for s in self.split),
                 "data.split", f"must be three positive numbers (train/val/test counts or fractions), got {self.split}")


SCHEDULES = ("constant", "linear", "cosine", "slanted_triangular", "one_cycle")


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    name: str = "adamw"  # adamw | adam | sgd
    lr: float = 1e-3
    schedule: str = "constant"  # constant | linear (warmup then linear decay to 0) | cosine | slanted_triangular
    # (ULMFiT: linear up for warmup_ratio of the steps, then linear down to lr/32) | one_cycle (cosine up, cosine down)
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0  # never applied to biases and LayerNorm scales (1-D params)
    clip_norm: float | None = 1.0
    b1: float = 0.9
    b2: float = 0.999
    # ULMFiT's fine-tuning recipe (Howard & Ruder 2018), over the model's layer groups (its registry entry's
    # layer_group: LSTM head | LSTM layers top to bottom | embedding; BERT head+pooler | layers | embeddings):
    layer_lr_decay: float = 1.0  # each group trains at this times the rate of the group above (ULMFiT 1/2.6; BERT LLRD ~0.9)
    unfreeze_every: int = 0  # epochs between unfreezing one more group, top first (0: everything trains from step 0)

    def __post_init__(self):
        _check_types(self, "optim.")
        require(self.name in ("adamw", "adam", "sgd"), "optim.name", "must be adamw, adam or sgd")
        require(self.schedule in SCHEDULES, "optim.schedule", "must be " + ", ".join(SCHEDULES))
        require(0 < self.layer_lr_decay <= 1, "optim.layer_lr_decay", "must be in (0, 1]")
        require(self.unfreeze_every >= 0, "optim.unfreeze_every", "must be >= 0 (epochs)")
        require(self.lr > 0, "optim.lr", "must be > 0")
        require(0 <= self.warmup_ratio < 1, "optim.warmup_ratio", "must be in [0, 1)")
        require(self.weight_decay >= 0, "optim.weight_decay", "must be >= 0")
        require(self.clip_norm is None or self.clip_norm > 0, "optim.clip_norm", "must be > 0 or None")
        require(0 <= self.b1 < 1 and 0 <= self.b2 < 1, "optim.b1/b2", "must be in [0, 1)")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    name: str  # experiment name, used for the output folder
    model: Any  # hyperparameters of a registered model (LSTMConfig, BertConfig, ...); vocab size is filled in from data
    encoder: Any = None  # the model's encoder config (WordVocabConfig, WordPieceConfig); None: its defaults
    data: DataConfig = DataConfig()
    optim: OptimConfig = OptimConfig()
    batch_size: int = 64
    eval_batch_size: int = 128
    epochs: int = 10
    patience: int = 3  # epochs without validation improvement before stopping; 0 disables
    monitor: str = "val_loss"  # val_<name> of the objective's monitors: val_loss (lower is better) | val_accuracy
    max_len: int = 256
    buckets: tuple = (32, 64, 128, 256)  # padded lengths; strictly increasing, the last >= max_len
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 0  # steps between mid-epoch checkpoints (0: end of epoch only)
    # scaling (README "Scaling out"): batch_size is the *global* batch, split over the devices of a ("data",) mesh
    grad_accum_steps: int = 1  # microbatches per optimizer step, summed inside the jitted step (same maths, less memory)
    mesh_devices: int | None = None  # devices to train on; None = every visible device (all hosts)
    fsdp: bool = False  # shard large params and their optimizer state over the devices instead of replicating
    pretrained: str | None = None  # weights to start from (read by the model's registered loader); None: random init

    def __post_init__(self):
        spec = registry.spec_for(self.model)
        require(type(self.model) is spec.config, "model", f"must be a {spec.config.__name__} to train {spec.name!r}")
        if self.encoder is None:
            object.__setattr__(self, "encoder", spec.encoder_config())
        require(isinstance(self.encoder, spec.encoder_config), "encoder",
                 f"must be a {spec.encoder_config.__name__} for model {spec.name!r}")
        _check_run(self, "encoder")
        b = self.buckets
        require(len(b) >= 1 and all(isinstance(x, int) and x >= 1 for x in b), "buckets", "must be positive integers")
        require(all(x < y for x, y in zip(b, b[1:])), "buckets", f"must be strictly increasing, got {b}")
        require(b[-1] >= self.max_len, "buckets", f"the last bucket ({b[-1]}) must be >= max_len ({self.max_len})")

    @property
    def model_name(self) -> str:
        return registry.spec_for(self.model).name


@dataclasses.dataclass(frozen=True)
class CorpusConfig:
    """Unlabeled text to pretrain on (rules in ``jaxsenti.data.corpus``: no 酒店 rows, no fine-tuning val/test text)."""

    sources: tuple = ()  # (path, text column or None[, encoding]): CSV or TXT (one review per line); () = the default corpus
    shopping: bool = True  # default corpus: online_shopping_10_cats.csv without 酒店 (found like the datasets)
    finetune: str | None = None  # experiment config of the fine-tuning run: the validation/test texts of its split for
    # seeds 0 .. exclude_seeds-1 are kept out of the corpus, and (with finetune_train) its other texts join it
    finetune_train: bool = True
    exclude_seeds: int = 5
    heldout_fraction: float = 0.02  # held out for the validation MLM/LM loss each epoch
    max_texts: int | None = None  # keep only the first N texts (quick runs)

    def __post_init__(self):
        _check_types(self, "corpus.")
        require(all(isinstance(s, tuple) and len(s) in (2, 3) for s in self.sources), "corpus.sources",
                 "must be (path, text column or None[, encoding]) tuples")
        require(self.exclude_seeds >= 1, "corpus.exclude_seeds", "must be >= 1")
        require(0 < self.heldout_fraction < 0.5, "corpus.heldout_fraction", "must be in (0, 0.5)")
        require(self.max_texts is None or self.max_texts >= 10, "corpus.max_texts", "must be >= 10 or None")


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """Pretraining a registered model on unlabeled text; the loop fields mean what they mean in TrainConfig."""

    name: str
    model: Any  # the model's hyperparameters (BertConfig, LSTMConfig); vocab size is filled in from the task
    task: Any = None  # the model's pretraining task config (e.g. MaskingConfig); None: its defaults
    corpus: CorpusConfig = CorpusConfig()
    optim: OptimConfig = OptimConfig(name="adamw", lr=1e-3, schedule="linear", warmup_ratio=0.05, weight_decay=0.01)
    batch_size: int = 128
    eval_batch_size: int = 256
    epochs: int = 10
    max_len: int = 128  # tokens per packed sequence
    seed: int = 0
    patience: int = 0
    monitor: str = "val_loss"
    log_every: int = 20
    checkpoint_every: int = 500
    grad_accum_steps: int = 1
    mesh_devices: int | None = None
    fsdp: bool = False
    time_budget_s: float | None = None  # stop once this much training time has passed (validating first)
    snapshot_epochs: tuple = ()  # also export the model after these epochs (snapshots/epochN): how much pretraining helps
    # continue from this pretrained folder (or a shipped checkpoint's name) instead of random weights: domain-adaptive
    # pretraining; the model's sizes come from it, its vocabulary is kept and extended (pretrain.resolve_init)
    init_from: str | None = None

    def __post_init__(self):
        spec = registry.spec_for(self.model)
        require(spec.pretraining is not None, "model", f"model {spec.name!r} has no pretraining task")
        if self.task is None:
            object.__setattr__(self, "task", spec.pretraining.config())
        require(isinstance(self.task, spec.pretraining.config), "task",
                 f"must be a {spec.pretraining.config.__name__} for model {spec.name!r}")
        _check_run(self, "task")
        require(self.time_budget_s is None or self.time_budget_s > 0, "time_budget_s", "must be > 0 or None")
        # epochs past the run's end are dropped when it starts, and said (pretrain.py): `--set epochs=2` just works
        require(all(isinstance(e, int) and not isinstance(e, bool) and e >= 1 for e in self.snapshot_epochs),
                 "snapshot_epochs", f"must be epoch numbers >= 1, got {self.snapshot_epochs}")

    @property
    def model_name(self) -> str:
        return registry.spec_for(self.model).name


# --------------------------------------------------------------------------------------------------
# loading, overrides, saving


def packaged_configs() -> dict[str, Path]:
    """Experiment configs shipped with the package: name → file."""
    folder = importlib.resources.files("jaxsenti.configs")
    return {p.name[:-3]: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".py") and not p.name.startswith("_")}


def resolve_config(name_or_path: str | Path) -> Path:
    """A config file: a packaged config by name (``lstm_dianping`` or ``lstm_dianping.py``), else an existing
    ``.py`` file. A bare packaged name always means the packaged config, even when the current folder holds a
    file of that name (said on stderr: ``./NAME.py`` loads that file); only Python files are configs."""
    p = Path(name_or_path)
    known = packaged_configs()
    stem = p.name[:-3] if p.name.endswith(".py") else p.name
    bare = len(p.parts) == 1 and not str(name_or_path).startswith(("./", ".\\"))
    if stem in known and (bare or (p.parent.name == "configs" and not p.is_file())):
        if bare and p.is_file():
            print(f"[jaxsenti] --config {name_or_path}: the packaged config {stem} (not the file {p} of the current "
                  f"folder; pass ./{p} to load that file)", file=sys.stderr)
        return known[stem]
    if p.is_file():
        if p.suffix != ".py":
            raise ConfigError(f"config {str(name_or_path)!r} is not a Python config file (.py defining get_config()); "
                              f"packaged configs: {', '.join(sorted(known))}")
        return p
    if p.is_dir():
        raise ConfigError(f"config {str(name_or_path)!r} is a folder; give a .py config file or a packaged name "
                          f"({', '.join(sorted(known))})")
    raise ConfigError(f"config {str(name_or_path)!r} not found: not a file, and not one of the packaged configs "
                      f"({', '.join(sorted(known))})")


_KINDS = {"TrainConfig": "training", "PretrainConfig": "pretraining"}


def _line_in(path: Path, e: BaseException) -> str:
    """``line N: `` of the deepest frame of ``e``'s traceback in the file ``path`` ('' if none)."""
    lines = [f.lineno for f in traceback.extract_tb(e.__traceback__) if Path(f.filename) == path]
    return f"line {lines[-1]}: " if lines else ""


def load_config(name_or_path: str | Path, kind: type | None = None) -> TrainConfig | PretrainConfig:
    """The config a packaged name or file defines; ``kind`` (TrainConfig or PretrainConfig) is what the caller needs.

    A config field out of range, or a model config's own check, is one line naming the file and line;
    other exceptions raised by a user's file keep their traceback (they are bugs in that file)."""
    path = resolve_config(name_or_path)
    spec = importlib.util.spec_from_file_location(f"jaxsenti_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise ConfigError(f"{path}: line {e.lineno}: syntax error: {e.msg}") from None
    if not callable(getattr(module, "get_config", None)):
        raise ConfigError(f"{path} must define get_config()")
    try:
        cfg = module.get_config()
    except (ConfigError, ValueError) as e:
        raise ConfigError(f"{path}: {_line_in(path, e)}{e}") from None
    if not isinstance(cfg, (TrainConfig, PretrainConfig)):
        raise ConfigError(f"{path}: get_config() returned {type(cfg).__name__}, not a TrainConfig or PretrainConfig")
    if kind is not None and not isinstance(cfg, kind):
        spec, name = registry.spec_for(cfg.model), path.stem
        if kind is TrainConfig:
            hint = f"pretrain with it (`jaxsenti pretrain {spec.name} --config {name}`), or train with a training config such as {spec.default_config}"
        else:
            hint = f"train with it (`jaxsenti train {spec.name} --config {name}`), or pretrain with a pretraining config such as {spec.pretrain_config}"
        raise ConfigError(f"{name} is a {_KINDS[type(cfg).__name__]} config, not a {_KINDS[kind.__name__]} one: {hint}")
    return cfg


def _parse_value(raw: str):
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        pass
    # nan, inf, 1e999 are numbers (refused by the range checks with their own name), not strings
    return float(raw) if raw.strip().lower().lstrip("+-") in ("nan", "inf", "infinity") else raw  # else a bare string: --set model.pooling=mean


def _coerce(old, value):
    """An override's literal as the field's type: lists become tuples, ints become floats."""
    if isinstance(old, tuple) and isinstance(value, list):
        return tuple(value)
    if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _replace(cfg, updates: dict, prefix: str = ""):
    """``cfg`` with every dotted key of ``updates`` set, each object rebuilt once, innermost first, so checks
    across fields see all the new values together (``--set epochs=2 --set snapshot_epochs=[1]`` in any order)."""
    fields = [f.name for f in dataclasses.fields(cfg)] if dataclasses.is_dataclass(cfg) else []
    groups: dict[str, dict] = {}
    for key, value in updates.items():
        head, _, rest = key.partition(".")
        if head not in fields or (rest and not dataclasses.is_dataclass(getattr(cfg, head))):
            raise ConfigError(f"unknown config key {prefix + key!r}; valid here: {fields}")
        groups.setdefault(head, {})[rest] = value
    changes = {}
    for head, sub in groups.items():
        old = getattr(cfg, head)
        changes[head] = _coerce(old, sub[""]) if "" in sub else _replace(old, sub, f"{prefix}{head}.")
    try:
        return dataclasses.replace(cfg, **changes)
    except ConfigError as e:  # a field check of the object rebuilt here: name the field in full
        raise e.under(prefix) from None
    except (TypeError, ValueError) as e:  # a model config's own checks (e.g. heads dividing the width)
        raise ConfigError(f"config field {prefix}{', '.join(changes)}: {e}") from None


def override(cfg, key: str, value):
    """A copy of ``cfg`` with the dotted ``key`` set to ``value``."""
    return _replace(cfg, {key: value})


def apply_overrides(cfg, pairs: list[str]):
    """``cfg`` with ``KEY=VALUE`` overrides (values are Python literals, else strings), all applied at once."""
    updates = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise ConfigError(f"override {pair!r} must look like key=value")
        updates[key.strip()] = _parse_value(raw.strip())
    return _replace(cfg, updates) if updates else cfg


def to_dict(cfg: TrainConfig | PretrainConfig) -> dict:
    """JSON-ready; the per-model parts (model, encoder, task) carry their class name as ``type``."""
    d = dataclasses.asdict(cfg)
    for name in ("model", "encoder", "task"):
        if name in d:
            d[name] = {"type": type(getattr(cfg, name)).__name__, **d[name]}
    return {"model_name": cfg.model_name, **d}


def _build(cls, d: dict, where: str):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names - {"type"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)} for {cls.__name__}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in names})


def from_dict(d: dict, where: str = "config.json") -> TrainConfig:
    """Rebuild a config written by :func:`to_dict`; every field must be there (``where`` names the file in errors).

    Folders written before the encoder configs existed (top-level ``min_freq``/``tokenizer``) still load.
    """
    try:
        d = dict(d)
        spec = registry.get(d.pop("model_name", None) or d["model"]["type"])
        legacy = {k: d.pop(k) for k in ("min_freq", "tokenizer") if k in d}
        missing = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in d and f.name != "encoder"]
        if missing:
            raise ConfigError(f"{where}: missing key(s) {missing}")
        d["model"] = _build(spec.config, d["model"], where)
        enc = d.get("encoder") or {k: v for k, v in legacy.items() if k in {f.name for f in dataclasses.fields(spec.encoder_config)}}
        d["encoder"] = _build(spec.encoder_config, enc, where)
        d["data"] = _build(DataConfig, d["data"], where)
        d["optim"] = _build(OptimConfig, d["optim"], where)
        return _build(TrainConfig, d, where)
    except KeyError as e:
        raise ConfigError(f"{where}: missing key {e.args[0]!r}") from None
    except ConfigError as e:
        raise ConfigError(str(e) if str(e).startswith(where) else f"{where}: {e}") from None
    except (TypeError, ValueError, AttributeError) as e:
        raise ConfigError(f"{where}: {e}") from None


# Fields a resumed run may change: how it reports and how long it goes on, not what it trains.
# data.path may differ (a moved file): what the data is, is checked by its sha256 (provenance.check_same_data).
RESUMABLE_FIELDS = ("epochs", "patience", "log_every", "checkpoint_every", "mesh_devices", "eval_batch_size",
                    "time_budget_s", "snapshot_epochs", "data.path")


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out |= _flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v}
    return out


def changed_fields(saved: dict, new: dict, allowed: tuple = RESUMABLE_FIELDS) -> list[str]:
    """``"key: old -> new"`` for every dotted field (``to_dict`` form) that differs, except ``allowed`` ones (and their parts)."""
    a, b = (_flat(json.loads(json.dumps(d, default=str))) for d in (saved, new))  # tuples and lists compare equal
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k) and not any(k == f or k.startswith(f + ".") for f in allowed)]


def dump(cfg, path: str | Path) -> None:
    atomic.write_text(path, atomic.dumps(to_dict(cfg), indent=2, default=str))
