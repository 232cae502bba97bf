"""Transfer on domains no checkpoint read: online-shopping categories held out, each with its unlabeled text.

    python experiments/heldout_category.py --categories 水果 衣服 --seeds 3 --base-epochs 2 --adapt-budget 300 \\
        --out runs/heldout --json experiments/results/heldout_category.json

1. A base LSTM language model (the packaged ``lstm_lm`` config: the study's LSTM, its vocabulary and schedule)
   pretrained on the online-shopping reviews without the held-out categories (and, as always, without 酒店),
   plus the dianping training texts, for ``--base-epochs`` epochs. Nothing of the categories is read.
2. Each category: ``--labeled`` reviews (half positive, drawn once) split 80/10/10, seed i = split i and
   initialisation i; the category's other reviews are its *unlabeled* text (labels dropped), as a user has.
3. Test accuracy of, on the same splits: the TF-IDF baselines (grid search on train+val); the study's LSTM
   from random initialisation (``lstm_dianping``), from the base LM (``lstm_dianping_lm``), and from the base LM
   continued for ``--adapt-budget`` seconds on the unlabeled text plus the training texts (what
   ``jaxsenti study --corpus`` does: ``pretrain.adaptation_config``; never a validation or test text of any seed);
   each of the three also with ULMFiT's fine-tuning recipe (``lstm_ulmfit``: concat pooling, discriminative
   rates, gradual unfreezing, slanted-triangular schedule).

``--dianping`` adds the study's data the way the study runs it (split 1600/200/200, the shipped LM), with and
without the recipe. The JSON holds every run and is rewritten after each row (a killed run keeps what it had);
the README's table "Transfer on a held-out domain" is made from it. ``--base`` reuses a finished base folder.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # benchmarks/common.py: shared script helpers

from common import base_argparser, shown, write_json  # noqa: E402
from jaxsenti import config as config_lib  # noqa: E402
from jaxsenti.data import load_reviews, resolve_dataset, segment_many  # noqa: E402
from jaxsenti.data.corpus import HOTEL  # noqa: E402
from jaxsenti.machine import machine_info  # noqa: E402
from jaxsenti.metrics import fmt_mean_std  # noqa: E402
from jaxsenti.pretrain import SHOPPING, FinetuneTexts, adaptation_config, packaged_pretrained_dir, pretrain  # noqa: E402
from jaxsenti.study import BASELINES, StudyOptions, run_baselines, run_neural  # noqa: E402

SPLIT = (0.8, 0.1, 0.1)
RECIPE = "lstm_ulmfit"


def _category_files(categories: list[str], labeled: int, work: Path) -> tuple[Path, dict]:
    """(the shopping CSV without ``categories``, {category: (labeled CSV, unlabeled CSV, counts)})."""
    src = resolve_dataset(SHOPPING)
    rest = work / "shopping_without_heldout.csv"
    rows: dict[str, list] = {c: [] for c in categories}
    with open(src, encoding="utf-8-sig", newline="") as f, open(rest, "w", encoding="utf-8", newline="") as r:
        reader, w_rest = csv.DictReader(f), csv.writer(r)
        w_rest.writerow(reader.fieldnames)
        for row in reader:  # 酒店 rows stay in `rest`: the corpus reader skips them and removes their texts elsewhere
            if row["cat"] in rows:
                rows[row["cat"]].append((row["review"], row["label"]))
            else:
                w_rest.writerow([row[k] for k in reader.fieldnames])
    out = {}
    for cat, items in rows.items():
        labels = np.array([lab for _, lab in items])
        rng = np.random.default_rng([7, len(items)])
        pick = np.concatenate([rng.permutation(np.flatnonzero(labels == v))[: labeled // 2] for v in ("0", "1")])
        if len(pick) < labeled or len(items) - len(pick) < labeled:
            raise SystemExit(f"{SHOPPING}: category {cat!r} has {len(items)} rows; it needs {labeled} of each label half "
                             f"and more unlabeled than labeled rows")
        chosen = set(pick.tolist())
        lab_csv, unl_csv = work / f"{cat}_labeled.csv", work / f"{cat}_unlabeled.csv"
        with open(lab_csv, "w", encoding="utf-8", newline="") as a, open(unl_csv, "w", encoding="utf-8", newline="") as b:
            wa, wb = csv.writer(a), csv.writer(b)
            wa.writerow(["review", "label"])
            wb.writerow(["review"])
            for i, (text, lab) in enumerate(items):
                (wa.writerow([text, lab]) if i in chosen else wb.writerow([text]))
        out[cat] = (lab_csv, unl_csv, {"rows": len(items), "labeled": len(chosen), "unlabeled": len(items) - len(chosen)})
    return rest, out


def _row(label: str, res: dict, seconds: float, **extra) -> dict:
    s = res["summary"]
    print(f"  {label:52s} test accuracy {fmt_mean_std(s['accuracy'])}  ({s['runs']} seeds, {seconds:.0f} s)", flush=True)
    return {"label": label, "summary": s, "runs": res["runs"], "seconds": seconds} | extra


def _configs(split) -> dict:
    out = {}
    for key, name in (("plain_random", "lstm_dianping"), ("plain", "lstm_dianping_lm"), ("recipe", RECIPE)):
        c = config_lib.load_config(name, config_lib.TrainConfig)
        out[key] = dataclasses.replace(c, data=dataclasses.replace(c.data, split=tuple(split))) if split else c
    return out


def _lstm_rows(reviews, words, seeds: int, work: Path, starts: list[tuple[str, str, str | None]], cfgs: dict, save,
               done=()) -> dict:
    """Rows for each (key, label, LM folder or None), with and without the recipe (those in ``done`` skipped)."""
    rows = {}
    for key, label, lm in starts:
        for recipe in (False, True):
            cfg = cfgs["recipe"] if recipe else cfgs["plain" if lm else "plain_random"]
            cfg = dataclasses.replace(cfg, pretrained=lm)
            k = key + ("+recipe" if recipe else "")
            if k in done:
                continue
            t = time.perf_counter()
            rows[k] = _row(f"LSTM, {label}" + (" + ULMFiT recipe" if recipe else ""),
                           run_neural(cfg, reviews, words, seeds, work / k.replace("+", "_")), time.perf_counter() - t,
                           config=cfg.name, start=label)
            save(rows)
    return rows


def _summary(rows: dict) -> dict:
    best_b = max(BASELINES, key=lambda b: rows[b]["summary"]["accuracy"]["mean"])
    lstm = [k for k in rows if k not in BASELINES and not k.startswith("random")]
    best_l = max(lstm, key=lambda k: rows[k]["summary"]["accuracy"]["mean"]) if lstm else None
    if best_l is None:
        return {"best_baseline": best_b}
    a, b = rows[best_l]["summary"]["accuracy"], rows[best_b]["summary"]["accuracy"]
    n = len(a["values"])
    se = float(np.sqrt((np.var(a["values"], ddof=1) + np.var(b["values"], ddof=1)) / n)) if n > 1 else float("nan")
    return {"best_baseline": best_b, "best_pretrained_lstm": best_l, "margin": a["mean"] - b["mean"], "std_error": se,
            "goal_met": bool(a["mean"] - b["mean"] > se)}


def main(argv=None) -> int:
    ap = base_argparser(__doc__, quick=False)
    ap.add_argument("--categories", nargs="+", default=["水果", "衣服"], help="online-shopping categories held out (not 酒店)")
    ap.add_argument("--labeled", type=int, default=2000, help="labeled reviews per category (half positive)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--base-epochs", type=int, default=2, help="epochs of the base LM pretraining")
    ap.add_argument("--adapt-budget", type=float, default=300.0, help="seconds of continued pretraining per category")
    ap.add_argument("--dianping", action="store_true", help="also dianping as the study runs it (shipped LM, ± recipe)")
    ap.add_argument("--base", help="a finished base LM folder (skips step 1)")
    ap.add_argument("--out", help="working folder (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="go on from --json and --out of a run that stopped: rows already "
                    "in the JSON, and finished LM folders in --out, are kept")
    a = ap.parse_args(argv)
    if a.keep and not (a.json and a.out):
        raise SystemExit("--keep needs the --json and --out of the run it goes on from")
    if HOTEL in a.categories:
        raise SystemExit(f"{HOTEL} stays out of everything (it overlaps a public benchmark)")
    argv_shown = shown(["python", "experiments/heldout_category.py", *(sys.argv[1:] if argv is None else argv)])
    work = Path(a.out or tempfile.mkdtemp(prefix="jaxsenti-heldout-"))
    work.mkdir(parents=True, exist_ok=True)
    rest, files = _category_files(a.categories, a.labeled, work)
    t0 = time.perf_counter()
    res = {"categories": {}, "split": list(SPLIT), "seeds": a.seeds, "command": argv_shown, "argv": sys.argv[1:] if argv is None else argv}
    old = json.loads(Path(a.json).read_text(encoding="utf-8")) if a.keep and Path(a.json).is_file() else {}
    if old:
        res["categories"], res["command"] = old.get("categories", {}), old.get("command", argv_shown)
        res["continued_by"] = argv_shown

    def save(_=None):
        res["total_seconds"] = time.perf_counter() - t0
        res["machine"] = machine_info()
        if a.json:
            write_json(a.json, res)

    base_cfg = config_lib.load_config("lstm_lm", config_lib.PretrainConfig)
    base_cfg = dataclasses.replace(base_cfg, name="lstm_lm_without_heldout", epochs=a.base_epochs, snapshot_epochs=(),
                                   corpus=dataclasses.replace(base_cfg.corpus, sources=((str(rest), "review"),), shopping=False))
    base = Path(a.base) if a.base else work / "base_lm"
    if not a.base and not (a.keep and (base / "pretraining.json").is_file()):
        print(f"# base LM without {', '.join(a.categories)}: {a.base_epochs} epochs", flush=True)
        pretrain(base_cfg, base, overwrite=True, progress=sys.stderr.isatty(), command=argv_shown)
    base_info = json.loads((base / "pretraining.json").read_text(encoding="utf-8"))
    res["base"] = {"folder": shown(base), "info": {k: base_info.get(k) for k in ("corpus", "epochs_run", "tokens_seen",
                                                                                 "final", "train_seconds")}}
    cfgs = _configs(SPLIT)
    for cat in a.categories:
        lab_csv, unl_csv, counts = files[cat]
        reviews = load_reviews(lab_csv, "review", "label")
        words = segment_many(reviews.texts)
        print(f"# {cat}: {len(reviews)} labeled reviews, split 80/10/10, seeds 0-{a.seeds - 1}; "
              f"{counts['unlabeled']:,} unlabeled", flush=True)
        entry = res["categories"].setdefault(cat, {"counts": counts, "rows": {}})
        t = time.perf_counter()
        if not all(name in entry["rows"] for name in BASELINES):
            b = run_baselines(reviews, words, StudyOptions(seeds=a.seeds, split=SPLIT, progress=False))
            for name in BASELINES:
                entry["rows"][name] = _row(f"TF-IDF {name}", b[name], time.perf_counter() - t)
            save()
        # what `jaxsenti study --corpus UNLABELED` does for its lstm_pretrained row, from this base
        finetune = FinetuneTexts.of(reviews, SPLIT, a.seeds, str(lab_csv))
        adapt_cfg = dataclasses.replace(
            adaptation_config(config_lib.load_config("lstm_lm", config_lib.PretrainConfig), ((str(unl_csv), "review"),),
                              init_from=str(base)), time_budget_s=a.adapt_budget)
        t = time.perf_counter()
        if "adaptation" not in entry or not (work / f"{cat}_adapted_lm" / "pretraining.json").is_file():
            adapted = pretrain(adapt_cfg, work / f"{cat}_adapted_lm", overwrite=True, finetune=finetune,
                               progress=sys.stderr.isatty())
            entry["adaptation"] = {"seconds": time.perf_counter() - t, "info": {k: adapted.info.get(k) for k in (
                "corpus", "epochs_run", "tokens_seen", "final", "vocabulary", "train_seconds", "out_of_time")}}
        starts = [("random", "random init", None),
                  ("base", f"base LM ({base_info['epochs_run']} epochs, no {cat})", str(base)),
                  ("adapted", f"base LM + {a.adapt_budget / 60:.0f} min on {cat}'s unlabeled text", str(work / f"{cat}_adapted_lm"))]
        entry["rows"] |= _lstm_rows(reviews, words, a.seeds, work / cat, starts, cfgs,
                                    lambda r, e=entry: (e["rows"].update(r), save()), done=set(entry["rows"]))
        entry |= _summary(entry["rows"])
        save()
    if a.dianping:
        path = resolve_dataset("dianping.csv")
        reviews = load_reviews(path, "review", "label")
        words = segment_many(reviews.texts)
        entry = res["dianping"] = {"rows": {}}
        split = tuple(cfgs["plain"].data.split)
        print(f"# dianping: {len(reviews)} reviews, split {split}, seeds 0-{a.seeds - 1} (the study's rows)", flush=True)
        t = time.perf_counter()
        b = run_baselines(reviews, words, StudyOptions(seeds=a.seeds, split=split, progress=False))
        for name in BASELINES:
            entry["rows"][name] = _row(f"TF-IDF {name}", b[name], time.perf_counter() - t)
        entry["rows"] |= _lstm_rows(reviews, words, a.seeds, work / "dianping",
                                    [("random", "random init", None),
                                     ("shipped", "the shipped lstm_lm", str(packaged_pretrained_dir("lstm_lm")))],
                                    _configs(None), lambda r, e=entry: (e["rows"].update(r), save()))
        entry |= _summary(entry["rows"])
    save()
    for cat, e in [*res["categories"].items(), *([("dianping", res["dianping"])] if "dianping" in res else [])]:
        if "best_pretrained_lstm" in e:
            print(f"{cat}: best baseline {e['best_baseline']}, best pretrained LSTM {e['best_pretrained_lstm']}: "
                  f"{e['margin']:+.3f} (std error {e['std_error']:.3f}); goal met: {e['goal_met']}")
    if a.json:
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    from jaxsenti.cli import script_main

    script_main(main)
