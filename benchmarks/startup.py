"""Wall times of the `jaxsenti` command in cold processes: its start-up and watching costs, and the whole study.

    python benchmarks/startup.py --json benchmarks/results/startup.json
    python benchmarks/startup.py --study [--timeout S] [--warm-cache DIR] --json out.json [-- study options]

* `jaxsenti --help` and a usage error: the command line imports only what the parser needs.
* `jaxsenti predict --model M "text"` for the study's LSTM and small BERT (each trained one epoch here), with
  the compilation cache warm (one untimed run first), median of ``--repeats`` cold processes.
* The persistent compilation cache: the first step of `jaxsenti train lstm` (compile + run, as the start-up
  line reports it) in a fresh cache, then in a second identical run.
* Logging: one epoch of `jaxsenti train lstm` with the default scalars (TensorBoard + metrics.jsonl every
  ``log_every`` steps) against `--report-to none`, alternated, training seconds from ``history.json``.

* ``--study`` (alone): ``python -m jaxsenti study --out <tmp> --quiet`` in its own process group (killed at
  ``--timeout``), with an empty ``JAXSENTI_CACHE`` as a new user's first run (``--warm-cache DIR``: that cache),
  and each step's share from the seconds the study records (``results.json["seconds"]``: jieba segmentation,
  EDA, baselines, each neural model); "other" is the wall time outside them (start-up, data, t-SNE, figures,
  the report). ``accelerator.py``'s study part runs the same function.

Every figure is a wall time of a process started here, so it includes the interpreter and the imports.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import base_argparser, finish, read_json, run_command, script_main
from report import show

JAXSENTI = [sys.executable, "-m", "jaxsenti"]
TEXT = "这家的环境不差，但是菜不怎么好吃。"


def _run(args: list[str], env: dict, *, ok: tuple[int, ...] = (0,)) -> tuple[float, subprocess.CompletedProcess]:
    t = time.perf_counter()
    p = subprocess.run(JAXSENTI + args, env=env, capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - t
    if p.returncode not in ok:
        raise SystemExit(f"{' '.join(args)} exited {p.returncode}:\n{p.stderr[-2000:]}")
    return seconds, p


def _median(args, env, repeats, **kw) -> dict:
    times = [_run(args, env, **kw)[0] for _ in range(repeats)]
    return {"median_s": statistics.median(times), "min_s": min(times), "runs": times}


def _first_step(p: subprocess.CompletedProcess) -> float:
    m = re.search(r"first step ([\d.]+) s \(compile \+ run; compilation cache: (\w+)", p.stderr)
    if not m:
        raise SystemExit(f"no start-up line in:\n{p.stderr[-2000:]}")
    return float(m.group(1))


def run_study(folder: Path, *, timeout: float, args=(), log: Path | None = None, cache: Path | None = None) -> dict:
    """The study's run record (``common.run_command``) with ``finished``, ``steps`` ({step: seconds}) and
    ``shares`` ({step: fraction of the wall time}, "other" included) when it finished. ``cache``: its
    JAXSENTI_CACHE (default: the environment's)."""
    cmd = JAXSENTI + ["study", "--out", str(folder), "--quiet", *args]
    r = run_command(cmd, timeout=timeout, log=log, env=dict(os.environ, **({"JAXSENTI_CACHE": str(cache)} if cache else {})))
    r.pop("stdout", None)
    results, report = folder / "results.json", folder / "report.md"
    r["finished"] = r["rc"] == 0 and results.is_file()
    if not r["finished"]:
        if r["rc"] == 2:  # the command's user error: its one line
            raise ValueError(r["log_tail"].strip().splitlines()[-1])
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
    ap = base_argparser(__doc__)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--work", help="working folder (default: a temporary one)")
    ap.add_argument("--study", action="store_true", help="time the whole study instead (alone: minutes)")
    ap.add_argument("--timeout", type=float, default=4 * 3600, help="--study: seconds before it is killed")
    ap.add_argument("--warm-cache", default=None, metavar="DIR", help="--study: this JAXSENTI_CACHE (default: empty)")
    ap.add_argument("study_args", nargs=argparse.REMAINDER, help="--study: passed on to jaxsenti study (after --)")
    a = ap.parse_args(argv)
    if a.study:
        extra = [x for x in a.study_args if x != "--"]
        with tempfile.TemporaryDirectory(prefix="study-time-") as tmp:
            cache = Path(a.warm_cache) if a.warm_cache else Path(tmp) / "cache"
            r = run_study(Path(tmp) / "study", timeout=a.timeout, args=extra, cache=cache)
        r.pop("report_md", None)
        r |= {"study_args": extra, "cache": "warm: " + a.warm_cache if a.warm_cache else "empty (a first run)"}
        return finish(r, a, argv, show("study_time"))
    repeats = 2 if a.quick else a.repeats
    work = Path(a.work or tempfile.mkdtemp(prefix="jaxsenti-startup-"))
    env = dict(os.environ, JAXSENTI_CACHE=str(work / "cache"))
    env.pop("JAXSENTI_NO_COMPILE_CACHE", None)
    res: dict = {"help": _median(["--help"], env, repeats),
                 "usage_error": _median(["train", "lstm", "--no-such-flag"], env, repeats, ok=(2,))}
    small = ["--set", "epochs=1"] + (["--split", "200/50/50"] if a.quick else [])
    models = {"lstm": ["train", "lstm"], "bert": ["train", "bert", "--config", "bert_small_random"]}
    res["predict"] = {}
    for name, cmd in models.items():
        folder = work / name
        _run(cmd + small + ["--out", str(folder), "--quiet"], env)
        _run(["predict", "--model", str(folder), TEXT], env)  # warms the compilation cache
        res["predict"][name] = _median(["predict", "--model", str(folder), TEXT], env, repeats)

    fresh = dict(env, JAXSENTI_CACHE=str(work / "fresh_cache"))
    steps = [_first_step(_run(["train", "lstm", *small, "--out", str(work / f"cache{i}"), "--overwrite"], fresh)[1])
             for i in range(2)]
    res["compile_cache"] = {"first_run_first_step_s": steps[0], "second_run_first_step_s": steps[1]}

    epochs = {"default": [], "none": []}
    for i in range(repeats):
        for mode in ("default", "none"):  # alternated: drifts of a shared machine hit both alike
            out = work / f"log_{mode}"
            _run(["train", "lstm", *small, "--out", str(out), "--overwrite", "--quiet",
                  *(["--report-to", "none"] if mode == "none" else [])], env)
            epochs[mode].append(json.loads((out / "history.json").read_text())[0]["seconds"])
    res["logging"] = {k: {"median_s": statistics.median(v), "runs": v} for k, v in epochs.items()}
    res["logging"]["overhead"] = res["logging"]["default"]["median_s"] / res["logging"]["none"]["median_s"] - 1

    return finish(res, a, argv, show("startup"))


if __name__ == "__main__":
    script_main(main)
