"""The one timing harness: every train-step case (LSTM, BERT at a size, MLM, LSTM LM) defined once, JAX and PyTorch
built from the same config, timed the same way on any device.

    python benchmarks/harness.py CASE [--dtype bfloat16] [--quick | --smoke] [--set key=value ...] [--json out.json]
                                      [--profile START:N]
    CASE: lstm, bert_small, bert_base, mlm, lm (sampled softmax), lm_full        (``run_all.py`` and
    ``accelerator.py`` select cases and write reports; ``xla_cpu_flags.py`` reruns cases under XLA options)

How a number is measured (the same for every case, CPU or GPU):

1. Build. Inputs are random (never zeros: random token ids, random lengths where the model takes them), a few
   batches rotated. JAX runs the project's real ``create_train_state`` + ``jit_train_step`` (state donated);
   PyTorch the same model in eager mode, with ``torch.autocast(device, bfloat16)`` when ``dtype=bfloat16``
   (our side sets ``model.dtype=bfloat16``; parameters stay float32 on both).
2. One-off costs, apart from the steady state: JAX lowers and compiles ahead of time (``compile_s``), then
   the first step is timed alone (``first_step_s``); PyTorch's first step (lazy initialisation) likewise.
3. Warm-up: ``warmup`` untimed steps per framework.
4. Steady state: ``steps`` timed steps per framework, split over ``rounds`` rounds in which the frameworks
   take turns (JAX's chunks, then PyTorch's, then JAX's...), so background load on a shared machine hits
   both alike. Within a round steps run in chunks of ``chunk`` back-to-back calls with ONE device sync at the
   end of the chunk (nothing inside reads a value back); a chunk gives one per-step time, chunk time / chunk.
5. Report: the median (and min) of the per-step times, tokens/s = tokens per step / median, MFU against a
   measured matmul rate, JAX/PyTorch = ratio of tokens/s from the same run. The loss after the first step
   (``first_loss``) is kept to compare runs (e.g. under other XLA options); a non-finite loss is an error.
6. Memory: with ``isolate`` (the CPU suite) each framework runs in its own worker process, so the peak RSS
   is per framework; in one process (the GPU check) PyTorch rows carry ``max_memory_allocated`` and JAX rows
   the compiled step's footprint and the process peak.
7. ``--profile START:N``: the ``jax`` runner traces its timed steps START..START+N-1 (``jax.profiler``; a sync
   ends the trace, so those steps' times include it). The trace goes to ``profile/`` beside ``--json``.
"""

from __future__ import annotations

import ast
import functools
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from argparse import SUPPRESS
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from common import HERE, ROOT, base_argparser, finish, peak_rss_mib, script_main
from report import show

MIB = 2**20
REPLY = "@@"  # a worker's protocol lines on its stdout

# --- Timing ---


def summarize_times(times: Sequence[float]) -> dict:
    times = [float(t) for t in times]
    p50, p90, p99 = (float(x) for x in np.percentile(times, [50, 90, 99]))  # linear between order statistics
    return {"n": len(times), "median_s": statistics.median(times), "p50_s": p50, "p90_s": p90, "p99_s": p99,
            "mean_s": statistics.fmean(times), "min_s": min(times), "max_s": max(times), "times_s": times}


def time_calls(fn: Callable[[int], object], *, repeats: int, warmup: int = 1, first_call: bool = True,
               clock: Callable[[], float] = time.perf_counter, before: Callable[[int], None] | None = None) -> dict:
    """Latency of ``fn(i)`` (which must block until done): the first call apart (``first_call_s``), ``warmup``
    untimed calls, ``repeats`` timed ones. ``before(i)`` runs untimed before each call. For per-call latency
    (inference, preprocessing), where every call is synced by nature."""
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    out, times = {}, []
    for i in range(int(first_call) + warmup + repeats):
        if before:
            before(i)
        t0 = clock()
        fn(i)
        dt = clock() - t0
        if first_call and i == 0:
            out["first_call_s"] = dt
        elif i >= int(first_call) + warmup:
            times.append(dt)
    return out | summarize_times(times)


def alternate(fns: dict[str, Callable[[int], object]], per_round: Sequence[int]) -> dict[str, list[float]]:
    """Per-call times of each function, ``per_round[r]`` calls each in round r, taking turns round by round."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for n in per_round:
        for k, fn in fns.items():
            done = len(times[k])
            times[k] += time_calls(lambda i, fn=fn, done=done: fn(done + i), repeats=n, warmup=0,
                                   first_call=False)["times_s"]
    return times


def chunked_times(step: Callable[[], object], sync: Callable[[], object], *, steps: int, chunk: int,
                  warmup: int = 0) -> list[float]:
    """Per-step seconds, one value per chunk of ``chunk`` back-to-back steps with one ``sync`` at its end."""
    chunk = max(1, min(chunk, steps))
    for _ in range(warmup):
        step()
    sync()
    times = []
    for _ in range(max(1, steps // chunk)):
        t = time.perf_counter()
        for _ in range(chunk):
            step()
        sync()  # the only host<->device wait: once per chunk
        times.append((time.perf_counter() - t) / chunk)
    return times


def split(total: int, rounds: int) -> list[int]:
    rounds = max(1, min(rounds, total))
    return [total // rounds + (i < total % rounds) for i in range(rounds)] if total else []


def matmul_rate(n: int = 4096, dtype: str = "float32", framework: str = "jax", device: str = "cpu") -> float:
    """Best FLOP/s of one n^3 product of random data over 2 chunks of 5 back-to-back calls (the MFU peak)."""
    if framework == "jax":
        import jax
        import jax.numpy as jnp

        a, b = (jax.random.normal(jax.random.key(i), (n, n), getattr(jnp, dtype)) for i in (0, 1))
        f, box = jax.jit(jnp.matmul), [None]
        step, sync = (lambda: box.__setitem__(0, f(a, b))), (lambda: jax.block_until_ready(box[0]))
    else:
        import torch

        a, b = (torch.randn(n, n, dtype=getattr(torch, dtype), device=device) for _ in range(2))
        step = lambda: torch.matmul(a, b)  # noqa: E731
        sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    return 2.0 * n**3 / min(chunked_times(step, sync, steps=10, chunk=5, warmup=2))


def throughput_result(frameworks: dict[str, dict], *, setup: str, note: str, batch: int, seq: int,
                      flops: float | None = None, peak_flops: float | None = None, tokens: int | None = None,
                      **extra) -> dict:
    """The one JSON layout of every train-step case.

    ``frameworks[fw]`` brings ``step_times_s`` (per-step times after warm-up), ``first_step_s``, optionally
    ``compile_s`` (JAX's ahead-of-time compile), ``peak_rss_mib`` and anything else to keep. Added: median/min
    step, seq/s, tokens/s (``tokens`` per step, default B*T; then ``padded_tokens_per_s`` too), achieved GFLOP/s
    and MFU (against ``peak_flops``), and ``jax_over_torch`` = JAX tokens/s / PyTorch tokens/s.
    """
    tokens = tokens or batch * seq
    out = {}
    for fw, r in frameworks.items():
        med = statistics.median(r["step_times_s"])
        out[fw] = {"compile_s": None, **r, "median_step_s": med, "min_step_s": min(r["step_times_s"]),
                   "steps_timed": len(r["step_times_s"]), "seq_per_s": batch / med, "tokens_per_s": tokens / med,
                   "achieved_gflops": flops / med / 1e9 if flops else None,
                   "mfu": flops / med / peak_flops if flops and peak_flops else None}
        if tokens != batch * seq:
            out[fw]["padded_tokens_per_s"] = batch * seq / med
    ratio = out["jax"]["tokens_per_s"] / out["torch"]["tokens_per_s"] if {"jax", "torch"} <= set(out) else None
    return {"setup": setup, "batch": batch, "seq": seq, "tokens_per_step": tokens,
            "padded_tokens_per_step": batch * seq, "flops_per_step": flops, "peak_flops": peak_flops, "note": note, **extra, "frameworks": out,
            "jax_over_torch": ratio}


# --- Runners: one train step of each framework ---


def compiled_mib(compiled) -> float | None:
    """The compiled step's device footprint from XLA's memory analysis (None where the backend gives none)."""
    try:
        m = compiled.memory_analysis()
        return (m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes + m.temp_size_in_bytes) / MIB
    except Exception:  # noqa: BLE001 - not every backend implements it (or it answers None)
        return None


class JaxStep:
    """``create_train_state`` + ``jit_train_step`` (state donated), lowered and compiled ahead of time."""

    def __init__(self, model, tx, objective, batches: Sequence[dict]):
        import jax
        from flax import nnx

        from jaxsenti.training.steps import create_train_state, jit_train_step, trace_counts

        self.jax = jax
        traces = trace_counts().get("train_step", 0)
        self.n_params = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
        self.state = create_train_state(model, tx, objective, seed=0)
        self.batches = [jax.device_put({k: np.asarray(b[k]) for k in objective.batch_keys}) for b in batches]
        jax.block_until_ready(self.batches)
        t = time.perf_counter()
        self.compiled = jit_train_step.lower(self.state, self.batches[0]).compile()
        self.compile_s = time.perf_counter() - t
        self.traces = trace_counts().get("train_step", 0) - traces
        self.i, self.metrics = 0, None
        t = time.perf_counter()
        self.step()
        self.sync()
        self.first_step_s = time.perf_counter() - t
        self.first_loss = self.loss()

    def step(self):
        self.state, self.metrics = self.compiled(self.state, self.batches[self.i % len(self.batches)])
        self.i += 1

    def sync(self):
        self.jax.block_until_ready((self.state.params, self.metrics))

    def loss(self) -> float:
        return float(self.metrics["loss_sum"]) / max(float(self.metrics["count"]), 1.0)

    def result(self) -> dict:
        stats = self.jax.local_devices()[0].memory_stats() or {}
        peak = stats.get("peak_bytes_in_use")
        return {"compile_s": self.compile_s, "first_step_s": self.first_step_s, "first_loss": self.first_loss,
                "final_loss": self.loss(), "n_params": int(self.n_params), "traces": self.traces,
                "compiled_mib": compiled_mib(self.compiled), "device_peak_mib": None,
                "process_peak_mib": None if peak is None else peak / MIB,
                "devices": [f"{d.platform}: {d.device_kind}" for d in self.jax.devices()]}


class TorchStep:
    """``loss_fn(model, batch)`` forward (under autocast when ``autocast`` names a dtype), backward, (clip,) update."""

    def __init__(self, build: Callable[[], tuple], loss_fn, batches: Sequence[dict], *, device: str,
                 autocast: str | None = None, clip: float | None = None, onednn: bool = True):
        import torch

        self.torch, self.device, self.loss_fn, self.clip = torch, device, loss_fn, clip
        self.cuda = device.startswith("cuda")
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self.allocated_before = torch.cuda.memory_allocated() if self.cuda else 0
        torch.manual_seed(0)
        self.model, self.opt = build()
        self.model.to(device).train()
        self.n_params = sum(p.numel() for p in self.model.parameters())
        self.batches = [{k: torch.from_numpy(np.asarray(v)).to(device) for k, v in b.items()} for b in batches]
        self.autocast = torch.autocast(device.split(":")[0], dtype=getattr(torch, autocast)) if autocast else nullcontext()
        self.autocast_dtype = autocast
        # off: PyTorch's native CPU kernels (see onednn_runs_lstm); the backward must run under the same flag
        self.kernels = nullcontext if onednn else lambda: torch.backends.mkldnn.flags(enabled=False)
        self.onednn = onednn
        self.i, self.loss = 0, None
        t = time.perf_counter()
        self.step()
        self.sync()
        self.first_step_s = time.perf_counter() - t
        self.first_loss = float(self.loss)

    def step(self):
        b = self.batches[self.i % len(self.batches)]
        self.i += 1
        self.opt.zero_grad(set_to_none=True)
        with self.kernels():
            with self.autocast:
                loss = self.loss_fn(self.model, b)
            loss.float().backward()
        if self.clip:
            self.torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.opt.step()
        self.loss = loss.detach()  # read after the timed steps, never inside them

    def sync(self):
        if self.cuda:
            self.torch.cuda.synchronize()

    def result(self) -> dict:
        torch = self.torch
        peak = (torch.cuda.max_memory_allocated() - self.allocated_before) / MIB if self.cuda else None
        return {"compile_s": None, "first_step_s": self.first_step_s, "first_loss": self.first_loss,
                "final_loss": float(self.loss), "n_params": int(self.n_params), "device_peak_mib": peak,
                "autocast": self.autocast_dtype, "torch_device": self.device, "onednn": self.onednn,
                "threads": {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()}}


# --- Cases: each one's JAX and PyTorch sides from one spec ---

LR, WD, MLM_LR = 2e-5, 0.01, 2e-4  # fine-tuning; bert_mlm_base's pretraining rate
CASES = {  # name: spec (every key can be changed with --set key=value)
    "lstm": dict(case="lstm", vocab=9524, embed=400, hidden=256, layers=2, dropout=0.5, batch=64, seq=128,
                 steps=12, warmup=3),
    "bert_small": dict(case="bert", dims=(4, 256, 4, 1024), vocab=21128, batch=32, seq=128, steps=10, warmup=1),
    "bert_base": dict(case="bert", dims=(12, 768, 12, 3072), vocab=21128, batch=4, seq=128, steps=3, warmup=1),
    "mlm": dict(case="mlm", dims=(2, 128, 2, 512), vocab=21128, batch=128, seq=64, steps=10, warmup=1,
                frameworks=("jax", "torch", "torch_masked")),
    # configs/lstm_lm.py's model; the full softmax is 327 GFLOP a step vs 42 sampled, so fewer steps
    "lm": dict(case="lm", vocab=30000, embed=400, hidden=256, layers=2, batch=64, seq=64, sampled=1024, steps=12,
               warmup=2),
    "lm_full": dict(case="lm", vocab=30000, embed=400, hidden=256, layers=2, batch=64, seq=64, sampled=0, steps=6,
                    warmup=2),
}
DEFAULTS = dict(dtype="float32", rounds=2, chunk=1, frameworks=("jax", "torch"), device="cpu", peak_flops=None)
QUICK = dict(steps=3, warmup=1, rounds=1)
SMOKE = {"lstm": dict(vocab=50, embed=8, hidden=8, layers=2, batch=2, seq=8),
         "bert": dict(dims=(1, 16, 2, 32), vocab=200, batch=2, seq=8),
         "mlm": dict(dims=(1, 16, 2, 32), vocab=200, batch=2, seq=8),
         "lm": dict(vocab=50, embed=8, hidden=8, layers=2, batch=4, seq=8)}
SMOKE_TIMING = dict(steps=2, warmup=0, rounds=1, peak_flops=1e10, torch_threads=1)


def spec_for(name: str, *, dtype: str = "float32", quick: bool = False, smoke: bool = False, **over) -> dict:
    s = DEFAULTS | CASES[name] | {"name": name, "dtype": dtype}
    if quick:
        s |= QUICK
    if smoke:
        s |= SMOKE[s["case"]] | SMOKE_TIMING | ({"sampled": 6} if s.get("sampled") else {})
    return s | over


def lstm_batches(n: int, batch: int, seq: int, vocab: int, seed: int = 0) -> list[dict]:
    """Full-length rows (the PyTorch model does not pack), random tokens and labels."""
    rng = np.random.default_rng(seed)
    return [{"tokens": rng.integers(1, vocab, size=(batch, seq), dtype=np.int32),
             "lengths": np.full((batch,), seq, np.int32), "labels": rng.integers(0, 2, size=(batch,), dtype=np.int32),
             "weights": np.ones((batch,), np.float32)} for _ in range(n)]


def bert_batches(n: int, batch: int, seq: int, vocab: int, seed: int = 0) -> list[dict]:
    """Right-padded rows of random length in [T/2, T] (row 0 full), [CLS] first; labels 0/1."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        lengths = rng.integers(seq // 2, seq + 1, size=batch).astype(np.int32)
        lengths[0] = seq
        tokens = rng.integers(min(1000, vocab // 2), vocab, size=(batch, seq)).astype(np.int32)
        tokens[:, 0] = min(101, vocab - 1)
        tokens[np.arange(seq)[None] >= lengths[:, None]] = 0
        out.append({"tokens": tokens, "lengths": lengths, "labels": rng.integers(0, 2, size=batch).astype(np.int32),
                    "weights": np.ones(batch, np.float32)})
    return out


def mlm_batches(n: int, batch: int, seq: int, vocab: int, predictions: int, mask_id: int, seed: int = 0) -> list[dict]:
    """BERT batches with ``predictions`` distinct masked positions per row (in [1, length)), targets the originals."""
    rng = np.random.default_rng(seed + 1)
    out = []
    for b in bert_batches(n, batch, seq, vocab, seed):
        tokens = b["tokens"].copy()
        positions = np.stack([np.sort(rng.choice(np.arange(1, int(L)), predictions, replace=False))
                              for L in b["lengths"]]).astype(np.int32)
        rows = np.arange(batch)[:, None]
        targets = tokens[rows, positions].copy()
        tokens[rows, positions] = mask_id
        out.append({"tokens": tokens, "lengths": b["lengths"], "positions": positions, "targets": targets,
                    "target_weights": np.ones((batch, predictions), np.float32), "weights": b["weights"]})
    return out


def bert_flops(dims, B: int, T: int) -> float:
    """Train FLOPs of the encoder: 6 N B T + 12 L B T^2 H, N = L (4 H^2 + 2 H I) (embeddings not counted)."""
    L, H, _, I = dims
    return 6.0 * L * (4 * H * H + 2 * H * I) * B * T + 12.0 * L * B * T * T * H


def _bert_config(s: dict):
    from jaxsenti.models.bert import BertConfig

    L, H, A, I = s["dims"]
    return BertConfig(vocab_size=s["vocab"], hidden_size=H, num_hidden_layers=L, num_attention_heads=A,
                      intermediate_size=I, max_position_embeddings=max(512, s["seq"]), dtype=s["dtype"])


def _hf_config(cfg, **extra):
    """transformers' config of the same model (the fields share their names)."""
    import transformers

    same = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
            "max_position_embeddings", "hidden_dropout_prob", "attention_probs_dropout_prob")
    return transformers.BertConfig(**{k: getattr(cfg, k) for k in same}, attn_implementation="sdpa", **extra)


def _torch_mask(b):
    import torch

    T = b["tokens"].shape[1]
    return (torch.arange(T, device=b["tokens"].device)[None] < b["lengths"][:, None]).long()


def case_lstm(s: dict):
    import optax
    import torch
    from flax import nnx
    from torch import nn

    from gemm_floor import flops, lstm_gemms
    from jaxsenti.models.lstm import LSTMClassifier, LSTMConfig
    from jaxsenti.objectives import Classification

    B, T, V, E, H, L, p = (s[k] for k in ("batch", "seq", "vocab", "embed", "hidden", "layers", "dropout"))
    batches = lstm_batches(4, B, T, V)

    def jax(backend):
        def make():
            cfg = LSTMConfig(vocab_size=V, embed_dim=E, hidden_dim=H, num_layers=L, dropout=p, dtype=s["dtype"],
                             backend=backend)
            return JaxStep(LSTMClassifier(cfg, rngs=nnx.Rngs(0)), optax.adam(1e-3), Classification(), batches)
        return make

    class TorchLSTM(nn.Module):  # Embedding -> nn.LSTM (oneDNN / cuDNN) -> last step -> dropout -> Linear(1)
        def __init__(self):
            super().__init__()
            self.embed, self.drop, self.head = nn.Embedding(V, E), nn.Dropout(p), nn.Linear(H, 1)
            self.lstm = nn.LSTM(E, H, num_layers=L, batch_first=True, dropout=p)

        def forward(self, tokens):
            return self.head(self.drop(self.lstm(self.embed(tokens))[0][:, -1])).squeeze(-1)

    def build():
        m = TorchLSTM()
        return m, torch.optim.Adam(m.parameters(), lr=1e-3)

    def loss_fn(m, b):
        return nn.functional.binary_cross_entropy_with_logits(m(b["tokens"].long()).float(), b["labels"].float())

    runners = {"jax": jax("scan"), "jax_cudnn": jax("cudnn"),
               "torch": lambda: _torch(s, build, loss_fn, batches, lstm=True)}
    return runners, dict(setup=f"emb {E}, {L}x{H}, B={B}, T={T}, {s['dtype']}", batch=B, seq=T,
                         flops=flops(*lstm_gemms(B, T, E, H, L)),
                         note="every row full length (no padding); Adam; dropout 0.5" + lstm_kernel_note(s))


@functools.cache
def onednn_runs_lstm(dtype: str) -> bool:
    """Whether oneDNN has an ``nn.LSTM`` for ``dtype`` on this CPU: it has none in bfloat16 on CPUs without
    AVX-512 ("could not create a primitive descriptor for the LSTM forward propagation primitive"; reproduce
    with ``ONEDNN_MAX_CPU_ISA=AVX2``). A PyTorch limitation, not ours."""
    import torch
    from torch import nn

    if dtype == "float32":
        return True
    try:
        with torch.autocast("cpu", dtype=getattr(torch, dtype)):
            nn.LSTM(4, 4, batch_first=True)(torch.zeros(1, 2, 4))
        return True
    except RuntimeError as e:
        if "primitive descriptor" not in str(e):
            raise
        return False


def lstm_kernel_note(s: dict) -> str:
    """The note's sentence when PyTorch's LSTM cannot run in ``s["dtype"]`` on this CPU ('' when it can)."""
    if s["device"] != "cpu" or onednn_runs_lstm(s["dtype"]):
        return ""
    return (f"; PyTorch: oneDNN has no {s['dtype']} LSTM on this CPU (it needs AVX-512), so nn.LSTM ran PyTorch's "
            "native kernel, which autocast leaves in float32 (a PyTorch limitation)")


def _torch(s, build, loss_fn, batches, *, lstm: bool = False, **kw):
    import torch

    if s.get("torch_threads"):
        torch.set_num_threads(s["torch_threads"])  # tiny shapes: threads only contend
    onednn = not (lstm and lstm_kernel_note(s))
    return TorchStep(build, loss_fn, batches, device=s["device"], autocast=None if s["dtype"] == "float32" else s["dtype"],
                     onednn=onednn, **kw)


def case_bert(s: dict):
    import optax
    import torch
    import transformers
    from flax import nnx

    from jaxsenti.models.bert import BertClassifier
    from jaxsenti.objectives import Classification

    cfg, B, T = _bert_config(s), s["batch"], s["seq"]
    batches = bert_batches(4, B, T, cfg.vocab_size)

    def build():
        m = transformers.BertForSequenceClassification(_hf_config(cfg, num_labels=1))
        return m, torch.optim.AdamW(m.parameters(), lr=LR, weight_decay=WD)

    def loss_fn(m, b):
        logits = m(input_ids=b["tokens"].long(), attention_mask=_torch_mask(b)).logits[:, 0]
        return torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), b["labels"].float())

    runners = {"jax": lambda: JaxStep(BertClassifier(cfg, rngs=nnx.Rngs(0)), optax.adamw(LR, weight_decay=WD),
                                      Classification(), batches),
               "torch": lambda: _torch(s, build, loss_fn, batches)}
    return runners, dict(setup=f"{cfg.num_hidden_layers}x{cfg.hidden_size}, B={B}, T={T}, {s['dtype']}", batch=B, seq=T,
                         flops=bert_flops(s["dims"], B, T),
                         note="fine-tune step, AdamW, dropout on; tokens/s counts padded B*T; PyTorch: transformers, "
                              "SDPA attention; bf16 = autocast with float32 params (as ours)")


def case_mlm(s: dict):
    import optax
    import torch
    import transformers
    from flax import nnx

    from jaxsenti.data.masking import default_max_predictions
    from jaxsenti.models.bert_mlm import BertForMaskedLM
    from jaxsenti.objectives.masked_lm import MaskedLM

    cfg, B, T = _bert_config(s), s["batch"], s["seq"]
    H, V, P = cfg.hidden_size, cfg.vocab_size, default_max_predictions(T)
    batches = mlm_batches(4, B, T, V, P, mask_id=min(103, V - 1))

    def build():
        m = transformers.BertForMaskedLM(_hf_config(cfg))
        return m, torch.optim.AdamW(m.parameters(), lr=MLM_LR, weight_decay=WD)

    def hf_loss(m, b):  # as users call it: labels -100 off the masked positions, the head at every position
        tokens = b["tokens"].long()
        labels = torch.full_like(tokens, -100).scatter_(1, b["positions"].long(), b["targets"].long())
        return m(input_ids=tokens, attention_mask=_torch_mask(b), labels=labels).loss

    def masked_loss(m, b):  # the head at the gathered masked positions only, as ours
        seq = m.bert(input_ids=b["tokens"].long(), attention_mask=_torch_mask(b)).last_hidden_state
        logits = m.cls(seq[torch.arange(seq.shape[0], device=seq.device)[:, None], b["positions"].long()])
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), b["targets"].long().flatten())

    def head(n):  # the MLM head at n positions per row: transform + tied decoder, train = 3 x forward
        return 6.0 * B * n * (H * H + H * V)

    runners = {"jax": lambda: JaxStep(BertForMaskedLM(cfg, rngs=nnx.Rngs(0)), optax.adamw(MLM_LR, weight_decay=WD),
                                      MaskedLM(), batches),
               "torch": lambda: _torch(s, build, hf_loss, batches),
               "torch_masked": lambda: _torch(s, build, masked_loss, batches)}
    return runners, dict(setup=f"MLM {cfg.num_hidden_layers}x{H}, B={B}, T={T}, P={P}, {s['dtype']}", batch=B, seq=T,
                         flops=bert_flops(s["dims"], B, T) + head(P), hf_flops_per_step=bert_flops(s["dims"], B, T) + head(T),
                         head_positions={"jax": P, "torch": T, "torch_masked": P},
                         note="tokens/s counts padded B*T; torch projects every position (HF's BertForMaskedLM with "
                              "labels), torch_masked only the masked ones, like ours; MFU counts the useful FLOPs")


def case_lm(s: dict):
    import lm_torch
    from jaxsenti.config import OptimConfig
    from jaxsenti.objectives.language_model import NextWordLM
    from jaxsenti.training.optim import make_optimizer

    B, T, V, E, H, L, S = (s[k] for k in ("batch", "seq", "vocab", "embed", "hidden", "layers", "sampled"))
    batch = lm_torch.make_batch(B, T, V)
    words = int(batch["target_weights"].sum())
    params = s.get("params") or str(Path(tempfile.mkdtemp(prefix="lm-")) / "params.npz")  # jax's initial weights

    def jax():
        model = lm_torch.jax_model(s)
        np.savez(params, **lm_torch.jax_params_numpy(model))  # the torch side starts from these
        tx = make_optimizer(OptimConfig(name="adam", lr=lm_torch.LR, clip_norm=lm_torch.CLIP), total_steps=1)
        return JaxStep(model, tx, NextWordLM(num_sampled=S), [batch])

    def torch():
        build, loss_fn = lm_torch.torch_side(s, dict(np.load(params)) if Path(params).is_file() else None)
        tb = {"tokens": batch["tokens"], "targets": batch["targets"].reshape(-1),
              "w": (batch["target_weights"] * batch["weights"][:, None]).reshape(-1)}
        return _torch(s, build, loss_fn, [tb], clip=lm_torch.CLIP, lstm=True)

    variant = f"sampled softmax, S={S}" if S else "full softmax"
    return {"jax": jax, "torch": torch}, dict(
        setup=f"LM emb {E}, {L}x{H}, V={V}, {variant}, B={B}, T={T}", batch=B, seq=T, tokens=words, variant=variant,
        flops=lm_torch.train_flops(B, T, V, E, H, L, S), num_sampled=S, initial_weights="ours on both sides",
        note=f"tokens/s = predicted words/s ({words} of the {B * T} padded positions per step, lengths T/2..T; "
             "padded_tokens_per_s in the JSON); the same model, weights at start, batch and "
             f"{'sampled softmax (shared log-uniform candidates, log-Q correction, hits masked)' if S else 'full tied softmax'}"
             " on both sides, checked equal in tests" + lstm_kernel_note(s))


CASE_BUILDERS = {"lstm": case_lstm, "bert": case_bert, "mlm": case_mlm, "lm": case_lm}


# --- Measuring a case: in this process, or each framework in a worker process ---


class Local:
    """A runner in this process; the ``jax`` one traces the timed steps ``spec["profile"]`` = (start, n, folder)."""

    def __init__(self, make, spec, fw: str):
        self.r = make()
        for _ in range(spec["warmup"]):
            self.r.step()
        self.r.sync()
        self.done, self.profile = 0, spec.get("profile") if fw == "jax" else None

    def step(self):
        if self.profile and self.done == self.profile[0]:
            import jax

            jax.profiler.start_trace(self.profile[2])
        self.r.step()
        self.done += 1
        if self.profile and self.done == self.profile[0] + self.profile[1]:
            self.stop_trace()

    def stop_trace(self):
        import jax

        self.r.sync()  # the traced steps' device work belongs in the trace
        jax.profiler.stop_trace()
        self.profile = None

    def run(self, n: int, chunk: int) -> list[float]:
        return chunked_times(self.step, self.r.sync, steps=n, chunk=chunk)

    def close(self) -> dict:
        if self.profile and self.done > self.profile[0]:  # fewer timed steps than START + N: end the trace here
            self.stop_trace()
        return self.r.result() | {"peak_rss_mib": peak_rss_mib()}


class Worker:
    """A runner in its own process (``harness.py --worker FW --spec FILE``): peak RSS per framework."""

    def __init__(self, fw: str, spec_path: Path):
        self.fw = fw
        self.proc = subprocess.Popen([sys.executable, str(HERE / "harness.py"), "--worker", fw, "--spec", str(spec_path)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1, cwd=ROOT)
        self.ready = self._read()

    def _read(self) -> dict:
        for line in self.proc.stdout:
            if line.startswith(REPLY):
                return json.loads(line[len(REPLY):])
            sys.stderr.write(line)  # anything else a library printed
        raise RuntimeError(f"{self.fw} worker exited with rc={self.proc.wait()} (its output is above)")

    def ask(self, cmd: str) -> dict:
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return self._read()

    def run(self, n: int, chunk: int) -> list[float]:
        return self.ask(f"run {n} {chunk}")["times_s"]

    def close(self) -> dict:
        out = self.ask("end")
        self.proc.stdin.close()
        self.proc.wait()
        return out

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def serve(fw: str, spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    makers, info = CASE_BUILDERS[spec["case"]](spec)
    r = Local(makers[fw], spec, fw)
    print(REPLY + json.dumps({"info": info}), flush=True)
    for line in sys.stdin:
        cmd, *n = line.split()
        if cmd == "run":
            print(REPLY + json.dumps({"times_s": r.run(int(n[0]), int(n[1]))}), flush=True)
        elif cmd == "end":
            print(REPLY + json.dumps(r.close()), flush=True)
            return 0
    return 1


def measure(spec: dict, *, isolate: bool = False) -> dict:
    """Time one case (see the module docstring); the result in :func:`throughput_result`'s layout.

    With ``isolate`` this process builds nothing itself (a child's ``ru_maxrss`` starts from its parent's
    peak at the fork, so a light parent keeps the workers' peaks their own).
    """
    runners: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        spec = spec | {"params": str(Path(tmp) / "params.npz")}
        try:
            if isolate:  # built one after another; jax's first (it writes the LM's initial weights)
                (path := Path(tmp) / "spec.json").write_text(json.dumps(spec))
                runners = {fw: Worker(fw, path) for fw in spec["frameworks"]}
                info = next(iter(runners.values())).ready["info"]
            else:
                makers, info = CASE_BUILDERS[spec["case"]](spec)
                runners = {fw: Local(makers[fw], spec, fw) for fw in spec["frameworks"]}
            times = {fw: [] for fw in runners}
            rounds = {fw: [] for fw in runners}
            for n in split(spec["steps"], spec["rounds"]):
                for fw, r in runners.items():
                    t = r.run(n, spec["chunk"])
                    times[fw] += t
                    rounds[fw].append(statistics.median(t))
            rows = {fw: r.close() | {"step_times_s": times[fw], "round_medians_s": rounds[fw]} for fw, r in runners.items()}
        finally:
            for r in runners.values():
                if isinstance(r, Worker):
                    r.kill()
    for fw, row in rows.items():
        if not math.isfinite(row["final_loss"]):
            raise FloatingPointError(f"{spec['name']} {fw}: non-finite loss {row['final_loss']}")
        row["head_positions"] = info.get("head_positions", {}).get(fw)
    info = {k: v for k, v in info.items() if k != "head_positions"}
    peak = spec["peak_flops"] or matmul_rate()  # after the workers: see above
    res = throughput_result(rows, peak_flops=peak, dtype=spec["dtype"], case=spec["name"],
                            spec={k: v for k, v in spec.items() if k != "params"}, isolated=isolate, **info)
    if "torch_masked" in res["frameworks"]:
        fw = res["frameworks"]
        res["jax_over_torch_masked"] = fw["jax"]["tokens_per_s"] / fw["torch_masked"]["tokens_per_s"]
        fw["torch"]["mfu"] = None  # it does more FLOPs than counted (the head at every position)
    return res


def main(argv=None) -> int:
    ap = base_argparser(__doc__, smoke=True, profile=True)
    ap.add_argument("case", nargs="?", choices=sorted(CASES))
    ap.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    ap.add_argument("--in-process", action="store_true", help="both frameworks in this process (default: a worker each)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="change a spec entry")
    ap.add_argument("--worker", default=None, help=SUPPRESS)
    ap.add_argument("--spec", default=None, help=SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        return serve(a.worker, a.spec)
    if not a.case:
        ap.error("name a case")
    if bad := [kv for kv in a.set if "=" not in kv or kv.split("=", 1)[0] not in DEFAULTS | CASES[a.case]]:
        ap.error(f"--set {bad[0]}: expected KEY=VALUE, KEY one of {', '.join(sorted(DEFAULTS | CASES[a.case]))}")
    over = {k: ast.literal_eval(v) for k, v in (kv.split("=", 1) for kv in a.set)}
    if a.profile:
        over["profile"] = [*a.profile, str((Path(a.json).resolve().parent if a.json else Path.cwd()) / "profile")]
    spec = spec_for(a.case, dtype=a.dtype, quick=a.quick, smoke=a.smoke, **over)
    res = measure(spec, isolate=not a.in_process)
    return finish(res, a, argv, show("train"), devices=res["frameworks"].get("jax", {}).get("devices"))


if __name__ == "__main__":
    script_main(main)
