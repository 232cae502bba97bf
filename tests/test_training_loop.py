"""Epoch loop: learning happens, evaluation covers everything, one compile per bucket, exact resume."""

import dataclasses

import jax
import numpy as np
import pytest
from flax import nnx

from jaxsenti.config import OptimConfig, TrainConfig
from jaxsenti.models.lstm import LSTMClassifier, LSTMConfig
from jaxsenti.objectives import Classification
from jaxsenti.training import steps
from jaxsenti.training.batching import Encoded, LabelledBatches
from jaxsenti.training.loop import evaluate, fit
from jaxsenti.training.optim import decay_mask, lr_schedule, make_optimizer

BUCKETS = (8, 16)
TINY = LSTMConfig(vocab_size=12, embed_dim=8, hidden_dim=8, num_layers=1, dropout=0.1)
LOOP = TrainConfig(name="toy", model=TINY, batch_size=16, eval_batch_size=32, epochs=3, patience=0, max_len=16,
                   buckets=BUCKETS, seed=0)


def _data(n, seed):
    """Sequences whose label is whether token 3 occurs more often than token 4: learnable by an LSTM."""
    rng = np.random.default_rng(seed)
    seqs, labels = [], []
    for _ in range(n):
        s = rng.integers(3, 12, size=rng.integers(2, 16)).astype(np.int32)
        seqs.append(s)
        labels.append(int((s == 3).sum() > (s == 4).sum()))
    return Encoded(seqs, np.asarray(labels, np.int32))


def _state(seed=0, total=100):
    model = LSTMClassifier(TINY, rngs=nnx.Rngs(seed))
    return steps.create_train_state(model, make_optimizer(OptimConfig(name="adam", lr=1e-2), total), Classification(), seed=seed)


def _batches(cfg: TrainConfig, train, val):
    return (LabelledBatches(train, cfg.batch_size, cfg.buckets, shuffle=True, seed=cfg.seed),
            LabelledBatches(val, cfg.eval_batch_size, cfg.buckets))


def _fit(state, tmp_path, *, resume=False, stop_after_steps=None, **cfg_fields):
    cfg = dataclasses.replace(LOOP, **cfg_fields)
    return fit(state, *_batches(cfg, _data(80, 0), _data(30, 1)), cfg, out_dir=tmp_path, resume=resume, progress=False,
               stop_after_steps=stop_after_steps)


def test_fit_learns_and_keeps_history(tmp_path):
    res = _fit(_state(), tmp_path, epochs=4)
    assert len(res.history) == 4
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]
    assert res.best_epoch >= 1 and res.best_params is not None
    assert (tmp_path / "checkpoints" / "best").exists()


def test_one_compile_per_bucket(tmp_path):
    before = steps.trace_counts()
    _fit(_state(), tmp_path, epochs=2)
    after = steps.trace_counts()
    assert after["train_step"] - before.get("train_step", 0) == len(BUCKETS)
    assert after["eval_step"] - before.get("eval_step", 0) == len(BUCKETS)


def test_monitor_must_be_one_the_objective_offers(tmp_path):
    with pytest.raises(ValueError, match="config field monitor: 'val_f1' is not one this objective reports; choose val_loss, val_accuracy"):
        _fit(_state(), tmp_path, monitor="val_f1")


def test_early_stopping_on_accuracy_keeps_the_best_epoch(tmp_path):
    res = _fit(_state(), tmp_path, epochs=6, patience=2, monitor="val_accuracy")
    accs = [h["val_accuracy"] for h in res.history]
    assert res.best_epoch == 1 + int(np.argmax(accs))  # first epoch with the highest accuracy
    assert len(res.history) <= 6 and (len(res.history) == 6 or len(res.history) - res.best_epoch == 2)


def test_evaluate_counts_every_example():
    state = _state()
    val = _data(37, 2)  # not a multiple of the batch size
    metrics, logits = evaluate(state, LabelledBatches(val, 16, BUCKETS))
    assert logits.shape == (37,) and np.all(np.isfinite(logits))
    acc = float(np.mean((logits > 0) == val.labels))
    assert metrics["accuracy"] == pytest.approx(acc, abs=1e-6)


def test_resume_is_exact(tmp_path):
    full = _fit(_state(), tmp_path / "full")
    part = _fit(_state(), tmp_path / "resumed", stop_after_steps=7)  # mid-epoch 2
    assert part.interrupted and part.steps == 7
    resumed = _fit(_state(), tmp_path / "resumed", resume=True)
    assert resumed.steps == full.steps
    assert [h["train_loss"] for h in resumed.history] == pytest.approx([h["train_loss"] for h in full.history], rel=1e-6)
    assert [h["val_accuracy"] for h in resumed.history] == [h["val_accuracy"] for h in full.history]
    for a, b in zip(jax.tree.leaves(resumed.state.params), jax.tree.leaves(full.state.params)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_fresh_run_does_not_resume_old_checkpoints(tmp_path):
    _fit(_state(), tmp_path, epochs=2)
    res = _fit(_state(), tmp_path, epochs=1)
    assert [h["epoch"] for h in res.history] == [1]


def test_schedule_and_decay_mask():
    sched = lr_schedule(OptimConfig(lr=1.0, schedule="linear", warmup_ratio=0.1), 100)
    assert float(sched(0)) == 0.0 and float(sched(10)) == pytest.approx(1.0) and float(sched(100)) == pytest.approx(0.0)
    mask = decay_mask({"w": np.zeros((2, 2)), "b": np.zeros(2)})
    assert mask == {"w": True, "b": False}
    with pytest.raises(ValueError, match="optim.schedule"):
        OptimConfig(schedule="step")
