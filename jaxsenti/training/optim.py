"""Optimizer and learning-rate schedule from an ``OptimConfig``."""

from __future__ import annotations

import jax
import optax

from jaxsenti.config import OptimConfig


def lr_schedule(cfg: OptimConfig, total_steps: int) -> optax.Schedule:
    warmup = int(cfg.warmup_ratio * total_steps)
    decay_steps = max(total_steps - warmup, 1)
    if cfg.schedule == "constant":
        after = optax.constant_schedule(cfg.lr)
    elif cfg.schedule == "linear":
        after = optax.linear_schedule(cfg.lr, 0.0, decay_steps)
    elif cfg.schedule == "cosine":
        after = optax.cosine_decay_schedule(cfg.lr, decay_steps)
    else:
        raise ValueError(f"unknown schedule {cfg.schedule!r}; use constant, linear or cosine")
    if warmup == 0:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, cfg.lr, warmup), after], [warmup])


def decay_mask(params):
    """Weight decay on matrices only: biases and LayerNorm scales/offsets (1-D) are excluded."""
    return jax.tree.map(lambda p: p.ndim > 1, params)


def make_optimizer(cfg: OptimConfig, total_steps: int, schedule: optax.Schedule | None = None) -> optax.GradientTransformation:
    lr = schedule if schedule is not None else lr_schedule(cfg, total_steps)
    if cfg.name == "adamw":
        opt = optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, weight_decay=cfg.weight_decay, mask=decay_mask)
    elif cfg.name == "adam":
        opt = optax.adam(lr, b1=cfg.b1, b2=cfg.b2)
    elif cfg.name == "sgd":
        opt = optax.sgd(lr, momentum=cfg.b1)
    else:
        raise ValueError(f"unknown optimizer {cfg.name!r}; use adamw, adam or sgd")
    return optax.chain(optax.clip_by_global_norm(cfg.clip_norm), opt) if cfg.clip_norm else opt
