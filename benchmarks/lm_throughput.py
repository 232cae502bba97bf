"""LSTM language-model pretraining step: jaxsenti's Flax NNX model vs the same model in PyTorch, same machine.

    python benchmarks/lm_throughput.py                      # sampled softmax, S=1024 (configs/lstm_lm.py's)
    python benchmarks/lm_throughput.py --sampled 0          # full softmax over the 30,000 words
    python benchmarks/lm_throughput.py --eval 4 --json out.json    # also time the full-softmax eval step

Same model, same objective, same batch on both sides (embedding 400, 2 x LSTM 256, tied output
``logits = proj(h) @ E^T + b`` through the 256 -> 400 projection, vocabulary 30,000; dropout 0.1 on the
embeddings, 0.2 between the LSTM layers and on the last layer's output; Adam lr 2e-3 after global-norm
clipping to 1.0, as configs/lstm_lm.py trains):

* ``jax``: ``LSTMLanguageModel`` + ``NextWordLM(num_sampled=S)`` + ``make_optimizer`` (adam, clip 1.0), the
  project's ``jit_train_step`` compiled ahead of time with the state donated. Its metrics also carry the
  sampled-problem accuracy (an argmax) and the gradient norm, as in real pretraining.
* ``torch``: ``nn.Embedding`` + ``nn.LSTM(400, 256, num_layers=2, batch_first=True, dropout=0.2)`` (oneDNN on
  CPU, cuDNN on a GPU) + ``nn.Linear(256, 400)`` + an output bias, with the sampled softmax of
  ``jaxsenti/models/lstm_lm.py`` ported line by line (:func:`torch_lm_loss`): S candidates shared by the
  whole batch, drawn from the same log-uniform proposal, every logit corrected by -log(S * Q(id)),
  accidental hits and ``<pad>`` masked to -1e30, target in column 0; the exact tied softmax (``<pad>``
  column masked) when S=0. ``tests/test_benchmarks_smoke.py`` checks that the two losses and gradients
  agree to ~1e-5 for the same weights and candidates. Both start from the same initial weights (ours,
  copied into the torch modules); each side draws its own dropout masks and candidates every step.

The batch: B rows of random word ids (log-uniform over 3..V-1, like a frequency-sorted vocabulary, so
the candidates meet realistic accidental hits; never 0), lengths uniform in T/2..T (row 0 full), 0 after
each length, target weight 0 there. Padding is handled by masking, not ``pack_padded_sequence``: a
unidirectional LSTM's outputs before a row's length do not depend on what follows and padded targets
weigh 0, so loss and gradients equal the packed ones, and both frameworks run all T steps (ours always
does), i.e. the same work.

Each framework runs in its own worker subprocess (so peak RSS is per framework and neither library's
thread pool spins while the other runs), built and warmed up one after the other; then the parent
alternates them over ``--rounds`` rounds of timed steps. Each step blocks until its result is ready
(``block_until_ready``; torch on CPU is synchronous, on CUDA synchronised), and nothing converts a
loss to a Python float inside the timed loop.

tokens/s counts predicted words (target weight 1) per second; ``padded_tokens_per_s`` counts all B*T
positions. FLOPs per train step (3x forward: forward, input gradients, weight gradients), both
frameworks computing every padded position:
  LSTM   sum over layers of 3 * 2*B*T*4H*(D_in + H)        (benchmarks/gemm_floor.py's lstm_gemms)
  proj   3 * 2*B*T*H*E
  output 3 * 2*B*T*E*(S + 1)   sampled (S candidates + the target's dot product), 3 * 2*B*T*E*V full
MFU against the best of a few large float32 ``jnp.dot`` runs (bert_throughput.measure_peak).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import (HERE, base_argparser, finish, machine_info, parse_args, peak_rss_mib, show_throughput,
                    throughput_result, time_calls)
from gemm_floor import flops as gemm_flops
from gemm_floor import lstm_gemms

SIZES = {"vocab": 30000, "embed": 400, "hidden": 256, "layers": 2, "batch": 64, "seq": 64}  # configs/lstm_lm.py's
NUM_SAMPLED = 1024
STEPS = {"sampled": 12, "full": 6}  # timed steps per framework (all rounds together), by output mode
LR, CLIP, DROPOUT, EMBED_DROPOUT = 2e-3, 1.0, 0.2, 0.1
NEG = -1e30  # lstm_lm._NEG: the masked logit
REPLY = "@@"  # prefix of a worker's protocol lines on its stdout


def measure_peak() -> float:
    """Best float32 matmul rate jax reaches here (lazy import: the torch worker never loads jax)."""
    from bert_throughput import measure_peak as peak

    return peak()


def jax_backend() -> str:
    import jax

    return jax.default_backend()


def make_batch(B: int, T: int, vocab: int, seed: int = 0) -> dict[str, np.ndarray]:
    """One ``LMBatches``-shaped batch: log-uniform ids in 3..V-1, lengths T/2..T (row 0: T), 0-padded."""
    rng = np.random.default_rng(seed)
    ids = 2 + np.floor(np.exp(rng.random((B, T + 1)) * math.log(vocab - 2))).astype(np.int64)
    ids = np.clip(ids, 3, vocab - 1).astype(np.int32)
    lengths = rng.integers(max(1, T // 2), T + 1, size=B).astype(np.int32)
    lengths[0] = T
    valid = np.arange(T)[None] < lengths[:, None]
    return {"tokens": np.where(valid, ids[:, :T], 0).astype(np.int32), "lengths": lengths,
            "targets": np.where(valid, ids[:, 1:], 0).astype(np.int32),
            "target_weights": valid.astype(np.float32), "weights": np.ones(B, np.float32)}


def train_flops(B: int, T: int, V: int, E: int, H: int, L: int, S: int) -> float:
    """FLOPs of one train step, every padded position counted (see the module docstring)."""
    out = (S + 1) if S else V
    return float(gemm_flops(*lstm_gemms(B, T, E, H, L)) + 3 * 2 * B * T * H * E + 3 * 2 * B * T * E * out)


# ----------------------------------------------------------------------------------------------
# JAX side
# ----------------------------------------------------------------------------------------------


def jax_model(spec: dict):
    from flax import nnx

    from jaxsenti.models.lstm_lm import LSTMLanguageModel, LSTMLMConfig

    cfg = LSTMLMConfig(vocab_size=spec["vocab"], embed_dim=spec["embed"], hidden_dim=spec["hidden"],
                       num_layers=spec["layers"], dropout=spec.get("dropout", DROPOUT),
                       embed_dropout=spec.get("embed_dropout", EMBED_DROPOUT))
    return LSTMLanguageModel(cfg, rngs=nnx.Rngs(spec.get("seed", 0)))


def jax_params_numpy(model) -> dict[str, np.ndarray]:
    """Our LM's parameters under flat names (what :func:`load_into_torch` reads)."""
    p = {"embed": model.embed.embedding[...], "proj_w": model.proj.kernel[...], "proj_b": model.proj.bias[...],
         "out_bias": model.out_bias[...]}
    for k, layer in enumerate(model.layers):
        p |= {f"w_ih_{k}": layer.fwd.w_ih[...], f"w_hh_{k}": layer.fwd.w_hh[...], f"b_{k}": layer.fwd.b[...]}
    return {k: np.asarray(v, np.float32) for k, v in p.items()}


class JaxRunner:
    def __init__(self, spec: dict, batch: dict):
        import jax
        from flax import nnx

        from jaxsenti.config import OptimConfig
        from jaxsenti.objectives.language_model import NextWordLM
        from jaxsenti.training.optim import make_optimizer
        from jaxsenti.training.steps import create_train_state, jit_eval_step, jit_train_step

        self.jax = jax
        model = jax_model(spec)
        if spec.get("params"):  # the torch worker starts from these same weights
            np.savez(spec["params"], **jax_params_numpy(model))
        self.n_params = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
        tx = make_optimizer(OptimConfig(name="adam", lr=LR, clip_norm=CLIP), total_steps=1)  # constant lr
        self.state = create_train_state(model, tx, NextWordLM(num_sampled=spec["sampled"]), seed=0)
        self.batch = jax.device_put(batch)
        t = time.perf_counter()
        self.step_fn = jit_train_step.lower(self.state, self.batch).compile()
        self.compile_s = time.perf_counter() - t
        if spec.get("eval"):
            t = time.perf_counter()
            self.eval_fn = jit_eval_step.lower(self.state, self.batch).compile()
            self.eval_compile_s = time.perf_counter() - t

    def step(self, _i=None):
        self.state, self.metrics = self.step_fn(self.state, self.batch)
        self.jax.block_until_ready((self.state.params, self.metrics))

    def eval(self, _i=None):
        self.eval_sums = self.eval_fn(self.state, self.batch)[0]
        self.jax.block_until_ready(self.eval_sums)

    def final(self) -> dict:
        from common import device_peak_mib

        m = self.metrics
        out = {"final_loss": float(m["loss_sum"] / m["count"]), "n_params": int(self.n_params),
               "device_peak_mib": device_peak_mib(), "devices": machine_info(devices=True)["devices"]}
        if hasattr(self, "eval_sums"):
            out["eval_loss"] = float(self.eval_sums["loss_sum"] / self.eval_sums["count"])
        return out


# ----------------------------------------------------------------------------------------------
# PyTorch side
# ----------------------------------------------------------------------------------------------


def torch_model(spec: dict):
    """``nn.Embedding`` -> dropout -> ``nn.LSTM`` (dropout between layers) -> dropout -> ``nn.Linear(H, E)``; plus
    ``out_bias`` [V]. ``forward(tokens [B, T])`` -> query vectors z [B*T, E] (batch-major)."""
    import torch
    from torch import nn

    V, E, H, L = spec["vocab"], spec["embed"], spec["hidden"], spec["layers"]
    dropout = spec.get("dropout", DROPOUT)

    class TorchLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(V, E)
            self.embed_drop = nn.Dropout(spec.get("embed_dropout", EMBED_DROPOUT))
            self.lstm = nn.LSTM(E, H, num_layers=L, batch_first=True, dropout=dropout if L > 1 else 0.0)
            self.drop = nn.Dropout(dropout)
            self.proj = nn.Linear(H, E)
            self.out_bias = nn.Parameter(torch.zeros(V))

        def forward(self, tokens):
            out, _ = self.lstm(self.embed_drop(self.embed(tokens)))
            return self.proj(self.drop(out)).reshape(-1, E)

    return TorchLM()


def load_into_torch(model, params: dict[str, np.ndarray]) -> None:
    """Our parameters into :func:`torch_model`'s modules: w_ih [D, 4H] = ``weight_ih_l{k}``.T, w_hh [H, 4H] =
    ``weight_hh_l{k}``.T, b = ``bias_ih_l{k}`` + ``bias_hh_l{k}`` (all of it in bias_ih), gate order i, f, g, o
    in both; ``proj.kernel`` [H, E] = ``proj.weight``.T."""
    import torch

    def put(dst, x):
        dst.copy_(torch.tensor(np.asarray(x)))

    with torch.no_grad():
        put(model.embed.weight, params["embed"])
        for k in range(model.lstm.num_layers):
            put(getattr(model.lstm, f"weight_ih_l{k}"), params[f"w_ih_{k}"].T)
            put(getattr(model.lstm, f"weight_hh_l{k}"), params[f"w_hh_{k}"].T)
            put(getattr(model.lstm, f"bias_ih_l{k}"), params[f"b_{k}"])
            getattr(model.lstm, f"bias_hh_l{k}").zero_()
        put(model.proj.weight, params["proj_w"].T)
        put(model.proj.bias, params["proj_b"])
        put(model.out_bias, params["out_bias"])


def torch_log_expected_count(ids, num_sampled: int, vocab: int):
    """lstm_lm.log_expected_count: log(S * P(id)), P(k) = log((k+2)/(k+1)) / log(V+1)."""
    import torch

    p = torch.log1p(1.0 / (ids.float() + 1.0)) / math.log(vocab + 1.0)
    return torch.log(num_sampled * p)


def torch_ids_from_uniform(u, vocab: int):
    """lstm_lm.log_uniform_sample's map from uniforms u in [0, 1) to ids."""
    import torch

    return torch.clamp(torch.floor(torch.exp(u * math.log(vocab + 1.0))).long() - 1, 0, vocab - 1)


def torch_log_uniform_sample(num_sampled: int, vocab: int, device="cpu"):
    """lstm_lm.log_uniform_sample with torch's generator: S ids with replacement and log(S * P(id))."""
    import torch

    ids = torch_ids_from_uniform(torch.rand(num_sampled, device=device), vocab)
    return ids, torch_log_expected_count(ids, num_sampled, vocab)


def torch_lm_loss(model, z, targets, w, candidates=None):
    """NextWordLM's loss (sum of w * cross-entropy / max(sum w, 1)) for z [N, E], targets [N], w [N].

    ``candidates`` (ids [S], log_q [S]): lstm_lm.sampled_logits' sampled softmax; None: the full tied softmax.
    """
    import torch
    import torch.nn.functional as F

    table, bias = model.embed.weight, model.out_bias
    if candidates is None:
        logits = torch.addmm(bias, z, table.t())
        logits[:, 0] = NEG  # <pad> gets no probability (addmm's backward does not need its output)
        labels = targets
    else:
        ids, log_q = candidates
        S, V = ids.shape[0], table.shape[0]
        true_logit = (z * table[targets]).sum(-1) + bias[targets] - torch_log_expected_count(targets, S, V)
        cand = torch.addmm(bias[ids] - log_q, z, table[ids].t())
        cand = cand.masked_fill((ids[None, :] == targets[:, None]) | (ids[None, :] == 0), NEG)
        logits = torch.cat([true_logit[:, None], cand], dim=1)
        labels = torch.zeros_like(targets)  # the target is column 0
    ce = F.cross_entropy(logits, labels, reduction="none")
    return (ce * w).sum() / w.sum().clamp(min=1.0)


class TorchRunner:
    def __init__(self, spec: dict, batch: dict, params: dict[str, np.ndarray] | None):
        import torch

        self.torch = torch
        torch.manual_seed(0)
        self.dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = torch_model(spec)
        if params is not None:  # ours (written by the jax worker); else PyTorch's default init (--only torch)
            load_into_torch(self.model, params)
        self.model.to(self.dev).train()
        self.n_params = sum(p.numel() for p in self.model.parameters())
        self.params = list(self.model.parameters())
        self.opt = torch.optim.Adam(self.params, lr=LR)
        self.S, self.V = spec["sampled"], spec["vocab"]
        self.tokens = torch.as_tensor(batch["tokens"], dtype=torch.long, device=self.dev)
        self.targets = torch.as_tensor(batch["targets"], dtype=torch.long, device=self.dev).reshape(-1)
        self.w = torch.as_tensor(batch["target_weights"] * batch["weights"][:, None], device=self.dev).reshape(-1)

    def _sync(self):
        if self.dev.type == "cuda":
            self.torch.cuda.synchronize()

    def step(self, _i=None):
        torch = self.torch
        self.opt.zero_grad(set_to_none=True)
        z = self.model(self.tokens)
        cand = torch_log_uniform_sample(self.S, self.V, self.dev) if self.S else None
        loss = torch_lm_loss(self.model, z, self.targets, self.w, cand)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, CLIP)
        self.opt.step()
        self.loss = loss.detach()
        self._sync()

    def eval(self, _i=None):
        self.model.eval()
        with self.torch.no_grad():
            self.eval_loss = torch_lm_loss(self.model, self.model(self.tokens), self.targets, self.w)
        self.model.train()
        self._sync()

    def final(self) -> dict:
        torch = self.torch
        out = {"final_loss": float(self.loss), "n_params": int(self.n_params), "torch_device": str(self.dev),
               "threads": {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()},
               "mkldnn": torch.backends.mkldnn.is_available()}
        if hasattr(self, "eval_loss"):
            out["eval_loss"] = float(self.eval_loss)
        return out


# ----------------------------------------------------------------------------------------------
# Workers: one subprocess per framework, alternated by the parent
# ----------------------------------------------------------------------------------------------


def _reply(obj: dict) -> None:
    print(REPLY + json.dumps(obj), flush=True)


def serve(fw: str, spec_path: str) -> int:
    """Build, compile, warm up, then answer ``run N`` / ``eval N`` (per-step times) and ``end`` (the rest)."""
    spec = json.loads(Path(spec_path).read_text())
    batch = make_batch(spec["batch"], spec["seq"], spec["vocab"], seed=spec.get("seed", 0))
    if fw == "jax":
        r = JaxRunner(spec, batch)
    else:
        p = spec.get("params")
        r = TorchRunner(spec, batch, dict(np.load(p)) if p and Path(p).is_file() else None)
    t = time.perf_counter()
    r.step()
    ready = {"compile_s": getattr(r, "compile_s", None), "first_step_s": time.perf_counter() - t}
    for _ in range(spec["warmup"]):
        r.step()
    if spec.get("eval"):
        t = time.perf_counter()
        r.eval()  # the first eval call; jax's is compiled already
        ready |= {"eval_compile_s": getattr(r, "eval_compile_s", None), "eval_first_s": time.perf_counter() - t}
    _reply(ready)
    for line in sys.stdin:
        cmd, *n = line.split()
        if cmd in ("run", "eval"):
            fn = r.step if cmd == "run" else r.eval
            _reply({"times_s": time_calls(fn, repeats=int(n[0]), warmup=0, first_call=False)["times_s"]})
        elif cmd == "end":
            _reply(r.final() | {"peak_rss_mib": peak_rss_mib()})
            return 0
    return 1


class Worker:
    def __init__(self, fw: str, spec_path: Path):
        self.fw = fw
        self.proc = subprocess.Popen([sys.executable, str(HERE / "lm_throughput.py"), "--worker", fw, "--spec",
                                      str(spec_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     bufsize=1, cwd=HERE.parent)
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

    def close(self) -> dict:
        out = self.ask("end")
        self.proc.stdin.close()
        self.proc.wait()
        return out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def measure(spec: dict, names: list[str], per_round: list[int], eval_per_round: list[int]) -> dict[str, dict]:
    """Start the workers one after another (their setup never overlaps; jax's first, as it writes the initial
    weights both use), then alternate them round by round.

    Call this before anything loads jax here: a child's ``ru_maxrss`` starts from its parent's peak RSS at
    the fork, so a light parent keeps the workers' peak RSS their own.
    """
    workers: dict[str, Worker] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            spec = spec | {"params": str(Path(tmp) / "params.npz")}
            spec_path = Path(tmp) / "spec.json"
            spec_path.write_text(json.dumps(spec))
            for fw in names:
                workers[fw] = Worker(fw, spec_path)
            times = {fw: [] for fw in names}
            round_medians = {fw: [] for fw in names}
            for n in per_round:
                for fw, w in workers.items():
                    t = w.ask(f"run {n}")["times_s"]
                    times[fw] += t
                    round_medians[fw].append(statistics.median(t))
            evals = {fw: [] for fw in names}
            for n in eval_per_round:
                for fw, w in workers.items():
                    evals[fw] += w.ask(f"eval {n}")["times_s"]
            out = {}
            for fw, w in workers.items():
                out[fw] = w.ready | w.close() | {"step_times_s": times[fw], "round_medians_s": round_medians[fw]}
                if evals[fw]:
                    out[fw] |= {"eval_times_s": evals[fw], "eval_median_s": statistics.median(evals[fw])}
            return out
    finally:
        for w in workers.values():
            w.kill()


def split(total: int, rounds: int) -> list[int]:
    rounds = max(1, min(rounds, total))
    return [total // rounds + (i < total % rounds) for i in range(rounds)] if total else []


def show(res: dict) -> None:
    show_throughput(res)
    print(f"tokens/s above = predicted words/s ({res['tokens_per_step']} of {res['padded_tokens_per_step']} "
          "positions per step); padded B*T tokens/s: "
          + ", ".join(f"{fw} {r['padded_tokens_per_s']:.0f}" for fw, r in res["frameworks"].items()))
    for fw, r in res["frameworks"].items():
        extra = f", eval (full softmax) median {r['eval_median_s'] * 1e3:.1f} ms" if r.get("eval_median_s") else ""
        print(f"{fw}: final train loss {r['final_loss']:.3f}{extra}")


def main(argv=None) -> int:
    ap = base_argparser(__doc__)
    ap.add_argument("--sampled", type=int, default=None, help=f"sampled-softmax candidates S, 0 = full softmax "
                    f"(default {NUM_SAMPLED})")
    for k, v in SIZES.items():
        ap.add_argument(f"--{k}", type=int, default=None, help=f"(default {v})")
    ap.add_argument("--steps", type=int, default=None, help=f"timed steps per framework, over all rounds (default "
                    f"{STEPS['sampled']} sampled, {STEPS['full']} full softmax; quick: 2)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps after the first (quick: 1)")
    ap.add_argument("--rounds", type=int, default=2, help="alternate the frameworks this many times (quick: 1)")
    ap.add_argument("--eval", type=int, default=0, metavar="N", help="also time N full-softmax eval steps per framework")
    ap.add_argument("--only", choices=("jax", "torch"), default=None, help="run one framework only")
    ap.add_argument("--worker", choices=("jax", "torch"), default=None, help=argparse.SUPPRESS)
    ap.add_argument("--spec", default=None, help=argparse.SUPPRESS)
    a = parse_args(ap, argv, quick={"steps": 2, "warmup": 1, "rounds": 1})
    if a.worker:
        return serve(a.worker, a.spec)

    sz = {k: getattr(a, k) or v for k, v in SIZES.items()}
    S = NUM_SAMPLED if a.sampled is None else a.sampled
    if S < 0:
        ap.error("--sampled must be >= 0")
    B, T, V, E, H, L = (sz[k] for k in ("batch", "seq", "vocab", "embed", "hidden", "layers"))
    steps = a.steps or STEPS["sampled" if S else "full"]
    variant = f"sampled softmax, S={S}" if S else "full softmax"
    words = int(make_batch(B, T, V)["target_weights"].sum())
    print(f"# LSTM LM pretraining step: emb {E}, {L}x{H}, V={V}, {variant}, B={B}, T={T} "
          f"({words} predicted words per step)", flush=True)
    names = [fw for fw in ("jax", "torch") if a.only in (None, fw)]
    spec = sz | {"sampled": S, "warmup": a.warmup, "eval": a.eval, "seed": 0}
    fws = measure(spec, names, split(steps, a.rounds), split(a.eval, a.rounds))
    peak = measure_peak()  # after the workers: see measure()
    flops = train_flops(B, T, V, E, H, L, S)
    res = throughput_result(
        fws, setup=f"LM emb {E}, {L}x{H}, V={V}, {variant}, B={B}, T={T}", batch=B, seq=T, flops=flops,
        peak_flops=peak,
        note=f"tokens/s = predicted words/s ({words} of the {B * T} padded positions per step, lengths T/2..T; "
             "padded_tokens_per_s in the JSON); the same model, weights at start, batch and "
             f"{'sampled softmax (shared log-uniform candidates, log-Q correction, hits masked)' if S else 'full tied softmax'}"
             " on both sides, checked equal in tests; JAX and PyTorch each in their own process (peak RSS per "
             "framework), alternating.",
        args={k: v for k, v in vars(a).items() if k not in ("worker", "spec", "json")} | sz | {"sampled": S, "steps": steps},
        variant=variant, initial_weights="ours on both sides" if "jax" in names else "PyTorch's default init", vocab=V, embed=E, hidden=H, layers=L, num_sampled=S,
        flops_formula="sum_layers 6*B*T*4H*(D_in+H) + 6*B*T*H*E + 6*B*T*E*(S+1 sampled | V full)")
    res["padded_tokens_per_step"], res["tokens_per_step"] = B * T, words
    for fw, r in res["frameworks"].items():
        r["padded_tokens_per_s"] = r["tokens_per_s"]
        r["tokens_per_s"] = r["words_per_s"] = words / r["median_step_s"]
        if fw == "torch" and r.get("torch_device") == "cpu" and jax_backend() != "cpu":
            r["mfu"] = None  # the peak was measured on jax's accelerator
    fr = res["frameworks"]
    res["jax_over_torch"] = fr["jax"]["tokens_per_s"] / fr["torch"]["tokens_per_s"] if {"jax", "torch"} <= set(fr) else None
    return finish(res, a, argv, show, devices=fr.get("jax", {}).get("devices"))


if __name__ == "__main__":
    raise SystemExit(main())
