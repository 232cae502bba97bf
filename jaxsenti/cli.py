"""Command line: ``jaxsenti {study,eda,baselines,train,lr-find,predict,download}``.

Each command imports what it needs when it runs, so ``--help`` and ``download`` start in a
fraction of a second instead of paying for JAX, Flax and transformers.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
from pathlib import Path

from jaxsenti import config as config_lib
from jaxsenti import registry
from jaxsenti.config import DataConfig
from jaxsenti.data import DataError, load_reviews, resolve_dataset
from jaxsenti.data.io import print_report


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="CSV file (default: dianping.csv from $JAXSENTI_DATA_DIR, then data/)")
    p.add_argument("--text-column", default=None, help="column holding the review text (default: comment)")
    p.add_argument("--label-column", default=None, help="column holding the 0/1 label (default: sentiment)")
    p.add_argument("--max-chars", type=int, default=None,
                   help="truncate longer reviews, counted in the load report (default: the config's data.max_chars, 5000)")
    p.add_argument("--strict", action="store_true", help="treat empty and non-Chinese reviews as errors instead of dropping them")


def _load(args, data: DataConfig = DataConfig()):
    """The reviews named by the command line, with ``data``'s columns and limits where it names none."""
    path = resolve_dataset(args.data)
    reviews = load_reviews(path, args.text_column or data.text_column, args.label_column or data.label_column,
                           max_chars=args.max_chars or data.max_chars, strict=args.strict)
    print_report(reviews.report)
    print(f"[jaxsenti] {path}: {len(reviews)} reviews ({int(reviews.labels.sum())} positive)", file=sys.stderr)
    return path, reviews


def _progress(args) -> bool:
    """Progress bars on interactive terminals only (CI logs stay readable); --quiet turns them off."""
    return not args.quiet and sys.stderr.isatty()


def _split(raw: str) -> tuple:
    parts = [float(x) if "." in x else int(x) for x in raw.split("/")]
    if len(parts) != 3:
        raise argparse.ArgumentTypeError("split must be train/val/test, e.g. 1600/200/200 or 0.8/0.1/0.1")
    return tuple(parts)


def _model_pairs(values: list[str], what: str, default_model: str | None = None) -> tuple:
    """``MODEL=VALUE`` pairs (a bare VALUE belongs to ``default_model``), models checked against the registry."""
    out = {}
    for v in values:
        model, sep, value = v.partition("=")
        if not sep:
            if default_model is None:
                raise SystemExit(f"{what} {v!r} must look like MODEL=VALUE (models: {', '.join(registry.names())})")
            model, value = default_model, v
        registry.get(model.strip())  # unknown model: error listing the known ones
        out[model.strip()] = value.strip()
    return tuple(out.items())


def cmd_study(args) -> int:
    from jaxsenti.study import StudyOptions, run_study

    path, reviews = _load(args)
    models = tuple(m.strip() for m in args.models.split(",")) if getattr(args, "models", None) else ("baselines",)
    unknown = set(models) - {"baselines", *registry.names()}
    if unknown:
        raise SystemExit(f"unknown --models entries {sorted(unknown)}; choose from baselines, {', '.join(registry.names())}")
    opts = StudyOptions(seeds=args.seeds, neural_seeds=getattr(args, "neural_seeds", 3), split=args.split, models=models,
                        configs=_model_pairs(getattr(args, "config", []), "--config"),
                        pretrained=_model_pairs(getattr(args, "pretrained", []), "--pretrained", default_model="bert"),
                        text_column=args.text_column, label_column=args.label_column, n_jobs=args.jobs,
                        progress=_progress(args))
    res = run_study(reviews, str(path), args.out, opts, eda=not args.no_eda)
    print(Path(res["report"]).read_text(encoding="utf-8").split("## Wall time")[0])
    print(f"report: {res['report']}\nresults: {Path(args.out) / 'results.json'}")
    return 0


def cmd_eda(args) -> int:
    from jaxsenti.eda import run_eda

    path, reviews = _load(args)
    run_eda(reviews, None, args.out, dataset_name=Path(path).name)
    print(f"EDA written to {args.out}/eda.md")
    return 0


def cmd_baselines(args) -> int:
    args.no_eda = True
    return cmd_study(args)


def cmd_train(args) -> int:
    from jaxsenti.data import stratified_split
    from jaxsenti.pipeline import train_on_split

    cfg = _train_config(args)
    _, reviews = _load(args, cfg.data)
    split = stratified_split(reviews.labels, cfg.data.split, seed=cfg.seed)
    out = Path(args.out or f"runs/{cfg.name}")
    res = train_on_split(cfg, reviews, split, out, resume=args.resume, progress=_progress(args), label=f"{cfg.model_name}: ")
    m = res.test_metrics
    print(f"test: accuracy {m['accuracy']:.4f}  precision {m['precision']:.4f}  recall {m['recall']:.4f}  f1 {m['f1']:.4f}"
          f"  (best epoch {m['best_epoch']}, {res.seconds:.0f}s)")
    print(f"model folder: {out}")
    return 0


def _train_config(args):
    spec = registry.get(args.model)
    cfg = config_lib.apply_overrides(config_lib.load_config(args.config or spec.default_config), args.set)
    if cfg.model_name != args.model:
        raise SystemExit(f"{args.config} configures model {cfg.model_name!r}, not {args.model!r}")
    if args.pretrained is not None:
        cfg = dataclasses.replace(cfg, pretrained=None if args.pretrained.lower() == "none" else args.pretrained)
    if args.seed is not None:
        cfg = dataclasses.replace(cfg, seed=args.seed)
    args.data = args.data or cfg.data.path
    return cfg


def cmd_lr_find(args) -> int:
    from jaxsenti.data import stratified_split
    from jaxsenti.objectives import Classification
    from jaxsenti.pipeline import prepare
    from jaxsenti.training.batching import LabelledBatches
    from jaxsenti.training.lr_finder import find_lr, plot_lr_finder

    cfg = _train_config(args)
    _, reviews = _load(args, cfg.data)
    prep = prepare(cfg, reviews, stratified_split(reviews.labels, cfg.data.split, seed=cfg.seed))
    train = LabelledBatches(prep.train, cfg.batch_size, cfg.buckets, shuffle=True, seed=cfg.seed)
    res = find_lr(prep.model, cfg.optim, Classification(), train, seed=cfg.seed, lr_min=args.lr_min, lr_max=args.lr_max,
                  steps=args.steps)
    out = Path(args.out or f"runs/{cfg.name}_lr_find.png")
    plot_lr_finder(res, out, title=f"{cfg.name}: learning-rate range test")
    print(f"suggested learning rate: {res.suggestion:.2e} (steepest descent of the smoothed loss)\nplot: {out}")
    return 0


def cmd_predict(args) -> int:
    from jaxsenti.pipeline import Predictor

    predictor = Predictor(args.model)
    if args.csv:
        rows = list(csv.DictReader(open(args.csv, encoding="utf-8-sig", newline="")))
        if not rows or args.text_column not in rows[0]:
            raise DataError(f"{args.csv}: column {args.text_column!r} not found")
        texts = [r[args.text_column] or "" for r in rows]
        probs = predictor.predict(texts)
        out = open(args.out, "w", encoding="utf-8", newline="") if args.out else sys.stdout
        w = csv.writer(out)
        w.writerow([args.text_column, "label", "p_positive"])
        for t, p in zip(texts, probs):
            w.writerow([t, int(p > 0.5), f"{p:.4f}"])
        if args.out:
            out.close()
            print(f"{len(texts)} predictions written to {args.out}", file=sys.stderr)
        return 0
    if not args.texts:
        raise SystemExit("give review texts to score, or --csv FILE")
    for text, p in zip(args.texts, predictor.predict(args.texts)):
        label = "positive" if p > 0.5 else "negative"
        print(json.dumps({"text": text, "label": label, "p_positive": round(float(p), 4)}, ensure_ascii=False))
    return 0


def cmd_download(args) -> int:
    from jaxsenti.data.download import DATASETS, download

    names = list(DATASETS) if args.all else ["dianping"]
    for name in names:
        print(f"{name}: {download(name, args.dest)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxsenti", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("study", help="EDA, baselines, LSTM and BERT with one report")
    _add_data_args(p)
    p.add_argument("--out", default="runs/study")
    p.add_argument("--seeds", type=int, default=5, help="seeds for the baselines")
    p.add_argument("--neural-seeds", type=int, default=3, help="seeds for the LSTM and BERT")
    names = ",".join(registry.names())
    p.add_argument("--models", default=f"baselines,{names}", help=f"comma-separated subset of baselines,{names}")
    p.add_argument("--config", action="append", default=[], metavar="MODEL=CONFIG",
                   help="experiment config for a model (packaged name or file), e.g. lstm=lstm_dianping; repeatable")
    p.add_argument("--pretrained", action="append", default=[], metavar="[MODEL=]WEIGHTS",
                   help="start a model from these weights (a bare value is BERT's: folder or hub id); without it BERT is "
                        "a small random-init model")
    p.add_argument("--split", type=_split, default=None,
                   help="train/val/test counts or fractions (default: the study's, 1600/200/200; BERT 1620/180/200)")
    p.add_argument("--jobs", type=int, default=1, help="parallel grid-search jobs")
    p.add_argument("--no-eda", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_study)

    p = sub.add_parser("eda", help="exploratory figures and word statistics")
    _add_data_args(p)
    p.add_argument("--out", default="runs/eda")
    p.set_defaults(func=cmd_eda)

    p = sub.add_parser("baselines", help="scikit-learn baselines only")
    _add_data_args(p)
    p.add_argument("--out", default="runs/baselines")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--split", type=_split, default=None)
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_baselines)

    p = sub.add_parser("train", help="train a model: " + ", ".join(registry.names()))
    p.add_argument("model", choices=registry.names())
    p.add_argument("--config", help="experiment config: a packaged name (e.g. lstm_dianping) or a file "
                                    "(default: the model's, " + ", ".join(f"{s.name}: {s.default_config}" for s in registry.MODELS.values()) + ")")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. --set optim.lr=3e-4")
    p.add_argument("--pretrained", help="BERT: local folder or hub id, or 'none' for random init")
    p.add_argument("--seed", type=int)
    p.add_argument("--out", help="model folder (default: runs/<experiment name>)")
    p.add_argument("--resume", action="store_true", help="continue from the folder's last checkpoint")
    p.add_argument("--quiet", action="store_true")
    _add_data_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("lr-find", help="learning-rate range test: loss vs LR plot and a suggestion")
    p.add_argument("model", choices=registry.names())
    p.add_argument("--config")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--pretrained")
    p.add_argument("--seed", type=int)
    p.add_argument("--lr-min", type=float, default=1e-7)
    p.add_argument("--lr-max", type=float, default=1.0)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--out", help="plot path (default: runs/<experiment>_lr_find.png)")
    _add_data_args(p)
    p.set_defaults(func=cmd_lr_find)

    p = sub.add_parser("predict", help="score reviews with a trained model folder")
    p.add_argument("--model", required=True, help="model folder written by `jaxsenti train`")
    p.add_argument("texts", nargs="*")
    p.add_argument("--csv", help="score every row of this CSV instead")
    p.add_argument("--text-column", default="comment")
    p.add_argument("--out", help="with --csv: write predictions here (default: stdout)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("download", help="fetch the datasets with a sha256 check")
    p.add_argument("--all", action="store_true", help="also the 62k online-shopping reviews")
    p.add_argument("--dest", default="data")
    p.set_defaults(func=cmd_download)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("train", "study", "lr-find"):
        from jaxsenti.training.sharding import maybe_initialize_distributed

        maybe_initialize_distributed()  # multi-host launches only; must run before jax computes anything
    try:
        return args.func(args)
    except (DataError, OSError, ValueError) as e:  # bad input, missing files/weights, bad checkpoints: no traceback
        print(f"jaxsenti: error: {e}", file=sys.stderr)
        if args.command in ("train", "lr-find") and getattr(args, "model", None) == "bert" and isinstance(e, OSError):
            print("jaxsenti: without pretrained weights, use --pretrained none or configs/bert_small_random.py", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
