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

Two more static fields of the state change how the step runs, not what it computes:

* ``layout`` (a ``sharding.Layout`` or None): data parallelism over a device mesh. The batch is
  sharded along rows, the state replicated (or FSDP-sharded); the step pins its outputs to the
  layout so every call sees the same input shardings (no recompiles). None: whatever devices
  the inputs live on, exactly as a plain ``jax.jit``.
* ``grad_accum_steps`` (K): gradient accumulation *inside* the step. The batch of B rows is
  split into K strided microbatches (rows j, j+K, j+2K, ...; with data parallelism each
  microbatch stays spread over every device), a ``lax.scan`` sums the per-microbatch gradients
  of the weighted loss *sum*, and one division by the batch's total weight gives exactly the
  gradient of the full batch's weighted mean (up to float summation order; dropout masks differ
  since each microbatch draws its own). One optimizer update per call: the step count, the LR
  schedule and checkpoints are unchanged, and activation memory is that of B/K rows. (Chosen
  over ``optax.MultiSteps``, which would feed microbatches as separate calls, weight each
  microbatch equally whatever its count of weight-0 filler rows, and change the opt-state tree.)

Mixed precision: params, optimizer state and gradients are float32 whatever the model's
compute ``dtype``; with ``dtype="bfloat16"`` the models cast params to bf16 inside the forward
pass, so the gradients flow back through the casts into float32 (tests/test_precision.py).
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
    layout: Any = struct.field(pytree_node=False, default=None)  # sharding.Layout | None
    grad_accum_steps: int = struct.field(pytree_node=False, default=1)

    def model(self) -> nnx.Module:
        return nnx.merge(self.graphdef, self.params)


def create_train_state(model: nnx.Module, tx: optax.GradientTransformation, seed: int = 0, *,
                       grad_accum_steps: int = 1) -> TrainState:
    if grad_accum_steps < 1:
        raise ValueError(f"grad_accum_steps must be >= 1, got {grad_accum_steps}")
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
        grad_accum_steps=int(grad_accum_steps),
    )


def shard_state(state: TrainState, layout) -> TrainState:
    """The state placed on ``layout``'s mesh (replicated, or FSDP-sharded), carrying the layout."""
    return layout.place(state).replace(layout=layout)


def _metric_sums(loss_per_ex, logits, batch) -> dict[str, jax.Array]:
    w = batch["weights"]
    correct = ((logits > 0).astype(jnp.int32) == batch["labels"]).astype(jnp.float32)
    return {"loss_sum": jnp.sum(loss_per_ex * w), "correct": jnp.sum(correct * w), "count": jnp.sum(w)}


def _forward(params, state: TrainState, batch, dropout_key):
    model = nnx.merge(state.graphdef, params)
    logits = model(batch["tokens"], batch["lengths"], deterministic=False, rngs=nnx.Rngs(dropout=dropout_key))
    logits = logits.astype(jnp.float32)
    per_ex = optax.sigmoid_binary_cross_entropy(logits, batch["labels"].astype(jnp.float32))
    return per_ex, logits


def loss_fn(params, state: TrainState, batch, dropout_key):
    per_ex, logits = _forward(params, state, batch, dropout_key)
    loss = jnp.sum(per_ex * batch["weights"]) / jnp.maximum(jnp.sum(batch["weights"]), 1.0)
    return loss, (per_ex, logits)


def _accumulated_grads(state: TrainState, batch, dropout_key):
    """Gradient of the batch's weighted mean loss, summed over ``grad_accum_steps`` strided microbatches."""
    k = state.grad_accum_steps
    rows = batch["weights"].shape[0]
    if rows % k:
        raise ValueError(f"a batch of {rows} rows does not split into {k} microbatches")

    def split(x):  # [B, ...] -> [K, B/K, ...]; microbatch j holds rows j, j+K, j+2K, ...
        return jnp.swapaxes(x.reshape((rows // k, k) + x.shape[1:]), 0, 1)

    micro = jax.tree.map(split, batch)
    if state.layout is not None:
        micro = state.layout.constrain_batch(micro, axis=1)

    def sum_loss(params, mb, key):
        per_ex, logits = _forward(params, state, mb, key)
        return jnp.sum(per_ex * mb["weights"]), (per_ex, logits)

    def body(gsum, xs):
        mb, j = xs
        (_, aux), g = jax.value_and_grad(sum_loss, has_aux=True)(state.params, mb, jax.random.fold_in(dropout_key, j))
        return jax.tree.map(jnp.add, gsum, g), aux

    gsum = jax.tree.map(jnp.zeros_like, state.params)
    if state.layout is not None:
        gsum = state.layout.constrain(gsum)
    gsum, (per_ex, logits) = jax.lax.scan(body, gsum, (micro, jnp.arange(k)))
    total = jnp.maximum(jnp.sum(batch["weights"]), 1.0)
    grads = jax.tree.map(lambda g: g / total, gsum)
    unsplit = lambda x: jnp.swapaxes(x, 0, 1).reshape(rows)  # noqa: E731
    return grads, unsplit(per_ex), unsplit(logits)


def train_step(state: TrainState, batch) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer step; returns metric *sums* so the caller can accumulate on device."""
    if state.layout is not None:
        batch = state.layout.constrain_batch(batch)
    dropout_key = jax.random.fold_in(state.rng, state.step)
    if state.grad_accum_steps == 1:
        (_, (per_ex, logits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, state, batch, dropout_key)
    else:
        grads, per_ex, logits = _accumulated_grads(state, batch, dropout_key)
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = _metric_sums(per_ex, logits, batch)
    metrics["grad_norm"] = optax.tree.norm(grads)
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    if state.layout is not None:
        new_state = state.layout.constrain(new_state)
        metrics = state.layout.constrain_replicated(metrics)
    return new_state, metrics


def predict_logits(graphdef: nnx.GraphDef, params: nnx.State, tokens, lengths) -> jax.Array:
    return nnx.merge(graphdef, params)(tokens, lengths, deterministic=True).astype(jnp.float32)


def eval_step(state: TrainState, batch) -> tuple[dict[str, jax.Array], jax.Array]:
    """Metric sums and logits for one batch, no dropout (both replicated under a layout)."""
    if state.layout is not None:
        batch = state.layout.constrain_batch(batch)
    logits = predict_logits(state.graphdef, state.params, batch["tokens"], batch["lengths"])
    per_ex = optax.sigmoid_binary_cross_entropy(logits, batch["labels"].astype(jnp.float32))
    metrics = _metric_sums(per_ex, logits, batch)
    if state.layout is not None:
        metrics, logits = state.layout.constrain_replicated((metrics, logits))
    return metrics, logits


jit_train_step = jax.jit(train_step, donate_argnums=0)
jit_eval_step = jax.jit(eval_step)
