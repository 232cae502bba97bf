"""Run every benchmark and write ``benchmarks/results/*.json``, ``results.json`` and ``benchmarks/RESULTS.md``.

    python benchmarks/run_all.py [--quick] [--out benchmarks/results] [--skip lstm,bert,...] [--study]
    python benchmarks/run_all.py --render-only      # RESULTS.md again from results/results.json, nothing measured

Each part (:data:`JOBS`: its JSON files and commands) runs in its own subprocess, so peak memory is per part:
the harness cases (lstm, bert = BERT 4x256, bert_base, mlm, lm = sampled and full softmax; the ``_bf16`` ones in
bfloat16), gemm_floor (the steps' matrix products alone), xla_flags (the steps under each XLA CPU option),
dropout (mask cost), latency (``Predictor.predict``), preprocessing, scaling (batch and data size), startup
(the ``jaxsenti`` command's start-up, compilation cache and logging cost, in cold processes), and the slow
study_time (``--study``). ``--quick`` is passed on to every script and skips bert_base. A part not run (skipped,
or run alone: ``python benchmarks/xla_cpu_flags.py --json benchmarks/results/xla_cpu_flags.json``) is read from
its JSON file in ``--out`` when there is one, and says so. ``RESULTS.md`` is rendered from ``results.json`` alone
(``report.py``); every train-step number comes from ``harness.py`` (its docstring says how a number is measured).
Accuracy is not a benchmark: ``experiments/``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

from common import (HERE, check_results_file, is_our_json, machine_info, names_of, output_file, read_json, run_script,
                    script_main, shown, write_json)
from report import fmt_num, render_markdown

JOBS = {  # part: [(json file, script, arguments)], in run order; {out} is filled in
    "lstm": [("lstm_throughput.json", "harness.py", "lstm")],
    "lstm_bf16": [("lstm_throughput_bf16.json", "harness.py", "lstm", "--dtype", "bfloat16")],
    "bert": [("bert_throughput_small.json", "harness.py", "bert_small")],
    "bert_bf16": [("bert_throughput_small_bf16.json", "harness.py", "bert_small", "--dtype", "bfloat16")],
    "bert_base": [("bert_throughput_base.json", "harness.py", "bert_base")],
    "mlm": [("mlm_throughput.json", "harness.py", "mlm")],
    "lm": [("lm_throughput.json", "harness.py", "lm"), ("lm_throughput_full.json", "harness.py", "lm_full")],
    "gemm_floor": [("gemm_floor.json", "gemm_floor.py")],
    "xla_flags": [("xla_cpu_flags.json", "xla_cpu_flags.py")],
    "dropout": [("dropout_masks.json", "dropout_masks.py")],
    "latency": [(f"inference_latency_{m}.json", "inference_latency.py", "--models", m) for m in ("lstm", "bert")],
    "preprocessing": [("preprocessing.json", "preprocessing.py")],
    "scaling": [("scaling.json", "scaling.py", "--plots", "{out}")],
    "study_time": [("study_time.json", "startup.py", "--study")],
    "startup": [("startup.json", "startup.py")],
}


def plan(quick: bool, out: Path, skip: set[str], study: bool = False) -> list[tuple[str, list]]:
    """(part, [(json path, command), ...]) in run order."""
    skip = set(skip) | ({"bert_base"} if quick else set()) | (set() if study else {"study_time"})
    return [(part, [(out / name, [sys.executable, str(HERE / script), *(x.format(out=out) for x in args),
                                  *["--quick"] * quick, "--json", str(out / name)]) for name, script, *args in jobs])
            for part, jobs in JOBS.items() if part not in skip]


def run_parts(jobs, *, timeout: float | None, log=print) -> dict:
    """Run each part's scripts; a failing script is recorded under ``errors`` and does not stop the others."""
    results: dict = {"parts": {}, "errors": {}}
    for part, items in jobs:
        log(f"== {part} ==")
        for json_path, cmd in items:
            t0 = time.perf_counter()
            try:
                r = run_script(cmd, json_path, timeout=timeout)
            except Exception as e:  # noqa: BLE001 - one failing part must not lose the others
                log(f"   FAILED after {time.perf_counter() - t0:.0f}s: {str(e)[-1500:]}")
                results["errors"].setdefault(part, []).append(str(e)[-3000:])
                continue
            log("   " + "\n   ".join(r["stdout"].rstrip().splitlines()[-14:]))
            log(f"   ({r['wall_s']:.0f}s, peak RSS {r['peak_rss_mib']:.0f} MiB) -> {json_path}")
            results["parts"].setdefault(part, []).append(
                {"file": shown(json_path), "command": shown(cmd), "wall_s": r["wall_s"], "peak_rss_mib": r["peak_rss_mib"],
                 "result": r["result"]})
    return results


def read_existing(results: dict, out: Path) -> None:
    """Parts this run did not measure, from their JSON files in ``out`` (an earlier or separate run), marked so."""
    for part, jobs in JOBS.items():  # a part measured by this run stays; one read before is read afresh
        if all(o.get("separate") for o in results.setdefault("parts", {}).get(part, [])) and (found := [
                (read_json(out / name), out / name, script) for name, script, *_ in jobs if (out / name).is_file()]):
            results["parts"][part] = [{"file": shown(f), "separate": True, "wall_s": r.get("wall_s"), "result": r,
                                       "command": f"python benchmarks/{script} (a separate run, "
                                                  f"{r.get('machine', {}).get('date', 'date unknown')})"}
                                      for r, f, script in found]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer steps and repeats, smaller sizes, no bert-base (≈5 min)")
    ap.add_argument("--out", default=str(HERE / "results"), help="folder for the JSON files and PNGs")
    ap.add_argument("--md", default=str(HERE / "RESULTS.md"), type=output_file("md"),
                    help="where to write the markdown report (an existing file only if a script here rendered it)")
    ap.add_argument("--skip", default="", type=names_of(JOBS), help=f"comma-separated parts to skip: {','.join(JOBS)}")
    ap.add_argument("--study", action="store_true", help="also time the whole `jaxsenti study` (benchmarks/startup.py --study)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds allowed per benchmark subprocess")
    ap.add_argument("--render-only", action="store_true", help="re-render RESULTS.md from <out>/results.json")
    a = ap.parse_args(argv)
    out, md_path = Path(a.out).resolve(), Path(a.md)
    skip = set(a.skip)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("MPLBACKEND", "Agg")
    results_json = out / "results.json"
    for name in ["results.json", *(job[0] for jobs in JOBS.values() for job in jobs)]:  # before hours of work
        check_results_file(out / name, is_our_json, flag="--out")

    if a.render_only:  # ap.error: one line, exit 2
        results = read_json(results_json) if results_json.is_file() else ap.error(f"no {results_json}: run the suite first")
    else:
        out.mkdir(parents=True, exist_ok=True)
        cmd_argv = sys.argv[1:] if argv is None else list(argv)
        skipped = skip | ({"bert_base"} if a.quick else set())
        skipped |= set() if a.study else {"study_time (run with --study; an existing study_time.json is read)"}
        results = {"command": " ".join(["python", "benchmarks/run_all.py", *map(shlex.quote, cmd_argv)]),
                   "quick": a.quick, "machine": machine_info(), "skipped": sorted(skipped)}
        t0 = time.perf_counter()
        results |= run_parts(plan(a.quick, out, skip, a.study), timeout=a.timeout)
        results["wall_s"] = time.perf_counter() - t0
        results["load_average_end"] = machine_info()["load_average"]
    read_existing(results, out)
    try:
        results["results_json"] = os.path.relpath(results_json, md_path.resolve().parent)
    except ValueError:  # another drive (Windows)
        results["results_json"] = str(results_json)
    write_json(results_json, results)
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(render_markdown(results, md_path, out), encoding="utf-8")
    print(f"wrote {results_json} and {md_path} ({fmt_num(results.get('wall_s'))} s)")
    if results.get("errors"):
        print(f"FAILED parts: {', '.join(results['errors'])}")
        return 1
    return 0


if __name__ == "__main__":
    script_main(main)
