"""Train-step time of the LSTM language model for each output mode (full tied softmax, sampled softmax).

Random tokens at the study's shapes (embed 400, 2 x LSTM 256, B x T batch, LM vocabulary V); one jitted
``train_step`` with ``NextWordLM`` per mode; reports the median step time and predicted words/s.

    python benchmarks/lm_step_time.py --vocab 30000 --batch 64 --seq 64 --sampled 0 1024 --steps 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vocab", type=int, default=30000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--embed", type=int, default=400)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--sampled", type=int, nargs="+", default=[0, 1024], help="0 = full softmax")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--eval", action="store_true", help="also time the (full-softmax) eval step")
    args = p.parse_args(argv)

    import jax
    import numpy as np
    import optax
    from flax import nnx

    from jaxsenti.models.lstm_lm import LSTMLanguageModel, LSTMLMConfig
    from jaxsenti.objectives.language_model import NextWordLM
    from jaxsenti.training.steps import create_train_state, eval_step, train_step

    rng = np.random.default_rng(0)
    b, t, v = args.batch, args.seq, args.vocab
    # Zipf-like ids so the sampled softmax sees a realistic target distribution.
    ids = np.minimum(rng.zipf(1.2, size=(b, t + 1)), v - 1).astype(np.int32) + 0
    ids = np.maximum(ids, 2)
    batch = {"tokens": ids[:, :t], "targets": ids[:, 1:], "lengths": np.full((b,), t, np.int32),
             "target_weights": np.ones((b, t), np.float32), "weights": np.ones((b,), np.float32)}
    cfg = LSTMLMConfig(vocab_size=v, embed_dim=args.embed, hidden_dim=args.hidden, num_layers=args.layers)
    print(f"jax {jax.__version__} {jax.devices()[0].platform}; B={b} T={t} V={v} E={args.embed} "
          f"H={args.hidden}x{args.layers}; {b * t} predicted words per step")
    for s in args.sampled:
        state = create_train_state(LSTMLanguageModel(cfg, rngs=nnx.Rngs(0)), optax.adam(1e-3), NextWordLM(num_sampled=s))
        step = jax.jit(train_step, donate_argnums=0)
        t0 = time.perf_counter()
        state, m = step(state, batch)
        jax.block_until_ready(m)
        compile_s = time.perf_counter() - t0
        times = []
        for _ in range(args.steps):
            t0 = time.perf_counter()
            state, m = step(state, batch)
            jax.block_until_ready(m)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        name = "full softmax" if s == 0 else f"sampled softmax S={s}"
        print(f"{name:>24}: step {med * 1e3:7.1f} ms (min {min(times) * 1e3:.1f}), {b * t / med:8.0f} words/s, "
              f"first call {compile_s:.1f} s, loss {float(m['loss_sum'] / m['count']):.3f}")
        if args.eval:
            ev = jax.jit(eval_step)
            jax.block_until_ready(ev(state, batch))
            times = []
            for _ in range(args.steps):
                t0 = time.perf_counter()
                jax.block_until_ready(ev(state, batch))
                times.append(time.perf_counter() - t0)
            print(f"{'eval (full softmax)':>24}: step {statistics.median(times) * 1e3:7.1f} ms")
        del state
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
