"""Orbax checkpoints of a run: the resumable train state (``state/<step>``) and the best parameters (``best``)."""

from __future__ import annotations

from pathlib import Path

import jax
import orbax.checkpoint as ocp

from jaxsenti.training.sharding import fetch
from jaxsenti.training.steps import TrainState


def _arrays(state: TrainState) -> dict:
    return {"step": state.step, "params": state.params, "opt_state": state.opt_state, "rng": state.rng}


class Checkpoints:
    """Orbax managers for the resumable train state and for the best parameters."""

    def __init__(self, directory: Path, keep: int = 2):
        self.directory = Path(directory).absolute()
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
        """The latest checkpoint, each array restored with the sharding of ``template``'s (any mesh)."""
        step = self.manager.latest_step()
        if step is None:
            return None
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _arrays(template))
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
