"""Domain-adaptive pretraining, measured on data no checkpoint read: one online-shopping category held out.

    python experiments/heldout_category.py --category 蒙牛 --seeds 3 --base-epochs 2 --adapt-budget 300 \\
        --out runs/heldout --json experiments/results/heldout_category.json

1. A base LSTM language model (the packaged ``lstm_lm`` config: the study's LSTM, its vocabulary and schedule)
   pretrained on the online-shopping reviews without the held-out category (and, as always, without 酒店),
   plus the dianping training texts, for ``--base-epochs`` epochs. Nothing of the category is read.
2. The category's labeled reviews (about 2,000 for 蒙牛) split 80/10/10, seed i = split i and initialisation i.
3. Test accuracy of, on the same splits: the TF-IDF baselines (grid search on train+val), the study's LSTM
   from random initialisation (``lstm_dianping``), from the base LM (``lstm_dianping_lm``), and from the base
   LM continued for ``--adapt-budget`` seconds on the category's training texts (``jaxsenti pretrain lstm
   --init-from BASE``, as the study does on such data: the packaged schedule, stopped by the budget; texts in no
   validation or test split of any of the seeds; the vocabulary kept and extended with the category's words).

The JSON holds every run; the README's "Domain-adaptive pretraining" table is made from it. ``--base`` reuses a
finished base folder.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # benchmarks/common.py: shared script helpers

from common import base_argparser, finish, shown  # noqa: E402
from jaxsenti import config as config_lib  # noqa: E402
from jaxsenti.data import load_reviews, resolve_dataset, segment_many  # noqa: E402
from jaxsenti.data.corpus import HOTEL  # noqa: E402
from jaxsenti.metrics import fmt_mean_std  # noqa: E402
from jaxsenti.pretrain import SHOPPING, FinetuneTexts, adaptation_config, pretrain  # noqa: E402
from jaxsenti.study import BASELINES, StudyOptions, run_baselines, run_neural  # noqa: E402

SPLIT = (0.8, 0.1, 0.1)


def _category_files(category: str, work: Path) -> tuple[Path, Path, int]:
    """(the shopping CSV without ``category``, the category's labeled reviews as review,label, their count)."""
    src = resolve_dataset(SHOPPING)
    rest, mine = work / f"shopping_without_{category}.csv", work / f"{category}.csv"
    n = 0
    with open(src, encoding="utf-8-sig", newline="") as f, open(rest, "w", encoding="utf-8", newline="") as r, \
            open(mine, "w", encoding="utf-8", newline="") as m:
        reader, w_rest, w_mine = csv.DictReader(f), csv.writer(r), csv.writer(m)
        w_rest.writerow(reader.fieldnames)
        w_mine.writerow(["review", "label"])
        for row in reader:  # 酒店 rows stay in `rest`: the corpus reader skips them and removes their texts elsewhere
            if row["cat"] == category:
                w_mine.writerow([row["review"], row["label"]])
                n += 1
            else:
                w_rest.writerow([row[k] for k in reader.fieldnames])
    if not n:
        raise SystemExit(f"{src} has no category {category!r}")
    return rest, mine, n


def _row(label: str, res: dict, seconds: float) -> dict:
    s = res["summary"]
    print(f"  {label:44s} test accuracy {fmt_mean_std(s['accuracy'])}  ({s['runs']} seeds, {seconds:.0f} s)", flush=True)
    return {"label": label, "summary": s, "runs": res["runs"], "seconds": seconds}


def main(argv=None) -> int:
    ap = base_argparser(__doc__, quick=False)
    ap.add_argument("--category", default="蒙牛", help="online-shopping category held out (not 酒店)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--base-epochs", type=int, default=2, help="epochs of the base LM pretraining")
    ap.add_argument("--adapt-budget", type=float, default=300.0, help="seconds of continued pretraining on the category")
    ap.add_argument("--base", help="a finished base LM folder (skips step 1)")
    ap.add_argument("--out", help="working folder (default: a temporary one)")
    a = ap.parse_args(argv)
    if a.category == HOTEL:
        raise SystemExit(f"{HOTEL} stays out of everything (it overlaps a public benchmark)")
    work = Path(a.out or tempfile.mkdtemp(prefix="jaxsenti-heldout-"))
    work.mkdir(parents=True, exist_ok=True)
    rest, mine, n = _category_files(a.category, work)
    t0 = time.perf_counter()
    base_cfg = config_lib.load_config("lstm_lm", config_lib.PretrainConfig)
    base_cfg = dataclasses.replace(base_cfg, name=f"lstm_lm_without_{a.category}", epochs=a.base_epochs, snapshot_epochs=(),
                                   corpus=dataclasses.replace(base_cfg.corpus, sources=((str(rest), "review"),), shopping=False))
    base = Path(a.base) if a.base else work / "base_lm"
    if not a.base:
        print(f"# base LM without {a.category}: {a.base_epochs} epochs", flush=True)
        pretrain(base_cfg, base, overwrite=True, progress=sys.stderr.isatty(),
                 command=shown(["python", "experiments/heldout_category.py", *(sys.argv[1:] if argv is None else argv)]))
    base_info = json.loads((base / "pretraining.json").read_text(encoding="utf-8"))

    reviews = load_reviews(mine, "review", "label")
    words = segment_many(reviews.texts)
    random_cfg = config_lib.load_config("lstm_dianping", config_lib.TrainConfig)
    tuned_cfg = config_lib.load_config("lstm_dianping_lm", config_lib.TrainConfig)
    random_cfg, tuned_cfg = (dataclasses.replace(c, data=dataclasses.replace(c.data, split=SPLIT)) for c in (random_cfg, tuned_cfg))
    print(f"# {a.category}: {len(reviews)} reviews, split 80/10/10, seeds 0-{a.seeds - 1}", flush=True)
    rows = {}
    t = time.perf_counter()
    base_res = run_baselines(reviews, words, StudyOptions(seeds=a.seeds, split=SPLIT, progress=False))
    for name in BASELINES:
        rows[name] = _row(f"TF-IDF {name}", base_res[name], time.perf_counter() - t)
    for key, label, cfg in (("random", "LSTM, random init", random_cfg),
                            ("base", f"LSTM from the base LM ({base_info['epochs_run']} epochs)",
                             dataclasses.replace(tuned_cfg, pretrained=str(base)))):
        t = time.perf_counter()
        rows[key] = _row(label, run_neural(cfg, reviews, words, a.seeds, work / key), time.perf_counter() - t)
    # continued pretraining on the category's texts in no validation/test split of the seeds used
    finetune = FinetuneTexts.of(reviews, SPLIT, a.seeds, str(mine))
    # exactly what the study does on data no shipped checkpoint fits (pretrain.adaptation_config), from this base
    adapt_cfg = dataclasses.replace(adaptation_config(config_lib.load_config("lstm_lm", config_lib.PretrainConfig)),
                                    init_from=str(base), time_budget_s=a.adapt_budget)
    t = time.perf_counter()
    adapted = pretrain(adapt_cfg, work / "adapted_lm", overwrite=True, finetune=finetune, progress=sys.stderr.isatty())
    adapt_s = time.perf_counter() - t
    t = time.perf_counter()
    rows["adapted"] = _row(f"LSTM from the base LM + {a.adapt_budget / 60:.0f} min on {a.category}",
                           run_neural(dataclasses.replace(tuned_cfg, pretrained=str(work / "adapted_lm")), reviews, words,
                                      a.seeds, work / "adapted"), time.perf_counter() - t)
    best = max(BASELINES, key=lambda b: rows[b]["summary"]["accuracy"]["mean"])
    res = {"category": a.category, "reviews": len(reviews), "rows_in_file": n, "split": list(SPLIT), "seeds": a.seeds,
           "base": {"folder": shown(base), "info": {k: base_info.get(k) for k in ("corpus", "epochs_run", "tokens_seen",
                                                                                   "final", "train_seconds")}},
           "adaptation": {"seconds": adapt_s, "info": {k: adapted.info.get(k) for k in (
               "corpus", "epochs_run", "tokens_seen", "final", "vocabulary", "train_seconds", "out_of_time")}},
           "rows": rows, "best_baseline": best,
           "adapted_beats_best_baseline": rows["adapted"]["summary"]["accuracy"]["mean"] > rows[best]["summary"]["accuracy"]["mean"],
           "total_seconds": time.perf_counter() - t0,
           "command": shown(["python", "experiments/heldout_category.py", *(sys.argv[1:] if argv is None else argv)])}
    return finish(res, a, argv, lambda r: print(f"best baseline {best}; adapted LSTM beats it: {r['adapted_beats_best_baseline']}"))


if __name__ == "__main__":
    from jaxsenti.cli import script_main

    script_main(main)
