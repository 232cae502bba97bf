"""Accelerator readiness: one command that measures jaxsenti against PyTorch on the same GPU, in one run.

    bash benchmarks/gpu_check.sh                       # on the GPU machine (benchmarks/GPU.md): <= 8 minutes
    python benchmarks/accelerator.py --out DIR         # the same, without the wrapper
    python benchmarks/accelerator.py --smoke --out DIR # tiny shapes on any machine (tests/test_accelerator_smoke.py)

Parts, in order (``--parts``/``--skip`` pick; a part the ``--deadline`` leaves too little time for is skipped, and
says so; ``DIR/accelerator.json`` is written after every part, so a killed run keeps what it did):

* ``device``: GPU, driver, library versions; the bf16 and fp32 rate of one big ``A @ B`` in JAX and in PyTorch
  (the best bf16 one is the peak of every MFU below).
* ``lstm``: train step (emb 400, 2 x 256, Adam, B=64 and 256, T=128): our ``lax.scan`` LSTM, our cuDNN path
  (``LSTMConfig(backend="cudnn")``) and PyTorch ``nn.LSTM`` (cuDNN).
* ``gpu_tests``: the test suite's GPU-only tests (``pytest -m gpu``): the cuDNN LSTM path against the scan path,
  same weights (layer and the study's classifier: outputs and gradients, padded rows, uni- and bidirectional,
  float32), cuDNN flash attention against XLA's. They skip on a CPU; here they run.
* ``bert``: BERT-base fine-tune step (B=32, T=128, AdamW, dropout on), float32 (TF32 matmuls on both sides) and
  bfloat16: ours vs transformers' ``BertForSequenceClassification`` (eager, SDPA attention).
* ``mlm``: BERT-base masked-LM step (bf16, B=256, T=128, 19 masked positions per row): ours (head at the masked
  positions only) vs transformers' ``BertForMaskedLM``.
* ``pretrain``: ``jaxsenti pretrain bert --config bert_mlm_small`` under a time budget; the exported checkpoint is
  copied to ``DIR/bert_mlm_small/``.
* ``study``: the whole ``jaxsenti study`` with what is left of the deadline: its wall time, or that it timed out.

Steps are timed as harness.py says. On a GPU (and not ``--smoke``) the run also writes ``benchmarks/RESULTS-gpu.md``
(``report.py``) and a copy in ``DIR``; otherwise only the JSON (the cuDNN paths then run their CPU fallbacks, and
the JSON says so). Exit status: 0 when every part that ran succeeded and the GPU-only tests passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

from common import (HERE, check_results_file, finish, is_our_json, is_our_markdown, machine_info, names_of,
                    profile_window, read_json, run_command, script_main, write_json)
from harness import _bert_config, matmul_rate, measure, spec_for
from report import render_gpu_markdown
from startup import run_study

sys.path.insert(0, str(HERE.parent / "tools"))
from gpu_bundle import check_out_dir, copy_back  # noqa: E402  (the device tool's limits, both ways)

PARTS = ("device", "lstm", "gpu_tests", "bert", "mlm", "pretrain", "study")
GPU_TESTS = ("tests/test_lstm_cudnn.py", "tests/test_attention.py")  # where the `gpu` marks are
RESULTS_MD = HERE / "RESULTS-gpu.md"
# what of the exported folder comes back, in this order while the file limit allows: a Hugging Face checkpoint
# (config, weights, tokenizer) and how it was made
EXPORT_FILES = ("config.json", "model.safetensors", "pretraining.json", "tokenizer.json", "tokenizer_config.json",
                "vocab.txt", "special_tokens_map.json")
OTHER_OUT_FILES = ("gpu_check.log", "accelerator.json", "RESULTS-gpu.md")  # beside the checkpoint there

# lstm, bert and mlm: harness cases (lstm, bert_base, mlm; their --smoke sizes with --smoke) with these changes
FULL = {
    "matmul_n": 8192, "steps": 40, "chunk": 4, "warmup": 3, "rounds": 2,
    "lstm": {"shapes": [(64, 128), (256, 128)]},
    "bert": {"batch": 32, "seq": 128, "dtypes": ("float32", "bfloat16")},
    "mlm": {"dims": (12, 768, 12, 3072), "batch": 256, "seq": 128, "dtypes": ("bfloat16",)},  # BERT-base
    "pretrain_set": [], "study_args": ["--jobs", str(min(8, os.cpu_count() or 1))],
    "min_s": {"device": 15, "lstm": 60, "gpu_tests": 40, "bert": 90, "mlm": 60, "pretrain": 90, "study": 30},
    "variant_min_s": {"lstm": 25, "bert": 45, "mlm": 45},  # a shape or dtype inside a part
}
SMOKE = {
    "matmul_n": 128, "steps": 2, "chunk": 1, "warmup": 0, "torch_threads": 1,
    "lstm": {"shapes": [(2, 8)]},
    "bert": {"dtypes": ("float32", "bfloat16")},
    "mlm": {"dtypes": ("bfloat16",)},
    # the same command on a tiny corpus (dianping's training texts only, 64 of them) and tiny batches
    "pretrain_set": ["snapshot_epochs=()", "corpus.shopping=False", "corpus.max_texts=64", "epochs=1", "batch_size=8",
                     "eval_batch_size=16", "max_len=32"],
    "study_args": [],
    "min_s": {p: 0 for p in PARTS}, "variant_min_s": {},
}


class Deadline:
    def __init__(self, seconds: float):
        self.t0, self.seconds = time.perf_counter(), seconds

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def left(self) -> float:
        return self.seconds - self.elapsed()


@dataclasses.dataclass
class Ctx:
    args: argparse.Namespace
    size: dict
    deadline: Deadline
    work: Path  # scratch folder (pretraining and study outputs)
    torch_device: str = "cpu"
    on_gpu: bool = False
    peak_flops: float | None = None

    def no_time_for(self, need: float) -> dict | None:
        """A ``skipped`` entry when the deadline leaves less than ``need`` seconds (a part, a shape or a dtype)."""
        if self.deadline.left() < need:
            return {"skipped": f"deadline: {self.deadline.left():.0f}s left, needs ~{need}s"}
        return None


# --- Parts ---


def part_device(ctx: Ctx) -> dict:
    import jax
    import torch
    from jax.extend import backend as jax_backend

    from jaxsenti.machine import machine_info
    from jaxsenti.models.lstm_cudnn import cuda_lstm_available

    n = ctx.size["matmul_n"]
    rates = {f"{fw}_{dtype}": matmul_rate(n, dtype, fw, ctx.torch_device)
             for dtype in ("bfloat16", "float32") for fw in ("jax", "torch")}
    ctx.peak_flops = max(rates["jax_bfloat16"], rates["torch_bfloat16"])
    dev = jax.devices()[0]
    return {
        "jax_device": f"{dev.platform}: {dev.device_kind}", "jax_backend": jax.default_backend(),
        "jax_platform_version": jax_backend.get_backend().platform_version,
        "torch_device": torch.cuda.get_device_name(0) if ctx.torch_device == "cuda" else "cpu",
        "torch_cuda": torch.version.cuda, "torch_cudnn": torch.backends.cudnn.version(),
        "nvidia_smi": _nvidia_smi(), "versions": machine_info()["versions"],
        "lstm_cudnn_kernel": cuda_lstm_available(),
        "jax_default_matmul_precision": str(jax.config.jax_default_matmul_precision),
        "torch_float32_matmul_precision": torch.get_float32_matmul_precision(),
        "matmul": {"n": n, "flops_per_s": rates, "note": "best of 2 chunks of 5 back-to-back products, random data"},
        "peak_flops": ctx.peak_flops, "xla_python_client_preallocate": os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE"),
    }


def _nvidia_smi() -> str | None:
    """A read-only query of the card (name, driver, memory, clocks); None where there is no nvidia-smi."""
    if not shutil.which("nvidia-smi"):
        return None
    q = "name,driver_version,memory.total,clocks.sm,clocks.max.sm,power.limit,temperature.gpu"
    r = subprocess.run(["nvidia-smi", f"--query-gpu={q}", "--format=csv,noheader"], capture_output=True, text=True,
                       timeout=30)
    return f"{q}: {r.stdout.strip()}" if r.returncode == 0 else None


def _measure(ctx: Ctx, case: str, dtype: str, **over) -> dict:
    """One harness case at this run's sizes, both frameworks in this process (device memory per framework)."""
    s = ctx.size
    sizes = {k: v for k, v in s[case.split("_")[0]].items() if k not in ("shapes", "dtypes")}
    spec = spec_for(case, dtype=dtype, smoke=ctx.args.smoke, **sizes, steps=s["steps"], chunk=s["chunk"],
                    warmup=s["warmup"], rounds=s.get("rounds", 1), device=ctx.torch_device, peak_flops=ctx.peak_flops,
                    profile=ctx.args.profile and [*ctx.args.profile, str(Path(ctx.args.out).resolve() / "profile")],
                    **over)
    with warnings.catch_warnings(record=True) as caught:  # the cuDNN paths' CPU fallbacks warn
        warnings.simplefilter("always")
        res = measure(spec)
    msgs = sorted({str(w.message).split(";")[0] for w in caught if issubclass(w.category, RuntimeWarning)})
    if msgs:
        res["frameworks"]["jax_cudnn" if "jax_cudnn" in res["frameworks"] else "jax"]["warnings"] = msgs
    if ctx.torch_device == "cuda":
        import torch

        torch.cuda.empty_cache()
    return res


def part_lstm(ctx: Ctx) -> dict:
    import torch

    from jaxsenti.models.lstm_cudnn import cuda_lstm_available

    kernels = {"jax": "lax.scan (ours)",
               "jax_cudnn": "cuDNN (jax.experimental.rnn.lstm)" if cuda_lstm_available()
               else "CPU fallback: jax.experimental.rnn.lstm_ref (slow reference, no cuDNN here)",
               "torch": "nn.LSTM, cuDNN" if ctx.torch_device == "cuda" and torch.backends.cudnn.enabled
               else "nn.LSTM, native CPU"}
    out = {}
    for B, T in ctx.size["lstm"]["shapes"]:
        if skipped := ctx.no_time_for(ctx.size["variant_min_s"].get("lstm", 0)):
            out[f"B{B}_T{T}"] = skipped
            continue
        res = _measure(ctx, "lstm", "float32", batch=B, seq=T, frameworks=("jax", "jax_cudnn", "torch"))
        fw = res["frameworks"]
        for k, r in fw.items():
            r["kernel"] = kernels[k]
        res["cudnn_over_torch"] = fw["jax_cudnn"]["tokens_per_s"] / fw["torch"]["tokens_per_s"]
        res["cudnn_over_scan"] = fw["jax_cudnn"]["tokens_per_s"] / fw["jax"]["tokens_per_s"]
        out[f"B{B}_T{T}"] = res
        _say(f"lstm B={B}: " + ", ".join(f"{k} {v['median_step_s'] * 1e3:.2f} ms" for k, v in fw.items()))
    return out


def part_gpu_tests(ctx: Ctx) -> dict:
    """The suite's GPU-only tests (``pytest -m gpu``: the cuDNN LSTM against the scan LSTM, layer and the study's
    classifier, float32; cuDNN attention against XLA's), which skip on every CPU machine, in a subprocess."""
    if importlib.util.find_spec("pytest") is None:
        return {"skipped": "pytest is not installed here (gpu_check.sh installs the bundle's wheels)"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-rA", "-m", "gpu", "-p", "no:cacheprovider", *GPU_TESTS]
    r = run_command(cmd, timeout=max(10.0, ctx.deadline.left() - 5))
    outcomes = re.findall(r"^(PASSED|FAILED|ERROR|SKIPPED) (.+)$", r["stdout"], re.M)
    summary = next((x for x in reversed(r["stdout"].strip().splitlines()) if re.search(r" in [\d.]+s", x)), "")
    passed = r["rc"] == 0 and all(o in ("PASSED", "SKIPPED") for o, _ in outcomes)
    _say(f"GPU-only tests: {summary.strip('= ')} (rc {r['rc']})")
    return {"passed": passed, "command": r["command"], "rc": r["rc"], "summary": summary.strip("= "),
            "outcomes": [{"outcome": o, "test": t} for o, t in outcomes], "wall_s": r["wall_s"],
            "log_tail": r["stdout"][-3000:] if not passed else ""}


def _steps(ctx: Ctx, part: str, case: str) -> dict:
    """The bert or mlm part: the case in each of the part's dtypes."""
    import torch

    from jaxsenti.models.bert import attention_implementation

    out = {}
    for dtype in ctx.size[part]["dtypes"]:
        if skipped := ctx.no_time_for(ctx.size["variant_min_s"].get(part, 0)):
            out[dtype] = skipped
            continue
        res = out[dtype] = _measure(ctx, case, dtype, frameworks=("jax", "torch"))
        if part == "bert":
            cfg = _bert_config(res["spec"])
            res["frameworks"]["jax"]["attention"] = attention_implementation(cfg, deterministic=False, has_lengths=True)
            precision = torch.get_float32_matmul_precision()
            res["frameworks"]["torch"] |= {"attention": "sdpa", "float32_matmul_precision": precision}
        res["note"] += ("; float32 = TF32 matmuls on both sides" if ctx.on_gpu else "") + "; MFU against the measured bf16 rate"
        j, t = res["frameworks"]["jax"], res["frameworks"]["torch"]
        _say(f"{part} {dtype}: jax {j['median_step_s'] * 1e3:.1f} ms, torch {t['median_step_s'] * 1e3:.1f} ms, "
             f"ratio {res['jax_over_torch']:.2f}")
    return out


def part_pretrain(ctx: Ctx) -> dict:
    a = ctx.args
    folder = ctx.work / "bert_mlm_small"
    # start-up, corpus, tokenization, compiles, evaluation, export: what the run needs beside its training time
    overhead, expected = (60, 30) if a.smoke else (240, 90)
    budget = round(min(a.pretrain_budget, max(10.0, ctx.deadline.left() - expected)))  # leave the deadline room
    sets = [f"time_budget_s={budget}"] + ctx.size["pretrain_set"]
    cmd = [sys.executable, "-m", "jaxsenti.cli", "pretrain", "bert", "--config", "bert_mlm_small", "--out", str(folder),
           "--quiet"] + [x for kv in sets for x in ("--set", kv)]
    r = run_command(cmd, timeout=min(budget + overhead, ctx.deadline.left() - 5), log=ctx.work / "pretrain.log")
    if r["rc"] != 0:
        raise RuntimeError(f"pretraining failed ({'timed out' if r['timed_out'] else 'rc=' + str(r['rc'])}):\n"
                           + r["log_tail"])
    info = read_json(folder / "pretraining.json")
    dest = Path(a.out) / "bert_mlm_small"
    copied, left_out = copy_back(folder, dest, EXPORT_FILES, reserved=len(OTHER_OUT_FILES))
    written = sorted(p.name for p in folder.iterdir())
    hist = folder / "history.json"
    history = read_json(hist) if hist.is_file() else []
    final = info.get("final", {})
    _say(f"pretrain: {info['epochs_run']} epochs, {info['steps']} steps in {info['train_seconds']:.0f}s of training "
         f"({r['wall_s']:.0f}s in all), held-out loss {final.get('val_loss', float('nan')):.3f}, "
         f"accuracy {final.get('val_accuracy', float('nan')):.3f}")
    return {"run": r, "exported_to": str(dest), "copied": copied, "left_out": left_out, "export_wrote": written,
            "time_budget_s": budget, "overrides": sets, "epochs_run": info["epochs_run"], "steps": info["steps"],
            "tokens_seen": info["tokens_seen"], "train_seconds": info["train_seconds"],
            "out_of_time": info["out_of_time"], "best_epoch": info["best_epoch"], "final": final,
            "corpus": info.get("corpus"), "history": history}


def part_study(ctx: Ctx) -> dict:
    a = ctx.args
    timeout = ctx.deadline.left() - 5
    if a.study_timeout is not None:
        timeout = min(timeout, a.study_timeout)
    r = run_study(ctx.work / "study", timeout=timeout, args=ctx.size["study_args"], log=ctx.work / "study.log")
    _say(f"study: {'finished in' if r['finished'] else 'timed out after'} {r['wall_s']:.0f}s")
    return r


RUNNERS = {"device": part_device, "lstm": part_lstm, "gpu_tests": part_gpu_tests,
           "bert": lambda ctx: _steps(ctx, "bert", "bert_base"), "mlm": lambda ctx: _steps(ctx, "mlm", "mlm"),
           "pretrain": part_pretrain, "study": part_study}


# --- Main ---


def write_markdown(res: dict, out: Path) -> None:
    """benchmarks/RESULTS-gpu.md and its copy in ``out`` (the device machine's tree is a copy: only ``out`` returns)."""
    if not res["on_gpu"] or res["smoke"]:
        raise RuntimeError(f"{RESULTS_MD.name} holds GPU measurements only (this run: smoke={res['smoke']}, "
                           f"on_gpu={res['on_gpu']})")
    md = render_gpu_markdown(res) + "\n"
    RESULTS_MD.write_text(md, encoding="utf-8")
    (out / RESULTS_MD.name).write_text(md, encoding="utf-8")


def _say(msg: str) -> None:
    print(f"[accelerator] {msg}", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="folder for accelerator.json (+ RESULTS-gpu.md and the checkpoint)")
    ap.add_argument("--smoke", action="store_true", help="tiny shapes and a tiny pretraining; study times out at once")
    ap.add_argument("--deadline", type=float, default=420.0, help="seconds for the whole run (default 420)")
    ap.add_argument("--parts", type=names_of(PARTS), default=list(PARTS),
                    help=f"comma-separated subset of {','.join(PARTS)}")
    ap.add_argument("--skip", type=names_of(PARTS), default=[], help="comma-separated parts to leave out")
    ap.add_argument("--pretrain-budget", type=float, default=None,
                    help="time_budget_s of the pretraining (default 120; smoke 5)")
    ap.add_argument("--study-timeout", type=float, default=None, help="default: what the deadline leaves (smoke: 3)")
    ap.add_argument("--merge", default=None, metavar="JSON",
                    help="an earlier run's accelerator.json: its parts stay unless this run redoes them (a rerun of "
                         "the parts that failed or were skipped)")
    ap.add_argument("--profile", type=profile_window, default=None, metavar="START:N",
                    help="trace JAX's timed steps START..START+N-1 of every lstm/bert/mlm case into DIR/profile")
    a = ap.parse_args(argv)
    a.pretrain_budget = a.pretrain_budget or (5.0 if a.smoke else 120.0)
    if a.smoke and a.study_timeout is None:
        a.study_timeout = 3.0  # the study's code path (subprocess, timeout, kill) without its minutes
    out = Path(a.out)
    check_results_file(out / "accelerator.json", is_our_json, flag="--out")  # never a file a script did not write
    check_results_file(out / RESULTS_MD.name, is_our_markdown, flag="--out")
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "accelerator.json"
    deadline = Deadline(a.deadline)
    # before jax starts: PyTorch shares the GPU with JAX here, and the pretraining and study subprocesses inherit
    # this, so no process takes 75 % of the device up front
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import jax
    import torch

    on_gpu = jax.default_backend() == "gpu"
    write_md = on_gpu and not a.smoke
    torch.set_float32_matmul_precision("high")  # float32 = TF32 matmuls, as JAX's default precision on a GPU
    size = SMOKE if a.smoke else FULL
    res = {"command": "python benchmarks/accelerator.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "smoke": a.smoke, "on_gpu": on_gpu, "deadline_s": a.deadline, "sizes": size, "parts": {},
           "requested_parts": [p for p in PARTS if p in a.parts and p not in a.skip],
           "machine": machine_info(devices=True)}
    if a.merge:
        prev = read_json(a.merge)
        if prev.get("smoke") != a.smoke or prev.get("on_gpu") != on_gpu:
            raise SystemExit(f"--merge {a.merge}: that run had smoke={prev.get('smoke')}, on_gpu={prev.get('on_gpu')}")
        res["parts"] = {k: v for k, v in prev["parts"].items() if k not in a.parts or k in a.skip}
        res["merged_from"] = {"file": a.merge, "date": prev.get("machine", {}).get("date"),
                              "command": prev.get("command"), "parts": sorted(res["parts"])}
        ctx_peak = prev["parts"].get("device", {}).get("peak_flops")
    else:
        ctx_peak = None
    if not on_gpu:
        res["note"] = ("no GPU: the cuDNN paths ran their CPU fallbacks (LSTM: jax.experimental.rnn.lstm_ref; BERT: "
                       "XLA attention), so nothing here is a GPU measurement")
    def status() -> int:  # 1 when a part failed, merged ones included
        return int(any("error" in v or v.get("passed") is False for v in res["parts"].values()))

    with tempfile.TemporaryDirectory(prefix="accelerator-") as work:
        ctx = Ctx(a, size, deadline, Path(work), "cuda" if torch.cuda.is_available() else "cpu", on_gpu)
        ctx.peak_flops = ctx_peak  # a rerun without the device part takes MFU against the merged run's peak
        if size.get("torch_threads"):
            torch.set_num_threads(size["torch_threads"])  # tiny CPU shapes: threads only contend
        for part in res["requested_parts"]:
            if skipped := ctx.no_time_for(size["min_s"][part]):
                res["parts"][part] = skipped
                _say(f"{part}: {skipped['skipped']}")
                continue
            _say(f"{part}: starting at {deadline.elapsed():.0f}s")
            t = time.perf_counter()
            try:
                res["parts"][part] = RUNNERS[part](ctx) | {"part_wall_s": time.perf_counter() - t}
            except Exception as e:  # noqa: BLE001 - one part's failure must not cost the others
                traceback.print_exc()
                res["parts"][part] = {"error": f"{type(e).__name__}: {e}", "part_wall_s": time.perf_counter() - t}
            res["wall_s"], res["status"] = deadline.elapsed(), status()
            write_json(json_path, res)  # after every part: a run killed later keeps what it measured
            if write_md:
                write_markdown(res, out)
    res["wall_s"], res["status"] = deadline.elapsed(), status()
    a.json = str(json_path)
    finish(res, a, argv)
    if write_md:
        write_markdown(res, out)
        _say(f"wrote {RESULTS_MD} and {out / RESULTS_MD.name}")
    else:
        _say(f"not writing {RESULTS_MD.name}: " + ("--smoke" if a.smoke else "no GPU") + "; JSON only")
    if bad := check_out_dir(out):
        _say("WARNING, would not all come back from the device tool: " + "; ".join(bad))
    _say(f"done in {res['wall_s']:.0f}s, status {res['status']}: "
         + ", ".join(f"{k} {'error' if 'error' in v else 'skipped' if 'skipped' in v else 'ok'}"
                     for k, v in res["parts"].items()))
    return res["status"]


if __name__ == "__main__":
    script_main(main)
