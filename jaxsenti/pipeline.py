"""From reviews to a trained model folder and back, for any registered model.

A model folder holds ``config.json`` (the experiment config), the encoder (``vocab.json`` or
``tokenizer/``), ``checkpoints/best`` (orbax parameters), ``metrics.json``, ``history.json``,
``training_curves.png`` and ``confusion_matrix.png``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import jax
import numpy as np
from flax import nnx

from jaxsenti import atomic, provenance, registry
from jaxsenti import config as config_lib
from jaxsenti.config import TrainConfig
from jaxsenti.data.text import segment_many
from jaxsenti.objectives import Classification
from jaxsenti.plotting import plot_confusion_matrix, plot_training_curves
from jaxsenti.training.batching import Encoded, LabelledBatches, batch_plan, pad_batch
from jaxsenti.training.checkpoints import restore_params
from jaxsenti.training.loop import check_monitor, evaluate, fit
from jaxsenti.training.memory import check_fits
from jaxsenti.training.optim import make_optimizer
from jaxsenti.training.sharding import check_mesh_devices, is_primary, maybe_initialize_distributed
from jaxsenti.training.steps import create_train_state
from jaxsenti.training.tracking import Watch

if TYPE_CHECKING:  # scikit-learn (splits, metrics) stays out of `jaxsenti predict`: a second of its start-up
    from jaxsenti.data import Reviews, Split


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """P(positive), in the logits' float dtype (scipy's expit, without importing scipy)."""
    x = np.asarray(logits)
    z = x.astype(np.float64)
    e = np.exp(-np.abs(z))  # no overflow for large |logits|
    p = np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    return p.astype(x.dtype) if np.issubdtype(x.dtype, np.floating) else p


def make_model(cfg: TrainConfig, encoder, seed: int) -> tuple[nnx.Module, TrainConfig]:
    """Build the model; returns it with the config completed from data (vocab size) or checkpoint (dims).

    Sizes that cannot fit in memory, or lengths beyond the model's position table, are refused first."""
    spec = registry.spec_for(cfg.model)
    rngs = nnx.Rngs(params=seed)
    if cfg.pretrained:
        if spec.load_pretrained is None:
            raise ValueError(f"model {spec.name!r} cannot start from pretrained weights (no loader registered)")
        model, model_cfg = spec.load_pretrained(cfg.pretrained, cfg.model, encoder, rngs)
    else:
        model_cfg = dataclasses.replace(cfg.model, vocab_size=encoder.vocab_size)
        check_fits(lambda: spec.module(model_cfg, rngs=nnx.Rngs(0)), cfg, length=cfg.buckets[-1])
        model = spec.module(model_cfg, rngs=rngs)
    limit = getattr(model_cfg, "max_position_embeddings", None)  # models with a position table (BERT)
    if limit is not None and cfg.buckets[-1] > limit:
        raise config_lib.ConfigError(
            f"config fields max_len/buckets: batches are padded to {cfg.buckets[-1]} tokens, but the model has "
            f"{limit} positions (max_position_embeddings" + (f" of {cfg.pretrained}" if cfg.pretrained else "")
            + f"); use max_len and a last bucket <= {limit}")
    return model, dataclasses.replace(cfg, model=model_cfg)


@dataclasses.dataclass
class Prepared:
    cfg: TrainConfig  # completed with the vocabulary size / checkpoint dimensions
    encoder: object
    model: nnx.Module
    train: Encoded
    val: Encoded
    test: Encoded


def prepare(cfg: TrainConfig, reviews: Reviews, split: Split, *, words=None) -> Prepared:
    """Fit the encoder on the training split, encode all three splits, build the model."""
    spec = registry.spec_for(cfg.model)
    check_mesh_devices(cfg.mesh_devices)
    texts = reviews.texts
    if spec.encoder.uses_words and words is None:
        words = segment_many(texts)

    def part(idx):
        return [texts[i] for i in idx], None if words is None else [words[i] for i in idx]

    encoder = spec.encoder.fit(cfg.encoder, *part(split.train), cfg.max_len, cfg.pretrained)
    parts = [Encoded(encoder.encode(*part(idx)), reviews.labels[idx]) for idx in (split.train, split.val, split.test)]
    model, cfg = make_model(cfg, encoder, cfg.seed)
    return Prepared(cfg, encoder, model, *parts)


@dataclasses.dataclass
class TrainOutcome:
    cfg: TrainConfig
    out_dir: Path
    test_metrics: dict
    history: list[dict]
    seconds: float
    interrupted: bool = False


def _write_results(out_dir: Path, cfg: TrainConfig, metrics: dict, history: list[dict]) -> None:
    atomic.write_json(out_dir / "history.json", history)
    if history:
        keys = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")
        plot_training_curves({k: [h[k] for h in history] for k in keys}, out_dir / "training_curves.png",
                             title=f"{cfg.name}: training curves")
    plot_confusion_matrix(np.asarray(metrics["confusion_matrix"]), ["negative", "positive"], out_dir / "confusion_matrix.png",
                          title=f"{cfg.name}: test confusion matrix")
    atomic.write_json(out_dir / "metrics.json", metrics)  # last: it marks the run finished (atomic.output_folder)


def check_resume(out_dir: Path, cfg: TrainConfig) -> bool:
    """Whether ``out_dir`` holds a run that ``cfg`` can continue; False (said on stderr) when it holds none.

    A run trained on other data (by the data file's sha256 in ``run.json``), or with another config
    (architecture, optimizer, vocabulary...), is refused before anything in the folder is touched; only
    ``config.RESUMABLE_FIELDS`` may change.
    """
    if not (out_dir / "config.json").is_file():
        print(f"[jaxsenti] --resume: {out_dir} holds no run (no config.json); starting a fresh run", file=sys.stderr)
        return False
    if cfg.data.path:
        provenance.check_same_data(out_dir, cfg.data.path)
    diff = config_lib.changed_fields(config_lib.to_dict(read_config(out_dir)), config_lib.to_dict(cfg))
    if diff:
        raise config_lib.ConfigError(f"--resume: {out_dir} was trained with a different config ({'; '.join(diff)}); "
                                     f"resume with the same config, or train into a new folder (or --overwrite)")
    return True


def train_on_split(cfg: TrainConfig, reviews: Reviews, split: Split, out_dir: str | Path, *, words=None,
                   resume: bool = False, overwrite: bool = False, progress: bool = True,
                   stop_after_steps: int | None = None, label: str = "", command: str | None = None,
                   watch: Watch | None = None) -> TrainOutcome:
    """Train ``cfg`` on ``split`` of ``reviews``, pick the best epoch on validation, score on test, save the folder.

    ``out_dir`` never ends up mixing two runs: see :func:`jaxsenti.atomic.output_folder` (a folder
    holding another run needs ``overwrite`` and is replaced only when this run finishes; one whose run
    failed is replaced without it) and :func:`check_resume` (``resume`` continues only a run of the same
    config). No other run may use ``out_dir`` meanwhile (:func:`jaxsenti.atomic.run_lock`). ``command`` is
    recorded in ``run.json`` (default: this process's command line). ``watch``: scalars, start-up line and
    profile, see :func:`jaxsenti.training.loop.fit`.
    """
    maybe_initialize_distributed()  # multi-host launches only; must precede any jax computation
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    if reviews.report.path and not cfg.data.path:  # config.json says which file it was trained on
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, path=str(Path(reviews.report.path).resolve())))
    with atomic.run_lock(out_dir, enabled=is_primary()):
        return _train_on_split(cfg, reviews, split, out_dir, t0, words=words, resume=resume, overwrite=overwrite,
                               progress=progress, stop_after_steps=stop_after_steps, label=label, command=command,
                               watch=watch)


def _train_on_split(cfg: TrainConfig, reviews: Reviews, split: Split, out_dir: Path, t0: float, *, words, resume: bool,
                    overwrite: bool, progress: bool, stop_after_steps: int | None, label: str,
                    command: str | None, watch: Watch | None) -> TrainOutcome:
    prep = prepare(cfg, reviews, split, words=words)  # everything that can fail on bad input, before any write
    check_monitor(Classification(), cfg.monitor)
    cfg = prep.cfg
    resume = resume and check_resume(out_dir, cfg)
    with atomic.output_folder(out_dir, overwrite=overwrite, resume=resume, can_resume=True, finished="metrics.json") as folder:
        if is_primary() and not resume:  # on a multi-host run only one host writes shared files
            prep.encoder.save(folder)
            config_lib.dump(cfg, folder / "config.json")
            _write_run_record(folder, cfg, reviews, split, command or provenance.command_line())
        elif is_primary():
            _note_resume(folder, command or provenance.command_line())
        train = LabelledBatches(prep.train, cfg.batch_size, cfg.buckets, shuffle=True, seed=cfg.seed)
        val = LabelledBatches(prep.val, cfg.eval_batch_size, cfg.buckets)
        tx = make_optimizer(cfg.optim, len(train) * cfg.epochs, layer_group=registry.spec_for(cfg.model).layer_group,
                            steps_per_epoch=len(train), params=nnx.state(prep.model, nnx.Param))
        state = create_train_state(prep.model, tx, Classification(), seed=cfg.seed, grad_accum_steps=cfg.grad_accum_steps)
        del prep.model
        result = fit(state, train, val, cfg, out_dir=folder, resume=resume, progress=progress,
                     stop_after_steps=stop_after_steps, label=label, watch=watch)
        if result.interrupted:
            return TrainOutcome(cfg, out_dir, {}, result.history, time.perf_counter() - t0, True)
        best = result.state.replace(params=result.best_params)
        _, logits = evaluate(best, LabelledBatches(prep.test, cfg.eval_batch_size, cfg.buckets))
        from jaxsenti.metrics import classification_metrics

        metrics = classification_metrics(prep.test.labels, (sigmoid(logits) > 0.5).astype(int))
        metrics |= {"best_epoch": result.best_epoch, "steps": result.steps, "train_seconds": result.seconds}
        if result.best_epoch >= 1:  # what the epoch was chosen on: tune hyperparameters on this, not on test
            metrics["val_accuracy"] = result.history[result.best_epoch - 1]["val_accuracy"]
        if is_primary():
            _write_results(folder, cfg, metrics, result.history)
    return TrainOutcome(cfg, out_dir, metrics, result.history, time.perf_counter() - t0)


def _write_run_record(folder: Path, cfg: TrainConfig, reviews: Reviews, split: Split, command: str) -> None:
    """run.json: what produced the folder (command, data and its rows per split, versions, commit, encoder files)."""
    rows = {"train": len(split.train), "val": len(split.val), "test": len(split.test)}
    rows["unused"] = len(reviews) - sum(rows.values())
    record = provenance.run_record(command=command, data_path=cfg.data.path, split_rows=rows, reviews_kept=len(reviews))
    record["encoder_files"] = provenance.encoder_files(folder)
    atomic.write_json(folder / provenance.RUN_FILE, record)


def _note_resume(folder: Path, command: str) -> None:
    if (record := provenance.read_run(folder)) is not None:
        record.setdefault("resumed", []).append({"command": command,
                                                 "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        atomic.write_json(folder / provenance.RUN_FILE, record)


def read_config(folder: Path) -> TrainConfig:
    """The experiment config saved in a model folder; a damaged or incomplete file is an error naming it."""
    path = Path(folder) / "config.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise config_lib.ConfigError(f"{path} is damaged (not valid JSON: {e}); retrain the model or restore the file") from None
    if not isinstance(raw, dict):
        raise config_lib.ConfigError(f"{path} is damaged: expected a JSON object")
    from jaxsenti import folders

    if why := folders.not_a_model(folder):  # an export: say where its model is
        raise config_lib.ConfigError(why)
    if "model_name" not in raw and ("model_type" in raw or "format" in raw):  # a Hugging Face or LSTM LM checkpoint
        model = "bert" if "model_type" in raw else "lstm"
        spec = registry.get(model)
        raise config_lib.ConfigError(
            f"{folder} is a pretrained {model} checkpoint, not a trained sentiment model: fine-tune it first, e.g. "
            f"`jaxsenti train {model} --config {spec.study_pretrained_here_config} --pretrained {folder}`")
    return config_lib.from_dict(raw, where=str(path))


def check_finite_params(params, where) -> None:
    """Refuse weights holding nan/inf (a run that diverged before this project stopped such runs): every score
    they give is meaningless."""
    leaves = jax.tree_util.tree_leaves_with_path(params)
    finite = jax.device_get([jax.numpy.isfinite(x).all() for _, x in leaves])  # on device, one transfer
    bad = [jax.tree_util.keystr(path) for (path, _), ok in zip(leaves, finite) if not ok]
    if bad:
        raise config_lib.ConfigError(f"{where}: {len(bad)} weight array(s) hold nan or inf (e.g. {bad[0]}): the training "
                                     "run diverged; train again with a lower learning rate (optim.lr)")


class Predictor:
    """A trained model folder, ready to score raw review texts."""

    BATCH_SIZES = (1, 8, 64, 256)  # few shapes to compile; a batch is padded to the smallest that fits

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        if not (self.folder / "config.json").is_file():
            raise FileNotFoundError(f"{self.folder} is not a trained model folder (no config.json); train one with `jaxsenti train`")
        self.cfg = read_config(self.folder)
        if not (self.folder / "metrics.json").is_file():
            print(f"[jaxsenti] {self.folder}: its training did not finish (no metrics.json); predicting with the best "
                  "checkpoint it saved", file=sys.stderr)
        self.spec = registry.spec_for(self.cfg.model)
        self.model_name, self.max_len, self.buckets = self.spec.name, self.cfg.max_len, self.cfg.buckets
        self.encoder = self.spec.encoder.load(self.folder, self.max_len)
        model = self.spec.module(self.cfg.model, rngs=nnx.Rngs(0))
        self.graphdef, template = nnx.split(model, nnx.Param)
        self.encoder.check_model(self.cfg.model.vocab_size, str(self.folder))
        provenance.check_encoder_files(self.folder)
        self.params = restore_params(self.folder / "checkpoints" / "best", template, config=self.folder / "config.json")
        check_finite_params(self.params, self.folder / "checkpoints" / "best")
        self._predict = jax.jit(lambda p, t, n: nnx.merge(self.graphdef, p)(t, n, deterministic=True))

    def model(self) -> nnx.Module:
        """The trained module (a fresh copy of the restored parameters)."""
        return nnx.merge(self.graphdef, self.params)

    def predict(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """P(positive) for each text.

        Texts are grouped by length bucket and each group is padded only to the smallest of
        ``BATCH_SIZES`` that holds it, so 3 long reviews in a batch of 256 cost a 8-row call,
        not a 256-row one.
        """
        seqs = self.encoder.encode(texts)
        probs = np.zeros(len(seqs), np.float32)
        for bucket, idx in batch_plan([len(s) for s in seqs], batch_size, self.buckets, shuffle=False):
            rows = next((b for b in self.BATCH_SIZES if b >= len(idx)), len(idx))
            batch = pad_batch([seqs[i] for i in idx], np.zeros(len(idx), np.int32), rows, bucket)
            logits = np.asarray(self._predict(self.params, batch["tokens"], batch["lengths"]))[: len(idx)]
            probs[idx] = sigmoid(logits)
        return probs
