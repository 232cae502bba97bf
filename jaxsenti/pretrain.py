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

from jaxsenti import atomic, ownership, provenance, registry
from jaxsenti import config as config_lib
from jaxsenti.config import CorpusConfig, PretrainConfig
from jaxsenti.data import DataError, load_reviews, resolve_dataset, stratified_split
from jaxsenti.data.download import DATASETS
from jaxsenti.data.corpus import HOTEL, Corpus, TextSource, load_corpus, split_heldout, text_key
from jaxsenti.data.text import cache_dir
from jaxsenti.machine import machine_info
from jaxsenti.plotting import plot_training_curves
from jaxsenti.training.loop import check_monitor, fit
from jaxsenti.training.memory import check_fits
from jaxsenti.training.optim import make_optimizer
from jaxsenti.training.sharding import check_mesh_devices, is_primary, maybe_initialize_distributed
from jaxsenti.training.steps import create_train_state
from jaxsenti.training.tracking import Watch

SHOPPING = "online_shopping_10_cats.csv"


@dataclasses.dataclass(frozen=True)
class FinetuneTexts:
    """What pretraining may and may not see of a fine-tuning dataset: its texts in no validation or test
    split of seeds 0..seeds-1 (seed i of the study and of experiments/accuracy.py uses split i), and those it must not."""

    name: str
    train: list
    exclude: dict  # {"val": [...], "test": [...]}

    @classmethod
    def of(cls, reviews, split, seeds: int, name: str) -> FinetuneTexts:
        val, test = set(), set()
        for seed in range(seeds):
            sp = stratified_split(reviews.labels, split, seed=seed, source=name)
            val.update(sp.val.tolist())
            test.update(sp.test.tolist())
        train = [t for i, t in enumerate(reviews.texts) if i not in val and i not in test]
        return cls(f"{Path(name).name} training texts (seeds 0-{seeds - 1})", train,
                   {"val": [reviews.texts[i] for i in sorted(val)], "test": [reviews.texts[i] for i in sorted(test)]})

    @classmethod
    def of_config(cls, finetune: str, seeds: int) -> FinetuneTexts:
        ft = config_lib.load_config(finetune, config_lib.TrainConfig)
        path = resolve_dataset(ft.data.path)
        reviews = load_reviews(path, ft.data.text_column, ft.data.label_column, max_chars=ft.data.max_chars)
        return cls.of(reviews, ft.data.split, seeds, str(path))


def build_corpus(cfg: CorpusConfig, seed: int = 0, finetune: FinetuneTexts | None = None) -> Corpus:
    """The texts ``cfg`` names, with the rules of ``jaxsenti.data.corpus`` (no 酒店 rows; no validation or test
    text of the fine-tuning run, for any of its ``exclude_seeds`` splits: asserted after loading).
    ``finetune`` replaces what ``cfg.finetune`` would give (the study passes its own data and splits).
    What reading did to each source is printed on stderr (and kept in ``corpus.sources`` for pretraining.json)."""
    sources = [TextSource(str(p), text_column=col, encoding=enc[0] if enc else "utf-8") for p, col, *enc in cfg.sources]
    if cfg.shopping:
        sources.insert(0, TextSource(str(resolve_dataset(SHOPPING)), text_column="review", name="online_shopping_10_cats"))
    exclude: dict[str, list[str]] = {}
    if finetune is None and cfg.finetune:
        finetune = FinetuneTexts.of_config(cfg.finetune, cfg.exclude_seeds)
    if finetune is not None:
        exclude = finetune.exclude
        if cfg.finetune_train:
            sources.append(TextSource.from_texts(finetune.name, finetune.train))
    if not sources:
        raise config_lib.ConfigError("config field corpus: names no text at all (no sources, no shopping reviews, "
                                     "no fine-tuning training texts)")
    corpus = load_corpus(sources, exclude_texts=exclude)
    if cfg.shopping and "cat=" + HOTEL not in corpus.sources[0].filtered:
        raise config_lib.ConfigError(f"{SHOPPING} has no 'cat' column, so its {HOTEL} (hotel) rows cannot be left out")
    if is_primary():
        for src in corpus.sources:
            for line in src.lines():
                print(f"[jaxsenti] corpus {src.name}: {line}", file=sys.stderr)
    if not corpus.texts:
        raise DataError("the pretraining corpus has no text left: " + "; ".join(
            f"{src.name}: {', '.join(src.lines())}" for src in corpus.sources))
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
             progress: bool = True, command: str = "", corpus: Corpus | None = None,
             finetune: FinetuneTexts | None = None, stop_after_steps: int | None = None,
             watch: Watch | None = None) -> PretrainOutcome:
    """Pretrain ``cfg.model`` on ``cfg.corpus`` (or ``corpus``) into ``out_dir``; see the module docstring.
    ``stop_after_steps`` simulates an interruption (a checkpoint, no export), as in ``training.loop.fit``.
    ``out_dir`` is held for this run only, as in :func:`jaxsenti.pipeline.train_on_split`."""
    maybe_initialize_distributed()
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    with atomic.run_lock(out_dir, enabled=is_primary()):
        return _pretrain(cfg, out_dir, t0, resume=resume, overwrite=overwrite, progress=progress, command=command,
                         corpus=corpus, finetune=finetune, stop_after_steps=stop_after_steps, watch=watch)


def _pretrain(cfg: PretrainConfig, out_dir: Path, t0: float, *, resume: bool, overwrite: bool, progress: bool,
              command: str, corpus: Corpus | None, finetune: FinetuneTexts | None, stop_after_steps: int | None,
              watch: Watch | None) -> PretrainOutcome:
    spec = registry.spec_for(cfg.model)
    init = resolve_init(cfg.init_from, spec)
    if init is not None:  # the sizes are the checkpoint's; dropout, dtype and the rest stay the config's
        cfg = dataclasses.replace(cfg, model=spec.pretraining.init_model_config(init, cfg.model))
    if late := [e for e in cfg.snapshot_epochs if e > cfg.epochs]:
        print(f"[jaxsenti] the run has {cfg.epochs} epoch(s): no snapshot after epoch(s) {', '.join(map(str, late))}",
              file=sys.stderr)
    check_mesh_devices(cfg.mesh_devices)  # what can be refused from the config alone, before the corpus is read
    check_fits(lambda: spec.pretraining.module(cfg.model, rngs=nnx.Rngs(0)), cfg, length=cfg.max_len)
    corpus = corpus if corpus is not None else build_corpus(cfg.corpus, cfg.seed, finetune)
    train_idx, heldout_idx = split_heldout(len(corpus), cfg.corpus.heldout_fraction, cfg.seed)
    prep = spec.pretraining.prepare(cfg, corpus, train_idx, heldout_idx, init=init)
    if prep.vocab_report:
        r = prep.vocab_report
        print(f"[jaxsenti] continuing from {init}: its vocabulary of {r['kept']:,} kept, {r['added']:,} word(s) of this "
              "corpus added" + (f" (e.g. {', '.join(r['examples'][:5])})" if r.get("examples") else "")
              + (f"; {r['unk_tokens']:,} [UNK] token(s) in the corpus" if "unk_tokens" in r else ""), file=sys.stderr)
    check_monitor(prep.objective, cfg.monitor)
    resume = resume and _check_resume(out_dir, cfg)
    with atomic.output_folder(out_dir, overwrite=overwrite, resume=resume, can_resume=True, finished="pretraining.json") as folder:
        if is_primary() and not resume:
            atomic.write_json(folder / "pretrain_config.json", config_lib.to_dict(cfg))
        tx = make_optimizer(cfg.optim, len(prep.train) * cfg.epochs, layer_group=spec.layer_group,
                            steps_per_epoch=len(prep.train), params=nnx.state(prep.model, nnx.Param))
        state = create_train_state(prep.model, tx, prep.objective, seed=cfg.seed, grad_accum_steps=cfg.grad_accum_steps)
        del prep.model
        def snapshot(state, row):  # the model as it is after this epoch, for the accuracy-vs-pretraining curve
            if row["epoch"] in cfg.snapshot_epochs and is_primary():
                where = folder / "snapshots" / f"epoch{row['epoch']}"
                spec.pretraining.export(prep, state.model(), where)
                atomic.write_json(where / "snapshot.json", row | {"tokens_seen": row["step"] * prep.tokens_per_batch})

        result = fit(state, prep.train, prep.val, cfg, out_dir=folder, resume=resume, progress=progress,
                     label=f"{spec.name} pretraining: ", unit=("tok", prep.tokens_per_batch),
                     time_budget_s=cfg.time_budget_s, on_epoch_end=snapshot, stop_after_steps=stop_after_steps,
                     watch=watch)
        if result.interrupted:
            return PretrainOutcome(out_dir, result.history, time.perf_counter() - t0, {}, True)
        info = {"command": command, "key": pretrained_key(cfg, finetune), "model": spec.name, "corpus": corpus.report(), "train_texts": len(train_idx),
                "heldout_texts": len(heldout_idx), "steps": result.steps, "epochs_run": len(result.history),
                "tokens_seen": result.steps * prep.tokens_per_batch, "best_epoch": result.best_epoch,
                "final": result.history[-1] if result.history else {}, "train_seconds": result.seconds,
                "out_of_time": result.out_of_time, "time_budget_s": cfg.time_budget_s, "machine": machine_info(devices=True),
                "init_from": str(init) if init else None, "vocabulary": prep.vocab_report,
                "git": provenance.git_commit()}
        if is_primary():
            spec.pretraining.export(prep, nnx.merge(result.state.graphdef, result.best_params), folder)
            atomic.write_json(folder / "history.json", result.history)
            if result.history:
                keys = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")
                plot_training_curves({k: [h[k] for h in result.history] for k in keys}, folder / "pretraining_curves.png",
                                     title=f"{cfg.name}: pretraining (held-out {len(heldout_idx)} texts)")
            atomic.write_json(folder / "pretraining.json", info)  # last: it marks the run finished (atomic.output_folder)
    return PretrainOutcome(out_dir, result.history, time.perf_counter() - t0, info)


# --------------------------------------------------------------------------------------------------
# finding a pretrained model for the study: packaged, cached, or made within a time budget

# How long a run may go on is not part of what it is: a run resumed for more epochs is still the same pretraining.
_NOT_IN_KEY = ("name", "epochs", "time_budget_s", "snapshot_epochs", "log_every", "checkpoint_every", "mesh_devices",
               "eval_batch_size")


def resolve_init(init_from: str | None, spec) -> Path | None:
    """The folder ``init_from`` names: a path, or the name of a checkpoint shipped with the package (``lstm_lm``,
    ``bert_mlm_small``; ``shipped`` for the model's default one). Checked to be a pretrained folder of ``spec``'s model."""
    if init_from is None:
        return None
    name = spec.pretrain_config if init_from == "shipped" else init_from
    folder = Path(init_from).expanduser()
    if not folder.is_dir() and packaged_pretrained_dir(name).is_dir():
        folder = packaged_pretrained_dir(name)
    if not folder.is_dir():
        shipped = sorted(p.name for p in packaged_pretrained_dir("x").parent.iterdir() if p.is_dir() and not p.name.startswith("_"))
        raise FileNotFoundError(f"--init-from {init_from!r}: not a folder, nor a shipped checkpoint ({', '.join(shipped)}, "
                                "or 'shipped')")
    from jaxsenti.folders import check_kind
    from jaxsenti.models.hf_bert import NO_WEIGHTS_HINT

    check_kind(folder, {"lstm": "lstm_lm"}.get(spec.name, spec.name), "--init-from")
    try:
        spec.check_pretrained(str(folder))
    except FileNotFoundError as e:  # the loader's hint is for --pretrained; --init-from has no "none"
        raise FileNotFoundError(str(e).replace(NO_WEIGHTS_HINT, "; --init-from takes a folder `jaxsenti pretrain "
                                               f"{spec.name}` wrote, or a shipped checkpoint")) from None
    return folder


def _file_sha(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def pretrained_key(cfg: PretrainConfig, finetune: FinetuneTexts | None) -> str:
    """What makes two pretraining runs the same, computed without reading the corpus: the config (how long it
    may run aside: epochs, time budget), the identity of every source file, and the fine-tuning texts it may and may not see.
    The online-shopping file counts by its published sha256, so a checkpoint shipped with the package is
    recognised on a machine that has only dianping.csv."""
    d = {k: v for k, v in config_lib.to_dict(cfg).items() if k not in _NOT_IN_KEY}
    if d.get("init_from") is None:  # a field added after the shipped checkpoints: absent from their keys
        d.pop("init_from", None)
    for field, default in (("layer_lr_decay", 1.0), ("unfreeze_every", 0)):  # likewise (the fine-tuning recipe's)
        if d.get("optim", {}).get(field) == default:
            d["optim"].pop(field)
    parts = [json.dumps(d, sort_keys=True, default=str)]
    if cfg.init_from is not None:  # what it continued from, by content
        init = resolve_init(cfg.init_from, registry.spec_for(cfg.model))
        parts += [_file_sha(str(p)) for p in sorted(init.iterdir()) if p.suffix in (".npz", ".safetensors", ".json")
                  and p.name != "pretraining.json"]
    parts += [_file_sha(str(p)) for p, *_ in cfg.corpus.sources]
    if cfg.corpus.shopping:
        parts.append(DATASETS["online_shopping_10_cats"].sha256)
    if finetune is None and cfg.corpus.finetune:
        finetune = FinetuneTexts.of_config(cfg.corpus.finetune, cfg.corpus.exclude_seeds)
    if finetune is not None:
        parts.append(_sha([*finetune.train, "\x01", *finetune.exclude["val"], "\x01", *finetune.exclude["test"]]))
    return hashlib.sha256("\x02".join(parts).encode()).hexdigest()[:16]


CORPUS_KEYS = "corpus_keys.npy"  # beside a shipped checkpoint: which texts it read, as 64-bit hashes of their text_key


def _hash(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "little")


def corpus_keys(texts) -> np.ndarray:
    """Sorted unique 64-bit hashes of the texts' ``text_key`` (the form the leak rules compare): a checkpoint's
    corpus, storable in a few hundred kilobytes, that says whether it read a given text without the texts."""
    return np.array(sorted({_hash(k) for t in texts if (k := text_key(t))}), np.uint64)


def read_mask(folder: Path, texts) -> np.ndarray | None:
    """Which of ``texts`` the pretraining run in ``folder`` read (by its ``corpus_keys.npy``; None: not recorded).
    A text with no CJK character has an empty key and counts as not read (it is in no corpus)."""
    path = Path(folder) / CORPUS_KEYS
    if not path.is_file():
        return None
    keys = [text_key(t) for t in texts]
    hashes = np.array([_hash(k) if k else 0 for k in keys], np.uint64)
    return np.isin(hashes, np.load(path)) & np.array([bool(k) for k in keys], bool)


def read_overlap(folder: Path, texts) -> int | None:
    """How many distinct ``texts`` the pretraining run in ``folder`` read (None: not recorded)."""
    path = Path(folder) / CORPUS_KEYS
    if not path.is_file():
        return None
    return int(np.isin(corpus_keys(texts), np.load(path)).sum())


def adaptation_config(cfg: PretrainConfig, sources: tuple = (), init_from: str | None = None) -> PretrainConfig:
    """``cfg``'s shipped checkpoint (or ``init_from``), continued on ``sources`` (the user's unlabeled text:
    ``(path, text column[, encoding])`` as in ``CorpusConfig.sources``) and the fine-tuning data's training texts,
    never its validation or test texts (the study's ``*_pretrained`` rows on data the shipped checkpoint does not fit,
    or with ``--corpus``)."""
    return dataclasses.replace(cfg, init_from=init_from or cfg.name, corpus=dataclasses.replace(
        cfg.corpus, sources=tuple(sources), shopping=False, finetune_train=True))


def packaged_pretrained_dir(name: str) -> Path:
    """Where a checkpoint shipped inside the package lives (``jaxsenti/assets/pretrained/<config name>``)."""
    return Path(__file__).resolve().parent / "assets" / "pretrained" / name


def _info(folder: Path) -> dict | None:
    try:
        return json.loads((folder / "pretraining.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def find_pretrained(cfg: PretrainConfig, finetune: FinetuneTexts) -> tuple[Path, dict, str] | None:
    """(folder, its pretraining.json, where it came from) of a finished pretraining of ``cfg`` whose corpus holds
    none of ``finetune``'s validation/test texts: shipped with the package, else in the user cache; None if none."""
    key = pretrained_key(cfg, finetune)
    for folder, origin in ((packaged_pretrained_dir(cfg.name), "shipped with the package"),
                           (cache_dir() / "pretrained" / f"{cfg.name}-{key}", "cached")):
        if (info := _info(folder)) is not None and info.get("key") == key:
            return folder, info, origin
    return None


def _resumable(folder: Path, cfg: PretrainConfig) -> bool:
    """Whether ``folder`` holds an unfinished pretraining of exactly ``cfg`` with a checkpoint to go on from."""
    try:
        saved = json.loads((folder / "pretrain_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    state = folder / "checkpoints" / "state"
    return (not config_lib.changed_fields(saved, config_lib.to_dict(cfg)) and not (folder / "pretraining.json").exists()
            and state.is_dir() and any(p.name.isdigit() for p in state.iterdir()))


def find_or_pretrain(cfg: PretrainConfig, finetune: FinetuneTexts, *, time_budget_s: float, progress: bool = True
                     ) -> tuple[Path, dict, str]:
    """:func:`find_pretrained`, else pretrain now within ``time_budget_s`` into the user cache (and use that)."""
    if (found := find_pretrained(cfg, finetune)) is not None:
        return found
    cached = cache_dir() / "pretrained" / f"{cfg.name}-{pretrained_key(cfg, finetune)}"
    budgeted = dataclasses.replace(cfg, time_budget_s=time_budget_s, snapshot_epochs=())
    what = f"adapting the shipped {cfg.init_from} to the data" if cfg.init_from else f"pretraining {cfg.name}"
    resume = _resumable(cached, budgeted)  # an earlier study killed during this pretraining: go on from its checkpoint
    if resume and is_primary():
        print(f"[jaxsenti] {cached}: resuming the unfinished pretraining there", file=sys.stderr)
    try:
        res = pretrain(budgeted, cached, overwrite=not resume, resume=resume, progress=progress, finetune=finetune,
                       command=f"jaxsenti study ({what} within {time_budget_s:.0f} s)")
    except ownership.NotJaxsentiError as e:  # an unfinished entry an older version left: the user's call, not ours
        raise ownership.NotJaxsentiError(f"the cache entry {cached} cannot be replaced ({e}); it is only a cache: "
                                         "remove that folder and run again") from None
    done = f"the shipped {cfg.init_from} adapted now" if cfg.init_from else "pretrained now"
    return cached, res.info, f"{done} (budget {time_budget_s:.0f} s)"
