"""Our real train steps under each XLA CPU option, against PyTorch in the same run: which options to adopt.

    python benchmarks/xla_cpu_flags.py [--options baseline,onednn,...] [--quick | --smoke] [--json out.json]

Each option runs in its own subprocess (XLA reads ``XLA_FLAGS`` once, when jax starts), with ``XLA_FLAGS`` =
what the caller set + the option, and ``JAXSENTI_XLA_DEFAULTS=0`` (so ``jaxsenti.xla_options`` adds nothing).
There the harness times the LSTM and BERT 4x256 steps in float32 and bfloat16, JAX and PyTorch alternated
(``harness.py``'s method, both in that process). Parity: the JAX loss after the first step (forward at the
initial weights) and after the last timed step (so gradients and updates count) against the baseline
option's, same seeds and batches; within ``TOLERANCE`` relative difference for the dtype or not. The baseline runs
first and again last (``baseline_again``): JAX's speed is compared with the faster of the two, whose spread is
what separate processes differ by on their own.
The option values are jaxlib 0.10.2's (``strings`` of libjax_common.so: XnnGraphFusionMode, LibraryFusionType).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from common import HERE, base_argparser, finish, names_of, read_json, run_command, script_main, write_json

OPTIONS = {
    "baseline": "",
    "onednn": "--xla_cpu_use_onednn=true",
    "onednn_custom_call": "--xla_cpu_experimental_onednn_custom_call=true",
    "xnn_greedy": "--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY",
    "xnn_greedy_slinky": "--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY_SLINKY",
    "ynn_dot": "--xla_cpu_experimental_ynn_fusion_type=dot",
    "ynn_dot_eltwise_reduce": "--xla_cpu_experimental_ynn_fusion_type=dot,eltwise,reduce",
    "xnnpack": "--xla_cpu_use_xnnpack=true",
}
CASES = (("lstm", "float32"), ("lstm", "bfloat16"), ("bert_small", "float32"), ("bert_small", "bfloat16"))
TOLERANCE = {"float32": 1e-4, "bfloat16": 2e-2}  # relative loss difference against the baseline option


def worker(quick: bool, smoke: bool) -> dict:
    """This process's options (already in XLA_FLAGS): every case, or the error it raised."""
    import harness

    out = {}
    for case, dtype in CASES:
        try:
            r = harness.measure(harness.spec_for(case, dtype=dtype, quick=quick, smoke=smoke, peak_flops=1.0))
        except Exception as e:  # noqa: BLE001 - an option may break one case only
            out[f"{case} {dtype}"] = {"error": f"{type(e).__name__}: {str(e)[:500]}"}
            continue
        j, t = r["frameworks"]["jax"], r["frameworks"]["torch"]
        out[f"{case} {dtype}"] = {"setup": r["setup"], "jax_step_s": j["median_step_s"], "torch_step_s": t["median_step_s"],
                                  "jax_over_torch": r["jax_over_torch"], "compile_s": j["compile_s"],
                                  "first_loss": j["first_loss"], "final_loss": j["final_loss"], "dtype": dtype,
                                  "step_times_s": {"jax": j["step_times_s"], "torch": t["step_times_s"]}}
    return out


def compare(options: dict) -> None:
    """Add ``vs_baseline`` (JAX speed against the faster of the two baseline runs, first and last: their spread is
    the noise between processes) and the parity verdict (against the first) to every case."""
    base = options.get("baseline", {}).get("cases", {})
    again = options.get("baseline_again", {}).get("cases", {})
    for opt in options.values():
        for key, c in opt.get("cases", {}).items():
            b = base.get(key)
            if "error" in c or not b or "error" in b:
                continue
            fastest = min(x["jax_step_s"] for x in (b, again.get(key) or b) if "jax_step_s" in x)
            c["jax_vs_baseline"] = fastest / c["jax_step_s"]
            c["loss_rel_diff"] = max(abs(c[k] - b[k]) / max(abs(b[k]), 1e-12) for k in ("first_loss", "final_loss"))
            c["within_tolerance"] = c["loss_rel_diff"] <= TOLERANCE[c["dtype"]]


def main(argv=None) -> int:
    ap = base_argparser(__doc__, smoke=True)
    ap.add_argument("--options", type=names_of(OPTIONS), default=list(OPTIONS))
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per option")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        write_json(a.worker, worker(a.quick, a.smoke))
        return 0
    user = os.environ.get("XLA_FLAGS", "")
    options = {}
    with tempfile.TemporaryDirectory() as tmp:
        others = [o for o in a.options if o != "baseline"]
        for name in ["baseline"] + others + ["baseline_again"] * bool(others):  # the baseline first and last
            out = Path(tmp) / f"{name}.json"
            flags = " ".join(filter(None, [user, OPTIONS.get(name, "")]))
            env = dict(os.environ, XLA_FLAGS=flags, JAXSENTI_XLA_DEFAULTS="0")
            cmd = [sys.executable, HERE / "xla_cpu_flags.py", "--worker", out] + ["--quick"] * a.quick + ["--smoke"] * a.smoke
            r = run_command(cmd, timeout=a.timeout, env=env)
            options[name] = {"flags": OPTIONS.get(name, ""), "xla_flags": flags, "wall_s": r["wall_s"]}
            if r["rc"] == 0 and out.is_file():
                options[name]["cases"] = read_json(out)
            else:
                options[name]["error"] = f"rc={r['rc']}: " + r["stdout"][-1500:]
            print(f"{name}: " + (options[name].get("error", "")[:200] or ", ".join(
                f"{k} {c['jax_over_torch']:.2f}x" if "jax_over_torch" in c else f"{k} error"
                for k, c in options[name]["cases"].items())), flush=True)
    compare(options)
    res = {"options": options, "cases": [" ".join(c) for c in CASES], "tolerance": TOLERANCE, "user_xla_flags": user}
    return finish(res, a, argv)


if __name__ == "__main__":
    script_main(main)
