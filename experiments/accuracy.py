"""Test accuracy of an experiment config over several seeds (seed i = split i and init i).

    python experiments/accuracy.py configs/lstm_dianping.py --seeds 5 --json experiments/results/lstm_accuracy.json

CONFIG is a file or a packaged config name (``lstm_dianping``). Prints precision/recall/accuracy/F1 as
mean ± sample std and P(positive) for the mixed sentence; the accuracy table of benchmarks/RESULTS.md
reads the JSON files this writes.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # benchmarks/common.py: shared script helpers

from common import base_argparser, finish, shown  # noqa: E402
from jaxsenti import config as config_lib  # noqa: E402
from jaxsenti import registry  # noqa: E402
from jaxsenti.data import load_reviews, resolve_dataset, segment_many  # noqa: E402
from jaxsenti.metrics import METRICS, fmt_mean_std  # noqa: E402
from jaxsenti.study import run_neural  # noqa: E402


def show(res: dict) -> None:
    s = res["summary"]
    print(f"{res['config']} on {Path(res['data']).name}, {len(res['runs'])} seeds:")
    for m in METRICS:
        print(f"  {m:9s} {fmt_mean_std(s[m])}   {', '.join(f'{v:.3f}' for v in s[m]['values'])}")
    val = [r["val_accuracy"] for r in res["runs"] if "val_accuracy" in r]
    if val:
        print(f"  val acc   {sum(val) / len(val):.3f} (mean at the chosen epoch; select settings on this, not on test)")
    print(f"  mixed sentence P(positive): {', '.join(f'{p:.3f}' for p in res['mixed_sentence_p_positive'])}")
    print(f"  wall time {res['total_seconds']:.0f}s")


def main(argv=None) -> int:
    ap = base_argparser(__doc__, quick=False)
    ap.add_argument("config")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--set", action="append", default=[], help="config override KEY=VALUE (repeatable)")
    ap.add_argument("--out", help="where model folders go (default: a temporary folder)")
    a = ap.parse_args(argv)
    cfg = config_lib.apply_overrides(config_lib.load_config(a.config), a.set)
    path = resolve_dataset(cfg.data.path)
    reviews = load_reviews(path, cfg.data.text_column, cfg.data.label_column)
    words = segment_many(reviews.texts) if registry.spec_for(cfg.model).encoder.uses_words else None
    out = Path(a.out or tempfile.mkdtemp(prefix="jaxsenti-acc-"))
    t0 = time.perf_counter()
    res = run_neural(cfg, reviews, words, a.seeds, out, progress=sys.stderr.isatty())
    res |= {"command": shown(["python", "experiments/accuracy.py", *(sys.argv[1:] if argv is None else argv)]),
            "data": str(path), "total_seconds": time.perf_counter() - t0, "config_dict": config_lib.to_dict(cfg)}
    return finish(res, a, argv, show)


if __name__ == "__main__":
    from jaxsenti.cli import script_main

    script_main(main)
