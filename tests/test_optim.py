"""ULMFiT's fine-tuning recipe in the optimizer: layer groups from the registry, discriminative rates per group,
gradual unfreezing (frozen groups do not move at all), the schedules, and exact resume across an unfreezing boundary."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxsenti import registry
from jaxsenti.config import OptimConfig, TrainConfig
from jaxsenti.models.bert import BertClassifier, BertConfig
from jaxsenti.models.lstm import LSTMClassifier, LSTMConfig
from jaxsenti.objectives import Classification
from jaxsenti.training import steps
from jaxsenti.training.batching import LabelledBatches
from jaxsenti.training.loop import device_batch, fit
from jaxsenti.training.optim import STLR_RATIO, layer_ranks, lr_schedule, make_optimizer
from tests.test_training_loop import BUCKETS, _data

LSTM = LSTMConfig(vocab_size=12, embed_dim=8, hidden_dim=8, num_layers=2, dropout=0.0, pooling="concat")
GROUPS = {"head": 0, "layers/1": 1, "layers/0": 2, "embed": 3}  # rank from the top


def _group_of(path: str) -> str:
    return next(g for g in GROUPS if path.startswith(g))


def _flat(params) -> dict[str, np.ndarray]:
    return {"/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path): np.asarray(v)
            for path, v in jax.tree_util.tree_leaves_with_path(params)}


def _tx(model, total=100, steps_per_epoch=2, **optim):
    spec = registry.spec_for(model.cfg)
    return make_optimizer(OptimConfig(**optim), total, layer_group=spec.layer_group, steps_per_epoch=steps_per_epoch,
                          params=nnx.state(model, nnx.Param))


def test_the_registry_names_each_models_layer_groups_top_first():
    lstm = LSTMClassifier(LSTM, rngs=nnx.Rngs(0))
    ranks = _flat(layer_ranks(nnx.state(lstm, nnx.Param), registry.get("lstm").layer_group))
    assert ranks and all(r == GROUPS[_group_of(p)] for p, r in ranks.items())
    bert = BertClassifier(BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=3, num_attention_heads=2,
                                     intermediate_size=16, max_position_embeddings=16), rngs=nnx.Rngs(0))
    ranks = _flat(layer_ranks(nnx.state(bert, nnx.Param), registry.get("bert").layer_group))
    for path, r in ranks.items():  # classifier and pooler on top, then layers 2, 1, 0, then the embeddings
        want = 4 if "embeddings" in path else 3 - int(path.split("layers/")[1].split("/")[0]) if "layers/" in path else 0
        assert r == want, path
    assert sorted({int(r) for r in ranks.values()}) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_each_group_trains_at_the_configured_rate(name):
    model = LSTMClassifier(LSTM, rngs=nnx.Rngs(0))
    params = nnx.state(model, nnx.Param)
    grads = jax.tree.map(lambda p: jnp.full_like(p, 0.5), params)
    tx = _tx(model, name=name, lr=0.1, b1=0.0, weight_decay=0.0, layer_lr_decay=0.5, clip_norm=None)
    updates, _ = tx.update(grads, tx.init(params), params)
    plain = optax.sgd(0.1) if name == "sgd" else optax.adamw(0.1, b1=0.0, weight_decay=0.0)
    reference, _ = plain.update(grads, plain.init(params), params)
    ref = _flat(reference)
    for path, u in _flat(updates).items():
        np.testing.assert_allclose(u, ref[path] * 0.5 ** GROUPS[_group_of(path)], rtol=1e-6, err_msg=path)


def _changed(before, after) -> set[str]:
    a = _flat(after)
    return {_group_of(p) for p, v in _flat(before).items() if not np.array_equal(v, a[p])}


def test_gradual_unfreezing_leaves_frozen_groups_bit_for_bit_unchanged():
    model = LSTMClassifier(LSTM, rngs=nnx.Rngs(0))
    batches = LabelledBatches(_data(32, 0), 16, BUCKETS, shuffle=True, seed=0)
    tx = _tx(model, steps_per_epoch=len(batches), name="adamw", lr=1e-2, weight_decay=0.1, layer_lr_decay=1 / 2.6,
             unfreeze_every=1, clip_norm=1.0)
    state = steps.create_train_state(model, tx, Classification(), seed=0)
    start = jax.tree.map(jnp.copy, state.params)  # the step donates the state
    seen = []
    for epoch in range(4):
        before = jax.tree.map(jnp.copy, state.params)
        for b in batches.epoch(epoch):
            state, _ = steps.jit_train_step(state, device_batch(state, b, train=True))
        seen.append(_changed(before, state.params))
    assert seen == [{"head"}, {"head", "layers/1"}, {"head", "layers/1", "layers/0"}, set(GROUPS)]
    assert _changed(start, state.params) == set(GROUPS)


def test_slanted_triangular_and_one_cycle_schedules():
    stlr = lr_schedule(OptimConfig(lr=1.0, schedule="slanted_triangular", warmup_ratio=0.1), 100)
    assert float(stlr(0)) == pytest.approx(1 / STLR_RATIO) and float(stlr(10)) == pytest.approx(1.0)
    assert float(stlr(100)) == pytest.approx(1 / STLR_RATIO) and float(stlr(55)) < float(stlr(20))
    cycle = lr_schedule(OptimConfig(lr=1.0, schedule="one_cycle", warmup_ratio=0.3), 100)
    assert float(cycle(30)) == pytest.approx(1.0) and float(cycle(0)) < 0.1 and float(cycle(100)) < 1e-3
    with pytest.raises(ValueError, match="optim.layer_lr_decay"):
        OptimConfig(layer_lr_decay=1.5)
    with pytest.raises(ValueError, match="optim.unfreeze_every"):
        OptimConfig(unfreeze_every=-1)


def test_resume_is_exact_across_an_unfreezing_boundary(tmp_path):
    cfg = TrainConfig(name="toy", model=LSTM, batch_size=16, eval_batch_size=32, epochs=3, patience=0, max_len=16,
                      buckets=BUCKETS, seed=0)
    train, val = _data(80, 0), _data(30, 1)
    per_epoch = len(LabelledBatches(train, 16, BUCKETS))  # group 1 unfreezes at this step, group 2 at twice it

    def run(out, **kw):
        model = LSTMClassifier(LSTM, rngs=nnx.Rngs(0))
        tx = _tx(model, total=3 * per_epoch, steps_per_epoch=per_epoch, name="adam", lr=1e-2, layer_lr_decay=0.5, unfreeze_every=1,
                 schedule="slanted_triangular", warmup_ratio=0.2)
        state = steps.create_train_state(model, tx, Classification(), seed=0)
        return fit(state, LabelledBatches(train, 16, BUCKETS, shuffle=True, seed=0), LabelledBatches(val, 32, BUCKETS),
                   cfg, out_dir=out, progress=False, **kw)

    full = run(tmp_path / "full")
    assert run(tmp_path / "part", stop_after_steps=per_epoch - 1).interrupted  # one step before group 1 unfreezes
    resumed = run(tmp_path / "part", resume=True)
    assert resumed.steps == full.steps == 3 * per_epoch
    for a, b in zip(jax.tree.leaves(resumed.state.params), jax.tree.leaves(full.state.params)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert [h["train_loss"] for h in resumed.history] == pytest.approx([h["train_loss"] for h in full.history], rel=1e-6)


def test_the_recipe_needs_the_models_layer_groups():
    with pytest.raises(ValueError, match="layer groups"):
        make_optimizer(OptimConfig(layer_lr_decay=0.5), 10)
    with pytest.raises(ValueError, match="layer groups"):
        make_optimizer(OptimConfig(unfreeze_every=1), 10, layer_group=registry.get("lstm").layer_group)


def test_the_packaged_recipe_config_trains_the_study_lstm_from_the_lm():
    from jaxsenti import config as config_lib

    cfg = config_lib.load_config("lstm_ulmfit", config_lib.TrainConfig)
    base = config_lib.load_config("lstm_dianping_lm", config_lib.TrainConfig)
    assert cfg.model.pooling == "concat" and cfg.optim.layer_lr_decay == pytest.approx(1 / 2.6)
    assert cfg.optim.unfreeze_every == 1 and cfg.optim.schedule == "slanted_triangular"
    assert dataclasses.replace(cfg.model, pooling="last") == base.model and cfg.data == base.data
