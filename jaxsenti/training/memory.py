"""Refusing a model or a batch that cannot fit in memory, before anything is allocated.

``--set model.hidden_dim=10000000`` or ``--set batch_size=10**12`` would otherwise end in an
allocation failure deep inside XLA or numpy (or in the kernel's OOM killer on a CPU, which overcommits).
:func:`check_fits` counts the parameters from an abstract initialisation (``nnx.eval_shape``: shapes
only, no memory) and adds a *lower bound* of what one training step needs beyond them: gradients and
optimizer moments of the same size, the padded batch, and one activation of the widest layer per
token. Real steps need more, so a refusal is certain and a pass is not a promise; the bound is meant
to catch sizes that are wrong by orders of magnitude, with one line that says what to change.
"""

from __future__ import annotations

import math
import os

import jax
from flax import nnx

from jaxsenti.fields import ConfigError

# optimizer moments per parameter (optax: adam/adamw keep mu and nu; sgd with momentum one trace)
_OPT_SLOTS = {"adam": 2, "adamw": 2, "sgd": 1}


def _size(n: float) -> str:
    for unit, scale in (("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n / 2**20:,.1f} MiB"


def device_memory() -> tuple[int | None, str]:
    """(bytes one device can hold, what it is): an accelerator's memory limit, else the machine's RAM."""
    dev = jax.local_devices()[0]
    try:
        stats = dev.memory_stats() or {}
    except Exception:  # noqa: BLE001 - some backends do not implement it
        stats = {}
    if stats.get("bytes_limit"):
        return int(stats["bytes_limit"]), f"{dev.platform} device {dev.device_kind}"
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "this machine's RAM"
    except (ValueError, OSError, AttributeError):
        return None, "memory"


def abstract_params(build) -> tuple[int, int]:
    """(parameter count, widest last dimension of a parameter) of the module ``build()`` returns, without allocating."""
    state = nnx.state(nnx.eval_shape(build), nnx.Param)
    leaves = jax.tree.leaves(state)
    count = sum(math.prod(x.shape) for x in leaves)
    width = max((x.shape[-1] for x in leaves if len(x.shape) >= 2), default=1)
    return count, width


def check_fits(build, cfg, *, length: int) -> None:
    """Raise :class:`ConfigError` when the model ``build()`` returns, trained as ``cfg`` says (batch sizes,
    optimizer, devices) on sequences of ``length`` tokens, surely cannot fit in one device's memory."""
    params, width = abstract_params(build)
    available, where = device_memory()
    if available is None:
        return
    devices = cfg.mesh_devices or jax.device_count()
    shared = jax.local_devices()[0].platform == "cpu"  # CPU "devices" of one process share one RAM
    rows = max(cfg.batch_size, cfg.eval_batch_size)
    rows_per_device = -(-rows // max(devices, 1))
    slots = 2 + _OPT_SLOTS.get(cfg.optim.name, 2)  # params, gradients, moments (all float32)
    state_bytes = 4 * params * slots * (devices if shared else 1)
    batch_bytes = 4 * rows_per_device * length * (width + 1) * (devices if shared else 1)
    need = state_bytes + batch_bytes
    if need > available:
        raise ConfigError(
            f"this model and batch cannot fit: {params:,} parameters ({_size(4 * params)} in float32, {_size(state_bytes)} "
            f"with gradients and optimizer moments) and batches of {rows:,} x {length:,} tokens ({_size(batch_bytes)} "
            f"at the least) need more than the {_size(available)} of {where}; lower the model sizes (model.*), "
            "batch_size / eval_batch_size or max_len")


__all__ = ["abstract_params", "check_fits", "device_memory"]
