"""Run every benchmark and write ``benchmarks/results/*.json``, ``results.json`` and ``benchmarks/RESULTS.md``.

    python benchmarks/run_all.py [--quick] [--out benchmarks/results] [--skip lstm,bert,...] [--accuracy]

Parts (each runs in its own subprocess, so peak memory is per part; its JSON lands in ``--out``):

  lstm           LSTM train-step throughput, JAX vs PyTorch    benchmarks/lstm_throughput.py --json
  bert           BERT train-step throughput, small config       benchmarks/bert_throughput.py --json
  bert_base      ... bert-base-sized config (skipped by --quick)
  gemm_floor     the LSTM / small-BERT steps' matrix products alone, JAX vs PyTorch   benchmarks/gemm_floor.py --json
  dropout        dropout-mask cost, threefry vs the models' hashed masks            benchmarks/dropout_masks.py --json
  latency        Predictor.predict latency, LSTM and small BERT  benchmarks/inference_latency.py --json
  preprocessing  load/validate, jieba, vocab, tokenizer          benchmarks/preprocessing.py --json
  scaling        throughput vs batch size, epoch vs data size   benchmarks/scaling.py --json --plots
  accuracy       5-seed test accuracy (only with --accuracy)    benchmarks/accuracy.py --json

Existing ``*accuracy*.json`` files in ``--out`` (written by benchmarks/accuracy.py) are always read into the
accuracy table. ``RESULTS.md`` is generated from ``results.json`` only; ``--render-only`` re-renders it from an
existing ``results.json`` without measuring anything. All numbers are CPU numbers of the machine it ran on.
"""

from __future__ import annotations

import argparse
import glob
import math
import os
import shlex
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import HERE, ROOT, fmt_num, machine_info, md_table, read_json, run_script, write_json  # noqa: E402

PARTS = ("lstm", "bert", "bert_base", "gemm_floor", "dropout", "latency", "preprocessing", "scaling", "accuracy")
ACCURACY_CONFIGS = ("configs/lstm_dianping.py", "configs/bert_small_random.py")
PY = sys.executable


def _ms(s):
    return None if s is None else s * 1e3


def _get(d, *keys, default=None):
    for k in keys:
        if not isinstance(d, dict) or k not in d or d[k] is None:
            return default
        d = d[k]
    return d


# ----------------------------------------------------------------------------------------------
# Running the parts
# ----------------------------------------------------------------------------------------------


def plan(quick: bool, out: Path, skip: set[str], accuracy: bool, seeds: int) -> list[tuple[str, list[list[str]]]]:
    """(part, [(json file, command), ...]) in run order."""
    bm = str(HERE)
    steps = []
    if "lstm" not in skip:
        extra = ["--steps", "4", "--warmup", "1", "--rounds", "1"] if quick else []
        steps.append(("lstm", [("lstm_throughput.json", [PY, f"{bm}/lstm_throughput.py", *extra])]))
    if "bert" not in skip:
        extra = ["--steps", "3", "--warmup", "0", "--rounds", "1"] if quick else []
        steps.append(("bert", [("bert_throughput_small.json", [PY, f"{bm}/bert_throughput.py", "--config", "small", *extra])]))
    if "bert_base" not in skip and not quick:
        steps.append(("bert_base", [("bert_throughput_base.json", [PY, f"{bm}/bert_throughput.py", "--config", "base"])]))
    if "gemm_floor" not in skip:
        extra = ["--rounds", "2", "--reps", "1"] if quick else []
        steps.append(("gemm_floor", [("gemm_floor.json", [PY, f"{bm}/gemm_floor.py", *extra])]))
    if "dropout" not in skip:
        steps.append(("dropout", [("dropout_masks.json", [PY, f"{bm}/dropout_masks.py",
                                                          *(["--rounds", "2"] if quick else [])])]))
    if "latency" not in skip:
        q = ["--quick"] if quick else []
        steps.append(("latency", [(f"inference_latency_{m}.json", [PY, f"{bm}/inference_latency.py", "--models", m, *q])
                                  for m in ("lstm", "bert")]))
    if "preprocessing" not in skip:
        steps.append(("preprocessing", [("preprocessing.json", [PY, f"{bm}/preprocessing.py", *(["--quick"] if quick else [])])]))
    if "scaling" not in skip:
        steps.append(("scaling", [("scaling.json", [PY, f"{bm}/scaling.py", "--plots", str(out), *(["--quick"] if quick else [])])]))
    if accuracy and "accuracy" not in skip:
        steps.append(("accuracy", [(f"{Path(c).stem}_accuracy.json",
                                    [PY, f"{bm}/accuracy.py", str(ROOT / c), "--seeds", str(seeds)]) for c in ACCURACY_CONFIGS]))
    return [(part, [(out / name, cmd + ["--json", str(out / name)]) for name, cmd in jobs]) for part, jobs in steps]


def run_parts(jobs, *, timeout: float | None, log=print) -> dict:
    results: dict = {"parts": {}, "errors": {}}
    for part, items in jobs:
        log(f"== {part} ==")
        outs = []
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
            outs.append({"file": str(json_path), "command": r["command"], "wall_s": r["wall_s"],
                         "peak_rss_mib": r["peak_rss_mib"], "result": r["result"]})
        if outs:
            results["parts"][part] = outs
    return results


def collect_accuracy(*folders) -> dict:
    """Every ``*accuracy*.json`` (accuracy.py output) in the folders, keyed by file name."""
    found = {}
    for folder in folders:
        for f in sorted(glob.glob(os.path.join(str(folder), "*accuracy*.json"))):
            name = os.path.basename(f)
            if name in found:
                continue
            try:
                d = read_json(f)
            except (OSError, ValueError):
                continue
            if isinstance(d, dict) and "summary" in d:
                found[name] = {"file": f, "result": d}
    return found


# ----------------------------------------------------------------------------------------------
# RESULTS.md
# ----------------------------------------------------------------------------------------------


def _first(results, part):
    outs = results.get("parts", {}).get(part) or []
    return outs[0] if outs else None


def machine_section(results: dict) -> list[str]:
    m = results.get("machine", {})
    v = m.get("versions", {})
    rows = [
        ("CPU model", m.get("cpu_model")),
        ("CPU cores (os.cpu_count / affinity)", f"{m.get('cpu_count')} / {m.get('cpu_affinity')}"),
        ("RAM (GiB)", m.get("ram_gib")),
        ("load average at start (1/5/15 min)", " / ".join(fmt_num(x, 2) for x in (m.get("load_average") or []))),
        ("load average at end", " / ".join(fmt_num(x, 2) for x in (results.get("load_average_end") or []))),
        ("GPU", m.get("gpu", "none")),
        ("platform", m.get("platform")),
        ("python", m.get("python")),
    ] + [(name, v.get(name)) for name in ("jax", "jaxlib", "flax", "optax", "torch", "numpy", "transformers", "tokenizers", "jieba")]
    return md_table(["", ""], [(k, "–" if val is None else (val if isinstance(val, str) else fmt_num(val))) for k, val in rows])


def _per_framework(result: dict, fw: str) -> dict | None:
    """One framework's numbers in a throughput JSON (lstm_throughput nests them under "results", bert_throughput does not)."""
    return _get(result, "results", fw) if "results" in result else result.get(fw)


def compile_section(results: dict) -> list[str]:
    rows = []
    lstm = _first(results, "lstm")
    if lstm:
        r = lstm["result"]
        a = r.get("args", {})
        shape = f"B={a.get('batch')} T={a.get('seq')}"
        for fw, what in (("jax", "compile + first step"), ("torch", "first step (eager)")):
            x = _per_framework(r, fw)
            if x:
                rows.append((f"LSTM train step ({shape})", fw, what, x.get("compile_plus_first_step_s"),
                             _ms(x.get("median_step_s"))))
    for part, label in (("bert", "BERT small"), ("bert_base", "BERT base-size")):
        b = _first(results, part)
        if b:
            r = b["result"]
            shape = f"B={r.get('batch')} T={r.get('seq')}"
            for fw, what in (("jax", "lower + compile"), ("torch", "first step (eager)")):
                x = _per_framework(r, fw)
                if x:
                    rows.append((f"{label} train step ({shape})", fw, what, x.get("compile_s"), _ms(x.get("median_step_s"))))
    for lat in (results.get("parts", {}).get("latency") or []):
        for kind, m in lat["result"].get("models", {}).items():
            s, b = m["single"], m["batch"]
            rows.append((f"{kind} predict, 1 review", "jax", "first call (compile + run)", s.get("first_call_s"), _ms(s.get("p50_s"))))
            rows.append((f"{kind} predict, {b.get('batch_size')} reviews", "jax",
                         f"first call ({b.get('jitted_calls_per_predict')} bucket shapes)", b.get("first_call_s"), _ms(b.get("p50_s"))))
            mo = _get(m, "model_only", f"b{b.get('batch_size')}")
            if mo:
                rows.append((f"{kind} forward only, {mo['batch']}x{mo['seq']}", "jax", "lower + compile", mo.get("compile_s"),
                             _ms(mo.get("p50_s"))))
    ds = _get(_first(results, "scaling") or {}, "result", "dataset", "rows")
    if ds:
        rows.append((f"LSTM (moderate) epoch, {ds[0]['n_reviews']} reviews", "jax", "compile all bucket shapes",
                     ds[0].get("compile_s"), _ms(ds[0].get("epoch_s"))))
    if not rows:
        return []
    return md_table(["what", "framework", "one-off cost", "one-off (s)", "steady state (ms, median/p50)"], rows)


def train_section(results: dict) -> list[str]:
    rows = []
    lstm = _first(results, "lstm")
    if lstm:
        r = lstm["result"]
        a = r.get("args", {})
        cfg = f"emb {a.get('embed')}, {a.get('layers')}x{a.get('hidden')}, B={a.get('batch')}, T={a.get('seq')}, {a.get('dtype')}"
        ratio = r.get("jax_over_torch_tokens_per_s")
        for fw in ("jax", "torch"):
            x = _per_framework(r, fw)
            if x:
                seq_s = a.get("batch") / x["median_step_s"] if a.get("batch") and x.get("median_step_s") else None
                rows.append(("LSTM", cfg, fw, _ms(x.get("median_step_s")), x.get("tokens_per_s"), seq_s,
                             x.get("peak_rss_mib"), ratio if fw == "jax" else None))
    for part, label in (("bert", "BERT small"), ("bert_base", "BERT base-size")):
        b = _first(results, part)
        if b:
            r = b["result"]
            cfg = f"{r.get('layers')}x{r.get('hidden')}, B={r.get('batch')}, T={r.get('seq')}, {r.get('jax_dtype')}"
            for fw in ("jax", "torch"):
                x = _per_framework(r, fw)
                if x:
                    rows.append((label, cfg, fw, _ms(x.get("median_step_s")), x.get("tokens_per_s"), x.get("seq_per_s"),
                                 b.get("peak_rss_mib"), r.get("jax_over_torch") if fw == "jax" else None))
    if not rows:
        return []
    lines = md_table(["model", "config", "framework", "median step (ms)", "tokens/s", "seq/s", "peak RSS (MiB)",
                      "JAX/PyTorch speed"], rows)
    notes = []
    if lstm:
        notes.append("LSTM: every row full length (no padding), JAX and PyTorch each in their own subprocess, so the peak "
                     "RSS is per framework.")
    for part in ("bert", "bert_base"):
        b = _first(results, part)
        if b:
            r = b["result"]
            notes.append(f"{part}: JAX MFU {100 * _get(r, 'jax', 'mfu', default=float('nan')):.1f}% of a measured "
                         f"{fmt_num(r.get('peak_flops', float('nan')) / 1e9)} GFLOP/s fp32 matmul peak; tokens/s counts "
                         f"padded B*T; JAX and PyTorch share one process, so the peak RSS is of both together.")
    return lines + [""] + [f"- {n}" for n in notes]


def gemm_floor_section(results: dict) -> list[str]:
    g = _first(results, "gemm_floor")
    if not g:
        return []
    steps = {}  # whole-step medians from the throughput parts; gemm_floor's "bert" is the small config
    for name in ("lstm", "bert"):
        part = _first(results, name)
        if part:
            steps[name] = {fw: (_per_framework(part["result"], fw) or {}).get("median_step_s") for fw in ("jax", "torch")}
    rows = []
    for name, r in (g["result"].get("results") or {}).items():
        st = steps.get(name, {})
        jax_gemm, torch_step = r.get("jax_gemm_ms"), _ms(st.get("torch"))
        best = torch_step / jax_gemm if jax_gemm and torch_step else None
        rows.append((name, fmt_num(r.get("gemm_flops", 0) / 1e9), r.get("n_products"), jax_gemm, r.get("jax_gflops"),
                     r.get("torch_gemm_ms"), r.get("torch_gflops"), _ms(st.get("jax")), torch_step, best))
    lines = md_table(["model", "GFLOP/step", "products", "JAX GEMMs (ms)", "JAX GFLOP/s", "PyTorch GEMMs (ms)",
                      "PyTorch GFLOP/s", "JAX whole step (ms)", "PyTorch whole step (ms)",
                      "JAX/PyTorch ceiling = PyTorch step / JAX GEMMs"], rows)
    return lines + ["", "- Every matrix product of one train step (forward, input and weight gradients, the LSTM's "
                    "128-step recurrent chains as dependent loops, BERT's batched attention products), timed alone "
                    "in float32; `benchmarks/gemm_floor.py`. The whole-step columns are from the throughput table "
                    "above (a separate run). A step cannot be faster than its GEMMs, so the last column is the best "
                    "JAX/PyTorch speed ratio reachable with the GEMM kernels XLA calls on this CPU."]


def dropout_section(results: dict) -> list[str]:
    d = _first(results, "dropout")
    if not d:
        return []
    r = d["result"]
    rows = [(k, r["median_ms"][k], r["ns_per_element"][k]) for k in ("threefry", "hash")]
    return md_table(["mask", "median (ms)", "ns/element"], rows) + [
        "", f"- `where(mask, x * scale, 0)` on {fmt_num(r['elements'])} elements (shape {r['shape']}, one BERT-small "
            f"attention-probability tensor), rate {r['rate']}; the hashed mask (`jaxsenti/models/dropout.py`, used by "
            f"both models) is {fmt_num(r['speedup_hash_over_threefry'])}x faster than `jax.random.bernoulli`."]


def latency_section(results: dict) -> list[str]:
    rows, notes = [], []
    for lat in (results.get("parts", {}).get("latency") or []):
        for kind, m in lat["result"].get("models", {}).items():
            s, b, e = m["single"], m["batch"], m.get("encode_batch", {})
            name = f"{kind} ({fmt_num(m['n_params'] / 1e6)}M params)"
            rows.append((name, "predict, 1 review (end to end)", s.get("n"), _ms(s.get("p50_s")), _ms(s.get("p99_s")),
                         1.0 / s["p50_s"] if s.get("p50_s") else None, lat.get("peak_rss_mib")))
            rows.append((name, f"predict, {b.get('batch_size')} reviews (end to end)", b.get("n"), _ms(b.get("p50_s")),
                         _ms(b.get("p99_s")), b.get("reviews_per_s"), lat.get("peak_rss_mib")))
            if e:
                rows.append((name, f"encode only, {b.get('batch_size')} reviews", e.get("n"), _ms(e.get("p50_s")),
                             _ms(e.get("p99_s")), e.get("reviews_per_s"), None))
            for k, mo in sorted(m.get("model_only", {}).items(), key=lambda kv: kv[1]["batch"]):
                rows.append((name, f"forward only, {mo['batch']}x{mo['seq']} tokens", mo.get("n"), _ms(mo.get("p50_s")),
                             _ms(mo.get("p99_s")), mo.get("seq_per_s"), None))
            notes.append(f"{kind}: `{m.get('config_file')}`, buckets {m.get('buckets')}; {m.get('weights')}. "
                         f"The {b.get('batch_size')}-review call ran {b.get('jitted_calls_per_predict')} jitted calls "
                         f"(buckets {b.get('buckets_used')}), each padded to the smallest of `Predictor.BATCH_SIZES` that holds it.")
    if not rows:
        return []
    return md_table(["model", "mode", "calls timed", "p50 (ms)", "p99 (ms)", "reviews/s at p50", "peak RSS (MiB)"],
                    rows) + [""] + [f"- {n}" for n in notes]


PRE_STAGES = (("load_validate", "load + validate (whole file)"), ("cjk_filter", "CJK filter"),
              ("cjk_jieba", "CJK filter + jieba (no disk cache)"), ("vocab_build", "vocab build"),
              ("vocab_encode", "vocab encode (max 256)"), ("bert_tokenize", "BERT tokenizer encode (max 128)"))


def preprocessing_section(results: dict) -> list[str]:
    p = _first(results, "preprocessing")
    if not p:
        return []
    rows = []
    for name, d in p["result"].get("datasets", {}).items():
        for key, label in PRE_STAGES:
            if key in d:
                st = d[key]
                extra = ""
                if st.get("words_per_s"):
                    extra = f"{fmt_num(st['words_per_s'])} words/s"
                elif st.get("tokens_per_s"):
                    extra = f"{fmt_num(st['tokens_per_s'])} tokens/s"
                elif st.get("vocab_size"):
                    extra = f"vocab {fmt_num(st['vocab_size'])}"
                rows.append((name, label, st.get("n_reviews"), st.get("median_s"), st.get("reviews_per_s"), extra))
    notes = []
    for name, d in p["result"].get("datasets", {}).items():
        init = d.get("jieba_init_s")
        init = "already loaded" if init is not None and init < 0.01 else f"{fmt_num(init)} s, not in the jieba row"
        notes.append(f"{name}: {fmt_num(d.get('rows_read'))} rows read, {fmt_num(d.get('rows_kept'))} kept after "
                     f"validation; {fmt_num(d.get('n_reviews'))} used for the later stages; jieba dictionary load: {init}")
    return md_table(["dataset", "stage", "reviews", "median (s)", "reviews/s", "other"], rows) + [""] + \
        [f"- {n}" for n in notes] + [f"- peak RSS of the preprocessing process: {fmt_num(p.get('peak_rss_mib'))} MiB"]


def scaling_section(results: dict, md_dir: Path) -> list[str]:
    s = _first(results, "scaling")
    if not s:
        return []
    r, lines = s["result"], []
    out_dir = Path(s["file"]).parent

    def img(name, alt):
        f = out_dir / name
        if f.is_file():
            return [f"![{alt}]({os.path.relpath(f, md_dir)})", ""]
        return []

    if "batch" in r:
        b = r["batch"]
        rows = []
        for row in b["rows"]:
            j, t = row.get("jax") or {}, row.get("torch") or {}
            rows.append((row["batch"], _ms(j.get("median_step_s")), j.get("tokens_per_s"), j.get("seq_per_s"),
                         j.get("peak_rss_mib"), _ms(t.get("median_step_s")), t.get("tokens_per_s"), t.get("peak_rss_mib"),
                         row.get("jax_over_torch")))
        lines += [f"### Train-step throughput vs batch size ({b.get('model')}, T={b.get('seq')}, "
                  f"{b.get('steps')} timed steps per size)", ""]
        lines += md_table(["batch", "JAX step (ms)", "JAX tokens/s", "JAX seq/s", "JAX peak RSS (MiB)", "PyTorch step (ms)",
                           "PyTorch tokens/s", "PyTorch peak RSS (MiB)", "JAX/PyTorch"], rows) + [""]
        lines += img("scaling_batch.png", "train-step throughput vs batch size")
    if "dataset" in r:
        d = r["dataset"]
        m = d.get("model", {})
        rows = [(row["n_reviews"], row.get("data"), row.get("vocab_size"), row.get("n_steps"), row.get("preprocess_s"),
                 row.get("compile_s"), row.get("epoch_s"), row.get("train_reviews_per_s"), row.get("real_tokens_per_s"))
                for row in d["rows"]]
        lines += [f"### One training epoch vs dataset size (LSTM emb {m.get('embed_dim')}, {m.get('num_layers')}x"
                  f"{m.get('hidden_dim')}, batch {m.get('batch_size')}, max_len {m.get('max_len')}, buckets {m.get('buckets')})", ""]
        lines += md_table(["reviews", "data", "vocab", "steps", "jieba + encode (s)", "compile (s)", "epoch (s)",
                           "train reviews/s", "real tokens/s"], rows) + [""]
        lines += ["- compile is paid once: every size uses the same parameter shapes (embedding of "
                  f"{m.get('vocab_cap')} rows), so later sizes reuse the compiled steps.", ""]
        lines += img("scaling_dataset.png", "time vs dataset size")
    return lines


def accuracy_section(results: dict) -> list[str]:
    acc = results.get("accuracy") or {}
    if not acc:
        return []
    from jaxsenti.metrics import fmt_mean_std

    rows = []
    for name, a in acc.items():
        r = a["result"]
        s = r["summary"]
        mixed = r.get("mixed_sentence_p_positive") or []
        pooling = ((r.get("config_dict") or {}).get("model") or {}).get("pooling")
        label = (r.get("config") or name) + (f" (pooling={pooling})" if pooling else "")
        rows.append((label, Path(str(r.get("data", ""))).name, s.get("runs"),
                     "/".join(map(str, r.get("split", []))),
                     *(fmt_mean_std(s[k]) if k in s else "–" for k in ("accuracy", "f1", "precision", "recall")),
                     sum(mixed) / len(mixed) if mixed else None, r.get("total_seconds"), name))
    return md_table(["config", "data", "seeds", "split", "accuracy", "F1", "precision", "recall",
                     "mixed sentence P(pos), mean", "wall (s)", "file"], rows) + [
        "", "- mean ± sample std over seeds (seed i = split i and init i); produced by `benchmarks/accuracy.py` "
            "(command inside each JSON file)."]


def render_markdown(results: dict, md_path: str | os.PathLike) -> str:
    md_dir = Path(md_path).resolve().parent
    m = results.get("machine", {})
    lines = ["# Benchmark results", "",
             "_Generated by `benchmarks/run_all.py` — do not edit by hand; re-run the command below._", "",
             f"- date: {m.get('date', '–')}",
             f"- command: `{results.get('command', '–')}`",
             f"- mode: {'quick (fewer steps/repeats, smaller sizes)' if results.get('quick') else 'full'}",
             f"- total wall time: {fmt_num(results.get('wall_s'))} s",
             f"- raw data: `{results.get('results_json', 'results.json')}` (everything below, plus the per-part JSON files)",
             "",
             "> **All numbers are CPU numbers** from a shared machine with "
             f"{m.get('cpu_count', '?')} cores ({m.get('cpu_model', '?')}); other jobs may have been running, so treat "
             "differences under ~20 % as noise. **No GPU numbers were measured** (no GPU was available in this "
             "session). JAX/PyTorch ratios are measured in the same run, alternating the two frameworks.",
             "", "## Machine", ""]
    lines += machine_section(results) + [""]
    errors = results.get("errors") or {}
    if errors:
        lines += ["## Failed parts", ""] + [f"- **{p}**: `{e[0].splitlines()[0][:300]}`" for p, e in errors.items()] + [""]
    skipped = results.get("skipped") or []
    if skipped:
        lines += [f"Skipped parts: {', '.join(skipped)}.", ""]
    sections = (
        ("Compile time vs steady state", compile_section(results)),
        ("Training throughput (train step: forward + backward + optimizer)", train_section(results)),
        ("How much of a step is GEMMs (the reachable speed ratio)", gemm_floor_section(results)),
        ("Dropout masks", dropout_section(results)),
        ("Inference latency (`Predictor.predict`)", latency_section(results)),
        ("Preprocessing throughput", preprocessing_section(results)),
        ("Scaling", scaling_section(results, md_dir)),
        ("Accuracy", accuracy_section(results)),
    )
    for title, body in sections:
        if body:
            lines += [f"## {title}", ""] + body + [""]
    lines += ["## Per-part commands", ""]
    for part, outs in (results.get("parts") or {}).items():
        for o in outs:
            cmd = o["command"].replace(sys.executable, "python").replace(str(ROOT) + "/", "")
            lines.append(f"- {part} ({fmt_num(o.get('wall_s'))} s): `{cmd}`")
    return "\n".join(lines).rstrip() + "\n"


def check_finite(obj, where="results") -> list[str]:
    """Paths of float values that are NaN or infinite (should be none)."""
    bad = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            bad += check_finite(v, f"{where}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            bad += check_finite(v, f"{where}[{i}]")
    elif isinstance(obj, float) and not math.isfinite(obj):
        bad.append(where)
    return bad


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer steps and repeats, smaller sizes, no bert-base (≈5 min)")
    ap.add_argument("--out", default=str(HERE / "results"), help="folder for the JSON files and PNGs")
    ap.add_argument("--md", default=str(HERE / "RESULTS.md"), help="where to write the markdown report")
    ap.add_argument("--skip", default="", help=f"comma-separated parts to skip: {','.join(PARTS)}")
    ap.add_argument("--accuracy", action="store_true",
                    help=f"also run benchmarks/accuracy.py on {', '.join(ACCURACY_CONFIGS)} (slow: trains each seed)")
    ap.add_argument("--seeds", type=int, default=5, help="seeds for --accuracy")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds allowed per benchmark subprocess")
    ap.add_argument("--render-only", action="store_true", help="re-render RESULTS.md from <out>/results.json")
    a = ap.parse_args(argv)
    out = Path(a.out).resolve()
    md_path = Path(a.md)
    skip = {s.strip() for s in a.skip.split(",") if s.strip()}
    unknown = skip - set(PARTS)
    if unknown:
        ap.error(f"unknown part(s) in --skip: {sorted(unknown)}; parts are {','.join(PARTS)}")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("MPLBACKEND", "Agg")
    results_json = out / "results.json"

    if a.render_only:
        results = read_json(results_json)
    else:
        out.mkdir(parents=True, exist_ok=True)
        cmd_argv = sys.argv[1:] if argv is None else list(argv)
        results = {"command": " ".join(["python", "benchmarks/run_all.py", *map(shlex.quote, cmd_argv)]),
                   "quick": a.quick, "machine": machine_info(), "skipped": sorted(skip)}
        if a.quick and "bert_base" not in skip:
            results["skipped"] = sorted(skip | {"bert_base"})
        if not a.accuracy:
            results["skipped"] = sorted(set(results["skipped"]) | {"accuracy (run with --accuracy; existing files are read)"})
        t0 = time.perf_counter()
        results |= run_parts(plan(a.quick, out, skip, a.accuracy, a.seeds), timeout=a.timeout)
        results["wall_s"] = time.perf_counter() - t0
        try:
            results["load_average_end"] = list(os.getloadavg())
        except OSError:
            pass
    results["accuracy"] = collect_accuracy(out, HERE / "results")
    try:
        results["results_json"] = os.path.relpath(results_json, md_path.resolve().parent)
    except ValueError:
        results["results_json"] = str(results_json)
    bad = check_finite(results)
    if bad:
        print(f"warning: non-finite values (written as null): {bad[:10]}")
    write_json(results_json, results)
    md = render_markdown(results, md_path)
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(md, encoding="utf-8")
    print(f"wrote {results_json} and {md_path} ({fmt_num(results.get('wall_s'))} s)")
    if results.get("errors"):
        print(f"FAILED parts: {', '.join(results['errors'])}")
        return 1
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        traceback.print_exc()
        raise SystemExit(130)
