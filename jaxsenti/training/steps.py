"""Pure, jit-once train and eval steps over a functional NNX train state.

The model is split into a static ``GraphDef`` and a pytree of parameters; the state carries
both (the graphdef and optimizer as static fields), so ``jax.jit(train_step, donate_argnums=0)``
compiles once per batch shape and reuses the state's buffers in place.

A batch is a dict of arrays:
  tokens  int32[B, T]  right-padded token ids (0 = pad)
  lengths int32[B]     number of valid tokens per row (0 for filler rows)
  labels  int32[B]     0/1
  weights float32[B]   1 for real examples, 0 for filler rows that pad a partial batch
Models are called as ``model(tokens, lengths, deterministic=..., rngs=...)`` and return one
logit per example (float32[B]); probability of "positive" is ``sigmoid(logit)``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct


@struct.dataclass
class TrainState:
    step: jax.Array
    params: nnx.State
    opt_state: Any
    rng: jax.Array
    graphdef: nnx.GraphDef = struct.field(pytree_node=False)
    tx: optax.GradientTransformation = struct.field(pytree_node=False)

    def model(self) -> nnx.Module:
        return nnx.merge(self.graphdef, self.params)


def create_train_state(model: nnx.Module, tx: optax.GradientTransformation, seed: int = 0) -> TrainState:
    rest = nnx.state(model, nnx.Not(nnx.Param))
    if jax.tree.leaves(rest):
        raise ValueError(f"model has non-parameter state, which the functional train step does not carry: {rest}")
    graphdef, params = nnx.split(model, nnx.Param)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        rng=jax.random.PRNGKey(seed),  # raw uint32[2] key data: checkpoints store it as a plain array
        graphdef=graphdef,
        tx=tx,
    )


def _metric_sums(loss_per_ex, logits, batch) -> dict[str, jax.Array]:
    w = batch["weights"]
    correct = ((logits > 0).astype(jnp.int32) == batch["labels"]).astype(jnp.float32)
    return {"loss_sum": jnp.sum(loss_per_ex * w), "correct": jnp.sum(correct * w), "count": jnp.sum(w)}


def loss_fn(params, state: TrainState, batch, dropout_key):
    model = nnx.merge(state.graphdef, params)
    logits = model(batch["tokens"], batch["lengths"], deterministic=False, rngs=nnx.Rngs(dropout=dropout_key))
    logits = logits.astype(jnp.float32)
    per_ex = optax.sigmoid_binary_cross_entropy(logits, batch["labels"].astype(jnp.float32))
    loss = jnp.sum(per_ex * batch["weights"]) / jnp.maximum(jnp.sum(batch["weights"]), 1.0)
    return loss, (per_ex, logits)


def train_step(state: TrainState, batch) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer step; returns metric *sums* so the caller can accumulate on device."""
    dropout_key = jax.random.fold_in(state.rng, state.step)
    (loss, (per_ex, logits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, state, batch, dropout_key)
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = _metric_sums(per_ex, logits, batch)
    metrics["grad_norm"] = optax.tree.norm(grads)
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics


def predict_logits(graphdef: nnx.GraphDef, params: nnx.State, tokens, lengths) -> jax.Array:
    return nnx.merge(graphdef, params)(tokens, lengths, deterministic=True).astype(jnp.float32)


def eval_step(state: TrainState, batch) -> tuple[dict[str, jax.Array], jax.Array]:
    """Metric sums and logits for one batch, no dropout."""
    logits = predict_logits(state.graphdef, state.params, batch["tokens"], batch["lengths"])
    per_ex = optax.sigmoid_binary_cross_entropy(logits, batch["labels"].astype(jnp.float32))
    return _metric_sums(per_ex, logits, batch), logits


jit_train_step = jax.jit(train_step, donate_argnums=0)
jit_eval_step = jax.jit(eval_step)
