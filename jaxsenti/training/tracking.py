"""What a run reports while it trains: scalars to TensorBoard event files and to ``metrics.jsonl`` in the run folder.

One small interface, :class:`RunLog`, that the epoch loop calls; behind it a writer per destination:

* ``metrics.jsonl`` (always): one JSON object per line, ``{"step", "epoch", "kind": "train" | "epoch", ...}``,
  readable with nothing but ``json``; non-finite values are written as ``null`` (and said in the console).
* TensorBoard event files (``tensorboardX``, which needs neither TensorFlow nor PyTorch): tags ``train/loss``,
  ``train/lr``, ``val/accuracy``, ...; the resolved config and the hyperparameters as text.
  ``tensorboard --logdir runs/study`` shows every model folder of a study as its own run.
* Weights & Biases or MLflow, only when asked for (``--report-to wandb,mlflow``) and installed.

A resumed run continues the same files: ``metrics.jsonl`` loses the lines past the step it resumes from, and the
TensorBoard writer starts with ``purge_step`` so those points are dropped there too.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from pathlib import Path

METRICS_FILE = "metrics.jsonl"
DESTINATIONS = ("tensorboard", "jsonl", "wandb", "mlflow")
DEFAULT_REPORT_TO = ("tensorboard", "jsonl")


def _finite(values: dict) -> dict:
    return {k: (v if isinstance(v, (int, str)) or (isinstance(v, float) and math.isfinite(v)) else None)
            for k, v in values.items()}


def tag(kind: str, key: str) -> str:
    """The TensorBoard tag of a logged value: ``train/loss`` every ``log_every`` steps; per epoch ``val/accuracy``
    and ``train_epoch/loss``, so the validation curves sit together."""
    if "/" in key:
        return key
    if kind == "epoch":
        for prefix, group in (("val_", "val"), ("train_", "train_epoch")):
            if key.startswith(prefix):
                return f"{group}/{key.removeprefix(prefix)}"
    return f"{kind}/{key}"


class _Jsonl:
    def __init__(self, folder: Path, resume_step: int | None):
        self.path = folder / METRICS_FILE
        if resume_step is not None and self.path.is_file():  # drop what the interrupted run logged past its checkpoint
            keep = [line for line in self.path.read_text(encoding="utf-8").splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= resume_step]
            self.path.write_text("".join(f"{line}\n" for line in keep), encoding="utf-8")
        elif resume_step is None and self.path.exists():
            self.path.unlink()
        self.f = open(self.path, "a", encoding="utf-8")

    def scalars(self, step: int, kind: str, values: dict) -> None:
        self.f.write(json.dumps({"step": step, "kind": kind, **_finite(values)}, ensure_ascii=False, allow_nan=False) + "\n")
        self.f.flush()

    def text(self, tag: str, text: str) -> None:
        pass

    def close(self) -> None:
        self.f.close()


class _TensorBoard:
    def __init__(self, folder: Path, resume_step: int | None):
        from tensorboardX import SummaryWriter  # protobuf: a second to import, so only here

        import logging

        logging.getLogger("tensorboardX.x2num").setLevel(logging.ERROR)  # "NaN or Inf found": logged as such on purpose

        self.w = SummaryWriter(str(folder), purge_step=None if resume_step is None else resume_step + 1,
                               flush_secs=30)

    def scalars(self, step: int, kind: str, values: dict) -> None:
        if kind == "start":  # what the run runs on: text, not curves
            self.text("run/start", json.dumps(values, indent=1))
            return
        for k, v in values.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("step", "epoch", "seconds"):
                self.w.add_scalar(tag(kind, k), v, step)  # nan/inf shown as such

    def text(self, tag: str, text: str) -> None:
        self.w.add_text(tag, text.replace("\n", "  \n"), 0)

    def close(self) -> None:
        self.w.close()


class _Wandb:
    def __init__(self, folder: Path, resume_step: int | None):
        import wandb

        self.run = wandb.init(dir=str(folder), name=folder.name, resume="allow")

    def scalars(self, step: int, kind: str, values: dict) -> None:
        self.run.log({tag(kind, k): v for k, v in values.items() if k not in ("step", "epoch")}, step=step)

    def text(self, tag: str, text: str) -> None:
        self.run.summary[tag] = text

    def close(self) -> None:
        self.run.finish()


class _Mlflow:
    def __init__(self, folder: Path, resume_step: int | None):
        import mlflow

        self.mlflow = mlflow
        mlflow.start_run(run_name=folder.name)

    def scalars(self, step: int, kind: str, values: dict) -> None:
        self.mlflow.log_metrics({tag(kind, k).replace("/", "."): v for k, v in _finite(values).items()
                                 if isinstance(v, (int, float)) and k not in ("step", "epoch")}, step=step)

    def text(self, tag: str, text: str) -> None:
        self.mlflow.log_text(text, f"{tag}.txt")

    def close(self) -> None:
        self.mlflow.end_run()


_WRITERS = {"jsonl": _Jsonl, "tensorboard": _TensorBoard, "wandb": _Wandb, "mlflow": _Mlflow}


def check_report_to(report_to) -> tuple[str, ...]:
    """The destinations asked for, each known and (for the optional ones) installed; an error names what is not."""
    names = tuple(dict.fromkeys(report_to))
    unknown = [n for n in names if n not in DESTINATIONS]
    if unknown:
        raise ValueError(f"{', '.join(unknown)}: not one of {', '.join(DESTINATIONS)} (or none)")
    import importlib.util

    missing = [n for n in names if n in ("wandb", "mlflow") and importlib.util.find_spec(n) is None]
    if missing:
        raise ValueError(f"{', '.join(missing)}: not installed (pip install {' '.join(missing)})")
    return names


class RunLog:
    """The writers of one run folder; ``RunLog(None)`` writes nothing (other processes of a multi-host run)."""

    def __init__(self, folder: str | Path | None, report_to=DEFAULT_REPORT_TO, *, resume_step: int | None = None):
        self.writers = []
        if folder is None:
            return
        folder = Path(folder)
        for name in check_report_to(report_to):
            try:
                self.writers.append(_WRITERS[name](folder, resume_step))
            except ImportError as e:  # tensorboardX is a dependency, but a broken install should not stop training
                print(f"[jaxsenti] not writing {name} logs: {e}", file=sys.stderr)

    def scalars(self, step: int, kind: str, values: dict) -> None:
        for w in self.writers:
            w.scalars(step, kind, values)

    def text(self, tag: str, text: str) -> None:
        for w in self.writers:
            w.text(tag, text)

    def close(self) -> None:
        for w in self.writers:
            w.close()
        self.writers = []


@dataclasses.dataclass(frozen=True)
class Watch:
    """How a run is watched: where its scalars go (``--report-to``) and which steps are profiled (``--profile``)."""

    report_to: tuple[str, ...] = DEFAULT_REPORT_TO
    profile: tuple[int, int] | None = None  # (start step, number of steps): jax.profiler traces steps start+1..start+n


def parse_profile(raw: str) -> tuple[int, int]:
    """``START:N`` (trace N steps after step START) as a pair; a ValueError says what is expected."""
    parts = raw.split(":")
    try:
        start, n = (int(p) for p in parts) if len(parts) == 2 else (None, None)
    except ValueError:
        start = n = None
    if start is None or start < 0 or n < 1:
        raise ValueError(f"--profile {raw}: expected START:N, the step to start after (>= 0) and how many steps to "
                         "trace (>= 1), e.g. 10:5")
    return start, n


PROFILE_DIR = "profile"


class Profiler:
    """``jax.profiler`` traces of steps ``start+1 .. start+n`` into ``folder/profile`` (TensorBoard's profile plugin
    or XProf read it: ``tensorboard --logdir FOLDER`` → Profile, or ``xprof FOLDER/profile``)."""

    def __init__(self, folder: Path | None, window: tuple[int, int] | None):
        self.folder, self.window, self.active, self.done = folder, window, False, folder is None or window is None
        self.last_step = None

    def after_step(self, step: int, state) -> None:
        self.last_step = step
        if self.done:
            return
        import jax

        start, n = self.window
        if not self.active and start <= step < start + n:
            jax.block_until_ready(state)  # the trace holds whole steps, not the tail of the one before
            jax.profiler.start_trace(str(self.folder / PROFILE_DIR))
            self.active = True
        elif self.active and step >= start + n:
            self.stop(state)

    def stop(self, state=None, *, run_ended: bool = False) -> None:
        """End the trace (at the end of its window, or of the run: a shorter trace); say when none was taken."""
        if run_ended and not self.done and not self.active:
            self.done = True
            print(f"[jaxsenti] --profile {self.window[0]}:{self.window[1]}: the run ended at step {self.last_step}, "
                  "before the steps to trace; no profile written", file=sys.stderr)
        if self.active:
            import jax

            if state is not None:
                jax.block_until_ready(state)
            jax.profiler.stop_trace()
            self.active, self.done = False, True
            print(f"[jaxsenti] profile of steps {self.window[0] + 1}-{sum(self.window)} written to "
                  f"{self.folder / PROFILE_DIR} (view: tensorboard --logdir {self.folder}, Profile tab)", file=sys.stderr)


class Stopwatch:
    """Wall time between log points, on the host (the log point's fetch is the sync that makes it honest)."""

    def __init__(self):
        self.t = time.perf_counter()

    def lap(self) -> float:
        now = time.perf_counter()
        dt, self.t = now - self.t, now
        return dt


__all__ = ["DEFAULT_REPORT_TO", "DESTINATIONS", "METRICS_FILE", "PROFILE_DIR", "Profiler", "RunLog", "Stopwatch",
           "Watch", "check_report_to", "parse_profile"]
