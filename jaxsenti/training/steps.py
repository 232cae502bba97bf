"""Pure, jit-once train and eval steps over a functional NNX train state.

The model is split into a static ``GraphDef`` and a pytree of parameters; the state carries
both (the graphdef, optimizer and objective as static fields), so
``jax.jit(train_step, donate_argnums=0)`` compiles once per batch shape and reuses the state's
buffers in place.

What a step computes is the state's ``objective`` (:mod:`jaxsenti.objectives`): it reads the
batch keys it names, returns the weighted loss *sum*, metric sums and per-row outputs, and says
how many units (examples, masked tokens) the loss averages over. The step only differentiates,
averages, applies the optimizer and returns the metric sums, so the caller accumulates them on
device. ``trace_counts()`` says how often each step was traced (= compiled), a public way to
check that nothing recompiles per batch.

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

import collections
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct

_TRACES: collections.Counter = collections.Counter()  # step name -> times traced (diagnostics only)


def trace_counts() -> dict[str, int]:
    """How many times ``train_step`` and ``eval_step`` have been traced in this process (each trace is a compile)."""
    return dict(_TRACES)


@struct.dataclass
class TrainState:
    step: jax.Array
    params: nnx.State
    opt_state: Any
    rng: jax.Array
    graphdef: nnx.GraphDef = struct.field(pytree_node=False)
    tx: optax.GradientTransformation = struct.field(pytree_node=False)
    objective: Any = struct.field(pytree_node=False)  # a jaxsenti.objectives.Objective
    layout: Any = struct.field(pytree_node=False, default=None)  # sharding.Layout | None
    grad_accum_steps: int = struct.field(pytree_node=False, default=1)

    def model(self) -> nnx.Module:
        return nnx.merge(self.graphdef, self.params)


def create_train_state(model: nnx.Module, tx: optax.GradientTransformation, objective, *, seed: int = 0,
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
        objective=objective,
        grad_accum_steps=int(grad_accum_steps),
    )


def shard_state(state: TrainState, layout) -> TrainState:
    """The state placed on ``layout``'s mesh (replicated, or FSDP-sharded), carrying the layout."""
    return layout.place(state).replace(layout=layout)


def _objective_sum(params, state: TrainState, batch, dropout_key):
    """The objective's weighted loss sum, with (metric sums, outputs) as aux."""
    model = nnx.merge(state.graphdef, params)
    loss_sum, sums, outputs = state.objective(model, batch, deterministic=False, rngs=nnx.Rngs(dropout=dropout_key))
    return loss_sum, (sums, outputs)


def loss_fn(params, state: TrainState, batch, dropout_key):
    """The batch's mean loss (loss sum / weight), with the objective's metric sums as aux."""
    loss_sum, (sums, _) = _objective_sum(params, state, batch, dropout_key)
    return loss_sum / jnp.maximum(state.objective.weight(batch), 1.0), sums


def _accumulated_grads(state: TrainState, batch, dropout_key):
    """Gradient of the batch's mean loss, summed over ``grad_accum_steps`` strided microbatches, and the metric sums."""
    k = state.grad_accum_steps
    rows = next(iter(batch.values())).shape[0]
    if rows % k:
        raise ValueError(f"a batch of {rows} rows does not split into {k} microbatches")

    def split(x):  # [B, ...] -> [K, B/K, ...]; microbatch j holds rows j, j+K, j+2K, ...
        return jnp.swapaxes(x.reshape((rows // k, k) + x.shape[1:]), 0, 1)

    micro = jax.tree.map(split, batch)
    if state.layout is not None:
        micro = state.layout.constrain_batch(micro, axis=1)

    def body(carry, xs):
        gsum, msum = carry
        mb, j = xs
        (_, (sums, _)), g = jax.value_and_grad(_objective_sum, has_aux=True)(
            state.params, state, mb, jax.random.fold_in(dropout_key, j))
        return (jax.tree.map(jnp.add, gsum, g), jax.tree.map(jnp.add, msum, sums)), None

    gsum = jax.tree.map(jnp.zeros_like, state.params)
    if state.layout is not None:
        gsum = state.layout.constrain(gsum)
    first = jax.tree.map(lambda x: x[0], micro)
    msum = jax.tree.map(jnp.zeros_like, jax.eval_shape(lambda: _objective_sum(state.params, state, first, dropout_key)[1][0]))
    (gsum, sums), _ = jax.lax.scan(body, (gsum, msum), (micro, jnp.arange(k)))
    total = jnp.maximum(state.objective.weight(batch), 1.0)
    return jax.tree.map(lambda g: g / total, gsum), sums


def train_step(state: TrainState, batch) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer step; returns the objective's metric *sums* for on-device accumulation, and the step's
    gradient and parameter norms and non-finite flag (see :data:`STEP_STATS`).

    A step whose loss, gradients or new parameters are not finite changes neither the parameters nor the
    optimizer state (the step counter still advances): the state stays the last finite one, so the loop can
    stop with a clear message and nothing non-finite is ever checkpointed. Finite steps compute exactly
    what they did without this guard.
    """
    _TRACES["train_step"] += 1
    if state.layout is not None:
        batch = state.layout.constrain_batch(batch)
    dropout_key = jax.random.fold_in(state.rng, state.step)
    if state.grad_accum_steps == 1:
        (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, state, batch, dropout_key)
    else:
        grads, metrics = _accumulated_grads(state, batch, dropout_key)
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    grad_norm, param_norm = optax.tree.norm(grads), optax.tree.norm(params)
    finite = jnp.isfinite(metrics["loss_sum"]) & jnp.isfinite(grad_norm) & jnp.isfinite(param_norm)
    params, opt_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), (params, opt_state),
                                     (state.params, state.opt_state))
    metrics = dict(metrics, grad_norm=grad_norm, param_norm=param_norm, nonfinite=(~finite).astype(jnp.float32),
                   first_nonfinite=jnp.where(finite, jnp.inf, (state.step + 1).astype(jnp.float32)))
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    if state.layout is not None:
        new_state = state.layout.constrain(new_state)
        metrics = state.layout.constrain_replicated(metrics)
    return new_state, metrics


# Per-step values ``train_step`` adds to the objective's sums: not summed over an epoch like them.
# ``nonfinite`` (1.0 when the step was skipped) sums to a count, ``first_nonfinite`` (the step number, 1-based,
# of a skipped step, else inf) is combined with ``minimum``; the norms are the step's own.
STEP_STATS = ("grad_norm", "param_norm", "nonfinite", "first_nonfinite")


def eval_step(state: TrainState, batch) -> tuple[dict[str, jax.Array], Any]:
    """The objective's metric sums and per-row outputs for one batch, no dropout (both replicated under a layout)."""
    _TRACES["eval_step"] += 1
    if state.layout is not None:
        batch = state.layout.constrain_batch(batch)
    _, sums, outputs = state.objective(state.model(), batch, deterministic=True, rngs=None)
    if state.layout is not None:
        sums, outputs = state.layout.constrain_replicated((sums, outputs))
    return sums, outputs


jit_train_step = jax.jit(train_step, donate_argnums=0)
jit_eval_step = jax.jit(eval_step)
