"""Next-word language modelling over per-review sequences (pretraining for the LSTM classifier)."""

from __future__ import annotations

import dataclasses
import math
from types import MappingProxyType

import jax.numpy as jnp
import optax

from jaxsenti.objectives.base import mean_of


@dataclasses.dataclass(frozen=True)
class NextWordLM:
    """Cross-entropy of each next word; the model is a ``models.lstm_lm.LSTMLanguageModel``.

    Batch (``data.lm_corpus.LMBatches``): ``tokens`` int32[B, T] (0 = pad), ``lengths`` int32[B],
    ``targets`` int32[B, T] (the next word, ``<eos>`` after a review's last word),
    ``target_weights`` float32[B, T] (0 at padding) and ``weights`` float32[B] (0 for filler rows).
    The loss averages over predicted words (``weight`` = their number).

    ``num_sampled`` > 0 trains with a sampled softmax over that many shared candidates
    (``LSTMLanguageModel.sampled_logits``); its training loss and accuracy are those of the sampled
    problem (lower than the true ones). Evaluation (``deterministic=True``) always uses the full
    softmax, so ``val_loss``/``val_perplexity`` are exact and comparable across output modes.
    Outputs: each row's summed loss, float32[B] (the per-review log-likelihood in evaluation).
    """

    num_sampled: int = 0
    batch_keys: tuple = ("tokens", "lengths", "targets", "target_weights", "weights")
    monitors = MappingProxyType({"loss": "min", "accuracy": "max"})

    def __post_init__(self):
        if self.num_sampled < 0:
            raise ValueError(f"num_sampled must be >= 0 (0 = full softmax), got {self.num_sampled}")

    @staticmethod
    def _target_weights(batch):
        return batch["target_weights"] * batch["weights"][:, None]

    def weight(self, batch):
        return jnp.sum(self._target_weights(batch))

    def __call__(self, model, batch, *, deterministic: bool, rngs=None):
        h = model.hidden(batch["tokens"], batch["lengths"], deterministic=deterministic, rngs=rngs)  # [T, B, H]
        seq_len, rows, _ = h.shape
        # Positions flattened time-major (as the LSTM emits them); only targets/weights are transposed.
        # All B*T positions get logits: a jitted step needs a static count, and no smaller static
        # capacity is safe for every batch; length buckets keep the padding share low instead
        # (14.7 % with LMBatches' default buckets on the default corpus).
        z = model.output_vectors(h.reshape(seq_len * rows, -1))
        targets = batch["targets"].T.reshape(-1)
        w = self._target_weights(batch).T.reshape(-1).astype(jnp.float32)
        if deterministic or self.num_sampled == 0:
            logits, labels = model.full_logits(z), targets
        else:
            if rngs is None:
                raise ValueError("sampled-softmax training needs rngs (a 'dropout' stream) to draw candidates")
            logits = model.sampled_logits(z, targets, rngs.dropout(), self.num_sampled)
            labels = jnp.zeros_like(targets)  # the target is column 0
        per_pos = optax.softmax_cross_entropy_with_integer_labels(logits, labels) * w
        correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32) * w
        sums = {"loss_sum": jnp.sum(per_pos), "correct": jnp.sum(correct), "count": jnp.sum(w)}
        per_row = jnp.sum(per_pos.reshape(seq_len, rows), axis=0)
        return sums["loss_sum"], sums, per_row

    def summarise(self, sums):
        loss = mean_of(sums, "loss_sum")
        return {"loss": loss, "accuracy": mean_of(sums, "correct"), "perplexity": math.exp(min(loss, 700.0))}
