"""FLOPs of a compiled step (XLA's cost analysis) and the peak they are compared with for MFU.

``step_flops`` asks the jitted step for its compiled executable after its first call, which JAX serves from
its caches (no retrace, no recompile), and reads XLA's ``cost_analysis()["flops"]``. ``peak_flops`` is the
matrix-multiply rate MFU is measured against: ``$JAXSENTI_PEAK_TFLOPS`` when the user gives it (a GPU's data
sheet figure, say), else measured once per machine, device kind and dtype with a large matmul (as
``benchmarks/gemm_floor.py`` does) and kept in ``$JAXSENTI_CACHE/peak_flops.json``. A measured peak is what
this machine's XLA reaches, not a data-sheet number: the MFU says how much of that the step uses.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time


def step_flops(jitted, *args) -> float | None:
    """FLOPs of one call of ``jitted`` on ``args`` (shapes only matter), None where XLA does not say."""
    try:
        cost = jitted.lower(*args).compile().cost_analysis()
    except Exception:  # noqa: BLE001 - a backend without cost analysis: no FLOPs, not a failed run
        return None
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    flops = (cost or {}).get("flops")
    return float(flops) if flops and flops > 0 else None


def peak_flops(dtype: str = "float32") -> tuple[float | None, str]:
    """(FLOP/s, where it comes from) of the first device for matmuls in ``dtype``."""
    env = os.environ.get("JAXSENTI_PEAK_TFLOPS", "").strip()
    if env:
        try:
            value = float(env)
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value > 0:
            return value * 1e12, "JAXSENTI_PEAK_TFLOPS"
        print(f"[jaxsenti] JAXSENTI_PEAK_TFLOPS={env!r} is not a positive number of TFLOP/s; measuring this machine's "
              "peak instead", file=sys.stderr)
    import jax
    import jax.numpy as jnp

    from jaxsenti.data.text import cache_dir

    dev = jax.devices()[0]
    key = f"{dev.platform}|{dev.device_kind}|{jax.device_count()}|{dtype}|jax-{jax.__version__}"
    path = cache_dir() / "peak_flops.json"
    try:
        known = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    if key in known:
        return float(known[key]), f"measured matmul ({path})"
    n = 2048 if dev.platform == "cpu" else 8192
    a = jnp.ones((n, n), dtype)
    mm = jax.jit(lambda x, y: x @ y)
    mm(a, a).block_until_ready()
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        mm(a, a).block_until_ready()
        best = min(best, time.perf_counter() - t)
    value = 2 * n**3 / best
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(known | {key: value}, indent=1), encoding="utf-8")
    except OSError:
        pass
    return value, f"measured matmul ({path})"


__all__ = ["peak_flops", "step_flops"]
