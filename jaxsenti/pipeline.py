"""Glue from reviews to a trained model folder and back: encoders, training, saved-model prediction.

A model folder holds ``config.json`` (the experiment config), the encoder (``vocab.json`` or
``tokenizer/``), ``checkpoints/best`` (orbax parameters), ``metrics.json``, ``history.json``,
``training_curves.png`` and ``confusion_matrix.png``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from jaxsenti import config as config_lib
from jaxsenti.config import TrainConfig
from jaxsenti.data import Reviews, Split, Vocab, segment_many
from jaxsenti.metrics import classification_metrics
from jaxsenti.models import build_model, config_from_dict
from jaxsenti.training.batching import num_batches
from jaxsenti.training.loop import Encoded, evaluate, fit
from jaxsenti.training.optim import make_optimizer
from jaxsenti.training.steps import create_train_state


class WordEncoder:
    """jieba words → vocabulary ids (the LSTM's input)."""

    kind = "words"

    def __init__(self, vocab: Vocab, max_len: int):
        self.vocab, self.max_len = vocab, max_len

    @classmethod
    def fit(cls, words: Sequence[Sequence[str]], max_len: int, min_freq: int = 1) -> "WordEncoder":
        return cls(Vocab.build(words, min_freq=min_freq), max_len)

    def encode_words(self, words: Sequence[Sequence[str]]) -> list[np.ndarray]:
        return [self.vocab.encode(w, self.max_len) for w in words]

    def encode(self, texts: Sequence[str]) -> list[np.ndarray]:
        return self.encode_words(segment_many(list(texts), use_disk_cache=len(texts) > 1000))

    def save(self, folder: Path) -> None:
        self.vocab.save(folder / "vocab.json")

    @classmethod
    def load(cls, folder: Path, max_len: int) -> "WordEncoder":
        return cls(Vocab.load(folder / "vocab.json"), max_len)


class BertEncoder:
    """WordPiece ids with [CLS] … [SEP], truncated to ``max_len`` (BERT's input)."""

    kind = "bert"

    def __init__(self, tokenizer, max_len: int):
        self.tokenizer, self.max_len = tokenizer, max_len

    def encode(self, texts: Sequence[str]) -> list[np.ndarray]:
        enc = self.tokenizer(list(texts), truncation=True, max_length=self.max_len, add_special_tokens=True)
        return [np.asarray(ids, np.int32) for ids in enc["input_ids"]]

    def save(self, folder: Path) -> None:
        self.tokenizer.save_pretrained(folder / "tokenizer")

    @classmethod
    def load(cls, folder: Path, max_len: int) -> "BertEncoder":
        from jaxsenti.models.hf_bert import load_tokenizer

        return cls(load_tokenizer(folder / "tokenizer"), max_len)


def default_tokenizer_dir() -> str:
    """The tokenizer to use when a config names none: $JAXSENTI_BERT_TOKENIZER_DIR, else the hub id."""
    import os

    return os.environ.get("JAXSENTI_BERT_TOKENIZER_DIR", "bert-base-chinese")


def make_encoder(cfg: TrainConfig, train_texts: Sequence[str], train_words=None):
    if cfg.model_name == "lstm":
        words = train_words if train_words is not None else segment_many(list(train_texts))
        return WordEncoder.fit(words, cfg.max_len, cfg.min_freq)
    from jaxsenti.models.hf_bert import load_tokenizer

    return BertEncoder(load_tokenizer(tokenizer_source(cfg)), cfg.max_len)


def tokenizer_source(cfg: TrainConfig) -> str:
    """A pretrained folder that carries its tokenizer wins; then the config's tokenizer; then the default."""
    import os

    if cfg.pretrained and any(os.path.isfile(os.path.join(cfg.pretrained, f)) for f in ("vocab.txt", "tokenizer.json")):
        return cfg.pretrained
    return cfg.tokenizer or cfg.pretrained or default_tokenizer_dir()


def make_model(cfg: TrainConfig, encoder, seed: int) -> tuple[nnx.Module, TrainConfig]:
    """Build the model; returns it with the config completed from data (vocab size) or checkpoint (dims)."""
    rngs = nnx.Rngs(params=seed)
    if cfg.model_name == "lstm":
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, vocab_size=len(encoder.vocab)))
        return build_model("lstm", cfg.model, rngs=rngs), cfg
    if cfg.pretrained:
        from jaxsenti.models.hf_bert import from_pretrained

        keep = ("pooling", "dtype", "hidden_dropout_prob", "attention_probs_dropout_prob")
        model = from_pretrained(cfg.pretrained, rngs=rngs, **{k: getattr(cfg.model, k) for k in keep})
        return model, dataclasses.replace(cfg, model=model.cfg if hasattr(model, "cfg") else cfg.model)
    vocab_size = len(encoder.tokenizer)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, vocab_size=vocab_size))
    return build_model("bert", cfg.model, rngs=rngs), cfg


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
    texts = reviews.texts
    if cfg.model_name == "lstm":
        words = words if words is not None else segment_many(texts)
        encoder = WordEncoder.fit([words[i] for i in split.train], cfg.max_len, cfg.min_freq)
        enc = lambda idx: encoder.encode_words([words[i] for i in idx])  # noqa: E731
    else:
        encoder = make_encoder(cfg, [texts[i] for i in split.train])
        enc = lambda idx: encoder.encode([texts[i] for i in idx])  # noqa: E731
    parts = [Encoded(enc(idx), reviews.labels[idx]) for idx in (split.train, split.val, split.test)]
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


def train_on_split(cfg: TrainConfig, reviews: Reviews, split: Split, out_dir: str | Path, *, words=None,
                   resume: bool = False, progress: bool = True, stop_after_steps: int | None = None) -> TrainOutcome:
    """Train ``cfg`` on ``split`` of ``reviews``, pick the best epoch on validation, score on test, save the folder."""
    from jaxsenti.plotting import plot_confusion_matrix, plot_training_curves
    from jaxsenti.training.sharding import maybe_initialize_distributed

    maybe_initialize_distributed()  # multi-host launches only; must precede any jax computation
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    prep = prepare(cfg, reviews, split, words=words)
    cfg, encoder, model, train, val, test = prep.cfg, prep.encoder, prep.model, prep.train, prep.val, prep.test
    primary = jax.process_index() == 0  # on a multi-host run only one host writes shared files
    if primary:
        encoder.save(out_dir)
        config_lib.dump(cfg, out_dir / "config.json")
    total = num_batches(train.seqs, cfg.batch_size, cfg.buckets) * cfg.epochs
    state = create_train_state(model, make_optimizer(cfg.optim, total), seed=cfg.seed, grad_accum_steps=cfg.grad_accum_steps)
    del model
    result = fit(state, train, val, epochs=cfg.epochs, batch_size=cfg.batch_size, eval_batch_size=cfg.eval_batch_size,
                 buckets=cfg.buckets, seed=cfg.seed, out_dir=out_dir, patience=cfg.patience, monitor=cfg.monitor,
                 log_every=cfg.log_every, checkpoint_every=cfg.checkpoint_every, resume=resume,
                 stop_after_steps=stop_after_steps, progress=progress, mesh_devices=cfg.mesh_devices, fsdp=cfg.fsdp)
    if result.interrupted:
        return TrainOutcome(cfg, out_dir, {}, result.history, time.perf_counter() - t0, True)
    best = result.state.replace(params=result.best_params)
    _, probs = evaluate(best, test, cfg.eval_batch_size, cfg.buckets)
    metrics = classification_metrics(test.labels, (probs > 0.5).astype(int))
    metrics |= {"best_epoch": result.best_epoch, "steps": result.steps, "train_seconds": result.seconds}
    if result.best_epoch >= 1:  # what the epoch was chosen on: tune hyperparameters on this, not on test
        metrics["val_accuracy"] = result.history[result.best_epoch - 1]["val_accuracy"]
    if not primary:
        return TrainOutcome(cfg, out_dir, metrics, result.history, time.perf_counter() - t0)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (out_dir / "history.json").write_text(json.dumps(result.history, indent=2))
    if result.history:
        keys = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")
        plot_training_curves({k: [h[k] for h in result.history] for k in keys}, out_dir / "training_curves.png",
                             title=f"{cfg.name}: training curves")
    plot_confusion_matrix(np.asarray(metrics["confusion_matrix"]), ["negative", "positive"], out_dir / "confusion_matrix.png",
                          title=f"{cfg.name}: test confusion matrix")
    return TrainOutcome(cfg, out_dir, metrics, result.history, time.perf_counter() - t0)


class Predictor:
    """A trained model folder, ready to score raw review texts."""

    def __init__(self, folder: str | Path):
        from jaxsenti.training.loop import Checkpoints

        self.folder = Path(folder)
        if not (self.folder / "config.json").is_file():
            raise FileNotFoundError(f"{self.folder} is not a trained model folder (no config.json); train one with `jaxsenti train`")
        raw = json.loads((self.folder / "config.json").read_text(encoding="utf-8"))
        self.model_name, self.max_len, self.buckets = raw["model_name"], raw["max_len"], tuple(raw["buckets"])
        self.model_cfg = config_from_dict(self.model_name, raw["model"])
        enc_cls = WordEncoder if self.model_name == "lstm" else BertEncoder
        self.encoder = enc_cls.load(self.folder, self.max_len)
        model = build_model(self.model_name, self.model_cfg, rngs=nnx.Rngs(0))
        self.graphdef, template = nnx.split(model, nnx.Param)
        ckpt = Checkpoints(self.folder / "checkpoints")
        try:
            self.params = ckpt.restore_best(template)
        finally:
            ckpt.close()
        self._predict = jax.jit(lambda p, t, n: nnx.merge(self.graphdef, p)(t, n, deterministic=True))

    BATCH_SIZES = (1, 8, 64, 256)  # few shapes to compile; a batch is padded to the smallest that fits

    def predict(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """P(positive) for each text.

        Texts are grouped by length bucket and each group is padded only to the smallest of
        ``BATCH_SIZES`` that holds it, so 3 long reviews in a batch of 256 cost a 8-row call,
        not a 256-row one.
        """
        from jaxsenti.training.batching import batch_plan, pad_batch

        seqs = self.encoder.encode(texts)
        probs = np.zeros(len(seqs), np.float32)
        for bucket, idx in batch_plan([len(s) for s in seqs], batch_size, self.buckets, shuffle=False):
            rows = next((b for b in self.BATCH_SIZES if b >= len(idx)), len(idx))
            batch = pad_batch([seqs[i] for i in idx], np.zeros(len(idx), np.int32), rows, bucket)
            logits = np.asarray(self._predict(self.params, batch["tokens"], batch["lengths"]))[: len(idx)]
            probs[idx] = 1.0 / (1.0 + np.exp(-logits))
        return probs
