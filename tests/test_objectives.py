"""The objective seam: a second objective trains through the same steps and loop, untouched.

``TokenRegression`` (predict a number per token) and its toy model live only in this file: adding
them needed no change to steps.py, loop.py or anything else, which is what the seam is for.
"""

import dataclasses
from types import MappingProxyType

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxsenti.config import TrainConfig
from jaxsenti.models.lstm import LSTMConfig
from jaxsenti.objectives import Classification
from jaxsenti.objectives.base import mean_of
from jaxsenti.training import steps
from jaxsenti.training.loop import fit


@dataclasses.dataclass(frozen=True)
class TokenRegression:
    """Squared error of one prediction per real token; ``monitors``: loss (min) and mae (min)."""

    batch_keys: tuple = ("tokens", "targets", "mask")
    monitors = MappingProxyType({"loss": "min", "mae": "min"})

    def weight(self, batch):
        return jnp.sum(batch["mask"])

    def __call__(self, model, batch, *, deterministic, rngs=None):
        pred = model(batch["tokens"])
        err = (pred - batch["targets"]) * batch["mask"]
        sums = {"loss_sum": jnp.sum(err**2), "abs_sum": jnp.sum(jnp.abs(err)), "count": jnp.sum(batch["mask"])}
        return sums["loss_sum"], sums, pred

    def summarise(self, sums):
        return {"loss": mean_of(sums, "loss_sum"), "mae": mean_of(sums, "abs_sum")}


class TokenValue(nnx.Module):
    def __init__(self, vocab: int, rngs: nnx.Rngs):
        self.embed = nnx.Embed(vocab, 8, rngs=rngs)
        self.out = nnx.Linear(8, 1, rngs=rngs)

    def __call__(self, tokens):
        return self.out(jnp.tanh(self.embed(tokens)))[..., 0]


class ToyBatches:
    """Token t's target is t / 10; ``mask`` 0 on padding; a pure function of (seed, epoch)."""

    def __init__(self, n_batches: int, seed: int, rows: int = 8, length: int = 12):
        self.n, self.seed, self.rows, self.length = n_batches, seed, rows, length

    def __len__(self):
        return self.n

    def epoch(self, epoch=0, start=0):
        rng = np.random.default_rng([self.seed, epoch])
        for i in range(self.n):
            tokens = rng.integers(1, 10, size=(self.rows, self.length)).astype(np.int32)
            mask = (np.arange(self.length)[None] < rng.integers(1, self.length + 1, size=(self.rows, 1))).astype(np.float32)
            if i >= start:
                yield {"tokens": tokens * mask.astype(np.int32), "targets": tokens / 10.0 * mask, "mask": mask}


def _state(seed=0):
    model = TokenValue(10, nnx.Rngs(seed))
    return steps.create_train_state(model, optax.adam(3e-2), TokenRegression(), seed=seed)


LOOP = TrainConfig(name="regression", model=LSTMConfig(), epochs=4, patience=0, monitor="val_mae", log_every=2)


def test_a_second_objective_trains_through_the_same_loop(tmp_path):
    res = fit(_state(), ToyBatches(6, seed=0), ToyBatches(2, seed=1), LOOP, out_dir=tmp_path, progress=False)
    assert [set(h) >= {"train_loss", "train_mae", "val_loss", "val_mae"} for h in res.history] == [True] * 4
    assert res.history[-1]["val_mae"] < res.history[0]["val_mae"] / 2
    assert res.best_epoch == 1 + int(np.argmin([h["val_mae"] for h in res.history]))


def test_second_objective_resumes_exactly(tmp_path):
    full = fit(_state(), ToyBatches(6, 0), ToyBatches(2, 1), LOOP, out_dir=tmp_path / "a", progress=False)
    fit(_state(), ToyBatches(6, 0), ToyBatches(2, 1), LOOP, out_dir=tmp_path / "b", progress=False, stop_after_steps=9)
    resumed = fit(_state(), ToyBatches(6, 0), ToyBatches(2, 1), LOOP, out_dir=tmp_path / "b", progress=False, resume=True)
    assert [h["train_loss"] for h in resumed.history] == pytest.approx([h["train_loss"] for h in full.history], rel=1e-6)
    for a, b in zip(jax.tree.leaves(resumed.state.params), jax.tree.leaves(full.state.params)):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_gradient_accumulation_matches_one_batch_for_any_objective():
    batch = next(ToyBatches(1, 0, rows=8).epoch(0))
    one = steps.jit_train_step(_state(), batch)
    acc = jax.jit(steps.train_step)(_state().replace(grad_accum_steps=4), batch)
    for a, b in zip(jax.tree.leaves(one[0].params), jax.tree.leaves(acc[0].params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for k in ("loss_sum", "abs_sum", "count"):
        np.testing.assert_allclose(one[1][k], acc[1][k], rtol=1e-5)


def test_objectives_are_hashable_static_fields():
    assert hash(Classification()) == hash(Classification()) and Classification() == Classification()
    assert hash(TokenRegression()) == hash(TokenRegression())
