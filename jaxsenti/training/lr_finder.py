"""Learning-rate range test (as the study did for BERT): raise the LR exponentially, watch the loss.

Runs the real jitted train step with an exponential schedule from ``lr_min`` to ``lr_max`` over
``steps`` batches, collecting per-step losses on device (one transfer at the end). The suggestion
is the LR at the steepest descent of the smoothed loss before it diverges.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np

from jaxsenti.plotting import new_figure, save_figure
from jaxsenti.training.loop import device_batch
from jaxsenti.training.optim import make_optimizer
from jaxsenti.training.steps import create_train_state, jit_train_step


@dataclasses.dataclass
class LRFinderResult:
    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    suggestion: float | None  # None: the loss diverged at once, nothing to suggest (``warning`` says so)
    warning: str | None = None  # why the suggestion is missing or may not be trustworthy (at an edge of the range)


def _smooth(x: np.ndarray, beta: float = 0.9) -> np.ndarray:
    out, avg = np.empty_like(x), 0.0
    for i, v in enumerate(x):
        avg = beta * avg + (1 - beta) * v
        out[i] = avg / (1 - beta ** (i + 1))  # bias-corrected EMA
    return out


def find_lr(model, optim_cfg, objective, train, *, seed: int = 0, lr_min: float = 1e-7, lr_max: float = 1.0,
            steps: int = 100) -> LRFinderResult:
    """Train ``model`` on the batch source ``train`` (epochs repeat as needed) with the LR rising from ``lr_min`` to ``lr_max``."""
    if not (math.isfinite(lr_min) and math.isfinite(lr_max) and 0 < lr_min < lr_max):
        raise ValueError(f"--lr-min and --lr-max must be finite with 0 < lr-min < lr-max, got {lr_min} and {lr_max}")
    if steps < 3:
        raise ValueError(f"steps must be >= 3, got {steps}")
    ratio = lr_max / lr_min
    schedule = lambda step: lr_min * ratio ** (step / max(steps - 1, 1))  # noqa: E731
    # the range test sweeps the top group's rate: discriminative rates below it hold, every group trains (no unfreezing)
    from flax import nnx

    from jaxsenti.registry import spec_for

    tx = make_optimizer(dataclasses.replace(optim_cfg, lr=lr_min, unfreeze_every=0), steps, schedule=schedule,
                        layer_group=spec_for(model.cfg).layer_group if hasattr(model, "cfg") else None,
                        params=nnx.state(model, nnx.Param))
    state = create_train_state(model, tx, objective, seed=seed)
    per_step, epoch = [], 0
    while len(per_step) < steps:
        for batch in train.epoch(epoch):
            state, m = jit_train_step(state, device_batch(state, batch, train=True))
            # a non-finite step leaves the parameters as they were (steps.train_step): count it as divergence
            per_step.append(jax.numpy.where(m["nonfinite"] > 0, jax.numpy.inf, m["loss_sum"] / m["count"]))
            if len(per_step) == steps:
                break
        epoch += 1
    losses = np.asarray(jax.device_get(per_step), np.float64)
    lrs = np.array([schedule(i) for i in range(steps)])
    # Ignore the diverged tail: from the first non-finite loss, or where the smoothed loss exceeds 4× its running minimum.
    finite_end = int(np.argmin(np.isfinite(losses))) if not np.isfinite(losses).all() else steps
    smoothed = np.full(steps, np.inf)
    smoothed[:finite_end] = _smooth(losses[:finite_end])
    run_min = np.minimum.accumulate(smoothed)
    blown = smoothed > 4 * run_min
    end = min(int(np.argmax(blown)) if blown.any() else steps, finite_end)
    if end < 3:
        return LRFinderResult(lrs, losses, smoothed, None, (
            f"the loss diverged within the first {end + 1} step(s), at learning rates from {lr_min:.2e}: no suggestion "
            "can be made; lower --lr-min"))
    grad = np.gradient(smoothed[:end], np.log(lrs[:end]))
    best = int(np.argmin(grad))
    warning = None
    if best == 0 or best >= end - 2:  # steepest at an edge: the true optimum may lie outside the range tested
        edge = "lowest" if best == 0 else "highest usable"
        flag = "--lr-min lower" if best == 0 else "--lr-max higher (or more --steps)"
        warning = f"the suggestion is at the {edge} learning rate tested, so the best one may lie outside the range: try {flag}"
    return LRFinderResult(lrs, losses, smoothed, float(lrs[best]), warning)


def plot_lr_finder(res: LRFinderResult, path, title: str = "Learning-rate range test"):
    fig, ax = new_figure(figsize=(7, 4.5))
    ax.plot(res.lrs, res.losses, alpha=0.3, label="loss per step")
    ax.plot(res.lrs, res.smoothed, label="smoothed")
    if res.suggestion is not None:
        ax.axvline(res.suggestion, color="tab:red", linestyle="--", label=f"steepest descent: {res.suggestion:.2e}")
    ax.set_xscale("log")
    finite = res.smoothed[np.isfinite(res.smoothed)]
    if len(finite):
        ax.set_ylim(min(finite) * 0.9, min(max(finite), 3 * finite[0]) * 1.1)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    ax.legend()
    return save_figure(fig, path)


__all__ = ["LRFinderResult", "find_lr", "plot_lr_finder"]
