"""Tests for jaxsenti.models.lstm (the functional Flax NNX LSTM classifier)."""

from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxsenti.models.lstm import LSTMClassifier, LSTMConfig, LSTMLayer, lstm_direction
from jaxsenti.objectives import Classification
from jaxsenti.training.steps import create_train_state, jit_train_step, train_step

torch = pytest.importorskip("torch")

POOLINGS = ("last", "mean", "max", "concat")
SMALL = dict(vocab_size=50, embed_dim=12, hidden_dim=8, num_layers=2, dropout=0.5)


def small_cfg(**kw) -> LSTMConfig:
    return LSTMConfig(**{**SMALL, **kw})


def make_model(seed=0, **kw) -> LSTMClassifier:
    return LSTMClassifier(small_cfg(**kw), rngs=nnx.Rngs(seed))


def random_batch(lengths, seq_len, vocab=SMALL["vocab_size"], seed=0, junk_pad=False):
    """Right-padded tokens [B, seq_len]; pads are 0, or random ids when junk_pad (must not matter)."""
    rng = np.random.default_rng(seed)
    lengths = np.asarray(lengths, np.int32)
    tokens = rng.integers(1, vocab, size=(len(lengths), seq_len), dtype=np.int32)
    if not junk_pad:
        tokens[np.arange(seq_len)[None, :] >= lengths[:, None]] = 0
    return tokens, lengths


def repad(tokens, lengths, seq_len, seed=1, junk=True):
    """Same sequences, re-padded to seq_len, with junk (or 0) in the padding."""
    rng = np.random.default_rng(seed)
    out = rng.integers(1, SMALL["vocab_size"], size=(tokens.shape[0], seq_len), dtype=np.int32)
    if not junk:
        out[:] = 0
    for b, n in enumerate(lengths):
        out[b, :n] = tokens[b, :n]
    return out


# ---------------------------------------------------------------------------------------------
# torch helpers
# ---------------------------------------------------------------------------------------------


def load_torch_lstm_layer(layer: LSTMLayer, tlstm, k: int = 0) -> None:
    """Copy layer ``k`` of a ``torch.nn.LSTM`` (gate order i, f, g, o) into our LSTMLayer."""

    def copy(direction, suffix):
        g = lambda name: jnp.asarray(getattr(tlstm, f"{name}_l{k}{suffix}").detach().numpy())  # noqa: E731
        direction.w_ih[...] = g("weight_ih").T
        direction.w_hh[...] = g("weight_hh").T
        direction.b[...] = g("bias_ih") + g("bias_hh")

    copy(layer.fwd, "")
    if tlstm.bidirectional:
        assert layer.bwd is not None
        copy(layer.bwd, "_reverse")


def run_layer(layer, x_btd, lengths):
    """Batch-major wrapper around the time-major layer."""
    ys, (h, c) = layer(jnp.swapaxes(jnp.asarray(x_btd), 0, 1), jnp.asarray(lengths, jnp.int32))
    return np.asarray(jnp.swapaxes(ys, 0, 1)), np.asarray(h), np.asarray(c)


def torch_final_state(hn):
    """torch h_n [layers*dirs, B, H] of a one-layer LSTM -> [B, H*dirs] (fwd then bwd)."""
    return torch.cat(list(hn), dim=-1).detach().numpy()


# ---------------------------------------------------------------------------------------------
# config / structure
# ---------------------------------------------------------------------------------------------


def test_config_defaults_hashable_and_validated():
    cfg = LSTMConfig()
    assert (cfg.vocab_size, cfg.embed_dim, cfg.hidden_dim, cfg.num_layers) == (9524, 400, 256, 2)
    assert cfg.bidirectional is False and cfg.pooling == "last" and cfg.dtype == "float32"
    assert hash(cfg) == hash(LSTMConfig()) and isinstance(dataclasses.asdict(cfg)["dtype"], str)
    with pytest.raises(ValueError):
        LSTMConfig(pooling="attention")
    with pytest.raises(ValueError):
        LSTMConfig(dropout=1.0)
    with pytest.raises(ValueError, match="embed_dropout"):
        LSTMConfig(embed_dropout=-0.1)
    with pytest.raises(ValueError, match="dtype: must be float32, bfloat16 or float16"):
        LSTMConfig(dtype="not-a-dtype")
    with pytest.raises(ValueError, match="hidden_dim: must be >= 1, got 0"):
        LSTMConfig(hidden_dim=0)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_only_param_state_and_torch_layout(bidirectional):
    cfg = small_cfg(bidirectional=bidirectional)
    model = LSTMClassifier(cfg, rngs=nnx.Rngs(0))
    assert not jax.tree.leaves(nnx.state(model, nnx.Not(nnx.Param)))
    h, dirs = cfg.hidden_dim, 2 if bidirectional else 1
    for k, layer in enumerate(model.layers):
        in_dim = cfg.embed_dim if k == 0 else h * dirs
        directions = [layer.fwd] + ([layer.bwd] if bidirectional else [])
        assert (layer.bwd is None) == (not bidirectional)
        for d in directions:
            assert d.w_ih.shape == (in_dim, 4 * h) and d.w_hh.shape == (h, 4 * h) and d.b.shape == (4 * h,)
            assert d.w_ih[...].dtype == jnp.float32
    assert model.head.kernel.shape == (h * dirs, 1)


# ---------------------------------------------------------------------------------------------
# shapes, finiteness, padding
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("pooling", POOLINGS)
def test_output_shape_and_zero_length_rows_finite(pooling, bidirectional):
    model = make_model(pooling=pooling, bidirectional=bidirectional)
    tokens, lengths = random_batch([5, 0, 11, 1, 0], 11)
    logits = model(jnp.asarray(tokens), jnp.asarray(lengths))
    assert logits.shape == (5,) and logits.dtype == jnp.float32
    assert np.all(np.isfinite(np.asarray(logits)))
    # Zero-length rows carry no information: they all map to the same (bias-only) logit.
    np.testing.assert_allclose(logits[1], logits[4], atol=1e-6)
    # ... and their gradient is finite too (max pooling over an empty row must not give NaN).
    graphdef, params = nnx.split(model, nnx.Param)
    grads = jax.grad(lambda p: jnp.sum(nnx.merge(graphdef, p)(jnp.asarray(tokens), jnp.asarray(lengths))))(params)
    assert all(np.all(np.isfinite(np.asarray(g))) for g in jax.tree.leaves(grads))


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("pooling", POOLINGS)
def test_padding_invariance(pooling, bidirectional):
    model = make_model(pooling=pooling, bidirectional=bidirectional)
    lengths = [20, 7, 1, 0, 13, 19]
    tokens20, lengths = random_batch(lengths, 20, seed=3)
    tokens57 = repad(tokens20, lengths, 57, junk=True)  # junk ids in the pad must not matter either
    out20 = model(jnp.asarray(tokens20), jnp.asarray(lengths))
    out57 = model(jnp.asarray(tokens57), jnp.asarray(lengths))
    np.testing.assert_allclose(np.asarray(out20), np.asarray(out57), atol=1e-5, rtol=0)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_bidirectional_padded_batch_matches_unpadded_single_runs(pooling):
    model = make_model(pooling=pooling, bidirectional=True, seed=4)
    tokens, lengths = random_batch([9, 3, 1, 6, 9, 2], 9, seed=5)
    batched = np.asarray(model(jnp.asarray(tokens), jnp.asarray(lengths)))
    for b, n in enumerate(lengths):
        single = model(jnp.asarray(tokens[b : b + 1, :n]), jnp.asarray([n], jnp.int32))
        np.testing.assert_allclose(batched[b], np.asarray(single)[0], atol=1e-5, rtol=0)


def test_padding_changes_nothing_only_where_it_should():
    """Guard against a vacuous invariance test: real tokens do change the logits."""
    model = make_model()
    tokens, lengths = random_batch([6, 6], 8, seed=6)
    out = model(jnp.asarray(tokens), jnp.asarray(lengths))
    longer = model(jnp.asarray(tokens), jnp.asarray(lengths) + 2)
    assert np.all(np.abs(np.asarray(out) - np.asarray(longer)) > 1e-6)


# ---------------------------------------------------------------------------------------------
# numerical parity with torch.nn.LSTM
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bidirectional", [False, True])
def test_layer_matches_torch_full_length(bidirectional):
    torch.manual_seed(0)
    d_in, h, bsz, seq = 7, 9, 4, 13
    tl = torch.nn.LSTM(d_in, h, num_layers=1, batch_first=True, bidirectional=bidirectional)
    layer = LSTMLayer(d_in, h, bidirectional=bidirectional, rngs=nnx.Rngs(0))
    load_torch_lstm_layer(layer, tl)
    x = torch.randn(bsz, seq, d_in)
    with torch.no_grad():
        t_out, (t_h, t_c) = tl(x)
    ys, hn, cn = run_layer(layer, x.numpy(), np.full((bsz,), seq))
    assert np.max(np.abs(ys - t_out.numpy())) <= 1e-5
    assert np.max(np.abs(hn - torch_final_state(t_h))) <= 1e-5
    assert np.max(np.abs(cn - torch_final_state(t_c))) <= 1e-5


@pytest.mark.parametrize("bidirectional", [False, True])
def test_layer_matches_torch_packed_padded(bidirectional):
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    torch.manual_seed(1)
    d_in, h, seq = 6, 5, 11
    lengths = np.array([11, 4, 1, 8, 11], np.int32)
    tl = torch.nn.LSTM(d_in, h, num_layers=1, batch_first=True, bidirectional=bidirectional)
    layer = LSTMLayer(d_in, h, bidirectional=bidirectional, rngs=nnx.Rngs(0))
    load_torch_lstm_layer(layer, tl)
    x = torch.randn(len(lengths), seq, d_in)
    with torch.no_grad():
        packed = pack_padded_sequence(x, torch.as_tensor(lengths), batch_first=True, enforce_sorted=False)
        t_out, (t_h, t_c) = tl(packed)
        t_out, _ = pad_packed_sequence(t_out, batch_first=True, total_length=seq)
    ys, hn, cn = run_layer(layer, x.numpy(), lengths)
    valid = np.arange(seq)[None, :] < lengths[:, None]
    assert np.max(np.abs(ys - t_out.numpy())[valid]) <= 1e-5
    assert np.max(np.abs(hn - torch_final_state(t_h))) <= 1e-5
    assert np.max(np.abs(cn - torch_final_state(t_c))) <= 1e-5


@pytest.mark.parametrize("bidirectional", [False, True])
def test_layer_gradients_match_torch(bidirectional):
    """The hand-written VJP of the recurrence, end to end against torch autograd (padded batch)."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    torch.manual_seed(2)
    d_in, h, seq = 5, 6, 9
    lengths = np.array([9, 3, 6, 1], np.int32)
    tl = torch.nn.LSTM(d_in, h, num_layers=1, batch_first=True, bidirectional=bidirectional)
    layer = LSTMLayer(d_in, h, bidirectional=bidirectional, rngs=nnx.Rngs(0))
    load_torch_lstm_layer(layer, tl)
    x = torch.randn(len(lengths), seq, d_in, requires_grad=True)
    ct_y = torch.randn(len(lengths), seq, h * (2 if bidirectional else 1))
    ct_y[torch.as_tensor(np.arange(seq)[None, :] >= lengths[:, None])] = 0.0
    ct_h = torch.randn(len(lengths), h * (2 if bidirectional else 1))

    packed = pack_padded_sequence(x, torch.as_tensor(lengths), batch_first=True, enforce_sorted=False)
    t_out, (t_h, _) = tl(packed)
    t_out, _ = pad_packed_sequence(t_out, batch_first=True, total_length=seq)
    (torch.sum(t_out * ct_y) + torch.sum(torch.cat(list(t_h), -1) * ct_h)).backward()

    graphdef, params = nnx.split(layer, nnx.Param)

    def loss(params, x):
        ys, (hn, _) = nnx.merge(graphdef, params)(jnp.swapaxes(x, 0, 1), jnp.asarray(lengths))
        return jnp.sum(jnp.swapaxes(ys, 0, 1) * ct_y.numpy()) + jnp.sum(hn * ct_h.numpy())

    g_params, g_x = jax.grad(loss, (0, 1))(params, jnp.asarray(x.detach().numpy()))
    np.testing.assert_allclose(np.asarray(g_x), x.grad.numpy(), atol=1e-5)
    for name, suffix in [("fwd", "")] + ([("bwd", "_reverse")] if bidirectional else []):
        gd = g_params[name]
        tg = lambda n: getattr(tl, f"{n}_l0{suffix}").grad.numpy()  # noqa: E731
        np.testing.assert_allclose(np.asarray(gd["w_ih"][...]), tg("weight_ih").T, atol=1e-5)
        np.testing.assert_allclose(np.asarray(gd["w_hh"][...]), tg("weight_hh").T, atol=1e-5)
        np.testing.assert_allclose(np.asarray(gd["b"][...]), tg("bias_ih"), atol=1e-5)


def test_direction_vjp_matches_autodiff_of_plain_scan():
    """The hand-written VJP of lstm_direction against jax.grad of a textbook masked LSTM scan."""

    def reference(x, mask, w_ih, w_hh, b):
        hidden = w_hh.shape[0]

        def step(carry, inp):
            h, c = carry
            xt, m = inp
            z = xt @ w_ih + b + h @ w_hh
            i, f, g, o = jnp.split(z, 4, axis=-1)
            c2 = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h2 = jax.nn.sigmoid(o) * jnp.tanh(c2)
            h2, c2 = jnp.where(m, h2, h), jnp.where(m, c2, c)
            return (h2, c2), (h2, c2)

        zeros = jnp.zeros((x.shape[1], hidden))
        return jax.lax.scan(step, (zeros, zeros), (x, mask))[1]

    k = jax.random.split(jax.random.key(0), 7)
    seq, bsz, d_in, h = 8, 3, 5, 4
    x = jax.random.normal(k[0], (seq, bsz, d_in))
    w_ih = 0.5 * jax.random.normal(k[1], (d_in, 4 * h))
    w_hh = 0.5 * jax.random.normal(k[2], (h, 4 * h))
    b = 0.5 * jax.random.normal(k[3], (4 * h,))
    mask = (jnp.arange(seq)[:, None] < jnp.array([8, 3, 0])[None, :])[..., None]
    ct = (jax.random.normal(k[4], (seq, bsz, h)), jax.random.normal(k[5], (seq, bsz, h)))

    def loss(fn):
        return lambda *args: sum(jnp.sum(a * c) for a, c in zip(fn(args[0], mask, *args[1:]), ct))

    args = (x, w_ih, w_hh, b)
    ref_out = reference(x, mask, w_ih, w_hh, b)
    ref = jax.grad(loss(reference), argnums=(0, 1, 2, 3))(*args)
    for unroll in (1, 3):
        ours_out = lstm_direction(x, mask, w_ih, w_hh, b, unroll)
        for a, r in zip(ours_out, ref_out):
            np.testing.assert_allclose(np.asarray(a), np.asarray(r), atol=1e-5)
        ours = jax.grad(loss(lambda x, m, *w: lstm_direction(x, m, *w, unroll)), argnums=(0, 1, 2, 3))(*args)
        for name, a, r in zip(("x", "w_ih", "w_hh", "b"), ours, ref):
            np.testing.assert_allclose(np.asarray(a), np.asarray(r), atol=1e-5, err_msg=name)


def test_stacked_classifier_features_match_torch():
    """Embedding + 2 stacked layers (no dropout at eval) against torch's multi-layer LSTM."""
    cfg = small_cfg(num_layers=2, bidirectional=True, pooling="last")
    model = LSTMClassifier(cfg, rngs=nnx.Rngs(0))
    torch.manual_seed(3)
    emb = torch.nn.Embedding(cfg.vocab_size, cfg.embed_dim)
    tl = torch.nn.LSTM(cfg.embed_dim, cfg.hidden_dim, num_layers=2, batch_first=True, bidirectional=True, dropout=0.5)
    tl.eval()
    model.embed.embedding[...] = jnp.asarray(emb.weight.detach().numpy())
    for k, layer in enumerate(model.layers):
        load_torch_lstm_layer(layer, tl, k)
    tokens, lengths = random_batch([10, 10, 10], 10, seed=7)
    with torch.no_grad():
        _, (t_h, _) = tl(emb(torch.as_tensor(tokens).long()))
    ours = np.asarray(model.features(jnp.asarray(tokens), jnp.asarray(lengths)))
    want = torch.cat([t_h[-2], t_h[-1]], -1).numpy()  # last layer, fwd then bwd
    assert np.max(np.abs(ours - want)) <= 1e-5


# ---------------------------------------------------------------------------------------------
# dropout, training, tracing, dtype
# ---------------------------------------------------------------------------------------------


def test_dropout_uses_call_time_rngs():
    model = make_model(dropout=0.5)
    tokens, lengths = random_batch([8, 5, 3, 8], 8, seed=8)
    tokens, lengths = jnp.asarray(tokens), jnp.asarray(lengths)
    det = model(tokens, lengths)
    a = model(tokens, lengths, deterministic=False, rngs=nnx.Rngs(dropout=jax.random.key(1)))
    b = model(tokens, lengths, deterministic=False, rngs=nnx.Rngs(dropout=jax.random.key(1)))
    c = model(tokens, lengths, deterministic=False, rngs=nnx.Rngs(dropout=jax.random.key(2)))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.allclose(np.asarray(a), np.asarray(det)) and not np.allclose(np.asarray(a), np.asarray(c))
    with pytest.raises(Exception):
        model(tokens, lengths, deterministic=False)


def test_embed_dropout_acts_only_in_training():
    tokens, lengths = random_batch([8, 5, 3, 8], 8, seed=9)
    tokens, lengths = jnp.asarray(tokens), jnp.asarray(lengths)
    plain, with_ed = make_model(dropout=0.0), make_model(dropout=0.0, embed_dropout=0.5)
    rngs = lambda: nnx.Rngs(dropout=jax.random.key(3))  # noqa: E731
    np.testing.assert_array_equal(np.asarray(plain(tokens, lengths)), np.asarray(with_ed(tokens, lengths)))
    np.testing.assert_array_equal(np.asarray(plain(tokens, lengths, deterministic=False, rngs=rngs())),
                                  np.asarray(plain(tokens, lengths)))
    assert not np.allclose(np.asarray(with_ed(tokens, lengths, deterministic=False, rngs=rngs())),
                           np.asarray(with_ed(tokens, lengths)))


def _train_batch(seed, lengths=(9, 4, 0, 7), seq=9):
    tokens, lengths = random_batch(list(lengths), seq, seed=seed)
    rng = np.random.default_rng(seed)
    weights = (lengths > 0).astype(np.float32)  # the 0-length row is a filler row
    return {
        "tokens": jnp.asarray(tokens),
        "lengths": jnp.asarray(lengths),
        "labels": jnp.asarray(rng.integers(0, 2, len(lengths)), jnp.int32),
        "weights": jnp.asarray(weights),
    }


@pytest.mark.parametrize("bidirectional", [False, True])
def test_train_step_changes_every_parameter_and_stays_finite(bidirectional):
    model = make_model(bidirectional=bidirectional, pooling="mean")
    state = create_train_state(model, optax.adam(1e-2), Classification(), seed=0)
    before = jax.tree.map(lambda x: np.array(x), state.params)
    state, metrics = jit_train_step(state, _train_batch(0))
    for name, value in metrics.items():
        assert np.isfinite(float(value)) or (name == "first_nonfinite" and float(value) == np.inf), name  # inf: none
    assert float(metrics["nonfinite"]) == 0.0 and float(metrics["count"]) == 3.0 and float(metrics["grad_norm"]) > 0
    after = jax.tree.map(lambda x: np.asarray(x), state.params)
    flat_before = jax.tree_util.tree_leaves_with_path(before)
    flat_after = jax.tree.leaves(after)
    assert len(flat_before) == len(flat_after) > 0
    for (path, b), a in zip(flat_before, flat_after):
        assert np.all(np.isfinite(a)), path
        assert not np.array_equal(a, b), f"parameter {jax.tree_util.keystr(path)} did not change"


def test_no_retrace_across_batches_of_the_same_shape():
    model = make_model(bidirectional=True)
    state = create_train_state(model, optax.adam(1e-3), Classification(), seed=0)
    counted = chex.assert_max_traces(train_step, n=1)
    step = jax.jit(counted, donate_argnums=0)
    for seed in range(3):
        lengths = np.random.default_rng(seed).integers(0, 10, 4)
        state, metrics = step(state, _train_batch(seed, lengths=lengths, seq=10))
        assert np.isfinite(float(metrics["loss_sum"]))
    assert int(state.step) == 3

    traces = []

    @jax.jit
    def forward(params, tokens, lengths):
        traces.append(1)
        return nnx.merge(state.graphdef, params)(tokens, lengths)

    for seed in range(3):
        b = _train_batch(seed + 10, lengths=np.random.default_rng(seed).integers(0, 10, 4), seq=10)
        forward(state.params, b["tokens"], b["lengths"])
    assert len(traces) == 1


@pytest.mark.parametrize("bidirectional", [False, True])
def test_bfloat16_compute_close_to_float32(bidirectional):
    m32 = make_model(seed=5, bidirectional=bidirectional, pooling="mean")
    m16 = make_model(seed=5, bidirectional=bidirectional, pooling="mean", dtype="bfloat16")
    for a, b in zip(jax.tree.leaves(nnx.state(m32)), jax.tree.leaves(nnx.state(m16))):
        assert b.dtype == jnp.float32
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    tokens, lengths = random_batch([12, 5, 0, 9], 12, seed=9)
    tokens, lengths = jnp.asarray(tokens), jnp.asarray(lengths)
    out32, out16 = m32(tokens, lengths), m16(tokens, lengths)
    assert out16.dtype == jnp.float32 and np.all(np.isfinite(np.asarray(out16)))
    np.testing.assert_allclose(np.asarray(out16), np.asarray(out32), atol=3e-2, rtol=3e-2)
    # ... and it trains (gradients flow back into float32 params).
    state = create_train_state(m16, optax.adam(1e-3), Classification())
    state, metrics = jit_train_step(state, _train_batch(1, lengths=(12, 5, 0, 9), seq=12))
    assert np.isfinite(float(metrics["grad_norm"])) and float(metrics["grad_norm"]) > 0
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state.params))
