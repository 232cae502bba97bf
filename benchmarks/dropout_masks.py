"""Cost of a dropout mask on CPU: threefry (``jax.random.bernoulli``) vs the hashed mask the models use.

    python benchmarks/dropout_masks.py [--shape 32,4,128,128] [--rate 0.1] [--json out.json]

Times ``where(mask, x * scale, 0)`` for one BERT-small attention-probability tensor (B=32, 4 heads,
T=128: 2.1M elements), jitted, median of alternating rounds; reports ns per element and the speed-up.
This is why ``jaxsenti/models/dropout.py`` exists.
"""

from __future__ import annotations

import math
import statistics

from common import base_argparser, finish, parse_args, script_main
from harness import alternate
from report import show


def main(argv=None) -> int:
    ap = base_argparser(__doc__)
    ap.add_argument("--shape", default="32,4,128,128")
    ap.add_argument("--rate", type=float, default=0.1)
    ap.add_argument("--rounds", type=int, default=5, help="(quick: 2)")
    ap.add_argument("--reps", type=int, default=10)
    a = parse_args(ap, argv, quick=dict(rounds=2))

    import jax
    import jax.numpy as jnp

    from jaxsenti.models.dropout import dropout_keep_mask, keep_scale

    shape = tuple(int(s) for s in a.shape.split(","))
    n = math.prod(shape)
    x = jnp.ones(shape, jnp.float32)
    key = jax.random.key(0)
    keys = [jax.random.fold_in(key, j) for j in range(a.rounds * a.reps)]  # made before timing, not in it
    fns = {
        "threefry": jax.jit(lambda k, x: jnp.where(jax.random.bernoulli(k, 1 - a.rate, shape), x / (1 - a.rate), 0.0)),
        "hash": jax.jit(lambda k, x: jnp.where(dropout_keep_mask(k, shape, a.rate), x * keep_scale(a.rate), 0.0)),
    }
    for f in fns.values():
        jax.block_until_ready(f(key, x))
    times = alternate({k: lambda j, f=f: jax.block_until_ready(f(keys[j], x)) for k, f in fns.items()},
                      [a.reps] * a.rounds)
    med = {k: statistics.median(v) for k, v in times.items()}
    res = {"shape": list(shape), "elements": n, "rate": a.rate,
           "median_ms": {k: v * 1e3 for k, v in med.items()},
           "ns_per_element": {k: v * 1e9 / n for k, v in med.items()},
           "speedup_hash_over_threefry": med["threefry"] / med["hash"]}
    return finish(res, a, argv, show("dropout"))


if __name__ == "__main__":
    script_main(main)
