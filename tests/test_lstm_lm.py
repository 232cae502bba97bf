"""Tests for the LSTM language model, its objective, and the LM -> classifier transfer and folder format."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxsenti.data.lm_corpus import EOS, LMBatches, lm_vocab
from jaxsenti.data.text import PAD, UNK, Vocab
from jaxsenti.models.lstm import LSTMClassifier, LSTMConfig
from jaxsenti.models.lstm_lm import (
    LSTMLanguageModel,
    LSTMLMConfig,
    log_expected_count,
    log_uniform_sample,
)
from jaxsenti.models.lstm_transfer import (
    flat_params,
    load_lm,
    load_pretrained_lstm,
    save_lm,
    transfer_lm_to_classifier,
)
from jaxsenti.objectives.language_model import NextWordLM
from jaxsenti.training.steps import (
    create_train_state,
    eval_step,
    loss_fn,
    trace_counts,
    train_step,
)

SMALL = {"vocab_size": 40, "embed_dim": 12, "hidden_dim": 8, "num_layers": 2}


def small_lm(seed=0, **kw) -> LSTMLanguageModel:
    return LSTMLanguageModel(LSTMLMConfig(**{**SMALL, **kw}), rngs=nnx.Rngs(seed))


def random_batch(lengths, seq_len, vocab=SMALL["vocab_size"], seed=0, junk=False):
    """A next-word batch; with ``junk`` the padding holds random ids (which must not matter)."""
    rng = np.random.default_rng(seed)
    lengths = np.asarray(lengths, np.int32)
    rows = len(lengths)
    tokens = rng.integers(1, vocab, size=(rows, seq_len)).astype(np.int32)
    targets = rng.integers(1, vocab, size=(rows, seq_len)).astype(np.int32)
    valid = np.arange(seq_len)[None, :] < lengths[:, None]
    if not junk:
        tokens[~valid] = 0
        targets[~valid] = 0
    return {"tokens": tokens, "lengths": lengths, "targets": targets, "target_weights": valid.astype(np.float32),
            "weights": np.ones((rows,), np.float32)}


def leaves(tree):
    return {k: np.asarray(v) for k, v in flat_params(tree).items()}


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------


def test_shapes_and_pad_column():
    model = small_lm()
    b = random_batch([5, 3, 0], 6)
    logits = model(b["tokens"], b["lengths"])
    assert logits.shape == (3, 6, SMALL["vocab_size"]) and logits.dtype == jnp.float32
    assert np.all(np.isfinite(np.asarray(logits[..., 1:])))
    assert float(jnp.max(logits[..., 0])) < -1e29  # <pad> is never predicted
    assert model.hidden(b["tokens"], b["lengths"]).shape == (6, 3, SMALL["hidden_dim"])
    z = jnp.ones((7, SMALL["embed_dim"]))
    sampled = model.sampled_logits(z, jnp.arange(7, dtype=jnp.int32) + 1, jax.random.PRNGKey(0), 5)
    assert sampled.shape == (7, 6)


def test_embed_and_layers_match_classifier_names_and_shapes():
    lm = leaves(small_lm())
    clf = leaves(LSTMClassifier(LSTMConfig(**SMALL), rngs=nnx.Rngs(0)))
    shared = {k for k in clf if k.startswith(("embed/", "layers/"))}
    assert shared and all(k in lm and lm[k].shape == clf[k].shape for k in shared)


def test_config_validation():
    with pytest.raises(ValueError, match="dropout"):
        LSTMLMConfig(dropout=1.5)
    with pytest.raises(ValueError, match="vocab_size"):
        LSTMLMConfig(vocab_size=3)
    with pytest.raises(ValueError, match="unknown"):
        LSTMLMConfig.from_dict({"vocab_size": 10, "pooling": "last"})
    with pytest.raises(ValueError, match="num_sampled"):
        NextWordLM(num_sampled=-1)


def test_sampled_logits_match_full_logits_with_log_q_correction():
    model = small_lm()
    rng = np.random.default_rng(0)
    z = jnp.asarray(rng.normal(size=(6, SMALL["embed_dim"])), jnp.float32)
    targets = jnp.asarray([3, 4, 5, 6, 7, 8], jnp.int32)
    key, s, vocab = jax.random.PRNGKey(3), 16, SMALL["vocab_size"]
    got = np.asarray(model.sampled_logits(z, targets, key, s))
    ids, log_q = log_uniform_sample(key, s, vocab)
    full = np.asarray(model.full_logits(z))
    rows = np.arange(6)
    np.testing.assert_allclose(got[:, 0], full[rows, targets] - np.asarray(log_expected_count(targets, s, vocab)),
                               rtol=1e-5, atol=1e-5)
    expect = full[:, np.asarray(ids)] - np.asarray(log_q)[None, :]
    hit = (np.asarray(ids)[None, :] == np.asarray(targets)[:, None]) | (np.asarray(ids)[None, :] == 0)
    np.testing.assert_allclose(got[:, 1:][~hit], expect[~hit], rtol=1e-5, atol=1e-5)
    assert np.all(got[:, 1:][hit] < -1e29)


def test_log_uniform_sampler_follows_its_distribution():
    vocab, n = 20, 200_000
    ids, _ = log_uniform_sample(jax.random.PRNGKey(0), n, vocab)
    freq = np.bincount(np.asarray(ids), minlength=vocab) / n
    k = np.arange(vocab)
    p = np.log((k + 2) / (k + 1)) / np.log(vocab + 1)
    np.testing.assert_allclose(freq, p, atol=0.004)
    np.testing.assert_allclose(np.exp(np.asarray(log_expected_count(jnp.asarray(k), 1, vocab))), p, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# Objective and train step
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_sampled", [0, 8])
def test_one_jitted_step_changes_every_parameter_and_stays_finite(num_sampled):
    state = create_train_state(small_lm(dropout=0.3, embed_dropout=0.1), optax.adam(1e-2), NextWordLM(num_sampled))
    before = leaves(state.params)
    step = jax.jit(train_step, donate_argnums=0)
    state, metrics = step(state, random_batch([6, 4, 2, 1], 6))
    after = leaves(state.params)
    assert after.keys() == before.keys()
    for k in before:
        assert np.all(np.isfinite(after[k])), k
        assert not np.array_equal(after[k], before[k]), f"{k} did not change"
    assert float(metrics["count"]) == 13.0 and np.isfinite(float(metrics["loss_sum"]))


def test_eval_uses_full_softmax_whatever_the_training_mode():
    model, batch = small_lm(), random_batch([5, 3], 5)
    full = create_train_state(model, optax.adam(1e-3), NextWordLM(0))
    sampled = create_train_state(model, optax.adam(1e-3), NextWordLM(4))
    a, rows_a = eval_step(full, batch)
    b, _ = eval_step(sampled, batch)
    for k in a:
        np.testing.assert_allclose(np.asarray(a[k]), np.asarray(b[k]), rtol=1e-6)
    np.testing.assert_allclose(float(jnp.sum(rows_a)), float(a["loss_sum"]), rtol=1e-5)
    # the full-softmax loss equals -log p(target) computed from the model's logits
    logp = jax.nn.log_softmax(model(batch["tokens"], batch["lengths"]), axis=-1)
    want = -np.sum(np.take_along_axis(np.asarray(logp), batch["targets"][..., None], -1)[..., 0] * batch["target_weights"])
    np.testing.assert_allclose(float(a["loss_sum"]), want, rtol=1e-5)
    s = NextWordLM().summarise({k: float(v) for k, v in a.items()})
    assert s["perplexity"] == pytest.approx(np.exp(s["loss"])) and 0 <= s["accuracy"] <= 1


@pytest.mark.parametrize("num_sampled", [0, 8])
def test_padding_and_filler_rows_change_nothing(num_sampled):
    state = create_train_state(small_lm(dropout=0.0, embed_dropout=0.0), optax.sgd(0.1), NextWordLM(num_sampled))
    base = random_batch([5, 3, 1], 5)
    # Same rows re-padded to T=9 with junk ids in the padding and two junk filler rows of weight 0.
    wide = random_batch([5, 3, 1, 4, 9], 9, seed=7, junk=True)
    for k in ("tokens", "targets"):
        for r, n in enumerate(base["lengths"]):
            wide[k][r, :n] = base[k][r, :n]
    wide["weights"][3:] = 0.0
    grad = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    key = jax.random.PRNGKey(5)
    (l1, s1), g1 = grad(state.params, state, base, key)
    (l2, s2), g2 = grad(state.params, state, wide, key)
    np.testing.assert_allclose(float(l1), float(l2), rtol=1e-5)
    for k in s1:
        np.testing.assert_allclose(float(s1[k]), float(s2[k]), rtol=1e-5, atol=1e-6)
    for k, v in leaves(g1).items():
        np.testing.assert_allclose(v, leaves(g2)[k], rtol=1e-4, atol=1e-6, err_msg=k)


def tiny_corpus_batches(batch_size=8):
    docs = [["菜", "很", "好吃"], ["服务", "很", "差"], ["环境", "不错", "菜", "很", "好吃"], ["很", "差", "不", "来"]] * 4
    vocab = lm_vocab(docs, min_freq=1)
    return vocab, LMBatches([vocab.encode(d) for d in docs], eos_id=vocab.stoi[EOS], batch_size=batch_size,
                            buckets=(8,), seed=0)


@pytest.mark.parametrize("num_sampled", [0, 4])
def test_loss_falls_on_a_tiny_repeated_corpus(num_sampled):
    vocab, batches = tiny_corpus_batches()
    model = LSTMLanguageModel(LSTMLMConfig(vocab_size=len(vocab), embed_dim=16, hidden_dim=16, dropout=0.0,
                                           embed_dropout=0.0), rngs=nnx.Rngs(0))
    state = create_train_state(model, optax.adam(2e-2), NextWordLM(num_sampled))
    step, evaluate = jax.jit(train_step, donate_argnums=0), jax.jit(eval_step)

    def val_loss(st):
        tot = {"loss_sum": 0.0, "count": 0.0}
        for b in batches.epoch(0):
            sums, _ = evaluate(st, b)
            tot = {k: tot[k] + float(sums[k]) for k in tot}
        return tot["loss_sum"] / tot["count"]

    first = val_loss(state)
    assert first == pytest.approx(np.log(len(vocab) - 1), rel=0.15)  # near uniform at initialisation
    for epoch in range(25):
        for b in batches.epoch(epoch):
            state, _ = step(state, b)
    # The corpus is 4 sentences: most next words are determined by the context.
    assert val_loss(state) < 0.35 * first


def test_no_retrace_across_batches_of_equal_shape():
    state = create_train_state(small_lm(), optax.adam(1e-3), NextWordLM(4))
    step = jax.jit(train_step, donate_argnums=0)
    n0 = trace_counts().get("train_step", 0)
    for seed in range(3):
        state, _ = step(state, random_batch([4, 2, 3], 6, seed=seed))
    assert trace_counts()["train_step"] - n0 == 1
    state, _ = step(state, random_batch([4, 2, 3], 8))
    assert trace_counts()["train_step"] - n0 == 2


# ---------------------------------------------------------------------------------------------
# Transfer and folder format
# ---------------------------------------------------------------------------------------------

LM_WORDS = ["好", "菜", "很", "差", "服务", "环境", "不错"]
CLF_WORDS = ["很", "新词", "好", "差", "另一个"]  # 3 shared, 2 new to the LM


def lm_and_vocab(**kw):
    vocab = Vocab([PAD, UNK, EOS, *LM_WORDS])
    return LSTMLanguageModel(LSTMLMConfig(**{**SMALL, "vocab_size": len(vocab), **kw}), rngs=nnx.Rngs(1)), vocab


def classifier_and_vocab(**kw):
    vocab = Vocab([PAD, UNK, *CLF_WORDS])
    return LSTMClassifier(LSTMConfig(**{**SMALL, "vocab_size": len(vocab), **kw}), rngs=nnx.Rngs(2)), vocab


def test_transfer_copies_shared_rows_and_lstm_weights_exactly():
    lm, lm_v = lm_and_vocab()
    clf, clf_v = classifier_and_vocab()
    fresh_before = leaves(clf)
    clf, report = transfer_lm_to_classifier(lm, lm_v, clf, clf_v)
    assert (report.copied, report.fresh, report.layers) == (4, 2, 2)  # <unk>, 很, 好, 差 / 新词, 另一个
    table, lm_table, old_table = np.asarray(clf.embed.embedding[...]), np.asarray(lm.embed.embedding[...]), \
        fresh_before["embed/embedding"]
    for i, w in enumerate(clf_v.itos):
        if i > 0 and w in lm_v.stoi:
            np.testing.assert_array_equal(table[i], lm_table[lm_v.stoi[w]])
        else:  # <pad> and new words keep their fresh vectors
            np.testing.assert_array_equal(table[i], old_table[i])
    after, lm_params = leaves(clf), leaves(lm)
    for k in after:
        if k.startswith("layers/"):
            np.testing.assert_array_equal(after[k], lm_params[k])
        elif k.startswith("head/"):
            np.testing.assert_array_equal(after[k], fresh_before[k])


def test_transferred_classifier_reads_the_lm_state():
    """With the same vocabulary, the classifier's last-state features are the LM's last hidden state."""
    lm, lm_v = lm_and_vocab()
    clf = LSTMClassifier(LSTMConfig(**{**SMALL, "vocab_size": len(lm_v)}), rngs=nnx.Rngs(3))
    clf, _ = transfer_lm_to_classifier(nnx.state(lm, nnx.Param), lm_v, clf, lm_v)
    b = random_batch([5, 2, 4], 6, vocab=len(lm_v))
    h = np.asarray(lm.hidden(b["tokens"], b["lengths"]))  # [T, B, H]
    last = h[b["lengths"] - 1, np.arange(3)]
    np.testing.assert_allclose(np.asarray(clf.features(b["tokens"], b["lengths"])), last, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("field,value", [("embed_dim", 10), ("hidden_dim", 6), ("num_layers", 1), ("bidirectional", True)])
def test_transfer_mismatch_names_the_field(field, value):
    lm, lm_v = lm_and_vocab()
    clf, clf_v = classifier_and_vocab(**{field: value})
    with pytest.raises(ValueError, match=field):
        transfer_lm_to_classifier(lm, lm_v, clf, clf_v)


def test_transfer_rejects_a_vocabulary_of_the_wrong_size():
    lm, _ = lm_and_vocab()
    clf, clf_v = classifier_and_vocab()
    with pytest.raises(ValueError, match="vocabulary"):
        transfer_lm_to_classifier(lm, Vocab([PAD, UNK, "x"]), clf, clf_v)


def test_save_load_round_trip(tmp_path):
    lm, lm_v = lm_and_vocab()
    folder = save_lm(tmp_path / "lm", lm, lm_v, info={"val_perplexity": 123.0})
    meta = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    assert meta["info"]["val_perplexity"] == 123.0 and meta["config"]["vocab_size"] == len(lm_v)
    with np.load(folder / "params.npz") as z:  # readable with numpy alone
        assert "layers/1/fwd/w_hh" in z.files
    loaded, vocab = load_lm(folder)
    assert vocab == lm_v and loaded.cfg == lm.cfg
    for k, v in leaves(lm).items():
        np.testing.assert_array_equal(leaves(loaded)[k], v)
    b = random_batch([4, 2], 5, vocab=len(lm_v))
    np.testing.assert_array_equal(np.asarray(loaded(b["tokens"], b["lengths"])), np.asarray(lm(b["tokens"], b["lengths"])))
    # The classifier built from the folder equals a direct transfer from the in-memory LM.
    clf_v = Vocab([PAD, UNK, *CLF_WORDS])
    cfg = LSTMConfig(**{**SMALL, "vocab_size": len(clf_v)})
    from_folder, report = load_pretrained_lstm(folder, clf_v, cfg, nnx.Rngs(4))
    direct, report2 = transfer_lm_to_classifier(lm, lm_v, LSTMClassifier(cfg, rngs=nnx.Rngs(4)), clf_v)
    assert report == report2
    for k, v in leaves(direct).items():
        np.testing.assert_array_equal(leaves(from_folder)[k], v)
    with pytest.raises(ValueError, match="hidden_dim"):
        load_pretrained_lstm(folder, clf_v, LSTMConfig(**{**SMALL, "vocab_size": len(clf_v), "hidden_dim": 9}),
                             nnx.Rngs(0))


def test_load_rejects_incomplete_or_inconsistent_folders(tmp_path):
    lm, lm_v = lm_and_vocab()
    folder = save_lm(tmp_path / "lm", lm, lm_v)
    with pytest.raises(FileNotFoundError, match="not a pretrained LSTM LM folder"):
        load_lm(tmp_path)
    params = dict(np.load(folder / "params.npz"))
    params["proj/kernel"] = params["proj/kernel"][:, :3]
    np.savez(folder / "params.npz", **params)
    with pytest.raises(ValueError, match="proj/kernel"):
        load_lm(folder)
    del params["proj/kernel"]
    np.savez(folder / "params.npz", **params)
    with pytest.raises(ValueError, match="missing"):
        load_lm(folder)
