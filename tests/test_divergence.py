"""A run whose loss becomes nan/inf stops with exit 2 and one line, keeps nothing non-finite, writes no NaN into JSON;
a model folder with non-finite weights is refused by predict."""

import json
import math

import jax
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from flax import nnx
from tests.test_cli import TINY_LSTM, train_tiny_folder
from tests.test_training_loop import BUCKETS, TINY, _data

from jaxsenti import atomic
from jaxsenti.cli import main
from jaxsenti.config import OptimConfig
from jaxsenti.models.lstm import LSTMClassifier
from jaxsenti.objectives import Classification
from jaxsenti.training import loop
from jaxsenti.training.batching import LabelledBatches
from jaxsenti.training.optim import make_optimizer
from jaxsenti.training.steps import create_train_state, jit_train_step


def _strict_json(path):
    """Parse as any JSON parser would: NaN/Infinity are not JSON."""
    def refuse(name):
        raise ValueError(f"{path}: {name} is not JSON")
    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def _one_error_line(err: str) -> str:
    lines = [x for x in err.strip().splitlines() if not x.startswith("[jaxsenti]")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_a_non_finite_step_changes_nothing_and_is_flagged():
    model = LSTMClassifier(TINY, rngs=nnx.Rngs(0))
    train = LabelledBatches(_data(16, 0), 8, BUCKETS)
    batch = {k: v for k, v in next(iter(train.epoch(0))).items() if k in Classification.batch_keys}
    ok = create_train_state(model, make_optimizer(OptimConfig(name="adam", lr=1e-3), 10), Classification())
    ok, m = jit_train_step(ok, batch)
    assert float(m["nonfinite"]) == 0 and math.isinf(float(m["first_nonfinite"])) and float(m["param_norm"]) > 0
    # sgd at 1e38 with no clipping: the update overflows to inf in the first step
    state = create_train_state(LSTMClassifier(TINY, rngs=nnx.Rngs(0)),
                               make_optimizer(OptimConfig(name="sgd", lr=1e38, clip_norm=None), 10), Classification())
    before = jax.tree.map(np.asarray, state.params)
    state, m = jit_train_step(state, batch)
    assert float(m["nonfinite"]) == 1 and float(m["first_nonfinite"]) == 1 and int(state.step) == 1
    jax.tree.map(np.testing.assert_array_equal, before, jax.tree.map(np.asarray, state.params))


def test_train_that_diverges_stops_with_one_line_and_keeps_nothing_non_finite(tiny_csv, tmp_path, capsys):
    cfg = tmp_path / "tiny.py"
    cfg.write_text(TINY_LSTM, encoding="utf-8")
    out = tmp_path / "model"
    argv = ["train", "lstm", "--config", str(cfg), "--data", str(tiny_csv), "--out", str(out), "--quiet",
            "--set", "optim.name=sgd", "--set", "optim.clip_norm=None", "--set", "optim.lr=1e38"]
    assert main(argv) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "diverged" in line and "at step 1 " in line and "--set optim.lr=0.01, now 1e+38" in line  # a sane rate, not 1e37
    assert not (out / "checkpoints" / "best").exists() and not (out / "metrics.json").exists()
    for f in out.rglob("*.json"):
        _strict_json(f)


def test_non_finite_validation_is_never_kept_as_best(tmp_path, monkeypatch):
    model = LSTMClassifier(TINY, rngs=nnx.Rngs(0))
    train = LabelledBatches(_data(16, 0), 8, BUCKETS, shuffle=True)
    state = create_train_state(model, make_optimizer(OptimConfig(name="adam"), 10), Classification())
    monkeypatch.setattr(loop, "evaluate", lambda state, val: ({"loss": float("nan"), "accuracy": 0.5}, None))

    class Cfg:
        epochs, patience, monitor, log_every, checkpoint_every, mesh_devices, fsdp = 1, 0, "val_loss", 100, 0, None, False

    with pytest.raises(loop.NonFiniteLoss, match="validation after epoch 1 gave non-finite"):
        loop.fit(state, train, train, Cfg(), out_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "checkpoints" / "best").exists()


def test_predict_refuses_weights_that_hold_nan(model_dir, tmp_path, capsys):
    import shutil

    bad = tmp_path / "nan_model"
    shutil.copytree(model_dir, bad)
    best = bad / "checkpoints" / "best"
    ckpt = ocp.StandardCheckpointer()
    params = ckpt.restore(best)
    params = jax.tree.map(lambda x: np.full_like(np.asarray(x), np.nan), params)
    shutil.rmtree(best)
    ckpt.save(best, params)
    ckpt.wait_until_finished()
    ckpt.close()
    assert main(["predict", "--model", str(bad), "好吃"]) == 2
    out, err = capsys.readouterr()
    assert "hold nan or inf" in _one_error_line(err) and out == ""


def test_json_outputs_never_hold_nan(tmp_path):
    atomic.write_json(tmp_path / "x.json", {"a": float("nan"), "b": [1.0, float("inf")], "c": {"d": -float("inf")}})
    assert _strict_json(tmp_path / "x.json") == {"a": None, "b": [1.0, None], "c": {"d": None}}
    assert atomic.dumps({"p": float("nan")}) == '{"p": null}'


def test_pretraining_that_diverges_stops_too(corpus_txt, tmp_path, capsys):
    out = tmp_path / "lm"
    argv = ["pretrain", "lstm", "--corpus", str(corpus_txt), "--out", str(out), "--quiet", "--set", "epochs=1",
            "--set", "model.embed_dim=8", "--set", "model.hidden_dim=8", "--set", "model.num_layers=1",
            "--set", "task.num_sampled=0", "--set", "optim.name=sgd", "--set", "optim.clip_norm=None",
            "--set", "optim.lr=1e38", "--set", "optim.warmup_ratio=0.0", "--set", "corpus.heldout_fraction=0.1"]
    assert main(argv) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "diverged" in line and not (out / "pretraining.json").exists()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return train_tiny_folder(tmp_path_factory.mktemp("divergence"))[2]


def test_a_finite_step_is_exactly_the_unguarded_update():
    """The guard only selects between new and old values: a finite step equals optax's plain update, bit for bit."""
    from jaxsenti.training.steps import loss_fn

    train = LabelledBatches(_data(16, 0), 8, BUCKETS)
    batch = {k: v for k, v in next(iter(train.epoch(0))).items() if k in Classification.batch_keys}
    state = create_train_state(LSTMClassifier(TINY, rngs=nnx.Rngs(0)), make_optimizer(OptimConfig(name="adam", lr=1e-2), 10),
                               Classification())

    @jax.jit
    def plain(state, batch):
        key = jax.random.fold_in(state.rng, state.step)
        grads = jax.grad(lambda p: loss_fn(p, state, batch, key)[0])(state.params)
        updates, _ = state.tx.update(grads, state.opt_state, state.params)
        return optax.apply_updates(state.params, updates)

    expected = jax.tree.map(np.asarray, plain(state, batch))
    new, m = jit_train_step(state, batch)
    assert float(m["nonfinite"]) == 0
    jax.tree.map(np.testing.assert_array_equal, expected, jax.tree.map(np.asarray, new.params))
