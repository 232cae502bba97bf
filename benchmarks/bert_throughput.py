"""Fine-tuning throughput: our Flax NNX BERT vs transformers' PyTorch BERT, same config, inputs and machine.

    python benchmarks/bert_throughput.py                       # small: 4 layers x 256 hidden, B=32, T=128
    python benchmarks/bert_throughput.py --config base --json out.json   # bert-base size (12 x 768), B=4

Both sides run one full optimisation step per iteration in training mode (dropout on): forward, backward and
AdamW (lr 2e-5, weight decay 0.01) on a one-logit classifier with binary cross-entropy. JAX uses
``jaxsenti.training.steps.train_step`` jitted with the train state donated (``jit_train_step``); PyTorch uses
``BertForSequenceClassification(num_labels=1)`` with its default attention (SDPA) and default thread count.
The two are timed in alternating rounds so that background load on a shared machine hits both alike.

Reported: compile time (JAX: lower + compile; PyTorch: first step), steady-state median step time,
sequences/s, tokens/s (padded B*T), the JAX/PyTorch speed ratio, and MFU = achieved FLOP/s / measured peak,
where the peak is the best of a few large float32 ``jnp.dot`` (4096^2) runs in the same process and

    train FLOPs/step = 6 * N * B * T  +  12 * L * B * T^2 * H

with N = encoder matmul weights (L * (4 H^2 + 2 H I)); the first term is forward (2) + backward (4) FLOPs
per weight per token, the second the attention scores and weighted sum (2 * 2 B T^2 H per layer forward,
times 3 for training). Embedding lookups, the pooler/head, LayerNorm, softmax, GELU and the optimizer are
not counted (they are memory-bound and small in FLOPs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

from jaxsenti.models.bert import BertClassifier, BertConfig  # noqa: E402
from jaxsenti.training.steps import create_train_state, jit_train_step  # noqa: E402

CONFIGS = {
    # name: (layers, hidden, heads, intermediate, default batch, default timed steps, default extra warm-up steps)
    "small": (4, 256, 4, 1024, 32, 10, 1),
    "base": (12, 768, 12, 3072, 4, 3, 0),
}
LR, WD = 2e-5, 0.01


def bert_config(name: str, dtype: str) -> BertConfig:
    L, H, A, I = CONFIGS[name][:4]
    return BertConfig(vocab_size=21128, hidden_size=H, num_hidden_layers=L, num_attention_heads=A,
                      intermediate_size=I, max_position_embeddings=512, dtype=dtype)


def train_flops(cfg: BertConfig, B: int, T: int) -> float:
    L, H, I = cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size
    n = L * (4 * H * H + 2 * H * I)
    return 6.0 * n * B * T + 12.0 * L * B * T * T * H


def make_batch(B: int, T: int, vocab: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(T // 2, T + 1, size=B).astype(np.int32)
    lengths[0] = T
    tokens = rng.integers(1000, vocab, size=(B, T)).astype(np.int32)
    tokens[:, 0] = 101
    tokens[np.arange(T)[None] >= lengths[:, None]] = 0
    labels = rng.integers(0, 2, size=B).astype(np.int32)
    return tokens, lengths, labels


def measure_peak(n: int = 4096, reps: int = 5) -> float:
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    f = jax.jit(jnp.dot)
    f(a, b).block_until_ready()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        f(a, b).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2.0 * n**3 / best


class JaxRunner:
    def __init__(self, cfg: BertConfig, tokens, lengths, labels):
        model = BertClassifier(cfg, rngs=nnx.Rngs(0))
        self.n_params = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
        self.state = create_train_state(model, optax.adamw(LR, weight_decay=WD), seed=0)
        self.batch = {
            "tokens": jnp.asarray(tokens), "lengths": jnp.asarray(lengths),
            "labels": jnp.asarray(labels), "weights": jnp.ones(len(labels), jnp.float32),
        }
        t = time.perf_counter()
        self.step_fn = jit_train_step.lower(self.state, self.batch).compile()
        self.compile_s = time.perf_counter() - t
        t = time.perf_counter()
        self.step()
        self.first_step_s = time.perf_counter() - t

    def step(self):
        self.state, metrics = self.step_fn(self.state, self.batch)
        jax.block_until_ready((self.state.params, metrics))
        return float(metrics["loss_sum"])


class TorchRunner:
    def __init__(self, cfg: BertConfig, tokens, lengths, labels):
        import torch
        import transformers

        torch.manual_seed(0)
        hc = transformers.BertConfig(
            vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_hidden_layers,
            num_attention_heads=cfg.num_attention_heads, intermediate_size=cfg.intermediate_size,
            max_position_embeddings=cfg.max_position_embeddings, hidden_dropout_prob=cfg.hidden_dropout_prob,
            attention_probs_dropout_prob=cfg.attention_probs_dropout_prob, num_labels=1,
        )
        self.torch = torch
        self.model = transformers.BertForSequenceClassification(hc).train()
        self.attn_impl = self.model.config._attn_implementation
        self.n_params = sum(p.numel() for p in self.model.parameters())
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=LR, weight_decay=WD)
        T = tokens.shape[1]
        self.ids = torch.tensor(tokens, dtype=torch.long)
        self.mask = torch.tensor((np.arange(T)[None] < lengths[:, None]).astype(np.int64))
        self.labels = torch.tensor(labels, dtype=torch.float32)
        self.loss_fn = torch.nn.BCEWithLogitsLoss()
        t = time.perf_counter()
        self.step()
        self.compile_s = time.perf_counter() - t  # eager: the first step (allocations, lazy init)

    def step(self):
        self.opt.zero_grad(set_to_none=True)
        logits = self.model(input_ids=self.ids, attention_mask=self.mask).logits[:, 0]
        loss = self.loss_fn(logits, self.labels)
        loss.backward()
        self.opt.step()
        return float(loss.detach())


def timed(runner, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        loss = runner.step()
        out.append(time.perf_counter() - t)
        if not np.isfinite(loss):
            raise FloatingPointError(f"{type(runner).__name__}: non-finite loss {loss}")
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", choices=sorted(CONFIGS), default="small")
    ap.add_argument("--batch", type=int, default=None, help="default: 32 (small), 4 (base)")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--steps", type=int, default=None, help="timed steps per framework; default 10 (small), 3 (base)")
    ap.add_argument("--warmup", type=int, default=None,
                    help="untimed steps after the first one, per framework; default 1 (small), 0 (base)")
    ap.add_argument("--rounds", type=int, default=2, help="alternate JAX/PyTorch this many times (steps split across)")
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32", help="JAX compute dtype")
    ap.add_argument("--skip-torch", action="store_true")
    ap.add_argument("--json", type=str, default=None)
    args = ap.parse_args(argv)

    L, H, A, I, B0, S0, W0 = CONFIGS[args.config]
    B, T = args.batch or B0, args.seq
    steps = args.steps or S0
    warmup = W0 if args.warmup is None else args.warmup
    cfg = bert_config(args.config, args.dtype)
    tokens, lengths, labels = make_batch(B, T, cfg.vocab_size)
    flops = train_flops(cfg, B, T)

    import torch

    info = {
        "config": args.config, "layers": L, "hidden": H, "heads": A, "intermediate": I, "vocab": cfg.vocab_size,
        "batch": B, "seq": T, "jax_dtype": args.dtype, "steps": steps,
        "machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
        "jax_version": jax.__version__, "jax_backend": jax.default_backend(), "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "flops_per_step": flops,
        "flops_formula": "6*N*B*T + 12*L*B*T^2*H, N = L*(4H^2 + 2HI)",
    }
    print(f"# BERT fine-tune throughput: {args.config} (L={L}, H={H}, heads={A}, I={I}, vocab={cfg.vocab_size}), "
          f"B={B}, T={T}, JAX dtype {args.dtype}; {info['cpu_count']} CPUs, backend {info['jax_backend']}, "
          f"torch threads {info['torch_threads']}", flush=True)

    peak = measure_peak()
    info["peak_flops"] = peak
    print(f"measured fp32 matmul peak (jnp.dot 4096^2): {peak / 1e9:.1f} GFLOP/s", flush=True)

    jr = JaxRunner(cfg, tokens, lengths, labels)
    print(f"jax: {jr.n_params / 1e6:.2f}M params, compile {jr.compile_s:.1f}s, first step {jr.first_step_s:.2f}s",
          flush=True)
    tr = None
    if not args.skip_torch:
        tr = TorchRunner(cfg, tokens, lengths, labels)
        print(f"torch: {tr.n_params / 1e6:.2f}M params, attention {tr.attn_impl}, first step {tr.compile_s:.2f}s",
              flush=True)
    timed(jr, warmup)  # warm-up beyond the first (compiling / allocating) step
    if tr:
        timed(tr, warmup)

    jt, tt = [], []
    rounds = max(1, min(args.rounds, steps))
    for r in range(rounds):
        n = steps // rounds + (r < steps % rounds)
        jt += timed(jr, n)
        if tr:
            tt += timed(tr, n)

    def summary(name, times, compile_s):
        med = statistics.median(times)
        r = {
            "compile_s": compile_s, "median_step_s": med, "min_step_s": min(times), "steps_timed": len(times),
            "seq_per_s": B / med, "tokens_per_s": B * T / med,
            "achieved_gflops": flops / med / 1e9, "mfu": flops / med / peak,
        }
        print(f"{name:>6}: median step {med * 1e3:8.1f} ms (min {min(times) * 1e3:.1f}, n={len(times)})  "
              f"{r['seq_per_s']:7.1f} seq/s  {r['tokens_per_s']:9.0f} tok/s  "
              f"{r['achieved_gflops']:6.1f} GFLOP/s  MFU {100 * r['mfu']:.1f}%  (compile {compile_s:.1f}s)")
        return r

    info["jax"] = summary("jax", jt, jr.compile_s)
    if tr:
        info["torch"] = summary("torch", tt, tr.compile_s)
        info["jax_over_torch"] = info["torch"]["median_step_s"] / info["jax"]["median_step_s"]
        print(f"JAX / PyTorch throughput ratio: {info['jax_over_torch']:.2f}x  "
              f"(FLOPs/step {flops / 1e9:.1f} G = {info['flops_formula']})")
    if args.json:
        Path(args.json).write_text(json.dumps(info, indent=2))
    return info


if __name__ == "__main__":
    main()
