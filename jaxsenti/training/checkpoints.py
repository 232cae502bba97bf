"""Orbax checkpoints of a run: the resumable train state (``state/<step>``) and the best parameters (``best``).

Both survive a kill at any moment: orbax writes each step into a temporary folder and renames it
when complete, and the best parameters are written beside ``best`` and swapped in with
:func:`jaxsenti.atomic.replace_dir`, so the previous best stays until the new one is whole. A
damaged step (a truncated file) is reported by folder; resuming falls back to the newest step
that still restores, and says so.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import jax
import orbax.checkpoint as ocp

from jaxsenti.atomic import recover_dir, replace_dir
from jaxsenti.training.sharding import fetch, is_primary, sync
from jaxsenti.training.steps import TrainState


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be restored; the message names it."""


def _arrays(state: TrainState) -> dict:
    return {"step": state.step, "params": state.params, "opt_state": state.opt_state, "rng": state.rng}


def _reason(e: Exception) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"


class Checkpoints:
    """Orbax managers for the resumable train state and for the best parameters."""

    def __init__(self, directory: Path, keep: int = 2):
        self.directory = Path(directory).absolute()
        recover_dir(self.directory / "best")  # finish or undo a swap that a kill cut in half
        self.manager = ocp.CheckpointManager(self.directory / "state", options=ocp.CheckpointManagerOptions(max_to_keep=keep))
        self.best = ocp.StandardCheckpointer()

    def save(self, state: TrainState, meta: dict) -> None:
        """The train state plus ``meta`` (JSON: position in the epoch, history, running sums)."""
        step = int(fetch(state.step))
        self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(_arrays(state)), meta=ocp.args.JsonSave(meta)),
                          force=True)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def restore_latest(self, template: TrainState) -> tuple[TrainState, dict] | None:
        """The newest checkpoint that restores, each array with the sharding of ``template``'s (any mesh).

        None when there is none; a damaged newer step is skipped with a message, and if every step
        is damaged a :class:`CheckpointError` names the folder.
        """
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _arrays(template))
        damaged = []
        for step in sorted(self.manager.all_steps(), reverse=True):
            try:
                r = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                                       meta=ocp.args.JsonRestore()))
            except Exception as e:  # noqa: BLE001 - orbax/tensorstore raise many types for a damaged file
                damaged.append(f"step {step} ({_reason(e)})")
                continue
            if damaged and is_primary():
                print(f"[jaxsenti] {self.directory / 'state'}: damaged checkpoint(s) {'; '.join(damaged)} removed; "
                      f"resuming from step {step}", file=sys.stderr)
                for bad in self.manager.all_steps():
                    if bad > step:
                        self.manager.delete(bad)  # its step number comes again: orbax will not write over it
            return template.replace(**r.state), r.meta
        if damaged:
            raise CheckpointError(f"{self.directory / 'state'}: every checkpoint is damaged ({'; '.join(damaged)}); "
                                  "start again without --resume (or with --overwrite)")
        return None

    def save_best(self, params) -> None:
        """Write the parameters beside ``best`` and swap them in whole (the old best survives a kill)."""
        staging = self.directory / "best.incoming"
        if staging.exists():
            shutil.rmtree(staging)
        self.best.save(staging, params)
        self.best.wait_until_finished()
        if is_primary():
            replace_dir(staging, self.directory / "best")
        sync("jaxsenti-best")  # every process sees the new best before anyone reads it

    def restore_best(self, template_params):
        self.best.wait_until_finished()
        path = self.directory / "best"
        if not path.is_dir():
            raise CheckpointError(f"{path} is missing: the run never finished an epoch; train again or `--resume` it")
        try:
            return self.best.restore(path, jax.tree.map(ocp.utils.to_shape_dtype_struct, template_params))
        except Exception as e:  # noqa: BLE001 - a truncated or foreign file: name the folder, not orbax's internals
            raise CheckpointError(f"{path} is damaged and cannot be restored ({_reason(e)}); train the model again, "
                                  "or `jaxsenti train ... --resume` to continue from the last state checkpoint") from None

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.best.wait_until_finished()
        self.manager.close()
        self.best.close()
