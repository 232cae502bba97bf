"""Epoch loop: learning happens, evaluation covers everything, one compile per bucket, exact resume."""

import jax
import numpy as np
import pytest
from flax import nnx

from jaxsenti.config import OptimConfig
from jaxsenti.models.lstm import LSTMClassifier, LSTMConfig
from jaxsenti.training import steps
from jaxsenti.training.loop import Encoded, evaluate, fit
from jaxsenti.training.optim import decay_mask, lr_schedule, make_optimizer

BUCKETS = (8, 16)


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
    model = LSTMClassifier(LSTMConfig(vocab_size=12, embed_dim=8, hidden_dim=8, num_layers=1, dropout=0.1), rngs=nnx.Rngs(seed))
    return steps.create_train_state(model, make_optimizer(OptimConfig(name="adam", lr=1e-2), total), seed=seed)


def _fit(state, tmp_path, **kw):
    args = dict(epochs=3, batch_size=16, eval_batch_size=32, buckets=BUCKETS, seed=0, out_dir=tmp_path, patience=0, progress=False)
    return fit(state, _data(80, 0), _data(30, 1), **(args | kw))


def test_fit_learns_and_keeps_history(tmp_path):
    res = _fit(_state(), tmp_path, epochs=4)
    assert len(res.history) == 4
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]
    assert res.best_epoch >= 1 and res.best_params is not None
    assert (tmp_path / "checkpoints" / "best").exists()


def test_one_compile_per_bucket(tmp_path):
    before = steps.jit_train_step._cache_size()
    _fit(_state(), tmp_path, epochs=2)
    assert steps.jit_train_step._cache_size() - before == len(BUCKETS)


def test_evaluate_counts_every_example():
    state = _state()
    val = _data(37, 2)  # not a multiple of the batch size
    metrics, probs = evaluate(state, val, 16, BUCKETS)
    assert probs.shape == (37,) and np.all((probs > 0) & (probs < 1))
    acc = float(np.mean((probs > 0.5) == val.labels))
    assert metrics["eval_accuracy"] == pytest.approx(acc, abs=1e-6)


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
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_schedule(OptimConfig(schedule="step"), 10)
