"""Optimizer and learning-rate schedule from an ``OptimConfig``, with ULMFiT's fine-tuning recipe.

The recipe (Howard & Ruder 2018) works on the model's *layer groups*, which its registry entry names
(``ModelSpec.layer_group``: a parameter's path -> its depth, 0 nearest the input):

* discriminative rates: group r below the top trains at ``lr * layer_lr_decay**r`` (BERT's layer-wise decay, LLRD);
* gradual unfreezing: group r trains from epoch ``r * unfreeze_every`` on. Before that its gradient is zeroed
  (so clipping sees only what trains) and its optimizer state does not move, so it starts as a fresh Adam:
  a frozen group's parameters stay bit-for-bit what they were. Which groups train is a function of the step
  held in the optimizer state, so a resumed run is exact across an unfreezing boundary.
* slanted-triangular and one-cycle schedules (``schedule``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxsenti.config import OptimConfig

STLR_RATIO = 32  # slanted triangular: the lowest rate is lr / 32 (ULMFiT's ratio)


def lr_schedule(cfg: OptimConfig, total_steps: int) -> optax.Schedule:
    warmup = int(cfg.warmup_ratio * total_steps)
    decay_steps = max(total_steps - warmup, 1)
    if cfg.schedule == "one_cycle":
        return optax.cosine_onecycle_schedule(max(total_steps, 1), cfg.lr, pct_start=max(cfg.warmup_ratio, 1e-6))
    if cfg.schedule == "constant":
        after = optax.constant_schedule(cfg.lr)
    elif cfg.schedule == "linear":
        after = optax.linear_schedule(cfg.lr, 0.0, decay_steps)
    elif cfg.schedule == "cosine":
        after = optax.cosine_decay_schedule(cfg.lr, decay_steps)
    elif cfg.schedule == "slanted_triangular":
        start = cfg.lr / STLR_RATIO
        after = optax.linear_schedule(cfg.lr, start, decay_steps)
        if warmup:
            return optax.join_schedules([optax.linear_schedule(start, cfg.lr, warmup), after], [warmup])
        return after
    else:
        raise ValueError(f"unknown schedule {cfg.schedule!r}; use constant, linear, cosine, slanted_triangular or one_cycle")
    if warmup == 0:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, cfg.lr, warmup), after], [warmup])


def decay_mask(params):
    """Weight decay on matrices only: biases and LayerNorm scales/offsets (1-D) are excluded."""
    return jax.tree.map(lambda p: p.ndim > 1, params)


def uses_layer_groups(cfg: OptimConfig) -> bool:
    return cfg.layer_lr_decay != 1.0 or cfg.unfreeze_every > 0


def _names(path) -> tuple[str, ...]:
    return tuple(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path)


INPUT_GROUP = ("embed", "embeddings")  # names of the input layer's parameters in this project's models


def stacked_layer_group(path: tuple[str, ...]) -> int:
    """The layer groups of a stacked model (LSTM, BERT): 0 its input embedding (``embed``/``embeddings``),
    k+1 the k-th entry of its ``layers``, and everything else (pooler, head) on top."""
    if any(name in path for name in INPUT_GROUP):
        return 0
    if "layers" in path:
        return int(path[path.index("layers") + 1]) + 1
    return 1 << 20


def layer_ranks(params, layer_group: Callable[[tuple[str, ...]], int]):
    """Each parameter's group rank, counted from the top (0: the group nearest the output)."""
    depths = jax.tree_util.tree_map_with_path(lambda path, _: int(layer_group(_names(path))), params)
    levels = sorted(set(jax.tree.leaves(depths)), reverse=True)
    return jax.tree.map(levels.index, depths)


def group_schedule(cfg: OptimConfig, steps_per_epoch: int, groups: int) -> list[tuple[float, int]]:
    """(rate multiplier, first trainable step) of each group rank, top first: what the optimizer applies."""
    return [(cfg.layer_lr_decay ** r, r * cfg.unfreeze_every * steps_per_epoch) for r in range(groups)]


class HoldState(NamedTuple):
    count: jax.Array
    inner: optax.OptState


def hold_until(start_step: int, inner: optax.GradientTransformation) -> optax.GradientTransformation:
    """``inner`` from step ``start_step`` on; before it: zero updates, ``inner``'s state unchanged (a frozen group)."""
    def init(params):
        return HoldState(jnp.zeros((), jnp.int32), inner.init(params))

    def update(updates, state, params=None):
        new, inner_state = inner.update(updates, state.inner, params)
        live = state.count >= start_step
        new = jax.tree.map(lambda u: jnp.where(live, u, jnp.zeros_like(u)), new)
        inner_state = jax.tree.map(lambda n, o: jnp.where(live, n, o), inner_state, state.inner)
        return new, HoldState(optax.safe_increment(state.count), inner_state)

    return optax.GradientTransformation(init, update)


def freeze_gradients(starts: list[int], layer_group) -> optax.GradientTransformation:
    """Zero the gradient of every group rank r before its step ``starts[r]`` (before clipping: a frozen group
    does not shrink the others' clipped gradients)."""
    def init(params):
        return optax.ScaleByScheduleState(jnp.zeros((), jnp.int32))

    def update(updates, state, params=None):
        ranks = layer_ranks(updates, layer_group)
        live = jax.tree.map(lambda r: state.count >= starts[r], ranks)
        updates = jax.tree.map(lambda u, ok: jnp.where(ok, u, jnp.zeros_like(u)), updates, live)
        return updates, optax.ScaleByScheduleState(optax.safe_increment(state.count))

    return optax.GradientTransformation(init, update)


def _update_rule(cfg: OptimConfig) -> optax.GradientTransformation:
    """The optimizer without its learning rate (as optax builds adamw, adam and sgd)."""
    if cfg.name == "adamw":
        return optax.chain(optax.scale_by_adam(b1=cfg.b1, b2=cfg.b2),
                           optax.add_decayed_weights(cfg.weight_decay, mask=decay_mask))
    if cfg.name == "adam":
        return optax.scale_by_adam(b1=cfg.b1, b2=cfg.b2)
    return optax.trace(decay=cfg.b1) if cfg.b1 else optax.identity()


def make_optimizer(cfg: OptimConfig, total_steps: int, schedule: optax.Schedule | None = None, *,
                   layer_group: Callable[[tuple[str, ...]], int] | None = None, steps_per_epoch: int = 1,
                   params=None) -> optax.GradientTransformation:
    """``layer_group`` (the model's registry entry) and ``params`` (the model's, for how many groups there are)
    are needed by the recipe only."""
    lr = schedule if schedule is not None else lr_schedule(cfg, total_steps)
    if cfg.name not in ("adamw", "adam", "sgd"):
        raise ValueError(f"unknown optimizer {cfg.name!r}; use adamw, adam or sgd")
    clip = [optax.clip_by_global_norm(cfg.clip_norm)] if cfg.clip_norm else []
    if not uses_layer_groups(cfg):
        if cfg.name == "adamw":
            opt = optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, weight_decay=cfg.weight_decay, mask=decay_mask)
        elif cfg.name == "adam":
            opt = optax.adam(lr, b1=cfg.b1, b2=cfg.b2)
        else:
            opt = optax.sgd(lr, momentum=cfg.b1)
        return optax.chain(*clip, opt) if clip else opt
    if layer_group is None or params is None:
        raise ValueError("optim.layer_lr_decay / optim.unfreeze_every need the model's layer groups "
                         "(its registry entry's layer_group)")
    plan = group_schedule(cfg, steps_per_epoch, len(set(jax.tree.leaves(layer_ranks(params, layer_group)))))
    per_group = {r: optax.chain(hold_until(start, _update_rule(cfg)) if start else _update_rule(cfg), optax.scale(mult))
                 for r, (mult, start) in enumerate(plan)}
    return optax.chain(freeze_gradients([s for _, s in plan], layer_group), *clip,
                       optax.multi_transform(per_group, lambda p: layer_ranks(p, layer_group)),
                       optax.scale_by_learning_rate(lr))
