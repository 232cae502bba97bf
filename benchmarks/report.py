"""The two reports, numbers as measured: RESULTS.md from the ``results.json`` that ``run_all.py`` writes (one
section per benchmark), RESULTS-gpu.md from ``accelerator.py``'s ``accelerator.json`` (one section per part)."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

THROUGHPUT = {"lstm": "LSTM", "lstm_bf16": "LSTM", "bert": "BERT small", "bert_bf16": "BERT small",  # harness cases
              "bert_base": "BERT base-size", "mlm": "BERT MLM pretraining", "lm": "LSTM LM pretraining",
              "train": None}  # one harness case alone (its console summary): labelled by the case's name
PRE_STAGES = (("load_validate", "load + validate (whole file)"), ("cjk_filter", "CJK filter"),
              ("cjk_jieba", "CJK filter + jieba (no disk cache)"), ("vocab_build", "vocab build"),
              ("vocab_encode", "vocab encode (max 256)"), ("bert_tokenize", "BERT tokenizer encode (max 128)"))


def fmt_num(x, digits: int = 3) -> str:
    """Compact human formatting: None/NaN -> '–', large numbers with thousands separators."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x)
    if isinstance(x, int):
        return f"{x:,}"
    ax = abs(x)
    if ax >= 1000:
        return f"{x:,.0f}"
    if ax >= 100:
        return f"{x:.1f}"
    return "0" if ax == 0 else f"{x:.{digits}g}"


def md_table(headers: Sequence[str], rows: Iterable[Sequence]) -> list[str]:
    """A GitHub markdown table; cells formatted with :func:`fmt_num`, pipes escaped."""

    def cell(v) -> str:
        return (v if isinstance(v, str) else fmt_num(v)).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for r in rows:
        r = list(r)
        if len(r) != len(headers):
            raise ValueError(f"row has {len(r)} cells, header has {len(headers)}: {r}")
        lines.append("| " + " | ".join(cell(v) for v in r) + " |")
    return lines


def _ms(s):
    return None if s is None else s * 1e3


def _outputs(results: dict, part: str) -> list[dict]:
    """The part's runs: ``{"file", "command", "wall_s", "peak_rss_mib", "result"}`` each."""
    return (results.get("parts") or {}).get(part) or []


def _result(results: dict, part: str) -> dict | None:
    outs = _outputs(results, part)
    return outs[0]["result"] if outs else None


def _throughput_runs(results: dict):
    """(label, label with the run's variant, result) of every run of the parts in the common throughput layout.

    A part may hold several runs (``lm``: sampled and full softmax); ``variant`` names each in labels and notes.
    """
    for part, label in THROUGHPUT.items():
        for out in _outputs(results, part):
            r = out["result"]
            label = label or r.get("case", "train step")
            tags = [t for t in (r.get("variant"), r.get("dtype") if r.get("dtype", "float32") != "float32" else None) if t]
            yield label, label + (f" ({', '.join(tags)})" if tags else ""), r


def devices(results: dict) -> list[str]:
    """Every device jax saw in any part (the driver itself never loads jax)."""
    return sorted({d for outs in (results.get("parts") or {}).values() for o in outs
                   for d in o["result"].get("machine", {}).get("devices") or []})


def machine_section(results: dict) -> list[str]:
    m = results.get("machine", {})
    loads = lambda xs: " / ".join(fmt_num(x, 2) for x in xs or [])  # noqa: E731
    rows = [("CPU model", m.get("cpu_model")),
            ("CPU cores (os.cpu_count / affinity)", f"{m.get('cpu_count')} / {m.get('cpu_affinity')}"),
            ("RAM (GiB)", m.get("ram_gib")),
            ("load average at start (1/5/15 min)", loads(m.get("load_average"))),
            ("load average at end", loads(results.get("load_average_end"))),
            ("devices jax saw", ", ".join(devices(results)) or None),
            ("platform", m.get("platform")), ("python", m.get("python")), *(m.get("versions") or {}).items()]
    return md_table(["", ""], rows)


def step_table(runs: Iterable[tuple[str, dict]], extra: Sequence[str] = ()) -> list[str]:
    """The one table of harness results, in both reports: (label, result) pairs; ``extra`` = row keys to show."""
    rows = []
    for label, res in runs:
        torch_tps = res["frameworks"].get("torch", {}).get("tokens_per_s")
        for fw, r in res["frameworks"].items():
            rows.append([label, res["setup"], fw, *(r.get(e, "–") for e in extra), _ms(r["median_step_s"]),
                         r["tokens_per_s"], f"{100 * r['mfu']:.1f}%" if r.get("mfu") else "–",
                         f"{r['tokens_per_s'] / torch_tps:.2f}x" if torch_tps else "–", r.get("compile_s"),
                         r["first_step_s"], _mem(r)])
    return md_table(["model", "setup", "framework", *extra, "median step (ms)", "tokens/s", "MFU", "vs PyTorch",
                     "compile (s)", "first step (s)", "peak memory (MiB)"], rows)


def train_section(results: dict) -> list[str]:
    runs = list(_throughput_runs(results))
    if not runs:
        return []
    peak = next((r["peak_flops"] for *_, r in runs if r.get("peak_flops")), None)
    notes = [f"MFU against a measured {fmt_num(peak / 1e9)} GFLOP/s fp32 matmul peak."] * bool(peak) + [
        "vs PyTorch = tokens/s over PyTorch's in the same run."] + [
        f"{long_label}: " + ("PyTorch under torch.autocast(cpu, bfloat16); " if r.get("dtype") == "bfloat16" else "")
        + r["note"] + ("; each framework in its own process" if r.get("isolated") else "") for _, long_label, r in runs]
    return step_table((label, r) for label, _, r in runs) + [""] + [f"- {n}" for n in notes]


def gemm_floor_section(results: dict) -> list[str]:
    g = _result(results, "gemm_floor")
    if not g:
        return []
    rows = []
    for name, r in g["results"].items():  # gemm_floor's "bert" is the small config
        model, dtype = r.get("model", name), r.get("dtype", "float32")
        part = model if dtype == "float32" else f"{model}_bf16"
        step = {fw: _ms(x["median_step_s"]) for fw, x in ((_result(results, part) or {}).get("frameworks") or {}).items()}
        best = step["torch"] / r["jax_gemm_ms"] if step.get("torch") and r.get("jax_gemm_ms") else None
        rows.append((model, dtype, fmt_num(r["gemm_flops"] / 1e9), r["n_products"], r["jax_gemm_ms"], r["jax_gflops"],
                     r["torch_gemm_ms"], r["torch_gflops"], step.get("jax"), step.get("torch"), best))
    lines = md_table(["model", "dtype", "GFLOP/step", "products", "JAX GEMMs (ms)", "JAX GFLOP/s", "PyTorch GEMMs (ms)",
                      "PyTorch GFLOP/s", "JAX whole step (ms)", "PyTorch whole step (ms)",
                      "JAX/PyTorch ceiling = PyTorch step / JAX GEMMs"], rows)
    return lines + ["", "- Every matrix product of one train step (forward, input and weight gradients, the LSTM's "
                    "128-step recurrent chains as dependent loops, BERT's batched attention products), timed alone "
                    "in float32 and bfloat16 operands; `benchmarks/gemm_floor.py`. The whole-step columns are from the throughput table "
                    "above (a separate run). A step cannot be faster than its GEMMs, so the last column is the best "
                    "JAX/PyTorch speed ratio reachable with the GEMM kernels XLA calls on this CPU."]


def xla_section(results: dict) -> list[str]:
    r = _result(results, "xla_flags")
    if not r:
        return []
    rows = []
    for name, opt in r["options"].items():
        if "error" in opt:
            rows.append((name, opt["flags"] or "(none)", "all", "error: " + opt["error"].splitlines()[0][:120], *["–"] * 5))
            continue
        for case, c in opt["cases"].items():
            if "error" in c:
                rows.append((name, opt["flags"] or "(none)", case, "error: " + c["error"].replace("Error dispatching computation: ", "")[:160], *["–"] * 5))
                continue
            ok = c.get("within_tolerance")
            rows.append((name, opt["flags"] or "(none)", case, _ms(c["jax_step_s"]), _ms(c["torch_step_s"]),
                         c["jax_over_torch"], c.get("jax_vs_baseline"), c.get("loss_rel_diff"),
                         "–" if ok is None else "yes" if ok else "**no**"))
    tol = ", ".join(f"{k} {v:g}" for k, v in r["tolerance"].items())
    return md_table(["option", "XLA_FLAGS added", "case", "JAX step (ms)", "PyTorch step (ms)", "JAX/PyTorch",
                     "JAX vs baseline (faster of its two runs)", "loss rel. diff vs baseline", "within tolerance"], rows) + [
        "", f"- `benchmarks/xla_cpu_flags.py`: each option in its own process (XLA_FLAGS is read when jax starts), our "
            "real train steps (harness cases) against PyTorch in that process, alternated; parity = the largest relative "
            f"difference of the JAX loss after the first and after the last step from the baseline option's ({tol}). "
            "Winners go into `jaxsenti/xla_options.py` (`DEFAULT_CPU_FLAGS`)."] + _xla_verdict(r)


def _xla_verdict(r: dict) -> list[str]:
    from jaxsenti.xla_options import DEFAULT_CPU_FLAGS

    base, again = (r["options"].get(k, {}).get("cases", {}) for k in ("baseline", "baseline_again"))
    spread = {k: abs(b["jax_step_s"] / again[k]["jax_step_s"] - 1) for k, b in base.items()
              if "jax_step_s" in b and "jax_step_s" in again.get(k, {})}
    adopted = ", ".join(f"`{k}={v}`" for k, v in DEFAULT_CPU_FLAGS.items()) or "none"
    return (["- The same baseline in two processes (first and last) differed by "
             + ", ".join(f"{100 * v:.0f} % ({k})" for k, v in spread.items())
             + ": a JAX speed-up smaller than that is noise."] if spread else []) + [
        f"- Adopted by default (`jaxsenti/xla_options.py`, now): {adopted}."]


def study_section(results: dict) -> list[str]:
    r = _result(results, "study_time")
    if not r:
        return []
    if not r.get("finished"):
        return [f"`{r['command']}` timed out after {fmt_num(r['wall_s'])} s."]
    rows = [(k, v, 100 * r["shares"][k]) for k, v in r["steps"].items()] + [("total (wall)", r["wall_s"], 100.0)]
    return md_table(["step", "seconds", "share of wall time (%)"], rows) + [
        "", f"- `{r['command']}` via `benchmarks/startup.py --study`, JAXSENTI_CACHE {r.get('cache', 'as set')}; per-step "
            "seconds as the study records them (`results.json`), \"other\" is the wall time outside them."]


def startup_section(results: dict) -> list[str]:
    r = _result(results, "startup")
    if not r:
        return []
    rows = [("`jaxsenti --help`", r["help"]["median_s"]), ("usage error (`jaxsenti train lstm --no-such-flag`)",
                                                           r["usage_error"]["median_s"])]
    rows += [(f"`jaxsenti predict --model {k} \"TEXT\"` (compilation cache warm)", v["median_s"])
             for k, v in r["predict"].items()]
    c, lg = r["compile_cache"], r["logging"]
    return md_table(["cold process", "median wall time (s)"], rows) + [
        "", f"- First step of `jaxsenti train lstm` (compile + run, as its start-up line says): "
            f"{fmt_num(c['first_run_first_step_s'])} s in a fresh compilation cache, "
            f"{fmt_num(c['second_run_first_step_s'])} s in the second identical run.",
        f"- One epoch of `jaxsenti train lstm` with the default logging (TensorBoard + metrics.jsonl every "
        f"`log_every` steps): {fmt_num(lg['default']['median_s'])} s, with `--report-to none`: "
        f"{fmt_num(lg['none']['median_s'])} s ({100 * lg['overhead']:+.1f} %, medians of alternated runs)."]


def dropout_section(results: dict) -> list[str]:
    r = _result(results, "dropout")
    if not r:
        return []
    rows = [(k, r["median_ms"][k], r["ns_per_element"][k]) for k in ("threefry", "hash")]
    return md_table(["mask", "median (ms)", "ns/element"], rows) + [
        "", f"- `where(mask, x * scale, 0)` on {fmt_num(r['elements'])} elements (shape {r['shape']}, one BERT-small "
            f"attention-probability tensor), rate {r['rate']}; the hashed mask (`jaxsenti/models/dropout.py`, used by "
            f"both models) is {fmt_num(r['speedup_hash_over_threefry'])}x faster than `jax.random.bernoulli`."]


def latency_section(results: dict) -> list[str]:
    rows, notes = [], []
    for lat in _outputs(results, "latency"):
        for kind, m in lat["result"]["models"].items():
            s, b, e = m["single"], m["batch"], m["encode_batch"]
            name = f"{kind} ({fmt_num(m['n_params'] / 1e6)}M params)"
            rows += [(name, "predict, 1 review (end to end)", s["n"], _ms(s["p50_s"]), _ms(s["p99_s"]), 1.0 / s["p50_s"],
                      s["first_call_s"], lat["peak_rss_mib"]),
                     (name, f"predict, {b['batch_size']} reviews (end to end)", b["n"], _ms(b["p50_s"]), _ms(b["p99_s"]),
                      b["reviews_per_s"], b["first_call_s"], lat["peak_rss_mib"]),
                     (name, f"encode only, {b['batch_size']} reviews", e["n"], _ms(e["p50_s"]), _ms(e["p99_s"]),
                      e["reviews_per_s"], None, None)]
            for mo in sorted(m["model_only"].values(), key=lambda mo: mo["batch"]):
                rows.append((name, f"forward only, {mo['batch']}x{mo['seq']} tokens", mo["n"], _ms(mo["p50_s"]),
                             _ms(mo["p99_s"]), mo["seq_per_s"], mo["compile_s"], None))
            notes.append(f"{kind}: `{m['config_file']}`, buckets {m['buckets']}; {m['weights']}. "
                         f"The {b['batch_size']}-review call ran {b['jitted_calls_per_predict']} jitted calls "
                         f"(buckets {b['buckets_used']}), each padded to the smallest of `Predictor.BATCH_SIZES` "
                         "that holds it; its first call compiled those shapes.")
    if not rows:
        return []
    return md_table(["model", "mode", "calls timed", "p50 (ms)", "p99 (ms)", "reviews/s at p50",
                     "first call: compile + run (s)", "peak RSS (MiB)"], rows) + [""] + [f"- {n}" for n in notes]


def preprocessing_section(results: dict) -> list[str]:
    p = _outputs(results, "preprocessing")
    if not p:
        return []
    rows, notes = [], []
    for name, d in p[0]["result"]["datasets"].items():
        for key, label in PRE_STAGES:
            st = d.get(key)
            if st:
                rates = (("words_per_s", "words/s"), ("tokens_per_s", "tokens/s"))
                extra = next((f"{fmt_num(st[k])} {unit}" for k, unit in rates if st.get(k)),
                             f"vocab {fmt_num(st['vocab_size'])}" if st.get("vocab_size") else "")
                rows.append((name, label, st["n_reviews"], st["median_s"], st["reviews_per_s"], extra))
        init = d.get("jieba_init_s")
        init = "already loaded" if init is not None and init < 0.01 else f"{fmt_num(init)} s, not in the jieba row"
        notes.append(f"{name}: {fmt_num(d['rows_read'])} rows read, {fmt_num(d['rows_kept'])} kept after "
                     f"validation; {fmt_num(d['n_reviews'])} used for the later stages; jieba dictionary load: {init}")
    return md_table(["dataset", "stage", "reviews", "median (s)", "reviews/s", "other"], rows) + [""] + \
        [f"- {n}" for n in notes] + [f"- peak RSS of the preprocessing process: {fmt_num(p[0]['peak_rss_mib'])} MiB"]


def scaling_section(results: dict, md_dir: Path, out_dir: Path) -> list[str]:
    r = _result(results, "scaling")
    if not r:
        return []
    lines = []

    def img(name, alt):
        f = Path(out_dir) / name
        return [f"![{alt}]({os.path.relpath(f, md_dir)})", ""] if f.is_file() else []

    if "batch" in r:
        b = r["batch"]
        rows = []
        for row in b["rows"]:
            j, t = row["frameworks"].get("jax") or {}, row["frameworks"].get("torch") or {}
            rows.append((row["batch"], _ms(j.get("median_step_s")), j.get("tokens_per_s"), j.get("seq_per_s"),
                         j.get("peak_rss_mib"), _ms(t.get("median_step_s")), t.get("tokens_per_s"), t.get("peak_rss_mib"),
                         row["jax_over_torch"]))
        lines += [f"### Train-step throughput vs batch size ({b['model']}, T={b['seq']}, {b['steps']} timed steps "
                  "per size)", ""]
        lines += md_table(["batch", "JAX step (ms)", "JAX tokens/s", "JAX seq/s", "JAX peak RSS (MiB)", "PyTorch step (ms)",
                           "PyTorch tokens/s", "PyTorch peak RSS (MiB)", "JAX/PyTorch"], rows) + [""]
        lines += img("scaling_batch.png", "train-step throughput vs batch size")
    if "dataset" in r:
        d, m = r["dataset"], r["dataset"]["model"]
        keys = ("n_reviews", "data", "vocab_size", "n_steps", "preprocess_s", "compile_s", "epoch_s", "train_reviews_per_s",
                "real_tokens_per_s")
        lines += [f"### One training epoch vs dataset size (LSTM emb {m['embed_dim']}, {m['num_layers']}x"
                  f"{m['hidden_dim']}, batch {m['batch_size']}, max_len {m['max_len']}, buckets {m['buckets']})", ""]
        lines += md_table(["reviews", "data", "vocab", "steps", "jieba + encode (s)", "compile (s)", "epoch (s)",
                           "train reviews/s", "real tokens/s"], [[row.get(k) for k in keys] for row in d["rows"]]) + [""]
        lines += ["- compile is paid once: every size uses the same parameter shapes (embedding of "
                  f"{m['vocab_cap']} rows), so later sizes reuse the compiled steps.", ""]
        lines += img("scaling_dataset.png", "time vs dataset size")
    return lines


def show(part: str):
    """A benchmark script's console summary (``finish``'s ``show``): its own RESULTS.md section, from its result."""
    sections = {"train": train_section, "latency": latency_section, "preprocessing": preprocessing_section, "dropout": dropout_section,
                "gemm_floor": gemm_floor_section, "study_time": study_section, "startup": startup_section}

    def print_section(res: dict) -> None:
        run = {"result": res, "command": "", "wall_s": None, "peak_rss_mib": res.get("peak_rss_mib")}
        print("\n".join(sections[part]({"parts": {part: [run]}})))

    return print_section


def render_markdown(results: dict, md_path: str | os.PathLike, out_dir: str | os.PathLike) -> str:
    """The whole report; ``out_dir`` holds the plots it links to."""
    md_dir = Path(md_path).resolve().parent
    m = results.get("machine", {})
    accel = [d for d in devices(results) if not d.startswith("cpu")]
    where = (f"JAX ran on {', '.join(accel)}, PyTorch on the CPU" if accel
             else "**All numbers are CPU numbers** (jax saw no accelerator)")
    lines = ["# Benchmark results", "",
             "_Generated by `benchmarks/run_all.py` — do not edit by hand; re-run the command below._", "",
             f"- date: {m.get('date', '–')}",
             f"- command: `{results.get('command', '–')}`",
             f"- mode: {'quick (fewer steps/repeats, smaller sizes)' if results.get('quick') else 'full'}",
             f"- total wall time: {fmt_num(results.get('wall_s'))} s",
             f"- raw data: `{results.get('results_json', 'results.json')}` (everything below, plus the per-part JSON files)",
             "",
             f"> {where}, on a shared machine with {m.get('cpu_count', '?')} cores ({m.get('cpu_model', '?')}); other "
             "jobs may have been running, so treat differences under ~20 % as noise. JAX/PyTorch ratios are measured "
             "in the same run, alternating the two frameworks.",
             "", "## Machine", ""]
    lines += machine_section(results) + [""]
    errors = results.get("errors") or {}
    if errors:
        lines += ["## Failed parts", ""] + [f"- **{p}**: `{e[0].splitlines()[0][:300]}`" for p, e in errors.items()] + [""]
    if results.get("skipped"):
        lines += [f"Skipped parts: {', '.join(results['skipped'])}.", ""]
    sections = (
        ("Training throughput (train step: forward + backward + optimizer)", train_section(results)),
        ("How much of a step is GEMMs (the reachable speed ratio)", gemm_floor_section(results)),
        ("XLA CPU options", xla_section(results)),
        ("Dropout masks", dropout_section(results)),
        ("Inference latency (`Predictor.predict`)", latency_section(results)),
        ("Preprocessing throughput", preprocessing_section(results)),
        ("Scaling", scaling_section(results, md_dir, Path(out_dir))),
        ("Study wall time (`jaxsenti study`)", study_section(results)),
        ("Start-up, compilation cache and logging cost (`jaxsenti` command)", startup_section(results)),
    )
    for title, body in sections:
        if body:
            lines += [f"## {title}", ""] + body + [""]
    lines += ["## Per-part commands", ""]
    for part, outs in (results.get("parts") or {}).items():
        lines += [f"- {part} ({fmt_num(o['wall_s'])} s): `{o['command']}`" for o in outs]
    return "\n".join(lines).rstrip() + "\n"


# --- RESULTS-gpu.md (accelerator.py) ---


def _mem(r) -> str:
    """PyTorch on a GPU: its device peak; otherwise the process's peak RSS, the compiled step, the device peak."""
    if r.get("device_peak_mib") is not None:
        return fmt_num(r["device_peak_mib"])
    parts = [f"{what} {fmt_num(r[k])}" for what, k in (("RSS", "peak_rss_mib"), ("step", "compiled_mib"),
                                                       ("process peak", "process_peak_mib")) if r.get(k) is not None]
    return parts[0].removeprefix("RSS ") if len(parts) == 1 else ", ".join(parts) or "–"


def _gpu_steps(title: str, part: dict, extra: tuple = ()) -> list[str]:
    measured = {k: v for k, v in part.items() if isinstance(v, dict) and "frameworks" in v}
    if not measured:
        return []
    return [f"## {title}", "", *step_table(measured.items(), extra), "", next(iter(measured.values()))["note"] + ".", ""]


def render_gpu_markdown(res: dict) -> str:
    p = res["parts"]
    dev = p.get("device", {})
    lines = [f"# Accelerator check: {dev.get('torch_device', '?')}", "",
             f"Generated by `{res['command']}` on {res['machine']['date']}: {res.get('wall_s', 0):.0f} s of a "
             f"{res['deadline_s']:.0f} s deadline. Full numbers: `benchmarks/results/accelerator.json` "
             "(the run's `accelerator.json`). How to rerun: [GPU.md](GPU.md).", ""]
    if m := res.get("merged_from"):
        lines += [f"Parts {', '.join(m['parts'])} come from the earlier run of {m['date']} (`{m['command']}`).", ""]
    if "versions" in dev:
        v, n, rates = dev["versions"], dev["matmul"]["n"], dev["matmul"]["flops_per_s"]
        tf = {k: fmt_num(x / 1e12) for k, x in rates.items()}
        lines += ["## Device", "", *md_table(["", ""], [
            ["GPU (jax / torch)", f"{dev['jax_device']} / {dev['torch_device']}"],
            ["nvidia-smi", dev["nvidia_smi"] or "–"],
            ["jax / jaxlib / flax", f"{v.get('jax')} / {v.get('jaxlib')} / {v.get('flax')}"],
            ["torch / CUDA / cuDNN", f"{v.get('torch')} / {dev['torch_cuda']} / {dev['torch_cudnn']}"],
            ["transformers", str(v.get("transformers"))],
            [f"matmul {n}³ bf16 (jax / torch)", f"{tf['jax_bfloat16']} / {tf['torch_bfloat16']} TFLOP/s"],
            [f"matmul {n}³ float32 (jax / torch; TF32 allowed on both)",
             f"{tf['jax_float32']} / {tf['torch_float32']} TFLOP/s"],
            ["MFU peak (best bf16 above)", f"{fmt_num(dev['peak_flops'] / 1e12)} TFLOP/s"]]), ""]
    lines += _gpu_steps("LSTM train step", p.get("lstm", {}), ("kernel",))
    if "outcomes" in p.get("gpu_tests", {}):
        t = p["gpu_tests"]
        lines += ["## GPU-only tests (cuDNN LSTM vs scan LSTM, cuDNN attention vs XLA)", "",
                  f"**{'Passed' if t['passed'] else 'FAILED'}**: {t['summary']} (`{t['command']}`).", "",
                  *md_table(["outcome", "test"], [(o["outcome"], o["test"]) for o in t["outcomes"]]), ""]
    lines += _gpu_steps("BERT fine-tune step", p.get("bert", {}), ("attention",))
    lines += _gpu_steps("BERT masked-LM pretraining step", p.get("mlm", {}))
    if "final" in p.get("pretrain", {}):
        pr, f = p["pretrain"], p["pretrain"]["final"]
        lines += ["## Pretraining `bert_mlm_small` (to convergence or its time budget)", "", *md_table(["", ""], [
            ["command", pr["run"]["command"]],
            ["wall (all) / training s", f"{pr['run']['wall_s']:.0f} / {pr['train_seconds']:.0f}"],
            ["epochs / steps / tokens", f"{pr['epochs_run']} / {pr['steps']} / {pr['tokens_seen']:,}"],
            ["stopped by the time budget", str(pr["out_of_time"])],
            ["held-out MLM loss / masked-token accuracy",
             f"{f.get('val_loss', 0):.3f} / {f.get('val_accuracy', 0):.3f}"],
            ["exported (run's `bert_mlm_small/`)", ", ".join(pr["copied"])]]), ""]
    if "wall_s" in p.get("study", {}):  # as RESULTS.md's
        lines += ["## Whole study", "", *study_section({"parts": {"study_time": [{"result": p["study"]}]}}), ""]
    missing = [f"* {k}: not reached (the run ended before it)" for k in res.get("requested_parts", []) if k not in p]
    for k, v in p.items():
        variants = [(f"{k} {sub}", e) for sub, e in v.items() if isinstance(e, dict) and k in ("lstm", "bert", "mlm")]
        for name, entry in [(k, v), *variants]:
            if "skipped" in entry:
                missing.append(f"* {name}: skipped ({entry['skipped']})")
            elif "error" in entry:
                missing.append(f"* {name}: error: {entry['error'].splitlines()[0]}")
    if missing:
        lines += ["## Not measured in this run", "", *missing, ""]
    return "\n".join(lines)
