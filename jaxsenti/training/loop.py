"""Epoch loop: bucketed batches → jitted step, on-device metric sums, early stopping, orbax checkpoints.

Resuming is exact: the batch order is a pure function of (seed, epoch), dropout keys are
``fold_in(rng, step)``, and a checkpoint holds the train state, the position in the epoch
and the epoch's running metric sums, so an interrupted run that is resumed ends with the
same parameters and metrics as one that was never interrupted.

Data parallel by default: ``fit`` places the state on a ``("data",)`` mesh of every visible
device (``mesh_devices`` picks the first N; ``fsdp`` shards large params) and shards each
batch along rows; see ``jaxsenti.training.sharding``. ``batch_size`` is the *global* number of
real examples per optimizer step; the device batch is padded with weight-0 rows up to a
multiple of ``devices x grad_accum_steps``, so results do not depend on the device count
(beyond float summation order). On one device the numbers are those of a plain ``jax.jit``.
Checkpoints hold global arrays (orbax writes each shard once) and restore onto whatever mesh
the template state lives on, so a run saved on 8 devices resumes on 1 and vice versa.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxsenti.training.batching import iterate_batches, num_batches
from jaxsenti.training.sharding import Layout, fetch, is_primary, sync
from jaxsenti.training.steps import TrainState, jit_eval_step, jit_train_step, shard_state

_DEVICE_KEYS = ("tokens", "lengths", "labels", "weights")


@dataclasses.dataclass
class Encoded:
    """A split after encoding: variable-length token id arrays and 0/1 labels."""

    seqs: list[np.ndarray]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.seqs)


@dataclasses.dataclass
class FitResult:
    state: TrainState
    best_params: object
    history: list[dict]
    best_epoch: int
    steps: int
    seconds: float
    interrupted: bool = False


def _device_batch(batch, state: TrainState | None = None, train: bool = False):
    """The arrays the step needs; under a layout, padded to the device multiple and sharded along rows."""
    out = {k: batch[k] for k in _DEVICE_KEYS}
    if state is None or state.layout is None:
        return out
    return state.layout.put_batch(out, multiple=state.grad_accum_steps if train else 1)


def _step(state: TrainState) -> int:
    return int(fetch(state.step))


def _add(acc, m):
    return m if acc is None else jax.tree.map(lambda a, b: a + b, acc, m)


def _summarise(sums, prefix: str) -> dict:
    sums = {k: float(v) for k, v in fetch(sums).items()}
    n = max(sums["count"], 1.0)
    return {f"{prefix}_loss": sums["loss_sum"] / n, f"{prefix}_accuracy": sums["correct"] / n}


def evaluate(state: TrainState, data: Encoded, batch_size: int, buckets: Sequence[int]) -> tuple[dict, np.ndarray]:
    """Loss/accuracy over every example (partial batches are masked, not dropped) and P(positive) per example."""
    sums, outs = None, []
    for batch in iterate_batches(data.seqs, data.labels, batch_size, buckets):
        m, logits = jit_eval_step(state, _device_batch(batch, state))
        sums = _add(sums, m)
        outs.append((batch["index"], logits))
    probs = np.zeros(len(data), np.float32)
    for idx, logits in fetch(outs):  # one transfer for the whole split
        logits = logits[: len(idx)]  # rows past the plan's batch are device-multiple filler
        keep = idx >= 0
        probs[idx[keep]] = 1.0 / (1.0 + np.exp(-logits[keep]))
    return _summarise(sums, "eval"), probs


class Checkpoints:
    """Orbax managers for the resumable train state and for the best parameters."""

    def __init__(self, directory: Path, keep: int = 2):
        self.directory = Path(directory).absolute()
        self.manager = ocp.CheckpointManager(self.directory / "state", options=ocp.CheckpointManagerOptions(max_to_keep=keep))
        self.best = ocp.StandardCheckpointer()

    @staticmethod
    def _arrays(state: TrainState) -> dict:
        return {"step": state.step, "params": state.params, "opt_state": state.opt_state, "rng": state.rng}

    def save(self, state: TrainState, meta: dict) -> None:
        step = _step(state)
        self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(self._arrays(state)), meta=ocp.args.JsonSave(meta)), force=True)

    def restore_latest(self, template: TrainState) -> tuple[TrainState, dict] | None:
        """The latest checkpoint, each array restored with the sharding of ``template``'s (any mesh)."""
        step = self.manager.latest_step()
        if step is None:
            return None
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, self._arrays(template))
        r = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
        return template.replace(**r.state), r.meta

    def save_best(self, params) -> None:
        self.best.save(self.directory / "best", params, force=True)

    def restore_best(self, template_params):
        self.best.wait_until_finished()
        return self.best.restore(self.directory / "best", jax.tree.map(ocp.utils.to_shape_dtype_struct, template_params))

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.best.wait_until_finished()
        self.manager.close()
        self.best.close()


def _improved(monitor: str, value: float, best: float | None) -> bool:
    if best is None:
        return True
    return value < best if monitor == "val_loss" else value > best


def fit(state: TrainState, train: Encoded, val: Encoded, *, epochs: int, batch_size: int, eval_batch_size: int,
        buckets: Sequence[int], seed: int, out_dir: Path, patience: int = 3, monitor: str = "val_loss",
        log_every: int = 10, checkpoint_every: int = 0, resume: bool = False, stop_after_steps: int | None = None,
        progress: bool = True, mesh_devices: int | None = None, fsdp: bool = False) -> FitResult:
    """Train with early stopping on ``monitor``; the best parameters are kept in ``out_dir/checkpoints/best``.

    ``stop_after_steps`` simulates an interruption: a checkpoint is written and training returns.
    A state without a layout is placed on ``Layout.create(mesh_devices, fsdp=fsdp)`` (all visible
    devices by default); a state that already carries one (``steps.shard_state``) keeps it.
    """
    from tqdm.auto import tqdm

    if state.layout is None:
        state = shard_state(state, Layout.create(mesh_devices, fsdp=fsdp))
    progress = progress and is_primary()
    if not resume:
        if is_primary() and (Path(out_dir) / "checkpoints").exists():
            shutil.rmtree(Path(out_dir) / "checkpoints")  # a fresh run must not resume from an older run's steps
        sync("jaxsenti-fresh-checkpoints")  # every process, whatever it saw on disk (no-op on one process)
    ckpt = Checkpoints(Path(out_dir) / "checkpoints")
    steps_per_epoch = num_batches(train.seqs, batch_size, buckets)
    meta = {"epoch": 0, "batch": 0, "history": [], "best": None, "best_epoch": -1, "bad_epochs": 0, "sums": None, "seconds": 0.0}
    if resume and (restored := ckpt.restore_latest(state)) is not None:
        state, meta = restored
    t_start = time.perf_counter() - meta["seconds"]
    history = meta["history"]

    def snapshot(epoch, batch, sums):
        return meta | {"epoch": epoch, "batch": batch, "history": history, "seconds": time.perf_counter() - t_start,
                       "sums": None if sums is None else {k: float(v) for k, v in fetch(sums).items()}}

    try:
        for epoch in range(meta["epoch"], epochs):
            start = meta["batch"] if epoch == meta["epoch"] else 0
            sums = None
            if start and meta["sums"] is not None:
                sums = jax.tree.map(lambda v: np.float32(v), meta["sums"])
            bar = tqdm(total=steps_per_epoch, initial=start, desc=f"epoch {epoch + 1}/{epochs}", unit="batch",
                       disable=not progress, leave=False, dynamic_ncols=True)
            batches = iterate_batches(train.seqs, train.labels, batch_size, buckets, shuffle=True, seed=seed, epoch=epoch, start=start)
            for i, batch in enumerate(batches, start=start):
                state, m = jit_train_step(state, _device_batch(batch, state, train=True))
                m.pop("grad_norm")
                sums = _add(sums, m)
                bar.update(1)
                if progress and (i + 1) % log_every == 0:
                    s = _summarise(sums, "train")  # a small sync, only for the progress bar
                    bar.set_postfix(loss=f"{s['train_loss']:.4f}", acc=f"{s['train_accuracy']:.3f}")
                step = i + 1
                if stop_after_steps is not None and _step(state) >= stop_after_steps:
                    ckpt.save(state, snapshot(epoch, step, sums))
                    return FitResult(state, None, history, meta["best_epoch"], _step(state), time.perf_counter() - t_start, True)
                if checkpoint_every and _step(state) % checkpoint_every == 0 and step < steps_per_epoch:
                    ckpt.save(state, snapshot(epoch, step, sums))
            bar.close()
            row = {"epoch": epoch + 1, "step": _step(state)} | _summarise(sums, "train")
            val_metrics, _ = evaluate(state, val, eval_batch_size, buckets)
            row |= {"val_loss": val_metrics["eval_loss"], "val_accuracy": val_metrics["eval_accuracy"], "seconds": time.perf_counter() - t_start}
            history.append(row)
            if _improved(monitor, row[monitor], meta["best"]):
                meta["best"], meta["best_epoch"], meta["bad_epochs"] = row[monitor], epoch + 1, 0
                ckpt.save_best(state.params)
            else:
                meta["bad_epochs"] += 1
            if progress:
                tqdm.write(f"epoch {epoch + 1}: train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.3f} | "
                           f"val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.3f}")
            ckpt.save(state, snapshot(epoch + 1, 0, None))
            if patience and meta["bad_epochs"] >= patience:
                break
        best_params = ckpt.restore_best(state.params)
        return FitResult(state, best_params, history, meta["best_epoch"], _step(state), time.perf_counter() - t_start)
    except KeyboardInterrupt:
        # The state being stepped may already be donated, so the last written checkpoint is the resume point.
        if is_primary():
            print(f"\ninterrupted; `--resume` continues from the last checkpoint (step {ckpt.manager.latest_step()})")
        raise
    finally:
        ckpt.close()

