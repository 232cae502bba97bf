"""Wall time of the whole ``jaxsenti study`` and each step's share of it.

    python benchmarks/study_time.py [--timeout S] [--json out.json] [-- study options, e.g. --neural-seeds 1]

Runs ``python -m jaxsenti study --out <tmp> --quiet`` (the ``jaxsenti`` command: its XLA defaults and compilation
cache) in a subprocess (its own process group, killed at ``--timeout``) with an empty ``JAXSENTI_CACHE``, as a new
user's first run (``--warm-cache DIR``: that cache instead), and reads the per-step seconds the study itself records (``results.json["seconds"]``: jieba
segmentation, EDA, baselines, each neural model); "other" is the wall time outside those steps (start-up, data
loading, t-SNE, figures, the report). ``accelerator.py``'s study part runs the same function.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from common import base_argparser, finish, read_json, run_command
from report import show


def run_study(folder: Path, *, timeout: float, args=(), log: Path | None = None, cache: Path | None = None) -> dict:
    """The study's run record (``common.run_command``) with ``finished``, ``steps`` ({step: seconds}) and
    ``shares`` ({step: fraction of the wall time}, "other" included) when it finished. ``cache``: its
    JAXSENTI_CACHE (default: the environment's)."""
    cmd = [sys.executable, "-m", "jaxsenti", "study", "--out", str(folder), "--quiet", *args]
    r = run_command(cmd, timeout=timeout, log=log, env=dict(os.environ, **({"JAXSENTI_CACHE": str(cache)} if cache else {})))
    r.pop("stdout", None)
    results, report = folder / "results.json", folder / "report.md"
    r["finished"] = r["rc"] == 0 and results.is_file()
    if not r["finished"]:
        if not r["timed_out"]:
            raise RuntimeError(f"jaxsenti study failed (rc={r['rc']}):\n{r['log_tail']}")
        return r
    steps = dict(read_json(results)["seconds"])
    steps["other (start-up, data, figures, report)"] = max(0.0, r["wall_s"] - sum(steps.values()))
    r |= {"steps": steps, "shares": {k: v / r["wall_s"] for k, v in steps.items()}}
    if report.is_file():
        r["report_md"] = report.read_text(encoding="utf-8")[:20000]
    return r


def main(argv=None) -> int:
    ap = base_argparser(__doc__, quick=False)
    ap.add_argument("--timeout", type=float, default=4 * 3600)
    ap.add_argument("--warm-cache", default=None, metavar="DIR", help="use this JAXSENTI_CACHE (default: an empty one)")
    ap.add_argument("study_args", nargs=argparse.REMAINDER, help="passed on to jaxsenti study (after --)")
    a = ap.parse_args(argv)
    extra = [x for x in a.study_args if x != "--"]
    with tempfile.TemporaryDirectory(prefix="study-time-") as tmp:
        cache = Path(a.warm_cache) if a.warm_cache else Path(tmp) / "cache"
        r = run_study(Path(tmp) / "study", timeout=a.timeout, args=extra, cache=cache)
    r.pop("report_md", None)
    return finish(r | {"study_args": extra, "cache": "warm: " + a.warm_cache if a.warm_cache else "empty (a first run)"},
                  a, argv, show("study_time"))


if __name__ == "__main__":
    raise SystemExit(main())
