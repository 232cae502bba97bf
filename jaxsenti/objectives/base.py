"""The objective contract shared by every training objective (see ``Objective``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import jax


class Objective(Protocol):
    """What ``train_step``/``eval_step`` need from a training objective.

    * ``batch_keys``: the arrays of a host batch the step reads; only these go to the devices.
      Every key's leading axis is the batch row; rows added to fill a device multiple are all
      zeros, so an objective must give zero-weight rows no loss and no count.
    * ``monitors``: summary names early stopping may watch (as ``val_<name>``), each ``"min"`` or
      ``"max"``.
    * ``weight(batch)``: the number of units the loss averages over (real examples, masked tokens,
      predicted words), a float32 scalar. The step's loss is ``loss_sum / max(weight, 1)``; with
      gradient accumulation the microbatches' ``loss_sum`` gradients are summed and divided once by
      the whole batch's weight, which is the same gradient.
    * ``__call__(model, batch, deterministic=, rngs=)`` returns ``(loss_sum, sums, outputs)``:
      the weighted *sum* of the per-unit losses (differentiated), a dict of float32 metric sums
      that includes ``"loss_sum"`` and ``"count"`` (accumulated on device, fetched once per epoch)
      and per-row outputs for evaluation (e.g. logits) or ``None``.
    * ``summarise(sums)``: host-side means from accumulated sums, e.g. ``{"loss": .., "accuracy": ..}``;
      the loop prefixes them with ``train_``/``val_``.

    Implementations are frozen dataclasses (hashable, compared by value), so the jitted step
    compiles once per objective and batch shape.
    """

    batch_keys: tuple[str, ...]
    monitors: Mapping[str, str]

    def weight(self, batch: Mapping[str, jax.Array]) -> jax.Array: ...

    def __call__(self, model, batch: Mapping[str, jax.Array], *, deterministic: bool,
                 rngs) -> tuple[jax.Array, dict[str, jax.Array], Any]: ...

    def summarise(self, sums: Mapping[str, float]) -> dict[str, float]: ...


def mean_of(sums: Mapping[str, float], key: str) -> float:
    """``sums[key] / sums["count"]`` (0 when nothing was counted)."""
    return float(sums[key]) / max(float(sums["count"]), 1.0)
