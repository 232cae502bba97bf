"""Flax NNX BERT: shapes, masking, dropout, training step, bf16 compute (no torch, no checkpoint needed)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxsenti.models.bert import BertClassifier, BertConfig, BertModel
from jaxsenti.objectives import Classification
from jaxsenti.training.steps import create_train_state, jit_train_step

REPO_ROOT = Path(__file__).resolve().parents[1]

TINY = BertConfig(
    vocab_size=300,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=64,
    initializer_range=0.2,  # larger than BERT's 0.02 so that logits are O(1) and tolerances mean something
)


def _batch(rng: np.random.Generator, lengths, T, vocab=TINY.vocab_size, pad_value=None):
    """Right-padded token rows of the given lengths; pad slots hold 0, or random ids when pad_value='noise'."""
    B = len(lengths)
    toks = rng.integers(1, vocab, size=(B, T)).astype(np.int32)
    for i, n in enumerate(lengths):
        toks[i, n:] = 0 if pad_value is None else rng.integers(1, vocab, size=T - n)
    return toks, np.asarray(lengths, np.int32)


# ---------------------------------------------------------------- config


def test_config_from_hf_ignores_unknown_keys_and_replace():
    d = {"model_type": "bert", "hidden_size": 64, "num_attention_heads": 4, "directionality": "bidi",
         "pooler_type": "first_token_transform", "vocab_size": 99, "pad_token_id": 0}
    cfg = BertConfig.from_hf(d)
    assert (cfg.hidden_size, cfg.vocab_size, cfg.pooling, cfg.dtype) == (64, 99, "cls", "float32")
    small = cfg.replace(num_hidden_layers=1, pooling="mean")
    assert small.num_hidden_layers == 1 and small.pooling == "mean" and cfg.num_hidden_layers == 12
    assert dataclasses.replace(cfg, dtype="bfloat16").dtype == "bfloat16"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.hidden_size = 3  # type: ignore[misc]
    with pytest.raises(ValueError, match="pooling"):
        cfg.replace(pooling="attention")
    with pytest.raises(ValueError, match="dtype"):
        cfg.replace(dtype="float16")
    with pytest.raises(ValueError, match="divisible"):
        cfg.replace(num_attention_heads=5)


def test_config_from_real_bert_base_chinese_config(tmp_path):
    d = os.environ.get("JAXSENTI_BERT_TOKENIZER_DIR", str(REPO_ROOT / "../shared/models/bert-base-chinese-tokenizer"))
    path = Path(d) / "config.json"
    if not path.is_file():
        pytest.skip(f"bert-base-chinese config not found at {path} (set JAXSENTI_BERT_TOKENIZER_DIR)")
    cfg = BertConfig.from_hf(path.parent)
    assert (cfg.vocab_size, cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads) == (21128, 768, 12, 12)
    assert cfg.intermediate_size == 3072 and cfg.layer_norm_eps == 1e-12 and cfg.hidden_act == "gelu"
    assert BertConfig.from_hf(json.loads(path.read_text())) == cfg


# ---------------------------------------------------------------- forward


def test_bert_model_shapes_and_param_only_state():
    model = BertModel(TINY, rngs=nnx.Rngs(0))
    toks, lengths = _batch(np.random.default_rng(0), [5, 9, 1], 11)
    mask = np.arange(11)[None] < lengths[:, None]
    seq, pooled = model(toks, mask)
    assert seq.shape == (3, 11, 32) and pooled.shape == (3, 32)
    assert seq.dtype == jnp.float32
    assert not jax.tree.leaves(nnx.state(model, nnx.Not(nnx.Param)))
    # token_type_ids are used: type 1 embeddings change the output
    seq1, _ = model(toks, mask, np.ones_like(toks))
    assert not np.allclose(np.asarray(seq), np.asarray(seq1))


@pytest.mark.parametrize("pooling", ["cls", "mean", "max"])
def test_classifier_shapes_finite_and_zero_length_rows(pooling):
    model = BertClassifier(TINY.replace(pooling=pooling), rngs=nnx.Rngs(1))
    assert not jax.tree.leaves(nnx.state(model, nnx.Not(nnx.Param)))
    toks, lengths = _batch(np.random.default_rng(1), [7, 0, 12, 0], 12)
    logits = model(toks, lengths)
    assert logits.shape == (4,) and logits.dtype == jnp.float32
    assert np.all(np.isfinite(np.asarray(logits)))
    # also under jit, in training mode, and the gradient through all-masked rows is finite
    def loss(m):
        return jnp.sum(m(toks, lengths, deterministic=False, rngs=nnx.Rngs(dropout=jax.random.key(0))) ** 2)

    grads = nnx.jit(nnx.grad(loss))(model)
    assert all(np.all(np.isfinite(np.asarray(g))) for g in jax.tree.leaves(grads))


@pytest.mark.parametrize("pooling", ["cls", "mean", "max"])
def test_padding_invariance(pooling):
    """The same sentences padded to two lengths (pad slots even holding junk ids) give the same logits."""
    model = BertClassifier(TINY.replace(pooling=pooling), rngs=nnx.Rngs(2))
    rng = np.random.default_rng(2)
    lengths = [3, 10, 1, 7]
    short, lens = _batch(rng, lengths, 10)
    long = np.zeros((4, 24), np.int32)
    long[:, :10] = short
    noisy = long.copy()
    for i, n in enumerate(lengths):
        noisy[i, n:] = rng.integers(1, TINY.vocab_size, size=24 - n)
    a = np.asarray(model(short, lens))
    b = np.asarray(model(long, lens))
    c = np.asarray(model(noisy, lens))
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
    np.testing.assert_allclose(a, c, atol=1e-5, rtol=0)
    # and the mask matters: reading the junk as tokens changes the logits
    d = np.asarray(model(noisy, np.full(4, 24, np.int32)))
    assert np.abs(c - d).max() > 1e-4


def test_mean_and_max_pooling_match_manual_reduction():
    rng = np.random.default_rng(3)
    toks, lens = _batch(rng, [4, 8], 8)
    mask = np.arange(8)[None] < lens[:, None]
    for pooling in ("mean", "max"):
        model = BertClassifier(TINY.replace(pooling=pooling), rngs=nnx.Rngs(3))
        seq, _ = model.bert(toks, mask)
        seq = np.asarray(seq)
        feats = np.stack([
            seq[i, : lens[i]].mean(0) if pooling == "mean" else seq[i, : lens[i]].max(0) for i in range(2)
        ])
        k = np.asarray(model.classifier.kernel[...])
        b = np.asarray(model.classifier.bias[...])
        np.testing.assert_allclose(np.asarray(model(toks, lens)), (feats @ k + b)[:, 0], atol=1e-5)


def test_dropout_uses_call_time_rngs():
    model = BertClassifier(TINY, rngs=nnx.Rngs(4))
    toks, lens = _batch(np.random.default_rng(4), [6, 9], 9)
    det = np.asarray(model(toks, lens))
    np.testing.assert_array_equal(det, np.asarray(model(toks, lens, deterministic=True)))
    r1 = np.asarray(model(toks, lens, deterministic=False, rngs=nnx.Rngs(dropout=jax.random.key(1))))
    r1b = np.asarray(model(toks, lens, deterministic=False, rngs=nnx.Rngs(dropout=jax.random.key(1))))
    r2 = np.asarray(model(toks, lens, deterministic=False, rngs=nnx.Rngs(dropout=jax.random.key(2))))
    np.testing.assert_array_equal(r1, r1b)
    assert np.abs(r1 - det).max() > 1e-6 and np.abs(r1 - r2).max() > 1e-6


def test_max_position_embeddings_enforced():
    model = BertClassifier(TINY.replace(max_position_embeddings=8), rngs=nnx.Rngs(0))
    toks, lens = _batch(np.random.default_rng(0), [3], 9)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(toks, lens)


# ---------------------------------------------------------------- training


def test_one_train_step_changes_every_parameter_and_stays_finite():
    model = BertClassifier(TINY, rngs=nnx.Rngs(5))
    # plain Adam (no weight decay), so a parameter can only move if it received a gradient
    state = create_train_state(model, optax.adam(1e-3), Classification(), seed=0)
    before = jax.tree.map(np.asarray, state.params)
    toks, lens = _batch(np.random.default_rng(5), [5, 12, 0, 8], 12)
    batch = {
        "tokens": jnp.asarray(toks),
        "lengths": jnp.asarray(lens),
        "labels": jnp.asarray([1, 0, 0, 1], jnp.int32),
        "weights": jnp.asarray([1, 1, 0, 1], jnp.float32),
    }
    state, metrics = jit_train_step(state, batch)
    after = jax.tree.map(np.asarray, state.params)
    flat_b = dict(nnx.to_flat_state(nnx.State(before)))
    flat_a = dict(nnx.to_flat_state(nnx.State(after)))
    assert flat_b.keys() == flat_a.keys() and len(flat_a) > 30
    unchanged = []
    for path in flat_a:
        a, b = np.asarray(flat_a[path][...]), np.asarray(flat_b[path][...])
        assert np.all(np.isfinite(a)), path
        if np.array_equal(a, b):
            unchanged.append(path)
    assert not unchanged, f"parameters not updated by one step: {unchanged}"
    assert np.isfinite(float(metrics["loss_sum"])) and float(metrics["count"]) == 3.0
    assert np.isfinite(float(metrics["grad_norm"])) and float(metrics["grad_norm"]) > 0
    assert int(state.step) == 1


# ---------------------------------------------------------------- bf16


def test_bf16_compute_close_to_fp32():
    m32 = BertClassifier(TINY, rngs=nnx.Rngs(6))
    m16 = BertClassifier(TINY.replace(dtype="bfloat16"), rngs=nnx.Rngs(123))
    nnx.update(m16, nnx.state(m32, nnx.Param))
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(nnx.state(m16, nnx.Param)))
    toks, lens = _batch(np.random.default_rng(6), [5, 16, 0, 9], 16)
    mask = np.arange(16)[None] < lens[:, None]
    s32, p32 = m32.bert(toks, mask)
    s16, p16 = m16.bert(toks, mask)
    assert s16.dtype == jnp.bfloat16
    valid = mask
    err = np.abs(np.asarray(s16, np.float32)[valid] - np.asarray(s32)[valid])
    assert err.max() < 0.1, err.max()  # LayerNorm-ed activations are O(1); bf16 has ~3 significant digits
    assert np.abs(np.asarray(p16, np.float32) - np.asarray(p32)).max() < 0.05
    l32, l16 = np.asarray(m32(toks, lens)), np.asarray(m16(toks, lens))
    assert l16.dtype == np.float32 and np.all(np.isfinite(l16))
    np.testing.assert_allclose(l16, l32, atol=0.02)
    # training in bf16 also runs and stays finite
    state = create_train_state(m16, optax.adamw(1e-3), Classification())
    batch = {"tokens": jnp.asarray(toks), "lengths": jnp.asarray(lens),
             "labels": jnp.asarray([1, 0, 1, 0], jnp.int32), "weights": jnp.ones(4, jnp.float32)}
    state, metrics = jit_train_step(state, batch)
    assert np.isfinite(float(metrics["loss_sum"]))
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(state.params))
