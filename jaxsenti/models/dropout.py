"""Dropout whose mask comes from a counter-based integer hash instead of threefry.

Why: on CPU, XLA's threefry (``jax.random.bernoulli``) costs ~5 ns per element, which made the
dropout masks ~7 % of a BERT training step and ~4 % of an LSTM step. Here the per-call key
(threefry, as usual: ``rngs.dropout()``, so masks follow ``fold_in(rng, step)`` and are exactly
reproducible) is hashed once to a 32-bit seed, and each element's 32 random bits are
``lowbias32(lowbias32(index) ^ seed)`` — a dozen vectorised integer ops (18–25x faster here,
``benchmarks/dropout_masks.py``).

``lowbias32`` is Chris Wellons' 2-round multiply-xorshift bijection (bias ≈ 0.17, among the best
known for its size). Hashing the index before mixing in the seed means two calls with different
seeds never see shifted copies of one stream. An element is kept when its bits are >= the
threshold ``round(rate * 2**32)``, so the realised drop probability equals ``rate`` to 2**-32,
and kept values are scaled by the exact inverse of the keep probability (unbiased).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = ["Dropout", "dropout_keep_mask", "lowbias32"]


def lowbias32(x: jax.Array) -> jax.Array:
    """A bijective 32-bit integer hash (uint32 in, uint32 out)."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def _threshold(rate: float) -> int:
    return min(round(rate * 2.0**32), 2**32 - 1)


def dropout_keep_mask(key: jax.Array, shape: tuple[int, ...], rate: float) -> jax.Array:
    """bool[shape]: True where an element is kept; each element dropped with probability ``rate``."""
    n = int(np.prod(shape, dtype=np.int64))
    if n >= 2**32:
        raise ValueError(f"dropout over {n} elements: the element counter is 32-bit")
    seed = jax.random.bits(key, (), jnp.uint32)
    index = jax.lax.iota(jnp.uint32, n).reshape(shape)
    bits = lowbias32(lowbias32(index) ^ seed)
    return bits >= jnp.uint32(_threshold(rate))


def keep_scale(rate: float) -> float:
    """1 / P(keep) for the quantised threshold used by :func:`dropout_keep_mask`."""
    return 2.0**32 / (2.0**32 - _threshold(rate))


class Dropout(nnx.Module):
    """Drop-in for ``nnx.Dropout`` (same call signature), with the hashed mask above."""

    def __init__(self, rate: float):
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
        self.rate = float(rate)

    def __call__(self, x, *, deterministic: bool = True, rngs: nnx.Rngs | None = None):
        if deterministic or self.rate == 0.0:
            return x
        if rngs is None:
            raise ValueError("Dropout in training mode needs rngs with a 'dropout' stream")
        keep = dropout_keep_mask(rngs.dropout(), x.shape, self.rate)
        return jnp.where(keep, x * jnp.asarray(keep_scale(self.rate), x.dtype), jnp.zeros((), x.dtype))
