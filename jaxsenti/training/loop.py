"""Epoch loop: batch source → jitted step, on-device metric sums, early stopping, orbax checkpoints.

The loop knows nothing about the task: the train state's objective says which batch keys go to
the devices, what the metric sums mean and which of them early stopping may monitor; the batch
sources (``len(source)`` batches per epoch, ``source.epoch(e, start)``) say what a batch is.

Resuming is exact: batch order is a pure function of (seed, epoch), dropout keys are
``fold_in(rng, step)``, and a checkpoint holds the train state, the position in the epoch and the
epoch's running metric sums, so an interrupted run that is resumed ends with the same parameters
and metrics as one that was never interrupted.

Data parallel by default: ``fit`` places the state on a ``("data",)`` mesh of every visible
device (``mesh_devices`` picks the first N; ``fsdp`` shards large params) and shards each batch
along rows; see ``jaxsenti.training.sharding``. ``batch_size`` is the *global* number of real
examples per optimizer step; the device batch is padded with all-zero (weight-0) rows up to a
multiple of ``devices x grad_accum_steps``, so results do not depend on the device count (beyond
float summation order). Checkpoints hold global arrays and restore onto whatever mesh the
template state lives on, so a run saved on 8 devices resumes on 1 and vice versa.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import sys
import time
from pathlib import Path

import jax
import numpy as np
from tqdm.auto import tqdm

from jaxsenti import ownership
from jaxsenti.atomic import Interrupted
from jaxsenti.training.checkpoints import Checkpoints
from jaxsenti.training.sharding import Layout, fetch, is_primary, sync
from jaxsenti.training import compile_cache
from jaxsenti.training.flops import peak_flops, step_flops
from jaxsenti.training.steps import STEP_STATS, TrainState, jit_eval_step, jit_train_step, shard_state
from jaxsenti.training.tracking import Profiler, RunLog, Stopwatch, Watch


LINE_EVERY_S = 60  # without a progress bar, long epochs still say how they are doing this often


@dataclasses.dataclass
class FitResult:
    state: TrainState
    best_params: object
    history: list[dict]
    best_epoch: int
    steps: int
    seconds: float
    interrupted: bool = False  # stopped by stop_after_steps: no best parameters, resume to finish
    out_of_time: bool = False  # the time budget ran out: the epoch in progress was validated and training ended


class NonFiniteLoss(ValueError):
    """Training diverged: a step's loss, gradients or parameters were not finite (nothing non-finite was kept)."""


def _watch(bad, stats):
    """Fold one step's non-finite flag into the on-device (count, first bad step) pair; no host sync."""
    if bad is None:
        return stats["nonfinite"], stats["first_nonfinite"]
    return bad[0] + stats["nonfinite"], jax.numpy.minimum(bad[1], stats["first_nonfinite"])


def _lower_lr(lr: float, optimizer: str) -> float:
    """A rate to try after a divergence: a tenth of ``lr``, but never above a usual rate for the optimizer (after
    lr=1e30 diverged, 1e29 would too)."""
    usual = 1e-2 if optimizer == "sgd" else 1e-3
    return min(lr / 10, usual)


def _check_finite(run: "_Run", bad, epoch: int) -> None:
    """Stop with :class:`NonFiniteLoss` once a step was non-finite (a small host sync; at log points and saves only)."""
    if bad is None:
        return
    count, first = (float(x) for x in fetch(bad))
    if count:
        cfg = run.cfg
        lr = getattr(getattr(cfg, "optim", None), "lr", None)
        last = run.ckpt.latest_step()
        raise NonFiniteLoss(
            f"training diverged: the loss, gradients or parameters became non-finite (nan/inf) at step {int(first)} "
            f"(epoch {epoch + 1}; {int(count)} step(s) since then were skipped), so training stopped; the parameters "
            f"stayed those of step {int(first) - 1} and nothing non-finite was saved. Lower the learning rate "
            + (f"(--set optim.lr={_lower_lr(lr, getattr(cfg.optim, 'name', '')):.3g}, now {lr:g})" if lr else "(optim.lr)")
            + ", keep gradient clipping on (optim.clip_norm) or train in float32 (model.dtype), and train again"
            + (f"; the last checkpoint (step {last}) is in {run.ckpt.directory}" if last is not None else ""))


def device_batch(state: TrainState, batch: dict, *, train: bool = False) -> dict:
    """The arrays the objective reads; under a layout, padded to the device multiple and sharded along rows."""
    out = {k: batch[k] for k in state.objective.batch_keys}
    if state.layout is None:
        return out
    return state.layout.put_batch(out, multiple=state.grad_accum_steps if train else 1)


def _add(acc, m):
    return m if acc is None else jax.tree.map(lambda a, b: a + b, acc, m)


def _summary(state: TrainState, sums, prefix: str = "") -> dict:
    """The objective's means from device sums (one transfer), keys prefixed."""
    host = {k: float(v) for k, v in fetch(sums).items()}
    return {f"{prefix}{k}": v for k, v in state.objective.summarise(host).items()}


def evaluate(state: TrainState, batches) -> tuple[dict, np.ndarray | None]:
    """The objective's summary over every batch (filler rows masked, nothing dropped), and its per-row
    outputs placed by each batch's ``index`` (None when the objective has no outputs or no index)."""
    sums, outs = None, []
    for batch in batches.epoch(0):
        m, out = jit_eval_step(state, device_batch(state, batch))
        sums = _add(sums, m)
        if out is not None and "index" in batch:
            outs.append((batch["index"], out))
    summary = _summary(state, sums)
    if not outs:
        return summary, None
    fetched = fetch(outs)  # one transfer for the whole split
    n = 1 + max(int(idx.max()) for idx, _ in fetched)
    result = np.zeros((n,) + fetched[0][1].shape[1:], fetched[0][1].dtype)
    for idx, out in fetched:
        out = out[: len(idx)]  # rows past the plan's batch are device-multiple filler
        keep = idx >= 0
        result[idx[keep]] = out[keep]
    return summary, result


def check_monitor(objective, monitor: str) -> tuple[str, str]:
    """(history key, "min"/"max") for ``val_<name>``, checked against the objective's monitors (callers check it
    before they write anything, ``fit`` again)."""
    name = monitor.removeprefix("val_")
    if not monitor.startswith("val_") or name not in objective.monitors:
        allowed = ", ".join(f"val_{k}" for k in objective.monitors)
        raise ValueError(f"config field monitor: {monitor!r} is not one this objective reports; choose {allowed}")
    return monitor, objective.monitors[name]


def _improved(direction: str, value: float, best: float | None) -> bool:
    return best is None or (value < best if direction == "min" else value > best)


def _fresh_checkpoints(out_dir: Path) -> None:
    """A fresh run must not resume from an older run's steps."""
    if is_primary() and (out_dir / "checkpoints").exists():
        shutil.rmtree(out_dir / "checkpoints")
    sync("jaxsenti-fresh-checkpoints")  # every process, whatever it saw on disk (no-op on one process)


@dataclasses.dataclass
class _Run:
    """What one fit call carries between its pieces; ``meta`` is what a checkpoint stores."""

    cfg: object
    ckpt: Checkpoints
    meta: dict
    t_start: float
    progress: bool
    label: str
    unit: tuple[str, int]  # what the progress bar counts per batch, e.g. ("tok", 16384)
    time_budget_s: float | None
    on_epoch_end: object  # callable(state, history row) or None
    log: RunLog
    profiler: Profiler
    lr_at: object  # step -> learning rate (the optimizer's schedule, evaluated on the host at log points)
    flops: dict = dataclasses.field(default_factory=dict)  # batch shapes -> FLOPs of one step (XLA cost analysis)
    peak: list = dataclasses.field(default_factory=list)  # [FLOP/s of all devices] once measured
    started: bool = False  # the start-up line was said

    def out_of_time(self) -> bool:
        return self.time_budget_s is not None and time.perf_counter() - self.t_start >= self.time_budget_s

    def snapshot(self, epoch: int, batch: int, sums) -> dict:
        return self.meta | {"epoch": epoch, "batch": batch, "seconds": time.perf_counter() - self.t_start,
                            "sums": None if sums is None else {k: float(v) for k, v in fetch(sums).items()}}


class _Window:
    """What happened since the last log point: on-device sums of the step norms (no sync per step) and, on the
    host, the step count, the FLOPs of the steps run and the epoch's metric sums at the window's start."""

    def __init__(self, step: int, sums_host: dict | None):
        self.step, self.sums_host, self.flops, self.gsum, self.pnorm = step, sums_host or {}, 0.0, None, None
        self.clock = Stopwatch()

    def add(self, stats: dict) -> None:
        self.gsum = stats["grad_norm"] if self.gsum is None else self.gsum + stats["grad_norm"]
        self.pnorm = stats["param_norm"]


def _shape_key(batch: dict) -> tuple:
    return tuple((k, tuple(v.shape), str(v.dtype)) for k, v in sorted(batch.items()))


def _step_flops(run: _Run, state: TrainState, batch: dict) -> float | None:
    """FLOPs of the step for this batch's shapes (asked of XLA once per shape; the step is compiled by then)."""
    key = _shape_key(batch)
    if key not in run.flops:
        run.flops[key] = step_flops(jit_train_step, state, batch)
    return run.flops[key]


def _peak(run: _Run, state: TrainState) -> float | None:
    if not run.peak:
        dtype = getattr(getattr(run.cfg, "model", None), "dtype", "float32") or "float32"
        per_device, _ = peak_flops(str(dtype))
        n = state.layout.num_devices if state.layout is not None else 1
        run.peak.append(per_device * n if per_device else None)
    return run.peak[0]


def _startup(run: _Run, state: TrainState, seconds: float, cache_before) -> None:
    """The start-up line, once per run after its first step: devices, mesh, batch, dtype, compile time and cache."""
    run.started = True
    devices = state.layout.mesh.devices.flatten().tolist() if state.layout is not None else jax.devices()[:1]
    n = len(devices)
    mesh = " x ".join(f"{a}={k}" for a, k in state.layout.mesh.shape.items()) if state.layout is not None else "none"
    batch = getattr(run.cfg, "batch_size", None)
    dtype = getattr(getattr(run.cfg, "model", None), "dtype", "float32")
    counter = compile_cache.counter()
    cache = "off" if counter is None else counter.since(*cache_before)
    info = {"devices": n, "platform": devices[0].platform, "device_kind": devices[0].device_kind, "mesh": mesh,
            "global_batch": batch, "per_device_batch": None if batch is None else -(-batch // n), "dtype": str(dtype),
            "first_step_s": round(seconds, 3), "compile_cache": cache}
    run.log.scalars(int(fetch(state.step)), "start", info)
    if run.progress:
        tqdm.write(f"{run.label}{n} {devices[0].platform} device(s) ({devices[0].device_kind}), mesh {mesh}, batch "
                   f"{batch} ({info['per_device_batch']} per device), {dtype}; first step {seconds:.1f} s "
                   f"(compile + run; compilation cache: {cache})", file=sys.stderr)


def _log_window(run: _Run, state: TrainState, sums, win: _Window, step: int, bad) -> dict:
    """Log the window's scalars (one small fetch: what is logged and nothing else) and start the next window."""
    steps = max(step - win.step, 1)
    host = fetch({"sums": sums, "g": win.gsum, "p": win.pnorm, "bad": bad})
    dt = win.clock.lap()
    now = {k: float(v) for k, v in host["sums"].items()}
    window = {k: v - win.sums_host.get(k, 0.0) for k, v in now.items()}
    values = dict(state.objective.summarise(window))
    values["lr"] = float(run.lr_at(step)) if run.lr_at is not None else None
    values["grad_norm"] = float(host["g"]) / steps if host["g"] is not None else None
    values["param_norm"] = float(host["p"]) if host["p"] is not None else None
    unit, per_batch = run.unit
    if unit == "tok":
        values["tokens_per_s"] = steps * per_batch / dt
    else:
        values["examples_per_s"] = window.get("count", 0.0) / dt
    values["step_time_ms"] = dt / steps * 1e3
    if win.flops:
        values["tflops_per_s"] = win.flops / dt / 1e12
        peak = _peak(run, state)
        if peak:
            values["mfu"] = win.flops / dt / peak
    if host["bad"] is not None and float(host["bad"][0]):
        values["nonfinite_steps"] = int(float(host["bad"][0]))
    run.log.scalars(step, "train", values)
    win.step, win.sums_host, win.flops, win.gsum, win.pnorm = step, now, 0.0, None, None
    return values


def _train_epoch(run: _Run, state: TrainState, train, epoch: int, stop_after_steps: int | None):
    """One epoch (or its rest, after a resume); returns (state, sums, "interrupted" | "out of time" | None).

    A non-finite step (see ``steps.train_step``) raises :class:`NonFiniteLoss` at the next log point
    (every ``log_every`` steps) or checkpoint, whichever comes first, and at the latest before validation."""
    cfg, meta = run.cfg, run.meta
    start = meta["batch"] if epoch == meta["epoch"] else 0
    sums = None
    if start and meta["sums"] is not None:
        sums = {k: np.float32(v) for k, v in meta["sums"].items()}
    unit, per_batch = run.unit
    bar = tqdm(total=len(train) * per_batch, initial=start * per_batch, desc=f"{run.label}epoch {epoch + 1}/{cfg.epochs}",
               unit=unit, unit_scale=per_batch > 1, disable=None if run.progress else True, leave=False,
               dynamic_ncols=True)  # disable=None: no bar when stderr is not a terminal
    first_step = int(fetch(state.step))  # counted on the host from here: no device sync per batch
    t_epoch = last_line = time.perf_counter()
    bad = None
    win = _Window(first_step, meta["sums"] if start else None)
    for i, batch in enumerate(train.epoch(epoch, start=start), start=start):
        step = first_step + i + 1 - start
        db = device_batch(state, batch, train=True)
        if not run.started:
            counter, t_first = compile_cache.counter(), time.perf_counter()
            before = (counter.hits, counter.misses) if counter is not None else (0, 0)
        state, m = jit_train_step(state, db)
        if not run.started:
            jax.block_until_ready(state.step)  # once per run: the first step's time is the compile's
            _startup(run, state, time.perf_counter() - t_first, before)
        stats = {k: m.pop(k) for k in STEP_STATS}
        bad = _watch(bad, stats)
        win.add(stats)
        if run.log.writers and (flops := _step_flops(run, state, db)):
            win.flops += flops
        sums = _add(sums, m)
        bar.update(per_batch)
        run.profiler.after_step(step, state)
        if step % cfg.log_every == 0:  # global steps: the same points after a resume, whatever the epoch length
            values = _log_window(run, state, sums, win, step, bad)  # before the check: a divergence is logged too
            _check_finite(run, bad, epoch)
            if run.progress:
                summary = _summary(state, sums)  # the epoch's running means, for the bar
                bar.set_postfix({k: f"{v:.4f}" for k, v in summary.items()})
                if bar.disable and time.perf_counter() - last_line >= LINE_EVERY_S:  # no bar (a pipe, a log): a line
                    last_line = time.perf_counter()
                    rate = (i + 1 - start) * per_batch / (last_line - t_epoch)
                    tqdm.write(f"{run.label}epoch {epoch + 1} batch {i + 1}/{len(train)}: "
                               + " ".join(f"{k} {v:.4f}" for k, v in summary.items()) + f", {rate:,.0f} {unit}/s"
                               + (f", lr {values['lr']:.3g}" if values.get("lr") is not None else ""), file=sys.stderr)
        if stop_after_steps is not None and step >= stop_after_steps:
            _check_finite(run, bad, epoch)
            run.ckpt.save(state, run.snapshot(epoch, i + 1, sums))
            bar.close()
            return state, sums, "interrupted"
        if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and i + 1 < len(train):
            _check_finite(run, bad, epoch)
            run.ckpt.save(state, run.snapshot(epoch, i + 1, sums))
        if run.out_of_time():
            bar.close()
            _check_finite(run, bad, epoch)
            return state, sums, "out of time"
    bar.close()
    _check_finite(run, bad, epoch)
    return state, sums, None


def _end_epoch(run: _Run, state: TrainState, val, epoch: int, sums, monitor: tuple[str, str]) -> bool:
    """Validate, record the epoch, keep the best parameters, checkpoint; returns whether to stop early."""
    meta = run.meta
    row = {"epoch": epoch + 1, "step": int(fetch(state.step))} | _summary(state, sums, "train_")
    val_summary, _ = evaluate(state, val)
    row |= {f"val_{k}": v for k, v in val_summary.items()} | {"seconds": time.perf_counter() - run.t_start}
    key, direction = monitor
    if not all(math.isfinite(v) for k, v in row.items() if k.startswith("val_")):
        run.log.scalars(row["step"], "epoch", {k: v for k, v in row.items() if k != "step"})  # shown, not hidden
        raise NonFiniteLoss(f"validation after epoch {epoch + 1} gave non-finite metrics ("
                            + ", ".join(f"{k} {v}" for k, v in row.items() if k.startswith("val_"))
                            + ") although every training step was finite; this checkpoint is not kept as the best. "
                            "Train in float32 (model.dtype) or lower the learning rate (optim.lr), and train again")
    meta["history"].append(row)
    run.log.scalars(row["step"], "epoch", {k: v for k, v in row.items() if k != "step"})
    if _improved(direction, row[key], meta["best"]):
        meta["best"], meta["best_epoch"], meta["bad_epochs"] = row[key], epoch + 1, 0
        run.ckpt.save_best(state.params)
    else:
        meta["bad_epochs"] += 1
    if run.progress:
        train_part = " ".join(f"{k.removeprefix('train_')} {v:.4f}" for k, v in row.items() if k.startswith("train_"))
        val_part = " ".join(f"{k.removeprefix('val_')} {v:.4f}" for k, v in row.items() if k.startswith("val_"))
        tqdm.write(f"{run.label}epoch {epoch + 1}: train {train_part} | val {val_part}", file=sys.stderr)
    run.ckpt.save(state, run.snapshot(epoch + 1, 0, None))
    if is_primary():  # a run killed later is still known to have written these files (jaxsenti.ownership)
        ownership.note_progress(run.ckpt.directory.parent)
    if run.on_epoch_end is not None:
        run.on_epoch_end(state, row)
    return bool(run.cfg.patience and meta["bad_epochs"] >= run.cfg.patience)


def fit(state: TrainState, train, val, cfg, *, out_dir: str | Path, resume: bool = False, progress: bool = True,
        stop_after_steps: int | None = None, label: str = "", unit: tuple[str, int] = ("batch", 1),
        time_budget_s: float | None = None, on_epoch_end=None, watch: Watch | None = None) -> FitResult:
    """Train with early stopping on ``cfg.monitor``; the best parameters are kept in ``out_dir/checkpoints/best``.

    ``train``/``val`` are batch sources; ``cfg`` is any config with the loop fields of
    :class:`jaxsenti.config.TrainConfig` (``epochs, patience, monitor, log_every, checkpoint_every,
    mesh_devices, fsdp``). ``stop_after_steps`` simulates an interruption: a checkpoint is written and
    training returns. A state without a layout is placed on ``Layout.create(cfg.mesh_devices, fsdp=cfg.fsdp)``
    (all visible devices by default); a state that already carries one (``steps.shard_state``) keeps it.
    ``progress``: a bar per epoch on a terminal and one line per finished epoch on stderr (also when it
    is a pipe or a log file); ``label`` prefixes them (e.g. ``"lstm seed 0: "``); ``unit`` is what the bar
    counts per batch (``("tok", tokens_per_batch)`` shows tokens/s). ``time_budget_s``: once that much training
    time has passed (counting a resumed run's earlier time), the epoch in progress is validated like a full
    one and training ends (``FitResult.out_of_time``); a later ``--resume`` continues with the next epoch.
    ``on_epoch_end(state, row)`` runs after each epoch's validation and checkpoint (e.g. to export snapshots).
    ``watch`` (:class:`jaxsenti.training.tracking.Watch`): scalars every ``log_every`` steps and every epoch into
    ``out_dir`` (TensorBoard events, ``metrics.jsonl``), a start-up line after the first step, and an optional
    ``jax.profiler`` trace of some steps.
    """
    out_dir = Path(out_dir)
    monitor = check_monitor(state.objective, cfg.monitor)
    if state.layout is None:
        state = shard_state(state, Layout.create(cfg.mesh_devices, fsdp=cfg.fsdp))
    if not resume:
        _fresh_checkpoints(out_dir)
    ckpt = Checkpoints(out_dir / "checkpoints")
    meta = {"epoch": 0, "batch": 0, "history": [], "best": None, "best_epoch": -1, "bad_epochs": 0, "sums": None, "seconds": 0.0}
    if resume:
        restored = ckpt.restore_latest(state)
        if restored is None and is_primary():
            print(f"[jaxsenti] --resume: no checkpoint in {out_dir / 'checkpoints'}; starting a fresh run", file=sys.stderr)
        if restored is not None:
            state, meta = restored
    watch = watch or Watch()
    folder = out_dir if is_primary() else None
    restored_step = int(fetch(state.step)) if meta["history"] or meta["batch"] else None  # a resumed run's logs go on
    log = RunLog(folder, watch.report_to, resume_step=restored_step)
    run = _Run(cfg, ckpt, meta, time.perf_counter() - meta["seconds"], progress and is_primary(), label, unit,
               time_budget_s, on_epoch_end, log, Profiler(folder, watch.profile), _lr_schedule(cfg, len(train)))
    if restored_step is None:
        log.text("config", _config_text(cfg))
    stopped = None
    try:
        for epoch in range(meta["epoch"], cfg.epochs):
            state, sums, stopped = _train_epoch(run, state, train, epoch, stop_after_steps)
            if stopped == "interrupted":
                return FitResult(state, None, meta["history"], meta["best_epoch"], int(fetch(state.step)),
                                 time.perf_counter() - run.t_start, interrupted=True)
            if _end_epoch(run, state, val, epoch, sums, monitor) or stopped:
                break
        best_params = ckpt.restore_best(state.params)
        return FitResult(state, best_params, meta["history"], meta["best_epoch"], int(fetch(state.step)),
                         time.perf_counter() - run.t_start, out_of_time=stopped == "out of time")
    except KeyboardInterrupt:
        # The state being stepped may already be donated, so the last written checkpoint is the resume point;
        # closing waits for a save in flight, so that checkpoint is whole. The caller says how to resume.
        ckpt.close(quiet=True)
        raise Interrupted(out_dir, ckpt.latest_step()) from None
    except BaseException:
        ckpt.close(quiet=True)  # the error in flight is the one to report, not a save it cut short
        raise
    finally:
        run.profiler.stop(run_ended=True)
        log.close()
        ckpt.close()  # a no-op after the two above; after success, a failed save in flight is raised here


def _lr_schedule(cfg, steps_per_epoch: int):
    """The schedule the optimizer follows (as ``make_optimizer`` builds it), for logging; None without one."""
    optim = getattr(cfg, "optim", None)
    if optim is None:
        return None
    from jaxsenti.training.optim import lr_schedule  # optim imports the configs, which import this module's users

    schedule = lr_schedule(optim, steps_per_epoch * cfg.epochs)
    return lambda step: float(schedule(step))


def _config_text(cfg) -> str:
    """The resolved config as a Markdown table (TensorBoard's Text tab shows it as one)."""
    def flat(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from flat(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}", v
    rows = flat(dataclasses.asdict(cfg)) if dataclasses.is_dataclass(cfg) else ()
    return "| field | value |\n|---|---|\n" + "\n".join(f"| {k} | {json.dumps(v, default=str)} |" for k, v in rows)
