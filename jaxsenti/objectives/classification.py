"""Binary sentiment classification: one logit per review, sigmoid cross-entropy."""

from __future__ import annotations

import dataclasses
from types import MappingProxyType

import jax.numpy as jnp
import optax

from jaxsenti.objectives.base import mean_of


@dataclasses.dataclass(frozen=True)
class Classification:
    """``model(tokens, lengths) -> logits float32[B]``; labels 0/1; ``weights`` 0 marks filler rows.

    Batch: ``tokens`` int32[B, T] (0 = pad), ``lengths`` int32[B], ``labels`` int32[B],
    ``weights`` float32[B]. Outputs: the logits, P(positive) = sigmoid(logit).
    """

    batch_keys: tuple = ("tokens", "lengths", "labels", "weights")
    monitors = MappingProxyType({"loss": "min", "accuracy": "max"})

    def weight(self, batch):
        return jnp.sum(batch["weights"])

    def __call__(self, model, batch, *, deterministic: bool, rngs=None):
        logits = model(batch["tokens"], batch["lengths"], deterministic=deterministic, rngs=rngs).astype(jnp.float32)
        per_example = optax.sigmoid_binary_cross_entropy(logits, batch["labels"].astype(jnp.float32))
        w = batch["weights"]
        correct = ((logits > 0).astype(jnp.int32) == batch["labels"]).astype(jnp.float32)
        sums = {"loss_sum": jnp.sum(per_example * w), "correct": jnp.sum(correct * w), "count": jnp.sum(w)}
        return sums["loss_sum"], sums, logits

    def summarise(self, sums):
        return {"loss": mean_of(sums, "loss_sum"), "accuracy": mean_of(sums, "correct")}
