"""Masked-language-model pretraining: softmax cross-entropy over the vocabulary at the masked positions."""

from __future__ import annotations

import dataclasses
import math
from types import MappingProxyType

import jax.numpy as jnp
import optax

from jaxsenti.objectives.base import mean_of


@dataclasses.dataclass(frozen=True)
class MaskedLM:
    """``model(tokens, lengths, positions) -> logits float32[B, P, V]`` (:class:`~jaxsenti.models.bert_mlm.BertForMaskedLM`).

    Batch (:class:`jaxsenti.data.masking.MaskedLMBatches`): ``tokens`` int32[B, T] (masked input),
    ``lengths`` int32[B], ``positions`` int32[B, P], ``targets`` int32[B, P], ``target_weights``
    float32[B, P] (0 for unused prediction slots), ``weights`` float32[B] (0 for filler rows).
    The unit the loss averages over is one masked token. Outputs: None (the [B, P, V] logits are
    too large to return per batch; evaluation needs only the sums).
    """

    batch_keys: tuple = ("tokens", "lengths", "positions", "targets", "target_weights", "weights")
    monitors = MappingProxyType({"loss": "min", "accuracy": "max"})

    @staticmethod
    def _token_weights(batch):
        return batch["target_weights"] * batch["weights"][:, None]

    def weight(self, batch):
        return jnp.sum(self._token_weights(batch))

    def __call__(self, model, batch, *, deterministic: bool, rngs=None):
        logits = model(batch["tokens"], batch["lengths"], batch["positions"], deterministic=deterministic,
                       rngs=rngs).astype(jnp.float32)
        targets = batch["targets"]
        w = self._token_weights(batch)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
        loss_sum = jnp.sum(ce * w)
        correct = jnp.sum((jnp.argmax(logits, -1) == targets) * w)
        return loss_sum, {"loss_sum": loss_sum, "correct": correct, "count": jnp.sum(w)}, None

    def summarise(self, sums):
        loss = mean_of(sums, "loss_sum")
        return {"loss": loss, "accuracy": mean_of(sums, "correct"),
                "perplexity": math.exp(loss) if loss < 700 else math.inf}
