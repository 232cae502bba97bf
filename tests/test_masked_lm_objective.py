"""MaskedLM objective through the shared jitted train/eval steps, on toy packed data (no tokenizer needed)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxsenti.data.masking import MaskedLMBatches, pack
from jaxsenti.data.corpus import TokenizedCorpus, VocabInfo
from jaxsenti.models.bert import BertConfig
from jaxsenti.models.bert_mlm import BertForMaskedLM
from jaxsenti.objectives.masked_lm import MaskedLM
from jaxsenti.training.steps import create_train_state, jit_eval_step, trace_counts, train_step

V, T, B = 64, 16, 8
VOCAB = VocabInfo(vocab_size=V, cls_id=2, sep_id=3, pad_id=0, mask_id=4, special_ids=(0, 1, 2, 3, 4),
                  replacement_ids=np.arange(5, V, dtype=np.int32))
CFG = BertConfig(vocab_size=V, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                 max_position_embeddings=T, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
# one optimizer and two jitted steps shared by all tests: the jit cache is keyed on the state's static
# fields (graphdef, optimizer, objective), so sharing them keeps compiles (most of this file's time) few
TX = optax.adam(3e-3)
STEP = jax.jit(train_step, donate_argnums=0)
KEEP = jax.jit(train_step)  # no donation: a start state reused for several steps


@pytest.fixture(scope="module")
def toy_batches():
    """60 'reviews' of 3-20 tokens with two-token words, packed into 16-token sequences."""
    rng = np.random.default_rng(0)
    lens = rng.integers(3, 21, 60)
    ids = rng.integers(5, V, int(lens.sum())).astype(np.int32)
    word_start = np.arange(len(ids)) % 2 == 0
    tc = TokenizedCorpus(ids, word_start, np.concatenate([[0], np.cumsum(lens)]), VOCAB)
    return MaskedLMBatches(pack(tc, T, seed=0), batch_size=B, seed=0)


def _state(seed=0, **kw):
    return create_train_state(BertForMaskedLM(CFG, rngs=nnx.Rngs(seed)), TX, MaskedLM(), **kw)


def _jnp(batch):
    return {k: jnp.asarray(v) for k, v in batch.items()}


def test_one_step_changes_every_parameter_and_is_finite(toy_batches):
    state = _state()
    before = jax.tree.map(np.asarray, state.params)
    batch = _jnp(next(toy_batches.epoch(0)))
    state, metrics = STEP(state, batch)
    after = jax.tree.map(np.asarray, state.params)
    flat_b, flat_a = nnx.to_flat_state(before), dict(nnx.to_flat_state(after))
    for path, v in flat_b:
        a = flat_a[path].get_value()
        assert np.isfinite(a).all(), path
        assert not np.array_equal(a, v.get_value()), f"{path} did not change"
    assert metrics["count"] == batch["target_weights"].sum() > 0
    assert np.isfinite(metrics["loss_sum"]) and np.isfinite(metrics["grad_norm"])
    # an untrained model is near-uniform over the vocabulary
    assert abs(float(metrics["loss_sum"] / metrics["count"]) - math.log(V)) < 0.5


def test_loss_decreases_on_a_repeated_batch(toy_batches):
    state = _state()
    batch = _jnp(next(toy_batches.epoch(0)))
    losses = []
    for _ in range(40):
        state, m = STEP(state, batch)
        losses.append(float(m["loss_sum"] / m["count"]))
    assert losses[-1] < 0.5 * losses[0], losses[::8]


def test_filler_rows_and_unused_slots_change_nothing(toy_batches):
    state = _state(seed=1)
    full = next(toy_batches.epoch(0))
    half = {k: v[:4] for k, v in full.items()}
    # same 4 real rows + 4 rows of garbage with weight 0; the real rows' unused slots get garbage too
    rng = np.random.default_rng(1)
    noisy = {k: np.concatenate([v[:4], v[4:]]) for k, v in full.items()}
    noisy["weights"][4:] = 0.0
    unused = noisy["target_weights"] == 0
    noisy["positions"] = np.where(unused, rng.integers(0, T, unused.shape), noisy["positions"]).astype(np.int32)
    noisy["targets"] = np.where(unused, rng.integers(0, V, unused.shape), noisy["targets"]).astype(np.int32)
    zeros = {k: np.concatenate([half[k], np.zeros_like(half[k])]) for k in half}
    ref, m_ref = KEEP(state, _jnp(half))
    for batch in (noisy, zeros):
        new, m = KEEP(state, _jnp(batch))
        assert float(m["count"]) == float(m_ref["count"])
        np.testing.assert_allclose(float(m["loss_sum"]), float(m_ref["loss_sum"]), rtol=1e-5)
        for (p, a), (_, b) in zip(nnx.to_flat_state(new.params), nnx.to_flat_state(ref.params)):
            np.testing.assert_allclose(np.asarray(a.get_value()), np.asarray(b.get_value()), atol=2e-6, err_msg=str(p))


def test_no_retrace_across_batches_and_epochs(toy_batches):
    state = _state()
    n, counts = 0, []
    for e in range(2):
        for batch in toy_batches.epoch(e):  # includes a last batch with filler rows
            state, _ = STEP(state, _jnp(batch))
            counts.append(trace_counts()["train_step"])
            n += 1
    assert n == 2 * len(toy_batches) > 4
    assert counts[-1] == counts[0]  # traced (at most) at the first call, never again


def test_eval_summaries_and_grad_accumulation(toy_batches):
    state = _state(seed=2)
    sums = None
    for batch in toy_batches.epoch(0):
        s, out = jit_eval_step(state, _jnp(batch))
        assert out is None
        sums = s if sums is None else jax.tree.map(jnp.add, sums, s)
    summary = MaskedLM().summarise({k: float(v) for k, v in sums.items()})
    assert set(summary) == {"loss", "accuracy", "perplexity"}
    assert summary["perplexity"] == pytest.approx(math.exp(summary["loss"]))
    assert 0.0 <= summary["accuracy"] <= 1.0
    assert float(sums["count"]) == sum(b["target_weights"].sum() for b in toy_batches.epoch(0))
    assert set(MaskedLM().monitors) <= set(summary) and MaskedLM() == MaskedLM() and hash(MaskedLM())
    # the weight is the number of masked tokens, so 2 microbatches give the full batch's gradient
    batch = _jnp(next(toy_batches.epoch(0)))
    one, _ = KEEP(_state(seed=3), batch)
    two, _ = KEEP(_state(seed=3, grad_accum_steps=2), batch)
    for (p, a), (_, b) in zip(nnx.to_flat_state(one.params), nnx.to_flat_state(two.params)):
        np.testing.assert_allclose(np.asarray(a.get_value()), np.asarray(b.get_value()), atol=2e-6, err_msg=str(p))


def test_bfloat16_training_step_is_finite(toy_batches):
    model = BertForMaskedLM(CFG.replace(dtype="bfloat16", hidden_dropout_prob=0.1), rngs=nnx.Rngs(0))
    state = create_train_state(model, TX, MaskedLM())
    state, m = STEP(state, _jnp(next(toy_batches.epoch(0))))
    assert np.isfinite(float(m["loss_sum"])) and np.isfinite(float(m["grad_norm"]))
    assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(state.params))
