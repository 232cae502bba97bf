"""Fine-tuning throughput: our Flax NNX BERT vs transformers' PyTorch BERT, same config, inputs and machine.

    python benchmarks/bert_throughput.py                       # small: 4 layers x 256 hidden, B=32, T=128
    python benchmarks/bert_throughput.py --config base --json out.json   # bert-base size (12 x 768), B=4

Both sides run one full optimisation step per iteration in training mode (dropout on): forward, backward and
AdamW (lr 2e-5, weight decay 0.01) on a one-logit classifier with binary cross-entropy, on one random batch
(right-padded to lengths between T/2 and T). JAX uses ``jaxsenti.training.steps.train_step`` (``Classification``
objective) compiled ahead of time with the train state donated; PyTorch uses
``BertForSequenceClassification(num_labels=1)`` with its default attention (SDPA) and default thread count.
The two are timed in alternating rounds so that background load on a shared machine hits both alike.

Reported in the layout of ``common.throughput_result``: JAX lower + compile and first step, PyTorch's first
(eager) step, steady-state median step time, sequences/s, tokens/s (padded B*T), the JAX/PyTorch ratio,
and MFU = achieved FLOP/s / measured peak, where the peak is the best of a few large float32 ``jnp.dot``
(4096^2) runs in the same process and

    train FLOPs/step = 6 * N * B * T  +  12 * L * B * T^2 * H

with N = encoder matmul weights (L * (4 H^2 + 2 H I)); the first term is forward (2) + backward (4) FLOPs
per weight per token, the second the attention scores and weighted sum (2 * 2 B T^2 H per layer forward,
times 3 for training). Embedding lookups, the pooler/head, LayerNorm, softmax, GELU and the optimizer are
not counted (they are memory-bound and small in FLOPs).
"""

from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from common import (alternate, base_argparser, device_peak_mib, finish, parse_args, peak_rss_mib, show_throughput,
                    throughput_result)
from jaxsenti.models.bert import BertClassifier, BertConfig
from jaxsenti.objectives import Classification
from jaxsenti.training.steps import create_train_state, jit_train_step

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
    """One compiled train step of ``model`` under ``objective`` (AdamW), timed with no host transfer inside."""

    def __init__(self, model: nnx.Module, objective, batch: dict, lr: float = LR, weight_decay: float = WD):
        self.n_params = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
        self.state = create_train_state(model, optax.adamw(lr, weight_decay=weight_decay), objective, seed=0)
        self.batch = {k: jnp.asarray(v) for k, v in batch.items()}
        t = time.perf_counter()
        self.step_fn = jit_train_step.lower(self.state, self.batch).compile()
        self.compile_s = time.perf_counter() - t
        t = time.perf_counter()
        self.step()
        self.first_step_s = time.perf_counter() - t

    def step(self, _i=None):
        self.state, self.metrics = self.step_fn(self.state, self.batch)
        jax.block_until_ready((self.state.params, self.metrics))

    @property
    def loss(self):  # the batch's mean loss, as PyTorch reports it; read after the timed steps
        return self.metrics["loss_sum"] / self.metrics["count"]


def time_runners(runners: dict, *, steps: int, rounds: int, warmup: int) -> dict[str, dict]:
    """Warm each runner up, time them in alternating rounds, and return each framework's timing record."""
    for r in runners.values():  # warm-up beyond the first (compiling / allocating) step
        for _ in range(warmup):
            r.step()
    rounds = max(1, min(rounds, steps))
    times = alternate({k: r.step for k, r in runners.items()}, [steps // rounds + (i < steps % rounds) for i in range(rounds)])
    rss = peak_rss_mib()  # one process: the peak of all frameworks together
    fws = {}
    for k, r in runners.items():
        loss = float(r.loss)
        if not math.isfinite(loss):
            raise FloatingPointError(f"{k}: non-finite loss {loss}")
        fws[k] = {"compile_s": getattr(r, "compile_s", None), "first_step_s": r.first_step_s,
                  "step_times_s": times[k], "peak_rss_mib": rss, "final_loss": loss, "n_params": r.n_params}
    fws["jax"]["device_peak_mib"] = device_peak_mib()
    return fws


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
        self.attention = self.model.config._attn_implementation
        self.n_params = sum(p.numel() for p in self.model.parameters())
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=LR, weight_decay=WD)
        T = tokens.shape[1]
        self.ids = torch.tensor(tokens, dtype=torch.long)
        self.mask = torch.tensor((np.arange(T)[None] < lengths[:, None]).astype(np.int64))
        self.labels = torch.tensor(labels, dtype=torch.float32)
        self.loss_fn = torch.nn.BCEWithLogitsLoss()
        t = time.perf_counter()
        self.step()
        self.first_step_s = time.perf_counter() - t  # eager: allocations and lazy initialisation

    def step(self, _i=None):
        self.opt.zero_grad(set_to_none=True)
        logits = self.model(input_ids=self.ids, attention_mask=self.mask).logits[:, 0]
        loss = self.loss_fn(logits, self.labels)
        loss.backward()
        self.opt.step()
        self.loss = loss.detach()


def main(argv=None) -> int:
    ap = base_argparser(__doc__)
    ap.add_argument("--config", choices=sorted(CONFIGS), default="small")
    ap.add_argument("--batch", type=int, default=None, help="default: 32 (small), 4 (base)")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--steps", type=int, default=None,
                    help="timed steps per framework; default 10 (small), 3 (base); quick 3")
    ap.add_argument("--warmup", type=int, default=None,
                    help="untimed steps after the first one, per framework; default 1 (small), 0 (base); quick 0")
    ap.add_argument("--rounds", type=int, default=2,
                    help="alternate JAX/PyTorch this many times, steps split across (quick: 1)")
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32", help="JAX compute dtype")
    ap.add_argument("--skip-torch", action="store_true")
    a = parse_args(ap, argv, quick=dict(steps=3, warmup=0, rounds=1))

    L, H, A, I, B0, S0, W0 = CONFIGS[a.config]
    B, T = a.batch or B0, a.seq
    steps = a.steps or S0
    warmup = W0 if a.warmup is None else a.warmup
    cfg = bert_config(a.config, a.dtype)
    batch = make_batch(B, T, cfg.vocab_size)
    flops = train_flops(cfg, B, T)
    print(f"# BERT fine-tune throughput: {a.config} (L={L}, H={H}, heads={A}, I={I}, vocab={cfg.vocab_size}), "
          f"B={B}, T={T}, JAX dtype {a.dtype}", flush=True)
    peak = measure_peak()
    print(f"measured fp32 matmul peak (jnp.dot 4096^2): {peak / 1e9:.1f} GFLOP/s", flush=True)

    tokens, lengths, labels = batch
    jax_batch = {"tokens": tokens, "lengths": lengths, "labels": labels, "weights": np.ones(len(labels), np.float32)}
    runners = {"jax": JaxRunner(BertClassifier(cfg, rngs=nnx.Rngs(0)), Classification(), jax_batch)}
    print(f"jax: {runners['jax'].n_params / 1e6:.2f}M params, compile {runners['jax'].compile_s:.1f}s", flush=True)
    if not a.skip_torch:
        runners["torch"] = TorchRunner(cfg, *batch)
        print(f"torch: attention {runners['torch'].attention}, first step {runners['torch'].first_step_s:.2f}s", flush=True)
    fws = time_runners(runners, steps=steps, rounds=a.rounds, warmup=warmup)
    if "torch" in fws:
        fws["torch"] |= {"attention": runners["torch"].attention, "threads": runners["torch"].torch.get_num_threads()}
    res = throughput_result(
        fws, setup=f"{L}x{H}, B={B}, T={T}, {a.dtype}", batch=B, seq=T, flops=flops, peak_flops=peak,
        note="tokens/s counts padded B*T; JAX and PyTorch share one process, so the peak RSS is of both together.",
        args={k: v for k, v in vars(a).items() if k != "json"} | {"batch": B, "steps": steps, "warmup": warmup},
        config=a.config, layers=L, hidden=H, heads=A, intermediate=I, vocab=cfg.vocab_size,
        flops_formula="6*N*B*T + 12*L*B*T^2*H, N = L*(4H^2 + 2HI)")
    return finish(res, a, argv, show_throughput)


if __name__ == "__main__":
    raise SystemExit(main())
