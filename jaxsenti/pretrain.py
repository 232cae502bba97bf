"""Pretraining on unlabeled reviews, for any registered model with a pretraining task (BERT: masked LM).

``pretrain(cfg, out_dir)`` builds the corpus (:func:`build_corpus`), lets the model's task turn it into
batches, a model and an objective, trains them with the same epoch loop as fine-tuning (AdamW with
warmup and decay, clipping, bf16 option, data parallelism, orbax checkpoints with exact ``--resume``,
a progress bar in tokens/s, held-out loss each epoch), then exports the best parameters through the
task (BERT: a Hugging Face checkpoint). ``pretraining.json`` in the folder records how it was made:
corpus hash and size, tokens seen, loss and accuracy reached, wall time, the command.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
from flax import nnx

from jaxsenti import atomic, registry
from jaxsenti import config as config_lib
from jaxsenti.config import CorpusConfig, PretrainConfig
from jaxsenti.data import load_reviews, resolve_dataset, stratified_split
from jaxsenti.data.corpus import HOTEL, Corpus, TextSource, load_corpus, split_heldout
from jaxsenti.machine import machine_info
from jaxsenti.plotting import plot_training_curves
from jaxsenti.training.loop import fit
from jaxsenti.training.optim import make_optimizer
from jaxsenti.training.sharding import is_primary, maybe_initialize_distributed
from jaxsenti.training.steps import create_train_state

SHOPPING = "online_shopping_10_cats.csv"


def finetune_exclusions(finetune: str, seeds: int) -> tuple[list[str], dict[str, list[str]], str]:
    """For the fine-tuning run of config ``finetune``: (training texts of every one of ``seeds`` splits,
    {"val": ..., "test": ...} texts of any of them, the dataset's path)."""
    ft = config_lib.load_config(finetune)
    path = resolve_dataset(ft.data.path)
    reviews = load_reviews(path, ft.data.text_column, ft.data.label_column, max_chars=ft.data.max_chars)
    val, test = set(), set()
    for seed in range(seeds):  # seed i of the study and of benchmarks/accuracy.py uses split i
        sp = stratified_split(reviews.labels, ft.data.split, seed=seed, source=str(path))
        val.update(sp.val.tolist())
        test.update(sp.test.tolist())
    train = [t for i, t in enumerate(reviews.texts) if i not in val and i not in test]
    return train, {"val": [reviews.texts[i] for i in sorted(val)], "test": [reviews.texts[i] for i in sorted(test)]}, str(path)


def build_corpus(cfg: CorpusConfig, seed: int = 0) -> Corpus:
    """The texts ``cfg`` names, with the rules of ``jaxsenti.data.corpus`` (no 酒店 rows; no validation or test
    text of the fine-tuning run, for any of its ``exclude_seeds`` splits: asserted after loading)."""
    sources = [TextSource(str(p), text_column=col) for p, col in cfg.sources]
    if cfg.shopping:
        sources.insert(0, TextSource(str(resolve_dataset(SHOPPING)), text_column="review", name="online_shopping_10_cats"))
    exclude: dict[str, list[str]] = {}
    if cfg.finetune:
        train, exclude, path = finetune_exclusions(cfg.finetune, cfg.exclude_seeds)
        if cfg.finetune_train:
            sources.append(TextSource.from_texts(f"{Path(path).name} training texts (seeds 0-{cfg.exclude_seeds - 1})", train))
    corpus = load_corpus(sources, exclude_texts=exclude)
    if cfg.shopping and "cat=" + HOTEL not in corpus.sources[0].filtered:
        raise config_lib.ConfigError(f"{SHOPPING} has no 'cat' column, so its {HOTEL} (hotel) rows cannot be left out")
    if cfg.max_texts and cfg.max_texts < len(corpus):
        keep = np.sort(np.random.default_rng([seed, 13]).choice(len(corpus), cfg.max_texts, replace=False))
        texts = [corpus.texts[i] for i in keep]
        corpus = Corpus(texts, corpus.source[keep], corpus.sources, _sha(texts))
    return corpus


def _sha(texts) -> str:
    return hashlib.sha256("\x00".join(texts).encode("utf-8")).hexdigest()


@dataclasses.dataclass
class PretrainOutcome:
    out_dir: Path
    history: list[dict]
    seconds: float
    info: dict  # what pretraining.json holds
    interrupted: bool = False


def _check_resume(out_dir: Path, cfg: PretrainConfig) -> bool:
    path = out_dir / "pretrain_config.json"
    if not path.is_file():
        print(f"[jaxsenti] --resume: {out_dir} holds no pretraining run; starting a fresh one", file=sys.stderr)
        return False
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise config_lib.ConfigError(f"{path} is damaged ({e})") from None
    if diff := config_lib.changed_fields(saved, config_lib.to_dict(cfg)):
        raise config_lib.ConfigError(f"--resume: {out_dir} was pretrained with a different config ({'; '.join(diff)})")
    return True


def pretrain(cfg: PretrainConfig, out_dir: str | Path, *, resume: bool = False, overwrite: bool = False,
             progress: bool = True, command: str = "", corpus: Corpus | None = None) -> PretrainOutcome:
    """Pretrain ``cfg.model`` on ``cfg.corpus`` (or ``corpus``) into ``out_dir``; see the module docstring."""
    maybe_initialize_distributed()
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    spec = registry.spec_for(cfg.model)
    corpus = corpus if corpus is not None else build_corpus(cfg.corpus, cfg.seed)
    train_idx, heldout_idx = split_heldout(len(corpus), cfg.corpus.heldout_fraction, cfg.seed)
    prep = spec.pretraining.prepare(cfg, corpus, train_idx, heldout_idx)
    resume = resume and _check_resume(out_dir, cfg)
    with atomic.output_folder(out_dir, overwrite=overwrite, resume=resume, can_resume=True) as folder:
        if is_primary() and not resume:
            atomic.write_json(folder / "pretrain_config.json", config_lib.to_dict(cfg))
        tx = make_optimizer(cfg.optim, len(prep.train) * cfg.epochs)
        state = create_train_state(prep.model, tx, prep.objective, seed=cfg.seed, grad_accum_steps=cfg.grad_accum_steps)
        del prep.model
        def snapshot(state, row):  # the model as it is after this epoch, for the accuracy-vs-pretraining curve
            if row["epoch"] in cfg.snapshot_epochs and is_primary():
                where = folder / "snapshots" / f"epoch{row['epoch']}"
                spec.pretraining.export(prep, state.model(), where)
                atomic.write_json(where / "snapshot.json", row | {"tokens_seen": row["step"] * prep.tokens_per_batch})

        result = fit(state, prep.train, prep.val, cfg, out_dir=folder, resume=resume, progress=progress,
                     label=f"{spec.name} pretraining: ", unit=("tok", prep.tokens_per_batch),
                     time_budget_s=cfg.time_budget_s, on_epoch_end=snapshot)
        if result.interrupted:
            return PretrainOutcome(out_dir, result.history, time.perf_counter() - t0, {}, True)
        info = {"command": command, "model": spec.name, "corpus": corpus.report(), "train_texts": len(train_idx),
                "heldout_texts": len(heldout_idx), "steps": result.steps, "epochs_run": len(result.history),
                "tokens_seen": result.steps * prep.tokens_per_batch, "best_epoch": result.best_epoch,
                "final": result.history[-1] if result.history else {}, "train_seconds": result.seconds,
                "out_of_time": result.out_of_time, "time_budget_s": cfg.time_budget_s, "machine": machine_info(devices=True)}
        if is_primary():
            spec.pretraining.export(prep, nnx.merge(result.state.graphdef, result.best_params), folder)
            atomic.write_json(folder / "history.json", result.history)
            atomic.write_json(folder / "pretraining.json", info)
            if result.history:
                keys = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")
                plot_training_curves({k: [h[k] for h in result.history] for k in keys}, folder / "pretraining_curves.png",
                                     title=f"{cfg.name}: pretraining (held-out {len(heldout_idx)} texts)")
    return PretrainOutcome(out_dir, result.history, time.perf_counter() - t0, info)
