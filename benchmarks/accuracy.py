"""Test accuracy of an experiment config over several seeds (seed i = split i and init i).

    python benchmarks/accuracy.py configs/lstm_dianping.py --seeds 5 --json benchmarks/results/lstm_accuracy.json

Prints precision/recall/accuracy/F1 as mean ± sample std and P(positive) for the mixed sentence;
the numbers in benchmarks/RESULTS.md come from this script.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from jaxsenti import config as config_lib
from jaxsenti.data import load_reviews, resolve_dataset, segment_many
from jaxsenti.metrics import METRICS, fmt_mean_std
from jaxsenti.study import machine_info, run_neural


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--out", help="where model folders go (default: a temporary folder)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    cfg = config_lib.apply_overrides(config_lib.load_config(args.config), args.set)
    path = resolve_dataset(cfg.data.path)
    reviews = load_reviews(path, cfg.data.text_column, cfg.data.label_column)
    words = segment_many(reviews.texts) if cfg.model_name == "lstm" else None
    out = Path(args.out or tempfile.mkdtemp(prefix="jaxsenti-acc-"))
    t0 = time.perf_counter()
    res = run_neural(cfg, reviews, words, args.seeds, out, progress=sys.stderr.isatty())
    res |= {"command": " ".join(["python", "benchmarks/accuracy.py", *sys.argv[1:]]), "data": str(path),
            "total_seconds": time.perf_counter() - t0, "machine": machine_info(), "config_dict": config_lib.to_dict(cfg)}
    s = res["summary"]
    print(f"{cfg.name} on {path.name}, {args.seeds} seeds:")
    for m in METRICS:
        print(f"  {m:9s} {fmt_mean_std(s[m])}   {', '.join(f'{v:.3f}' for v in s[m]['values'])}")
    val = [r["val_accuracy"] for r in res["runs"] if "val_accuracy" in r]
    if val:
        print(f"  val acc   {sum(val) / len(val):.3f} (mean at the chosen epoch; select settings on this, not on test)")
    print(f"  mixed sentence P(positive): {', '.join(f'{p:.3f}' for p in res['mixed_sentence_p_positive'])}")
    print(f"  wall time {res['total_seconds']:.0f}s")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
