"""jaxsenti: Chinese review sentiment analysis in JAX/Flax (the study, its models, their data).

Commands: study (everything, one report), eda, baselines, train, pretrain, lr-find, predict, export, download.
Run `jaxsenti COMMAND --help` for a command's options.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import logging
import math
import os
import shlex
import signal
import sys
import threading
import warnings
from pathlib import Path

# Only what the parser needs is imported here: `jaxsenti --help` and a usage error must not wait for JAX, Flax,
# orbax, scikit-learn or jieba (seconds); each command imports what it uses (tests/test_watch.py checks this).
from jaxsenti import atomic, provenance, registry
from jaxsenti import config as config_lib
from jaxsenti.data.csv_reader import DEFAULT_MAX_CHARS, DataError, excerpt
from jaxsenti.training import compile_cache, tracking

ENVIRONMENT = """environment variables:
  JAXSENTI_DATA_DIR            folder holding dianping.csv (and other datasets); looked in before ./data
  JAXSENTI_NO_DOWNLOAD=1       never download a missing dataset (fail instead)
  JAXSENTI_BERT_TOKENIZER_DIR  BERT tokenizer folder (default: the bert-base-chinese tokenizer shipped inside the package)
  JAXSENTI_CJK_FONT            font file or family for Chinese labels in figures (default: system CJK font, then the packaged Noto Sans CJK)
  JAXSENTI_CACHE               cache folder for jieba segmentations and compiled XLA programs (default: ~/.cache/jaxsenti)
  JAXSENTI_NO_COMPILE_CACHE=1  do not keep compiled programs between runs (JAX's persistent compilation cache)
  JAXSENTI_PEAK_TFLOPS         the device's peak TFLOP/s for the logged MFU (default: a matmul measured once per machine)
  JAXSENTI_DISTRIBUTED, JAXSENTI_COORDINATOR, ...  multi-host training (README, "Scaling out")"""


def _positive_int(raw: str) -> int:
    try:
        v = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {raw!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _positive_float(raw: str) -> float:
    try:
        v = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {raw!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {raw}")
    return v


def _split(raw: str) -> tuple:
    """Three whole counts (1600/200/200) or three fractions of the data that sum to 1 (0.8/0.1/0.1)."""
    try:
        parts = tuple(float(x) if "." in x or "e" in x.lower() else int(x) for x in raw.split("/"))
    except ValueError:
        parts = ()
    counts = all(isinstance(p, int) for p in parts)
    ok = len(parts) == 3 and all(math.isfinite(p) and p > 0 for p in parts) and (
        counts or (all(p < 1 for p in parts) and abs(sum(parts) - 1) < 1e-6))
    if not ok:
        raise argparse.ArgumentTypeError(f"split must be three counts (e.g. 1600/200/200) or three fractions summing "
                                         f"to 1 (e.g. 0.8/0.1/0.1), got {raw!r}")
    return parts


def _add_data_args(p: argparse.ArgumentParser, *, labels: bool = True) -> None:
    p.add_argument("--data", help="CSV file (default: dianping.csv from $JAXSENTI_DATA_DIR, then ./data, else downloaded)")
    p.add_argument("--text-column", default=None, help="column holding the review text (default: comment)")
    if labels:
        p.add_argument("--label-column", default=None, help="column holding the 0/1 label (default: sentiment)")
    p.add_argument("--encoding", default="utf-8",
                   help="text encoding of the CSV: utf-8 (default), gb18030 (Chinese Excel exports), utf-16, ...")
    p.add_argument("--max-chars", type=_positive_int, default=None,
                   help=f"truncate longer reviews, counted in the load report (default: {DEFAULT_MAX_CHARS})")
    if labels:
        p.add_argument("--strict", action="store_true",
                       help="treat empty and non-Chinese reviews as errors instead of dropping them")


def _add_output_args(p: argparse.ArgumentParser, default: str | None, what: str, *, required: bool = False) -> None:
    p.add_argument("--out", default=default, required=required, help=f"output folder for {what}" + (f" (default: {default})" if default else ""))
    p.add_argument("--overwrite", action="store_true",
                   help="replaces a jaxsenti output folder; never deletes other files (the old outputs stay until "
                        "the new run has finished)")


def _paths(*values) -> list[str]:
    """The values (strings, lists of them, MODEL=VALUE pairs) that name existing files or folders: a hub id or a
    packaged config name is no path."""
    out = []
    for v in values:
        for x in (v if isinstance(v, (list, tuple)) else [v]):
            if not x:
                continue
            x = str(x)
            if not Path(x).exists() and "=" in x:
                x = x.partition("=")[2].strip()
            if x and Path(x).exists():
                out.append(x)
    return out


def _check_out(out, inputs, *, overwrite: bool = False) -> None:
    """Before any work: ``--out`` is no folder a live run holds, holds none of the command's inputs, and (with
    ``--overwrite``) may be replaced (jaxsenti.ownership's rule)."""
    from jaxsenti import ownership

    if out is None:
        return
    atomic.check_not_held(out)
    real = Path(os.path.realpath(out))
    for p in inputs:
        if Path(os.path.realpath(p)) == real:
            raise ownership.NotJaxsentiError(f"--out {out} is {p}, an input of this command: jaxsenti never writes "
                                             "over its own inputs; choose another --out")
        if Path(os.path.realpath(p)).is_relative_to(real):
            raise ownership.NotJaxsentiError(f"--out {out} holds {p}, an input of this command: jaxsenti never writes "
                                             "a run over its own inputs; choose another --out")
        if os.path.isdir(p) and real.is_relative_to(os.path.realpath(p)):  # a model/checkpoint folder stays as made
            raise ownership.NotJaxsentiError(f"--out {out} is inside {p}, an input folder of this command: jaxsenti "
                                             "never writes into its own inputs; choose a folder outside it")
    if overwrite and atomic.holds_files(real):
        ownership.check_replaceable(real, inputs)


def _report_to(raw: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in raw.split(",") if n.strip())
    try:
        return tracking.check_report_to(names) if raw.strip() != "none" else ()
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _profile(raw: str) -> tuple[int, int]:
    try:
        return tracking.parse_profile(raw)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix(f"--profile {raw}: ")) from None  # argparse names the flag


def _add_watch_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--report-to", type=_report_to, default=tracking.DEFAULT_REPORT_TO, metavar="LIST",
                   help="where each model folder's scalars go, every log_every steps and every epoch: comma-separated "
                        f"{', '.join(tracking.DESTINATIONS)}, or none (default: tensorboard,jsonl; wandb and mlflow "
                        "when installed)")
    p.add_argument("--profile", type=_profile, metavar="START:N",
                   help="trace N training steps after step START with jax.profiler into <model folder>/profile "
                        "(view: tensorboard --logdir <model folder>, Profile tab)")


def _watch(args) -> tracking.Watch:
    return tracking.Watch(report_to=getattr(args, "report_to", tracking.DEFAULT_REPORT_TO),
                          profile=getattr(args, "profile", None))  # `baselines` trains nothing: no flags


def _add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", choices=registry.names(), help="which model")
    defaults = ", ".join(f"{s.name}: {s.default_config}" for s in registry.MODELS.values())
    p.add_argument("--config", help=f"experiment config: a packaged name or a .py file (default: {defaults}); "
                                    "config files are Python that gets executed: load only files you trust")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set optim.lr=3e-4 --set model.hidden_dim=128 (repeatable)")
    p.add_argument("--pretrained", help="start from these weights (BERT: Hugging Face folder or hub id); 'none': random init")
    p.add_argument("--seed", type=int, help="seed for the split, the initialisation and the batch order (default: the config's)")
    _add_data_args(p)
    p.add_argument("--split", type=_split, default=None,
                   help="train/val/test counts or fractions (default: the config's, 1600/200/200 for the study's "
                        "dianping.csv; on other data 0.8/0.1/0.1 of all reviews)")


def _load(args, data: config_lib.DataConfig | None = None):
    """The reviews named by the command line, with ``data``'s columns and limits where it names none."""
    from jaxsenti.data.io import load_reviews, print_report, resolve_dataset

    data = data or config_lib.DataConfig()
    path = resolve_dataset(args.data)
    reviews = load_reviews(path, args.text_column or data.text_column, args.label_column or data.label_column,
                           max_chars=args.max_chars or data.max_chars, encoding=args.encoding, strict=args.strict)
    print_report(reviews.report)
    print(f"[jaxsenti] {path}: {len(reviews)} reviews ({int(reviews.labels.sum())} positive)", file=sys.stderr)
    return path, reviews


def _model_pairs(values: list[str], what: str, default_model: str | None = None) -> tuple:
    """``MODEL=VALUE`` pairs (a bare VALUE belongs to ``default_model``), models checked against the registry."""
    out = {}
    for v in values:
        model, sep, value = v.partition("=")
        if not sep:
            if default_model is None:
                raise DataError(f"{what} {v!r} must look like MODEL=VALUE (models: {', '.join(registry.names())})")
            model, value = default_model, v
        registry.study_variant(model.strip())  # unknown model: error listing the known ones
        out[model.strip()] = value.strip()
    return tuple(out.items())


def cmd_study(args) -> int:
    from jaxsenti.study import StudyOptions, is_study_dataset, run_study, summary_lines
    path, reviews = _load(args)
    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    unknown = set(models) - {"baselines", *registry.study_names()}
    if unknown or not models:
        raise DataError(f"--models {args.models!r}: choose from baselines, {', '.join(registry.study_names())}")
    split = args.split
    if split is None and not is_study_dataset(path):
        split = _default_split(path, len(reviews), (1600, 200, 200), "the study's split")
    if args.corpus and not any(registry.study_variant(m)[1] for m in models if m != "baselines"):
        raise DataError(f"--corpus is read by the <model>_pretrained rows, and --models {args.models!r} has none "
                        f"(add {', '.join(n for n in registry.study_names() if n.endswith(registry.PRETRAINED_SUFFIX))})")
    corpus = tuple((str(Path(c).expanduser()), args.corpus_column, *([args.corpus_encoding] if args.corpus_encoding else []))
                   for c in args.corpus)
    opts = StudyOptions(seeds=args.seeds, neural_seeds=args.neural_seeds, split=split, models=models, corpus=corpus,
                        configs=_model_pairs(args.config, "--config"),
                        pretrained=_model_pairs(args.pretrained, "--pretrained", default_model="bert"),
                        pretrain_configs=_model_pairs(args.pretrain_config, "--pretrain-config"),
                        text_column=args.text_column, label_column=args.label_column, n_jobs=args.jobs,
                        command=args.command_line, watch=_watch(args),
                        progress=not args.quiet, pretrain_budget_s=args.pretrain_budget)
    _check_out(args.out, _paths(str(path), args.config, args.pretrained, args.pretrain_config, args.corpus),
               overwrite=args.overwrite)
    res = run_study(reviews, str(path), args.out, opts, eda=not args.no_eda, overwrite=args.overwrite)
    print("\n".join(summary_lines(res, args.out)))
    return 0


def cmd_baselines(args) -> int:
    args.no_eda, args.models, args.neural_seeds, args.config, args.pretrained = True, "baselines", 0, [], []
    args.pretrain_budget, args.pretrain_config, args.corpus, args.corpus_column, args.corpus_encoding = 0.0, [], [], None, None
    return cmd_study(args)


def cmd_eda(args) -> int:
    from jaxsenti.eda import run_eda
    path, reviews = _load(args)
    _check_out(args.out, [str(path)], overwrite=args.overwrite)
    with atomic.run_lock(args.out), atomic.output_folder(args.out, overwrite=args.overwrite, inputs=(str(path),)) as folder:
        run_eda(reviews, None, folder, dataset_name=Path(path).name)
    print(f"EDA written to {Path(args.out) / 'eda.md'}")
    return 0


def _default_split(path, n: int, split, what: str):
    """``split``, or 80/10/10 where it holds the study's counts but the data is not the study's dianping.csv (said)."""
    from jaxsenti.data.splits import is_fractions, split_text
    from jaxsenti.study import is_study_dataset
    if is_study_dataset(path) or is_fractions(split):
        return split
    print(f"[jaxsenti] {path} is not the study's dianping.csv: splitting all {n} reviews 80/10/10 instead of "
          f"{what} {split_text(split)} (--split to choose)", file=sys.stderr)
    return (0.8, 0.1, 0.1)


def _say_unused(n: int, split, what: str = "split") -> str | None:
    from jaxsenti.data.splits import unused_note
    if note := unused_note(n, split, what):
        print(f"[jaxsenti] {note}", file=sys.stderr)
    return note


def _train_data(args, cfg):
    """The reviews for train/lr-find, and the config with the split they are divided by: --split, an explicit
    --set data.split, the config's own fractions, or 80/10/10 on data other than dianping.csv."""
    path, reviews = _load(args, cfg.data)
    split = args.split
    if split is None:
        explicit = any(s.partition("=")[0].strip() == "data.split" for s in args.set)
        split = cfg.data.split if explicit else _default_split(path, len(reviews), cfg.data.split, f"{cfg.name}'s split")
    _say_unused(len(reviews), split)
    return reviews, dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, split=tuple(split)))


def _train_config(args):
    spec = registry.get(args.model)
    cfg = config_lib.apply_overrides(config_lib.load_config(args.config or spec.default_config, config_lib.TrainConfig), args.set)
    if cfg.model_name != args.model:
        raise DataError(f"{args.config} configures model {cfg.model_name!r}, not {args.model!r}")
    if args.pretrained is not None:
        cfg = dataclasses.replace(cfg, pretrained=None if args.pretrained.lower() == "none" else args.pretrained)
    if args.seed is not None:
        cfg = dataclasses.replace(cfg, seed=args.seed)
    args.data = args.data or cfg.data.path
    return cfg


def cmd_train(args) -> int:
    from jaxsenti.data.splits import stratified_split
    from jaxsenti.pipeline import train_on_split
    cfg = _train_config(args)
    reviews, cfg = _train_data(args, cfg)
    split = stratified_split(reviews.labels, cfg.data.split, seed=cfg.seed, source=reviews.report.path)
    out = Path(args.out or f"runs/{cfg.name}")
    _check_out(out, _paths(reviews.report.path, args.config, cfg.pretrained), overwrite=args.overwrite)
    res = train_on_split(cfg, reviews, split, out, resume=args.resume, overwrite=args.overwrite,
                         progress=not args.quiet, label=f"{cfg.model_name}: ", command=args.command_line,
                         watch=_watch(args))
    m = res.test_metrics
    print(f"test: accuracy {m['accuracy']:.4f}  precision {m['precision']:.4f}  recall {m['recall']:.4f}  f1 {m['f1']:.4f}"
          f"  (best epoch {m['best_epoch']}, {res.seconds:.0f}s)")
    print(f"model folder: {out}")
    return 0


def cmd_lr_find(args) -> int:
    from jaxsenti.data.splits import stratified_split
    from jaxsenti.objectives import Classification
    from jaxsenti.pipeline import prepare
    from jaxsenti.plotting import check_figure_path
    from jaxsenti.training.batching import LabelledBatches
    from jaxsenti.training.lr_finder import find_lr, plot_lr_finder
    cfg = _train_config(args)
    from jaxsenti import ownership
    from jaxsenti.plotting import written_by_jaxsenti
    out = check_figure_path(args.out or f"runs/{cfg.name}_lr_find.png")
    reviews, cfg = _train_data(args, cfg)
    inputs = _paths(reviews.report.path, args.config, cfg.pretrained)
    out = ownership.check_output_file(out, inputs=inputs, model_folders=[p for p in inputs if Path(p).is_dir()],
                                      ours=written_by_jaxsenti)
    atomic.check_not_held(out.parent)
    prep = prepare(cfg, reviews, stratified_split(reviews.labels, cfg.data.split, seed=cfg.seed, source=reviews.report.path))
    train = LabelledBatches(prep.train, cfg.batch_size, cfg.buckets, shuffle=True, seed=cfg.seed)
    res = find_lr(prep.model, cfg.optim, Classification(), train, seed=cfg.seed, lr_min=args.lr_min, lr_max=args.lr_max,
                  steps=args.steps)
    plot_lr_finder(res, out, title=f"{cfg.name}: learning-rate range test")
    if res.suggestion is None:
        raise ValueError(f"lr-find: {res.warning} (plot: {out})")
    if res.warning:
        print(f"[jaxsenti] lr-find: {res.warning}", file=sys.stderr)
    print(f"suggested learning rate: {res.suggestion:.2e} (steepest descent of the smoothed loss)\nplot: {out}")
    return 0


def _predict_csv(args, predictor) -> int:
    from jaxsenti.data.io import load_table
    if args.out and Path(args.out).is_dir():
        raise DataError(f"--out {args.out} is a folder: give the predictions' file name, e.g. {Path(args.out) / 'predictions.csv'}")
    if args.out:
        from jaxsenti import ownership
        args.out = str(ownership.check_output_file(args.out, inputs=[args.csv], model_folders=[args.model],
                                                   ours=_is_predictions_file))
        atomic.check_not_held(Path(args.out).parent)
    table = load_table(args.csv, args.text_column, encoding=args.encoding, max_chars=args.max_chars or DEFAULT_MAX_CHARS)
    for line in table.warnings():
        print(f"[jaxsenti] {line}", file=sys.stderr)
    scored = [i for i, r in enumerate(table.rows) if r.text]
    probs = dict(zip(scored, predictor.predict([table.rows[i].text for i in scored]) if scored else []))
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(table.output_header())
    for i, r in enumerate(table.rows):  # exactly one output row per input row, every input column kept
        p = probs.get(i)
        w.writerow([*r.fields, *(["", ""] if p is None else [int(p > 0.5), f"{p:.4f}"]), r.note])
    if not args.out:
        sys.stdout.write(buf.getvalue())
        return 0
    atomic.write_text(args.out, buf.getvalue())
    blank = len(table) - len(scored)
    print(f"[jaxsenti] {len(table)} rows written to {args.out} ({len(scored)} scored"
          + (f", {blank} without text left blank" if blank else "") + ")", file=sys.stderr)
    return 0


def _is_predictions_file(path: Path) -> bool:
    """Whether ``path`` looks like what ``predict --csv --out`` writes: its header ends label, p_positive, note
    (each possibly ``_pred``-suffixed); only such a file is replaced."""
    import re
    try:
        with open(path, encoding="utf-8-sig", errors="strict", newline="") as f:
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    return len(header) >= 3 and all(re.fullmatch(rf"{n}(_pred)*", h) for n, h in zip(("label", "p_positive", "note"), header[-3:]))


def cmd_predict(args) -> int:
    from jaxsenti.pipeline import Predictor
    if bool(args.csv) == bool(args.texts):
        raise DataError("give review texts to score, or --csv FILE (not both)")
    predictor = Predictor(args.model)
    if args.csv:
        return _predict_csv(args, predictor)
    scored = [t for t in args.texts if t.strip()]  # an empty text has no label (as a blank row of --csv)
    probs = iter(predictor.predict(scored) if scored else [])
    for text in args.texts:
        if not text.strip():
            print(atomic.dumps({"text": text, "label": None, "p_positive": None, "note": "empty text: not scored"}))
            continue
        p = next(probs)
        row = {"text": text, "label": "positive" if p > 0.5 else "negative", "p_positive": round(float(p), 4)}
        if note := predictor.encoder.note(text):
            row["note"] = note
            print(f"[jaxsenti] {excerpt(text)}: {note}", file=sys.stderr)
        print(atomic.dumps(row))
    return 0


class _CorpusAction(argparse.Action):
    """--corpus FILE [--text-column COL] [--encoding ENC] ..., each option belonging to the --corpus before it;
    an --encoding before the first --corpus is every corpus's default."""

    def __call__(self, parser, namespace, value, option_string=None):
        entries = [list(e) for e in getattr(namespace, "corpus", None) or []]  # [path, text column, encoding]
        if option_string == "--corpus":
            entries.append([value, None, None])
        elif option_string == "--encoding" and not entries:
            namespace.corpus_encoding = value
        elif not entries:
            parser.error(f"{option_string} must follow the --corpus it belongs to")
        else:
            at = 1 if option_string == "--text-column" else 2
            if entries[-1][at] is not None:
                parser.error(f"{option_string} given twice for --corpus {entries[-1][0]}")
            entries[-1][at] = value
        namespace.corpus = [tuple(e) for e in entries]


def _corpus_sources(args) -> tuple:
    """CorpusConfig.sources of the --corpus options: (path, column) or, with an encoding, (path, column, encoding)."""
    out = []
    for path, column, encoding in args.corpus:
        encoding = encoding or args.corpus_encoding
        out.append((path, column) if encoding is None else (path, column, encoding))
    return tuple(out)


def cmd_pretrain(args) -> int:
    from jaxsenti.pretrain import pretrain
    spec = registry.get(args.model)
    if spec.pretraining is None:
        raise DataError(f"model {args.model!r} has no pretraining task")
    cfg = config_lib.apply_overrides(config_lib.load_config(args.config or spec.pretrain_config, config_lib.PretrainConfig), args.set)
    if not isinstance(cfg, config_lib.PretrainConfig) or cfg.model_name != args.model:
        raise DataError(f"{args.config} is not a pretraining config for {args.model!r}")
    if args.corpus:  # the user's text replaces the default corpus; the fine-tuning val/test texts stay excluded
        cfg = dataclasses.replace(cfg, corpus=dataclasses.replace(cfg.corpus, sources=_corpus_sources(args), shopping=False,
                                                                  finetune_train=False))
    elif args.corpus_encoding is not None:
        raise DataError("--encoding applies to --corpus files; the default corpus is read as the UTF-8 it is")
    if args.init_from:
        cfg = dataclasses.replace(cfg, init_from=args.init_from)
    out = Path(args.out or f"runs/pretrain/{cfg.name}")
    _check_out(out, _paths([src[0] for src in cfg.corpus.sources], args.config, args.init_from), overwrite=args.overwrite)
    res = pretrain(cfg, out, resume=args.resume, overwrite=args.overwrite, progress=not args.quiet,
                   command=args.command_line, watch=_watch(args))
    f = res.info["final"]
    print(f"pretrained {res.info['tokens_seen']:,} tokens in {res.seconds:.0f}s ({res.info['epochs_run']} epochs"
          + (", stopped by the time budget" if res.info["out_of_time"] else "") + f"): held-out loss {f['val_loss']:.3f}, "
          f"accuracy {f['val_accuracy']:.3f} (of the masked tokens / next words)")
    print(f"pretrained folder: {out}   (fine-tune: jaxsenti train {args.model} --config {spec.study_pretrained_here_config} "
          f"--pretrained {out})")
    return 0


def cmd_export(args) -> int:
    from jaxsenti.pipeline import Predictor
    _check_out(args.out, [args.model], overwrite=args.overwrite)
    predictor = Predictor(args.model)  # a damaged folder, non-finite weights, a foreign vocabulary: refused here
    spec = predictor.spec
    if spec.export is None:
        raise DataError(f"{args.model}: model {spec.name!r} has no export")
    with atomic.run_lock(args.out), atomic.staged_dir(args.out, overwrite=args.overwrite, inputs=(args.model,)) as folder:
        # nothing at --out unless it all worked
        spec.export(predictor.model(), predictor.encoder, predictor.cfg, folder)
        atomic.write_json(folder / "jaxsenti.json", {  # where it came from: the model folder's own records
            "exported_from": str(Path(args.model).resolve()), "command": args.command_line,
            "config": config_lib.to_dict(predictor.cfg), **{name: provenance.read_json(Path(args.model) / f"{name}.json")
                                                            for name in ("run", "metrics")}})
    print(f"exported {spec.name} to {args.out}: {spec.export_note.replace('DIR', str(args.out))}")
    return 0


def cmd_download(args) -> int:
    from jaxsenti.data.download import DATASETS, download
    for name in (list(DATASETS) if args.all else ["dianping"]):
        print(f"{name}: {download(name, args.dest)}")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors in one line (what is wrong, and where the help is), exit 2 as argparse's."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jaxsenti", description=__doc__, epilog=ENVIRONMENT,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    names = ",".join(registry.study_names())

    p = sub.add_parser("study", help="the whole study: EDA, baselines, neural models, analyses, one report",
                       epilog=ENVIRONMENT, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_data_args(p)
    _add_output_args(p, "runs/study", "the report, results.json, EDA, figures and model folders")
    p.add_argument("--models", default=f"baselines,{names}", help=f"comma-separated subset of baselines,{names} (default: all)")
    p.add_argument("--seeds", type=_positive_int, default=5, help="seeds (splits) for the baselines (default: 5)")
    p.add_argument("--neural-seeds", type=_positive_int, default=3, help="seeds for each neural model (default: 3)")
    p.add_argument("--config", action="append", default=[], metavar="MODEL=CONFIG",
                   help="experiment config for a model (packaged name or .py file), e.g. lstm=lstm_dianping; repeatable")
    p.add_argument("--pretrained", action="append", default=[], metavar="[MODEL=]WEIGHTS",
                   help="start a model from these weights (a bare value is BERT's: folder or hub id); "
                        "without it BERT is a small random-init model")
    p.add_argument("--split", type=_split, default=None,
                   help="train/val/test counts or fractions (default on dianping.csv: the study's 1600/200/200, "
                        "BERT 1620/180/200; on other data: 0.8/0.1/0.1 of all reviews)")
    p.add_argument("--jobs", type=_positive_int, default=1, help="parallel grid-search jobs for the baselines (default: 1)")
    p.add_argument("--pretrain-config", action="append", default=[], metavar="MODEL=CONFIG",
                   help="pretraining config for a <model>_pretrained row, e.g. bert=bert_mlm_small (the default); repeatable")
    p.add_argument("--pretrain-budget", type=_positive_float, default=300.0, metavar="SECONDS",
                   help="for each <model>_pretrained row whose data no shipped or cached checkpoint fits: pretrain "
                        "for at most this long (default: 300)")
    p.add_argument("--corpus", action="append", default=[], metavar="FILE",
                   help="your unlabeled reviews (CSV or TXT, one per line); repeatable: each <model>_pretrained row "
                        "continues the shipped checkpoint on them and the training split's texts (never validation/test "
                        "text) within --pretrain-budget before fine-tuning")
    p.add_argument("--corpus-column", metavar="COL",
                   help="text column of the --corpus CSV files (default: review, comment, text or content)")
    p.add_argument("--corpus-encoding", metavar="ENC",
                   help="text encoding of the --corpus files (default: utf-8; gb18030 for Chinese Excel exports, utf-16, ...)")
    p.add_argument("--no-eda", action="store_true", help="skip the exploratory figures")
    p.add_argument("--quiet", action="store_true", help="no progress bars or progress lines")
    _add_watch_args(p)
    p.set_defaults(func=cmd_study)

    p = sub.add_parser("eda", help="exploratory figures and word statistics of a review CSV")
    _add_data_args(p)
    _add_output_args(p, "runs/eda", "the figures, eda.md and eda.json")
    p.set_defaults(func=cmd_eda)

    p = sub.add_parser("baselines", help="the scikit-learn baselines only (TF-IDF + SVM, Naive Bayes, KNN)")
    _add_data_args(p)
    _add_output_args(p, "runs/baselines", "report.md and results.json")
    p.add_argument("--seeds", type=_positive_int, default=5, help="seeds (splits) to average over (default: 5)")
    p.add_argument("--split", type=_split, default=None, help="train/val/test counts or fractions (default: as for study)")
    p.add_argument("--jobs", type=_positive_int, default=1, help="parallel grid-search jobs (default: 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or progress lines")
    p.set_defaults(func=cmd_baselines)

    p = sub.add_parser("train", help=f"train one model ({', '.join(registry.names())}) into a model folder",
                       epilog=ENVIRONMENT, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_train_args(p)
    _add_output_args(p, None, "the model (default: runs/<experiment name>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint (same config; epochs/patience may change)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or epoch lines")
    _add_watch_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("lr-find", help="learning-rate range test: loss-vs-LR plot and a suggested learning rate")
    _add_train_args(p)
    p.add_argument("--lr-min", type=_positive_float, default=1e-7, help="learning rate of the first step (default: 1e-7)")
    p.add_argument("--lr-max", type=_positive_float, default=1.0, help="learning rate of the last step (default: 1.0)")
    p.add_argument("--steps", type=_positive_int, default=100, help="training steps, the LR growing exponentially (default: 100)")
    p.add_argument("--out", help="plot file (default: runs/<experiment name>_lr_find.png)")
    p.set_defaults(func=cmd_lr_find)

    pretrainable = [s.name for s in registry.MODELS.values() if s.declares("pretraining")]
    p = sub.add_parser("pretrain", help=f"pretrain a model on unlabeled reviews ({', '.join(pretrainable)})",
                       epilog=ENVIRONMENT, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", choices=pretrainable, help="which model")
    defaults = ", ".join(f"{s.name}: {s.pretrain_config}" for s in registry.MODELS.values() if s.declares("pretraining"))
    p.add_argument("--config", help=f"pretraining config: a packaged name or a .py file (default: {defaults})")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set epochs=2 --set corpus.max_texts=5000 (repeatable)")
    p.add_argument("--corpus", action=_CorpusAction, default=[], metavar="FILE",
                   help="pretrain on this CSV or TXT (one review per line) instead of the default corpus; repeatable. "
                        "The fine-tuning run's validation and test texts are always kept out")
    p.add_argument("--init-from", metavar="FOLDER",
                   help="continue pretraining from this pretrained folder, or a shipped checkpoint (lstm_lm, bert_mlm_small; "
                        "'shipped': the model's default), on your own text (--corpus): domain-adaptive pretraining. "
                        "Its sizes and vocabulary are kept; words your text needs are added (said)")
    p.add_argument("--text-column", action=_CorpusAction, metavar="COL",
                   help="the text column of the --corpus CSV before it (default: review, comment, text or content; "
                        "with it, a file not named .csv is read as CSV too)")
    p.add_argument("--encoding", action=_CorpusAction, dest="corpus_encoding", default=None, metavar="ENC",
                   help="text encoding of the --corpus file before it; before the first --corpus: of every --corpus "
                        "file without its own (default: utf-8; gb18030 for Chinese Excel exports, utf-16, ...)")
    _add_output_args(p, None, "the pretrained model (default: runs/pretrain/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue the pretraining run in --out from its last checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bars or epoch lines")
    _add_watch_args(p)
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("predict", help="score reviews with a trained model folder")
    p.add_argument("--model", required=True, help="model folder written by `jaxsenti train` (or a study's models/*)")
    p.add_argument("texts", nargs="*", help="review texts to score; one JSON line each is printed")
    p.add_argument("--csv", help="score every row of this CSV instead: the output keeps every input column and adds "
                                 "label, p_positive and note, one row per input row")
    p.add_argument("--text-column", default="comment", help="with --csv: the column holding the text (default: comment)")
    p.add_argument("--encoding", default="utf-8", help="with --csv: its text encoding (utf-8, gb18030, utf-16, ...)")
    p.add_argument("--max-chars", type=_positive_int, default=None,
                   help=f"with --csv: truncate longer texts, noted per row (default: {DEFAULT_MAX_CHARS})")
    p.add_argument("--out", help="with --csv: write the predictions to this CSV (default: standard output)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", help="write a trained model for other frameworks: BERT as a Hugging Face "
                                      "BertForSequenceClassification folder, the LSTM as a PyTorch state_dict")
    p.add_argument("--model", required=True, help="model folder written by `jaxsenti train` (or a study's models/*)")
    _add_output_args(p, None, "the exported model", required=True)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("download", help="fetch the datasets, checking their sha256")
    p.add_argument("--all", action="store_true", help="also the 62,774 online-shopping reviews")
    p.add_argument("--dest", default="data", help="folder to save the CSV files in (default: data)")
    p.set_defaults(func=cmd_download)
    return parser


class _DropOrbaxRecords(logging.Filter):
    """orbax logs each failure it raises, with a traceback, from its own threads; the command reports that
    failure once, as one line, so orbax's copy is dropped (records of other absl users pass). asyncio's
    reports of tasks nobody awaited are dropped too: the only event loops here are orbax's, and such a task
    is a read it abandoned (see :class:`_DropAbandonedReads`)."""

    ABANDONED = ("exception was never retrieved", "Task was destroyed but it is pending")  # any Future subclass

    def __init__(self, root: str):
        super().__init__()
        self.root = root

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "asyncio":
            return not any(a in str(record.msg) for a in self.ABANDONED)
        return not record.pathname.startswith(self.root)


class _DropAbandonedReads:
    """An unraisable-exception hook that drops what a failed orbax restore leaves behind.

    When one read of a damaged checkpoint fails, orbax closes its event loop with the other reads
    still in flight: tensorstore later completes them onto the closed loop ("Event loop is closed",
    from its own threads, possibly at interpreter exit), and their coroutines are collected half-run.
    Nothing can wait for them (orbax keeps no handle), so their reports are dropped; the failure
    itself is reported as one line. Anything else goes to the hook that was there before.
    """

    def __init__(self, previous, root: str):
        self.previous, self.root = previous, root

    def __call__(self, u) -> None:
        closed_loop = u.object is None and u.exc_type is RuntimeError and str(u.exc_value) == "Event loop is closed"
        code = getattr(u.object, "cr_code", None)
        if closed_loop or (code is not None and code.co_filename.startswith(self.root)):
            return
        self.previous(u)


def _quiet_checkpoint_library() -> None:
    """Keep orbax's duplicate reports of a failure off stderr (process-wide, idempotent). jaxsenti runs no
    coroutines of its own, so one never awaited is a read orbax abandoned too (warned at interpreter exit)."""
    warnings.filterwarnings("ignore", message=r"coroutine '.*' was never awaited", category=RuntimeWarning)
    import importlib.util

    import absl.logging  # noqa: F401 - first, so that "absl" is absl's logger (it names the caller's file), not a plain one

    root = importlib.util.find_spec("orbax.checkpoint").submodule_search_locations[0]  # its path, not its import
    for logger in (logging.getLogger("absl"), logging.getLogger("asyncio")):
        if not any(isinstance(f, _DropOrbaxRecords) for f in logger.filters):
            logger.addFilter(_DropOrbaxRecords(root))
    if not isinstance(sys.unraisablehook, _DropAbandonedReads):
        sys.unraisablehook = _DropAbandonedReads(sys.unraisablehook, root)


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:
    """``warnings.showwarning`` for the command line: a warning is one line of the command's own output,
    without Python's source line; one from a library names the library."""
    text = " ".join(str(message).split())
    root = os.path.dirname(os.path.abspath(__file__))
    if not os.path.abspath(filename).startswith(root):
        text += f" ({category.__name__} from {Path(filename).parent.name}/{Path(filename).name})"
    try:
        print(f"jaxsenti: warning: {text}", file=file or sys.stderr)
    except OSError:  # stderr gone (a closed pipe): the warning cannot be shown, the command goes on
        pass


def _stop_once(signum, frame):
    """Ctrl-C stops the command; a second one is ignored so that the way out (waiting for a checkpoint being
    written, removing a staged folder) is not cut short by a traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def _interrupted_line(args, argv: list[str], e: KeyboardInterrupt) -> str:
    """The one line Ctrl-C ends with: how to continue, when the run's files were kept."""
    folder = getattr(e, "folder", None)  # set by atomic.Interrupted: where the run was writing
    if folder is None:
        return "jaxsenti: interrupted"
    if not Path(folder).is_dir():  # staged beside a used folder: discarded, that folder is as it was
        return "jaxsenti: interrupted; the output folder is as it was before this run (its outputs were discarded)"
    if args.command not in ("train", "pretrain"):
        return f"jaxsenti: interrupted; {folder} holds an unfinished run: run again with --overwrite to replace it"
    again = shlex.join(["jaxsenti", *(a for a in argv if a != "--overwrite"), *([] if "--resume" in argv else ["--resume"])])
    step = getattr(e, "step", None)
    return f"jaxsenti: interrupted; `{again}` continues " + ("from its last checkpoint" if step is None else f"from step {step}")


def _error_line(e: Exception, out: str | None = None) -> str | None:
    """The one line a user error ends with (None for a bug: its traceback is more useful). ``out``: the command's
    output, named when a full disk's error names no file (the checkpoint library's do not)."""
    if atomic.disk_full(e) and not isinstance(e, atomic.DiskFullError):
        chain, x = [], e
        while x is not None and x not in chain:
            chain.append(x)
            x = x.__cause__ or x.__context__
        where = next((x.filename for x in chain if isinstance(x, OSError) and x.filename), None) or out
        return (f"the disk is full (no space left on device{f' writing {where}' if where else ''}); "
                "free some space and run again")
    if isinstance(e, (DataError, OSError, ValueError)):
        return "; ".join(line.strip() for line in str(e).splitlines() if line.strip()) or type(e).__name__
    return None


def script_main(main) -> None:
    """``sys.exit(main())`` for a script built on jaxsenti (``benchmarks/``, ``experiments/``, ``tools/``): a user
    error ends in one line and exit 2, Ctrl-C in exit 130, as for the ``jaxsenti`` command; a bug keeps its
    traceback."""
    name = Path(sys.argv[0]).name
    try:
        code = main()
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        code = 130
    except Exception as e:  # the command's policy: see _error_line
        if (line := _error_line(e)) is None:
            raise
        print(f"{name}: error: {line}", file=sys.stderr)
        code = 2
    sys.exit(code)


def main(argv: list[str] | None = None, *, use_compile_cache: bool = False) -> int:
    """The command line: exit 0 when done, 2 with one line for a user error (bad input, missing files,
    damaged or mismatched checkpoints, a full disk, a folder in use), 130 with one line on Ctrl-C.

    ``use_compile_cache``: the ``jaxsenti`` command turns on JAX's persistent compilation cache for the commands
    that compile (:mod:`jaxsenti.training.compile_cache`); a process that calls ``main`` (tests) keeps its own
    JAX settings."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.command_line = provenance.command_line(argv)  # recorded in what the command writes (run.json, pretraining.json)
    _quiet_checkpoint_library()
    shown, warnings.showwarning = warnings.showwarning, _warning_line
    previous = None  # Python's own handler only: a SIGINT the caller ignores (a background job) stays ignored
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        previous = signal.signal(signal.SIGINT, _stop_once)
    try:
        if args.command in ("train", "study", "lr-find", "pretrain"):
            from jaxsenti.training.sharding import maybe_initialize_distributed

            maybe_initialize_distributed()  # multi-host launches only; must run before jax computes anything
        if use_compile_cache and args.command in ("train", "study", "lr-find", "pretrain", "predict", "export"):
            compile_cache.enable()
        return args.func(args)
    except KeyboardInterrupt as e:
        print(_interrupted_line(args, argv, e), file=sys.stderr)
        return 130
    except Exception as e:  # bad input, missing files/weights, bad checkpoints, full disk: no traceback
        if (line := _error_line(e, getattr(args, "out", None))) is None:
            raise
        print(f"jaxsenti: error: {line}", file=sys.stderr)
        return 2
    finally:
        warnings.showwarning = shown
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


if __name__ == "__main__":
    sys.exit(main())
