"""Orbax checkpoints of a run: the resumable train state (``state/<step>``) and the best parameters (``best``).

Both survive a kill at any moment: orbax writes each step into a temporary folder and renames it
when complete, and the best parameters are written beside ``best`` and swapped in with
:func:`jaxsenti.atomic.replace_dir`, so the previous best stays until the new one is whole. Ctrl-C
during a save takes effect once the save is complete. A full disk is one :class:`DiskFullError`
naming the folder; the partial write is removed and the earlier checkpoints are kept. A damaged step
(a truncated file) is reported by folder; resuming falls back to the newest step that still
restores, and says so. Parameters whose shapes differ from the model's (a hand-edited
``config.json``) are refused before anything is read, naming the array.
"""

from __future__ import annotations

import shutil
import signal
import sys
import threading
from pathlib import Path

import jax
import orbax.checkpoint as ocp

from jaxsenti.atomic import DiskFullError, disk_full, recover_dir, replace_dir
from jaxsenti.training.sharding import fetch, is_primary, sync
from jaxsenti.training.steps import TrainState


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be restored; the message names it."""


class HoldInterrupts:
    """``with HoldInterrupts():`` Ctrl-C within the block takes effect when it ends (as the handler it
    replaced would have), so a checkpoint is never cut half-way. Outside the main thread it does nothing."""

    def __enter__(self):
        self.caught = []
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.getsignal(signal.SIGINT)
            if self.previous is not None:  # None: set outside Python, and could not be put back
                signal.signal(signal.SIGINT, lambda signum, frame: self.caught.append(frame))
        return self

    def __exit__(self, exc_type, exc, tb):
        if self.previous is None:
            return False
        signal.signal(signal.SIGINT, self.previous)
        if self.caught and exc_type is None:  # an error in flight is reported instead; the run stops either way
            if callable(self.previous):
                self.previous(signal.SIGINT, self.caught[0])
            elif self.previous == signal.SIG_DFL:
                raise KeyboardInterrupt
        return False


def _arrays(state: TrainState) -> dict:
    return {"step": state.step, "params": state.params, "opt_state": state.opt_state, "rng": state.rng}


def _reason(e: Exception) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"


def _shapes(tree) -> dict[str, tuple]:
    """``{"layers.0.fwd.w_ih": shape}`` for each array of a parameter tree or of orbax's metadata of one."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        keys = [str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path]
        if keys and keys[-1] == "value":  # nnx.Param's own field, not part of the name
            keys.pop()
        out[".".join(keys)] = tuple(leaf.shape)
    return out


def _disagreement(saved: dict, expected: dict) -> str | None:
    """The first difference between the saved arrays and the model's, and how many more there are."""
    problems = [f"{k} is {saved[k]} in the weights but {v} by the config" for k, v in expected.items()
                if k in saved and tuple(saved[k]) != tuple(v)]
    problems += [f"the weights have no {k} {v}" for k, v in expected.items() if k not in saved]
    problems += [f"the weights hold {k} {v}, which the config's model has not" for k, v in saved.items() if k not in expected]
    if not problems:
        return None
    return problems[0] + (f" (and {len(problems) - 1} more difference(s))" if len(problems) > 1 else "")


def restore_params(path: str | Path, template, *, config: str | Path | None = None):
    """The parameters saved in the orbax folder ``path``, shaped and placed like ``template``.

    A missing or unreadable folder is a :class:`CheckpointError` naming it. Shapes are compared
    with ``template`` from orbax's metadata before any array is read, so a model built from an edited
    ``config`` (the file it was built from) is refused, naming the array and both shapes.
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path} is missing (no epoch of the run finished, or it was removed); train again or "
                              "`--resume` the run")

    def damaged(why: str) -> CheckpointError:
        return CheckpointError(f"{path} is damaged and cannot be restored ({why}); train the model again")

    checkpointer = ocp.StandardCheckpointer()
    try:
        try:
            listed = checkpointer.metadata(path.absolute()).item_metadata
        except Exception as e:  # noqa: BLE001 - a truncated or foreign file: name the folder, not orbax's internals
            raise damaged(_reason(e)) from None
        # None: orbax could not list the arrays (e.g. an emptied _sharding) yet may still read them, so try.
        saved, expected = (None if listed is None else _shapes(listed)), _shapes(template)
        if saved is not None and not saved.keys() & expected.keys():  # an emptied index lists nothing
            raise damaged(f"it lists none of the model's {len(expected)} arrays")
        if saved is not None and (diff := _disagreement(saved, expected)) is not None:
            source = config or "the model's config"
            raise CheckpointError(f"{source} and the weights saved in {path} disagree: {diff}; retrain the model, "
                                  f"or restore the config it was trained with")
        try:
            return checkpointer.restore(path.absolute(), jax.tree.map(ocp.utils.to_shape_dtype_struct, template))
        except Exception as e:  # noqa: BLE001
            raise damaged(_reason(e)) from None
    finally:
        checkpointer.close()


class Checkpoints:
    """Orbax managers for the resumable train state and for the best parameters."""

    def __init__(self, directory: Path, keep: int = 2):
        self.directory = Path(directory).absolute()
        recover_dir(self.directory / "best")  # finish or undo a swap that a kill cut in half
        # cleanup_tmp_directories: a save that a kill cut short leaves a temporary folder; it is removed here.
        self.manager = ocp.CheckpointManager(self.directory / "state", options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, cleanup_tmp_directories=True))
        self.best = ocp.StandardCheckpointer()
        self.closed = False

    def _write_failed(self, e: Exception, what: str) -> None:
        """Raise ``e`` as it is, or, when the disk is full, one line naming the folder once the partial write is gone."""
        if not disk_full(e):
            raise e
        for wait in (self.manager.wait_until_finished, self.best.wait_until_finished):
            try:
                wait()  # orbax's writers must be done before their temporary folders go
            except Exception:  # noqa: BLE001 - the same failure, already being reported
                pass
        if is_primary():
            partial = [self.directory / "best.incoming", *self.directory.glob("best.incoming.orbax-checkpoint-tmp*"),
                       *(self.directory / "state").glob("*.orbax-checkpoint-tmp*")]
            for p in partial:
                shutil.rmtree(p, ignore_errors=True)
        raise DiskFullError(f"the disk is full: no space left to save {what} in {self.directory}; free some space "
                            "and run again") from None

    def save(self, state: TrainState, meta: dict) -> None:
        """The train state plus ``meta`` (JSON: position in the epoch, history, running sums)."""
        step = int(fetch(state.step))
        try:
            with HoldInterrupts():
                self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(_arrays(state)),
                                                                meta=ocp.args.JsonSave(meta)), force=True)
        except Exception as e:  # noqa: BLE001 - orbax reports a full disk as OSError or ValueError
            self._write_failed(e, f"the train state of step {step}")

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
        try:
            with HoldInterrupts():
                if staging.exists():
                    shutil.rmtree(staging)
                self.best.save(staging, params)
                self.best.wait_until_finished()
                if is_primary():
                    replace_dir(staging, self.directory / "best")
        except Exception as e:  # noqa: BLE001
            self._write_failed(e, "the best parameters")
        sync("jaxsenti-best")  # every process sees the new best before anyone reads it

    def restore_best(self, template_params):
        self.best.wait_until_finished()
        return restore_params(self.directory / "best", template_params)

    def close(self, *, quiet: bool = False) -> None:
        """Wait for the save in flight (so it is whole) and stop orbax's threads; idempotent.

        A failed save is raised (a full disk as :class:`DiskFullError`) unless ``quiet``: on the way out
        of another error, that error is the one to report.
        """
        if self.closed:
            return
        self.closed = True
        errors = []
        for call in (self.manager.wait_until_finished, self.best.wait_until_finished, self.manager.close, self.best.close):
            try:
                call()
            except Exception as e:  # noqa: BLE001 - the rest must still close
                errors.append(e)
        if errors and not quiet:
            self._write_failed(errors[0], "a checkpoint")
