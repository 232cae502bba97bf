"""Tests for the cuDNN LSTM backend (jaxsenti.models.lstm_cudnn): weight layout and padding semantics.

On CPU the layout is checked through ``jax.experimental.rnn.lstm_ref`` (cuDNN's reference maths, fed
the same flat vector cuDNN gets); only the test that runs the cuDNN kernel itself needs a GPU.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.experimental import rnn

from jaxsenti.models import lstm_cudnn
from jaxsenti.models.lstm import LSTMClassifier, LSTMConfig, LSTMLayer
from jaxsenti.models.lstm_cudnn import from_cudnn_weights, num_cudnn_params, to_cudnn_weights

pytestmark = pytest.mark.filterwarnings(f"ignore:{lstm_cudnn.FALLBACK_WARNING}:RuntimeWarning")

D, H, T = 5, 8, 7
LENGTHS = [T, 3, 1, 6, 2]  # full length, padded rows, a single step


def make_layer(in_dim=D, bidirectional=False, seed=0, backend="scan") -> LSTMLayer:
    layer = LSTMLayer(in_dim, H, bidirectional=bidirectional, backend=backend, rngs=nnx.Rngs(seed))
    # a non-trivial bias on every gate (the default init is zero except the forget gate)
    for k, d in enumerate([layer.fwd] + ([layer.bwd] if bidirectional else [])):
        d.b[...] = jax.random.normal(jax.random.key(100 + seed + k), (4 * H,)) * 0.5
    return layer


def directions(layer: LSTMLayer):
    dirs = [layer.fwd] if layer.bwd is None else [layer.fwd, layer.bwd]
    return [(d.w_ih[...], d.w_hh[...], d.b[...]) for d in dirs]


def inputs(lengths=LENGTHS, seed=0):
    x = jax.random.normal(jax.random.key(seed), (T, len(lengths), D))  # time-major
    return x, jnp.asarray(lengths, jnp.int32)


def valid(lengths, seq_len=T):
    """bool[T, B, 1]: positions whose outputs are specified."""
    return (np.arange(seq_len)[:, None] < np.asarray(lengths)[None, :])[..., None]


def ref(x, lengths, dirs, *, num_layers=1, bidirectional=False):
    """cuDNN maths on the flat vector: ours -> flat -> unpack -> lstm_ref (batch-major in and out)."""
    flat = to_cudnn_weights(dirs, bidirectional=bidirectional)
    n_dirs = 2 if bidirectional else 1
    zeros = jnp.zeros((num_layers * n_dirs, x.shape[1], H))
    args = rnn.unpack_lstm_weights(flat, D, H, num_layers, bidirectional)
    y, h_n, c_n = rnn.lstm_ref(jnp.swapaxes(x, 0, 1), zeros, zeros, *args, lengths, D, H, num_layers, 0.0,
                               bidirectional)
    return jnp.swapaxes(y, 0, 1), h_n, c_n


# ---------------------------------------------------------------------------------------------
# layout
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bidirectional", [False, True])
def test_round_trip_ours_cudnn_ours_is_exact(bidirectional):
    l0 = make_layer(bidirectional=bidirectional, seed=0)
    l1 = make_layer(in_dim=H * (2 if bidirectional else 1), bidirectional=bidirectional, seed=1)
    dirs = directions(l0) + directions(l1)
    flat = to_cudnn_weights(dirs, bidirectional=bidirectional)
    assert flat.shape == (num_cudnn_params(D, H, 2, bidirectional),) and flat.dtype == jnp.float32
    back = from_cudnn_weights(flat, input_size=D, hidden_size=H, num_layers=2, bidirectional=bidirectional)
    assert len(back) == len(dirs)
    for ours, theirs in zip(dirs, back):
        for a, b in zip(ours, theirs):
            assert a.shape == b.shape
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # documented split: our bias in b_ih, zeros in b_hh; cuDNN matrices are ours transposed
    w_ih, w_hh, b_ih, b_hh = rnn.unpack_lstm_weights(flat, D, H, 2, bidirectional)
    np.testing.assert_array_equal(np.asarray(w_ih[0]), np.asarray(dirs[0][0]).T)
    np.testing.assert_array_equal(np.asarray(w_hh[0]), np.asarray(dirs[0][1]).T)
    np.testing.assert_array_equal(np.asarray(b_ih[len(dirs) - 1]), np.asarray(dirs[-1][2]))
    assert all(not np.any(np.asarray(b)) for b in b_hh.values())


def test_from_cudnn_sums_the_two_biases():
    flat = rnn.init_lstm_weight(jax.random.key(3), D, H, 1, True)
    dirs = from_cudnn_weights(flat, input_size=D, hidden_size=H, bidirectional=True)
    _, _, b_ih, b_hh = rnn.unpack_lstm_weights(flat, D, H, 1, True)
    for p, (_, _, b) in enumerate(dirs):
        np.testing.assert_array_equal(np.asarray(b), np.asarray(b_ih[p] + b_hh[p]))
    # re-packing keeps the matrices and the bias sum (the split itself is not recoverable)
    again = to_cudnn_weights(dirs, bidirectional=True)
    n_mat = num_cudnn_params(D, H, 1, True) - 2 * 2 * 4 * H
    np.testing.assert_array_equal(np.asarray(again[:n_mat]), np.asarray(flat[:n_mat]))


def test_bad_shapes_and_sizes_are_rejected():
    dirs = directions(make_layer(bidirectional=True))
    with pytest.raises(ValueError, match="multiple of 2"):
        to_cudnn_weights(dirs[:1], bidirectional=True)
    with pytest.raises(ValueError, match="pseudo-layer 1"):
        to_cudnn_weights([dirs[0], (dirs[1][0][:, :4], *dirs[1][1:])], bidirectional=True)
    with pytest.raises(ValueError, match="expected"):
        from_cudnn_weights(jnp.zeros(10), input_size=D, hidden_size=H)


# ---------------------------------------------------------------------------------------------
# maths: cuDNN's reference on converted weights == our scan
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bidirectional", [False, True])
def test_lstm_ref_on_converted_weights_matches_scan_layer(bidirectional):
    layer = make_layer(bidirectional=bidirectional)
    x, lengths = inputs()
    ys, (h, c) = layer(x, lengths)
    y_ref, h_n, c_n = ref(x, lengths, directions(layer), bidirectional=bidirectional)
    m = valid(LENGTHS)
    np.testing.assert_allclose(np.where(m, ys, 0), np.where(m, y_ref, 0), atol=1e-5, rtol=0)
    np.testing.assert_allclose(h, jnp.concatenate(list(h_n), -1), atol=1e-5, rtol=0)
    np.testing.assert_allclose(c, jnp.concatenate(list(c_n), -1), atol=1e-5, rtol=0)
    assert np.abs(np.asarray(h)).max() > 0.05  # not trivially zero


@pytest.mark.parametrize("bidirectional", [False, True])
def test_two_stacked_layers_match_one_two_layer_cudnn_stack(bidirectional):
    dirs_n = 2 if bidirectional else 1
    l0 = make_layer(bidirectional=bidirectional, seed=0)
    l1 = make_layer(in_dim=H * dirs_n, bidirectional=bidirectional, seed=1)
    x, lengths = inputs(seed=1)
    y0, (h0, c0) = l0(x, lengths)
    y1, (h1, c1) = l1(y0, lengths)
    y_ref, h_n, c_n = ref(x, lengths, directions(l0) + directions(l1), num_layers=2, bidirectional=bidirectional)
    m = valid(LENGTHS)
    np.testing.assert_allclose(np.where(m, y1, 0), np.where(m, y_ref, 0), atol=1e-5, rtol=0)
    for ours, theirs in ((h0, h_n[:dirs_n]), (h1, h_n[dirs_n:]), (c0, c_n[:dirs_n]), (c1, c_n[dirs_n:])):
        np.testing.assert_allclose(ours, jnp.concatenate(list(theirs), -1), atol=1e-5, rtol=0)


def compare_layer_backends(bidirectional, *, atol, rtol_grad, seed=2):
    """Scan vs "cudnn" LSTMLayer on the SAME parameters, with a length-0 row: outputs at valid
    positions, final (h, c) and parameter gradients (on CPU the "cudnn" side is the lstm_ref fallback)."""
    scan = make_layer(bidirectional=bidirectional)
    cudnn = make_layer(bidirectional=bidirectional, backend="cudnn")
    graph_scan, params = nnx.split(scan, nnx.Param)
    graph_cudnn, params_cudnn = nnx.split(cudnn, nnx.Param)
    jax.tree.map(np.testing.assert_array_equal, params, params_cudnn)
    lengths = LENGTHS + [0]
    x, lens = inputs(lengths, seed=seed)
    m = valid(lengths)

    def run(graphdef):
        def fwd(p):
            ys, (h, c) = nnx.merge(graphdef, p)(x, lens)
            loss = jnp.sum(jnp.where(m, ys, 0) ** 2) + jnp.sum(h * c) + jnp.sum(jnp.sin(c))
            return loss, (ys, h, c)

        return jax.jit(jax.value_and_grad(fwd, has_aux=True))(params)

    (_, (ys, h, c)), g = run(graph_scan)
    (_, (ys2, h2, c2)), g2 = run(graph_cudnn)
    assert ys2.shape == ys.shape and h2.shape == h.shape and np.all(np.isfinite(ys2))
    np.testing.assert_allclose(np.where(m, ys, 0), np.where(m, ys2, 0), atol=atol, rtol=0)
    np.testing.assert_allclose(h, h2, atol=atol, rtol=0)
    np.testing.assert_allclose(c, c2, atol=atol, rtol=0)
    assert not np.any(np.asarray(h2[-1])) and not np.any(np.asarray(c2[-1]))  # length 0: zero state
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=atol, rtol=rtol_grad), g, g2)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_cudnn_backend_layer_matches_scan_including_length_zero(bidirectional):
    compare_layer_backends(bidirectional, atol=1e-5, rtol_grad=1e-4)


def test_reference_fallback_warns_off_cuda():
    if lstm_cudnn.cuda_lstm_available():
        pytest.skip("CUDA present: the cuDNN kernel runs, no fallback")
    x, lens = inputs()
    with pytest.warns(RuntimeWarning, match="no CUDA GPU"):
        lstm_cudnn.lstm_layer(x, lens, directions(make_layer()))


def _loss_and_grads(model, tokens, lengths):
    graphdef, params = nnx.split(model, nnx.Param)

    def loss(p):
        return jnp.sum(jnp.tanh(nnx.merge(graphdef, p)(tokens, lengths)))

    return jax.jit(jax.value_and_grad(loss))(params)


@pytest.mark.parametrize("pooling,bidirectional", [("last", True), ("max", False)])
def test_classifier_cudnn_backend_matches_scan_logits_and_grads(pooling, bidirectional):
    kw = dict(vocab_size=40, embed_dim=D, hidden_dim=H, num_layers=2, bidirectional=bidirectional, pooling=pooling)
    scan = LSTMClassifier(LSTMConfig(**kw), rngs=nnx.Rngs(0))
    cudnn = LSTMClassifier(LSTMConfig(backend="cudnn", **kw), rngs=nnx.Rngs(0))
    s_scan, s_cudnn = nnx.state(scan, nnx.Param), nnx.state(cudnn, nnx.Param)
    # the backend changes no parameter: same tree, same values (checkpoints are interchangeable)
    assert jax.tree.structure(s_scan) == jax.tree.structure(s_cudnn)
    jax.tree.map(np.testing.assert_array_equal, s_scan, s_cudnn)
    lengths = np.array([T, 4, 0, 1, 6], np.int32)
    tokens = np.random.default_rng(0).integers(1, 40, size=(5, T), dtype=np.int32)
    loss, grads = _loss_and_grads(scan, tokens, lengths)
    loss2, grads2 = _loss_and_grads(cudnn, tokens, lengths)
    np.testing.assert_allclose(scan(tokens, lengths), cudnn(tokens, lengths), atol=1e-5, rtol=0)
    np.testing.assert_allclose(loss, loss2, atol=1e-5, rtol=0)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4), grads, grads2)


# ---------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------


def test_backend_validated_and_bf16_rejected_for_cudnn():
    assert LSTMConfig().backend == "scan"
    with pytest.raises(ValueError, match="backend: must be one of"):
        LSTMConfig(backend="cuda")
    with pytest.raises(ValueError, match="float32 only"):
        LSTMConfig(backend="cudnn", dtype="bfloat16")
    with pytest.raises(ValueError, match="float32 only"):
        LSTMLayer(D, H, dtype="bfloat16", backend="cudnn", rngs=nnx.Rngs(0))
    LSTMConfig(backend="scan", dtype="bfloat16")  # the scan backend keeps its mixed-precision mode


# ---------------------------------------------------------------------------------------------
# GPU only: the cuDNN kernel itself
# ---------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(jax.default_backend() != "gpu", reason="needs a CUDA GPU (jax.experimental.rnn.lstm)")
@pytest.mark.parametrize("bidirectional", [False, True])
def test_cudnn_kernel_matches_scan_on_gpu(bidirectional):
    assert lstm_cudnn.cuda_lstm_available()
    with jax.default_matmul_precision("highest"):  # no TF32 on either side
        compare_layer_backends(bidirectional, atol=1e-4, rtol_grad=1e-3, seed=3)


def _rel(a, b) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def classifier_backends_agree(bidirectional: bool, pooling: str, *, V=9524, E=400, H_=256, B=16, T_=64) -> dict:
    """The study's classifier (embedding 400, 2 x 256) through the cuDNN path and the scan path, same weights:
    relative error of the logits and of all gradients together (float64 on the host), rows padded, one of length 0."""
    rng = np.random.default_rng(7)
    lengths = rng.integers(1, T_ + 1, size=B).astype(np.int32)
    lengths[0], lengths[1] = T_, 0
    tokens = rng.integers(1, V, size=(B, T_)).astype(np.int32)
    tokens[np.arange(T_)[None] >= lengths[:, None]] = 0
    labels = rng.integers(0, 2, size=B).astype(np.float32)
    cfg = LSTMConfig(vocab_size=V, embed_dim=E, hidden_dim=H_, num_layers=2, bidirectional=bidirectional,
                     pooling=pooling, dropout=0.0)
    models = {b: LSTMClassifier(dataclasses.replace(cfg, backend=b), rngs=nnx.Rngs(1)) for b in ("scan", "cudnn")}
    nnx.update(models["cudnn"], nnx.state(models["scan"], nnx.Param))
    got = {}
    for backend, m in models.items():
        gd, params = nnx.split(m, nnx.Param)

        def loss(p, gd=gd):
            logits = nnx.merge(gd, p)(tokens, lengths, deterministic=True)
            return optax.sigmoid_binary_cross_entropy(logits, labels).sum(), logits

        (_, logits), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
        got[backend] = (np.asarray(logits, np.float64),
                        np.concatenate([np.asarray(g, np.float64).ravel() for g in jax.tree.leaves(grads)]))
    (lc, gc), (ls, gs) = got["cudnn"], got["scan"]
    return {"finite": bool(np.isfinite(lc).all()), "logits": _rel(lc, ls), "grads": _rel(gc, gs)}


def test_classifier_parity_check_runs_off_gpu():
    """The GPU test below, at toy sizes through the CPU fallback: the check itself works (and agrees there)."""
    err = classifier_backends_agree(True, "mean", V=50, E=8, H_=8, B=4, T_=6)
    assert err["finite"] and err["logits"] < 1e-5 and err["grads"] < 1e-5, err


@pytest.mark.gpu
@pytest.mark.skipif(jax.default_backend() != "gpu", reason="needs a CUDA GPU (jax.experimental.rnn.lstm)")
@pytest.mark.parametrize("bidirectional,pooling", [(False, "last"), (True, "mean")])
def test_cudnn_classifier_matches_scan_on_gpu(bidirectional, pooling):
    assert lstm_cudnn.cuda_lstm_available()
    with jax.default_matmul_precision("highest"):  # float32 on both sides: no TF32
        err = classifier_backends_agree(bidirectional, pooling)
    assert err["finite"] and err["logits"] < 1e-4 and err["grads"] < 1e-4, err
