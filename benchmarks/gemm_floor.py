"""How much of a train step is matrix multiplication alone: the step's GEMMs timed in XLA and in PyTorch.

    python benchmarks/gemm_floor.py [--models lstm,bert] [--dtypes float32,bfloat16] [--rounds 5] [--json out.json]

At the harness's LSTM (B=64, T=128, emb 400, 2x256) and BERT small (4 x 256, 4 heads, FFN 1024, B=32, T=128)
settings: every matrix product of one train step (forward, the backward's input and weight gradients, the LSTM's
recurrent chains as dependent loops, BERT's batched attention products), timed alone in float32 and bfloat16
operands. JAX runs them in one jitted function (each output feeds a tiny checksum, so nothing is dead code);
PyTorch with ``torch.mm``/``torch.bmm`` in eager mode; rounds alternate. No fusion gets a step below its GEMM
time, so PyTorch's whole step / JAX's GEMMs bounds the JAX/PyTorch speed ratio reachable on this machine.
"""

from __future__ import annotations

import statistics

from common import base_argparser, finish, names_of, parse_args, script_main
from harness import alternate
from report import show


def lstm_gemms(B=64, T=128, E=400, H=256, layers=2):
    """(big, chains, batched): big = [(m, k, n)] one-off products; chains = [(steps, m, k, n)] dependent per-step
    products; batched = [] (no attention)."""
    big, chains = [], []
    for layer in range(layers):
        d = E if layer == 0 else H
        big.append((T * B, d, 4 * H))  # hoisted input projection
        chains.append((T, B, H, 4 * H))  # h @ W_hh, forward
        chains.append((T, B, 4 * H, H))  # dz @ W_hh^T, backward
        big.append((T * B, 4 * H, d))  # dx = dz @ W_ih^T
        big.append((d, T * B, 4 * H))  # dW_ih = x^T dz
        big.append((H, T * B, 4 * H))  # dW_hh = h_prev^T dz
    return big, chains, []


def bert_gemms(B=32, T=128, H=256, heads=4, ffn=1024, layers=4):
    """(big, chains, batched): batched = [(batch, m, k, n)] attention products."""
    big, batched = [], []
    dh = H // heads
    for _ in range(layers):
        for k, n in ((H, 3 * H), (H, H), (H, ffn), (ffn, H)):  # qkv, attention output, FFN in, FFN out
            big += [(B * T, k, n), (B * T, n, k), (k, B * T, n)]  # forward, dx, dW
        bh = B * heads
        # scores q k^T, context p v; backward: two products each
        batched += [(bh, T, dh, T), (bh, T, T, dh), (bh, T, dh, T), (bh, T, T, dh), (bh, T, T, dh), (bh, dh, T, T)]
    return big, [], batched


MODELS = {"lstm": lstm_gemms, "bert": bert_gemms}


def flops(big, chains, batched):
    return (sum(2 * m * k * n for m, k, n in big) + sum(2 * s * m * k * n for s, m, k, n in chains)
            + sum(2 * b * m * k * n for b, m, k, n in batched))


def _next_input(out, k, xp):
    """[m, n] product -> [m, k] input of the next step (slice or tile; k and n are multiples of each other)."""
    n = out.shape[1]
    out = out[:, :k] if n >= k else xp.tile(out, (1, k // n))
    return xp.tanh(out)  # keeps values bounded over 128 steps


def jax_runner(big, chains, batched, dtype="float32"):
    import jax
    import jax.numpy as jnp

    keys = iter(jax.random.split(jax.random.key(0), 2 * (len(big) + len(chains) + len(batched))))  # two per product
    normal = lambda shape: (jax.random.normal(next(keys), shape, jnp.float32) * 0.05).astype(dtype)  # noqa: E731
    args = ([(normal((m, k)), normal((k, n))) for m, k, n in big],
            [(normal((m, k)), normal((k, n))) for _, m, k, n in chains],
            [(normal((b, m, k)), normal((b, k, n))) for b, m, k, n in batched])
    steps = tuple(s for s, *_ in chains)

    @jax.jit
    def run(args):
        big_args, chain_args, bat_args = args
        acc = jnp.zeros((), dtype)
        for a, b in big_args:
            acc += jnp.dot(a, b)[0, 0]
        for (h0, w), s in zip(chain_args, steps):
            # a dependent chain like the recurrence: each step's product is the next step's input
            acc += jax.lax.fori_loop(0, s, lambda i, h, w=w: _next_input(jnp.dot(h, w), h.shape[1], jnp), h0)[0, 0]
        for a, b in bat_args:
            acc += jax.lax.batch_matmul(a, b)[0, 0, 0]
        return acc

    jax.block_until_ready(run(args))
    return lambda: jax.block_until_ready(run(args))


def torch_runner(big, chains, batched, dtype="float32"):
    import torch

    g = torch.Generator().manual_seed(0)
    normal = lambda *shape: (torch.randn(*shape, generator=g) * 0.05).to(getattr(torch, dtype))  # noqa: E731
    big_args = [(normal(m, k), normal(k, n)) for m, k, n in big]
    chain_args = [(s, normal(m, k), normal(k, n)) for s, m, k, n in chains]
    bat_args = [(normal(b, m, k), normal(b, k, n)) for b, m, k, n in batched]

    @torch.no_grad()
    def run():
        acc = 0.0
        for a, b in big_args:
            acc += float(torch.mm(a, b)[0, 0])
        for s, h, w in chain_args:
            for _ in range(s):
                h = _next_input(torch.mm(h, w), h.shape[1], torch)
            acc += float(h[0, 0])
        for a, b in bat_args:
            acc += float(torch.bmm(a, b)[0, 0, 0])
        return acc

    run()
    return run


def main(argv=None) -> int:
    ap = base_argparser(__doc__)
    ap.add_argument("--models", default="lstm,bert", type=names_of(MODELS))
    ap.add_argument("--dtypes", default="float32,bfloat16", type=names_of(("float32", "bfloat16")))
    ap.add_argument("--rounds", type=int, default=5, help="alternating JAX/PyTorch rounds (quick: 2)")
    ap.add_argument("--reps", type=int, default=3, help="timed calls per framework and round (quick: 1)")
    ap.add_argument("--smoke", action="store_true", help="tiny shapes (tests)")
    a = parse_args(ap, argv, quick=dict(rounds=2, reps=1))

    results = {}
    for name in a.models:
        gemms = MODELS[name](**SMOKE[name]) if a.smoke else MODELS[name]()
        for dtype in a.dtypes:
            runners = {"jax": jax_runner(*gemms, dtype), "torch": torch_runner(*gemms, dtype)}
            times = alternate({k: lambda _i, run=run: run() for k, run in runners.items()}, [a.reps] * a.rounds)
            fl = flops(*gemms)
            med = {k: statistics.median(v) for k, v in times.items()}
            key = name if dtype == "float32" else f"{name}_{dtype}"  # float32 keeps the earlier files' keys
            results[key] = {
                "model": name, "dtype": dtype, "gemm_flops": fl,
                "n_products": len(gemms[0]) + sum(s for s, *_ in gemms[1]) + len(gemms[2]),
                "jax_gemm_ms": med["jax"] * 1e3, "torch_gemm_ms": med["torch"] * 1e3,
                "jax_gflops": fl / med["jax"] / 1e9, "torch_gflops": fl / med["torch"] / 1e9, "times_s": times}
    return finish({"args": {k: v for k, v in vars(a).items() if k != "json"}, "results": results}, a, argv,
                  show("gemm_floor"))


SMOKE = {"lstm": dict(B=2, T=4, E=8, H=8, layers=1), "bert": dict(B=2, T=8, H=16, heads=2, ffn=32, layers=1)}


if __name__ == "__main__":
    script_main(main)
