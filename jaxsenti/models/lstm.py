"""LSTM sentiment classifier as a pure-functional Flax NNX module.

embedding -> [dropout] -> N LSTM layers (optionally bidirectional, dropout between) -> pooling -> dropout -> dense(1).

Layout and conventions
----------------------
* Each direction of each layer holds three ``nnx.Param`` arrays, in torch gate order
  ``(i, f, g, o)``::

      w_ih: [in_dim, 4H]   = torch ``weight_ih_l{k}``.T
      w_hh: [H, 4H]        = torch ``weight_hh_l{k}``.T
      b:    [4H]           = torch ``bias_ih_l{k} + bias_hh_l{k}``

* The input projection ``x @ w_ih`` is computed for all time steps in one [T*B, D] @ [D, 4H]
  matmul outside the recurrence; the scan does one fused [B, H] @ [H, 4H] matmul per step and
  one fused activation over all four gates (tanh(g) = 2*sigmoid(2g) - 1).
* Everything inside runs time-major ``[T, B, ...]`` (tokens are transposed once, ints are cheap).
* Padding never changes the output: the carry ``(h, c)`` is frozen once ``t >= length`` so the
  final carry *is* the state at each row's true length; the backward direction of a
  bidirectional layer runs over each row's valid prefix reversed (index ``length-1-t``), and
  mean/max pooling ignore pads. Rows with length 0 keep the zero state and give finite logits.
* Each direction (projection + recurrence, ``lstm_direction``) has a hand-written VJP: the
  reverse scan only does the per-step ``dz @ w_hh.T``; dx, dW_ih, dW_hh (``sum_t h_{t-1}^T dz_t``)
  and db are one big matmul/reduction each after it (autodiff of a scan would accumulate a
  [H, 4H] outer product every step). Tested against jax.grad of a plain scan and torch autograd.
* ``dtype`` is the compute dtype of the matmuls (params stay float32); gate nonlinearities and
  the cell/hidden carry stay float32, so ``"bfloat16"`` is a mixed-precision mode.
* ``backend="cudnn"`` runs each layer through ``jax.experimental.rnn.lstm`` on a CUDA GPU (one
  cuDNN call per layer; float32/TF32 only, no bfloat16) with the same parameters and padding
  semantics; off CUDA it falls back to the slow ``lstm_ref`` reference with a warning. The weight
  conversion and details are in :mod:`jaxsenti.models.lstm_cudnn`.
"""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxsenti.fields import ConfigError, check_fields, ranged
from jaxsenti.models import lstm_cudnn
from jaxsenti.models.dropout import Dropout

__all__ = ["LSTMConfig", "LSTMDirection", "LSTMLayer", "LSTMClassifier", "lstm_direction"]

POOLINGS = ("last", "mean", "max", "concat")  # concat: ULMFiT's [last ‖ max ‖ mean]
BACKENDS = ("scan", "cudnn")


@dataclasses.dataclass(frozen=True)
class LSTMConfig:
    vocab_size: int = ranged(9524, ge=2)  # <pad>, <unk>, words
    embed_dim: int = ranged(400, ge=1)
    hidden_dim: int = ranged(256, ge=1)
    num_layers: int = ranged(2, ge=1)
    bidirectional: bool = False
    dropout: float = ranged(0.5, ge=0.0, lt=1.0)  # between LSTM layers (like torch.nn.LSTM(dropout=...)) and before the head
    embed_dropout: float = ranged(0.0, ge=0.0, lt=1.0)  # on the embedded tokens, before the first LSTM layer
    pooling: str = "last"  # "last" | "mean" | "max" | "concat" (ULMFiT's concat pooling: last, max and mean side by side)
    dtype: str = "float32"  # compute dtype; params are always float32
    unroll: int = ranged(1, ge=1)  # lax.scan unroll factor; 2/4 gave no measurable gain on CPU and compile slower
    backend: str = "scan"  # "scan" (ours, any platform) | "cudnn" (jax.experimental.rnn; CUDA, float32 only)

    def __post_init__(self):
        check_fields(self)
        if self.pooling not in POOLINGS:
            raise ConfigError.of_field("pooling", f"must be one of {POOLINGS}, got {self.pooling!r}")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ConfigError.of_field("dtype", f"must be float32, bfloat16 or float16, got {self.dtype!r}")
        _check_backend(self.backend, self.dtype)

    @property
    def compute_dtype(self):
        return jnp.dtype(self.dtype)

    @property
    def output_dim(self) -> int:
        return self.hidden_dim * (2 if self.bidirectional else 1)

    @property
    def feature_dim(self) -> int:
        """Width of the pooled features the head reads."""
        return self.output_dim * (3 if self.pooling == "concat" else 1)


def _check_backend(backend: str, dtype) -> None:
    if backend not in BACKENDS:
        raise ConfigError.of_field("backend", f"must be one of {BACKENDS}, got {backend!r}")
    if backend == "cudnn" and jnp.dtype(dtype) != jnp.float32:
        raise ValueError(
            f"backend='cudnn' supports float32 only (jax.experimental.rnn has no {jnp.dtype(dtype)} path; "
            "it may use TF32 matmuls); use dtype='float32' or backend='scan'"
        )


# ----------------------------------------------------------------------------------------------
# One LSTM direction: input projection + scan, with a hand-written VJP.
# ----------------------------------------------------------------------------------------------


def _block_consts(hidden):
    """Per-column constants for the fused activation: tanh(z) = 2*sigmoid(2z) - 1 on the g block."""
    is_g = np.zeros((4 * hidden,), bool)
    is_g[2 * hidden : 3 * hidden] = True
    return is_g, np.where(is_g, 2.0, 1.0).astype(np.float32)


def _activate(z, hidden):
    """Fused gate pre-activations z [B, 4H] -> activations [B, 4H] = (sig(i), sig(f), tanh(g), sig(o))."""
    _, scale = _block_consts(hidden)
    return jax.nn.sigmoid(z * scale) * scale - (scale - 1.0)


def _forward_scan(xproj, b, mask, w_hh, unroll, save):
    """xproj [T,B,4H] f32 (no bias), b [4H] f32, mask [T,B,1] bool, w_hh [H,4H] (compute dtype)."""
    _, batch, four_h = xproj.shape
    hidden = four_h // 4
    zeros = jnp.zeros((batch, hidden), jnp.float32)

    def step(carry, inp):
        h, c = carry
        xg, m = inp
        z = xg + b + jnp.dot(h.astype(w_hh.dtype), w_hh, preferred_element_type=jnp.float32)
        act = _activate(z, hidden)
        i, f, g, o = (act[:, k * hidden : (k + 1) * hidden] for k in range(4))
        c_new = jnp.where(m, f * c + i * g, c)
        h_new = jnp.where(m, o * jnp.tanh(c_new), h)
        return (h_new, c_new), ((h_new, c_new, act) if save else (h_new, c_new))

    _, ys = jax.lax.scan(step, (zeros, zeros), (xproj, mask), unroll=unroll)
    return ys


def _project(x, w):
    """[T, B, D] @ [D, G] -> float32[T, B, G] as one 2-D matmul."""
    seq_len, batch, d = x.shape
    y = jnp.dot(x.reshape(seq_len * batch, d), w, preferred_element_type=jnp.float32)
    return y.reshape(seq_len, batch, w.shape[1])


@partial(jax.custom_vjp, nondiff_argnums=(5,))
def lstm_direction(x, mask, w_ih, w_hh, b, unroll=1):
    """One LSTM direction over a time-major sequence, from a zero state.

    Args:
      x:    [T, B, D] inputs, in the compute dtype.
      mask: bool[T, B, 1]; where False the carry is frozen (padding after a row's length).
      w_ih: [D, 4H] input weights, w_hh: [H, 4H] recurrent weights (compute dtype), gate order
            i, f, g, o; b: float32[4H] bias.
      unroll: scan unroll factor (static).

    Returns:
      (hs, cs): float32[T, B, H] hidden and cell states after each step (frozen past the length,
      so ``hs[-1], cs[-1]`` is each row's final state at its true length).

    The input projection is one [T*B, D] @ [D, 4H] matmul before the scan; the scan does one fused
    [B, H] @ [H, 4H] matmul per step. The backward pass (hand-written) runs a reverse scan that only
    does ``dz @ w_hh.T`` per step, then forms dx, dW_ih, dW_hh and db with one big matmul each.
    """
    return _forward_scan(_project(x, w_ih), b, mask, w_hh, unroll, save=False)


def _direction_fwd(x, mask, w_ih, w_hh, b, unroll):
    hs, cs, acts = _forward_scan(_project(x, w_ih), b, mask, w_hh, unroll, save=True)
    return (hs, cs), (x, hs, cs, acts, mask, w_ih, w_hh)


def _direction_bwd(unroll, res, cts):
    x, hs, cs, acts, mask, w_ih, w_hh = res
    dhs, dcs = cts
    seq_len, batch, four_h = acts.shape
    hidden = four_h // 4
    is_g, _ = _block_consts(hidden)
    zeros = jnp.zeros((batch, hidden), jnp.float32)
    cs_prev = jnp.concatenate([zeros[None], cs[:-1]], axis=0)  # cell state entering step t
    w_hh_t = w_hh.T

    def step(carry, inp):
        dh_next, dc_next = carry  # gradient w.r.t. the state leaving step t (from step t+1)
        dh_out, dc_out, act, c_t, c_prev, m = inp
        dh = dh_next + dh_out
        dc = dc_next + dc_out
        i, f, g, o = (act[:, k * hidden : (k + 1) * hidden] for k in range(4))
        # The step-t update is used only where m; elsewhere the state passes straight through.
        dh_new = jnp.where(m, dh, 0.0)
        tc = jnp.tanh(c_t)
        dc_tot = jnp.where(m, dc, 0.0) + dh_new * o * (1.0 - tc * tc)
        d_act = jnp.concatenate([dc_tot * g, dc_tot * c_prev, dc_tot * i, dh_new * tc], axis=-1)
        dz = d_act * jnp.where(is_g, 1.0 - act * act, act * (1.0 - act))
        dh_prev = jnp.dot(dz.astype(w_hh_t.dtype), w_hh_t, preferred_element_type=jnp.float32)
        dh_prev = dh_prev + jnp.where(m, 0.0, dh)
        dc_prev = jnp.where(m, dc_tot * f, dc)
        return (dh_prev, dc_prev), dz.astype(w_hh.dtype)

    _, dz = jax.lax.scan(step, (zeros, zeros), (dhs, dcs, acts, cs, cs_prev, mask), reverse=True, unroll=unroll)
    d_in = x.shape[-1]
    dz2 = dz.reshape(seq_len * batch, four_h)
    dx = jnp.dot(dz2, w_ih.T, preferred_element_type=jnp.float32).astype(x.dtype).reshape(x.shape)
    dw_ih = jnp.dot(x.reshape(-1, d_in).T, dz2, preferred_element_type=jnp.float32).astype(w_ih.dtype)
    # dW_hh = sum_t h_{t-1}^T dz_t with h_{-1} = 0: shift the [T,B,H] states (not the 4x wider dz) by one step.
    hs_prev = jnp.concatenate([zeros[None], hs[:-1]], axis=0).reshape(-1, hidden).astype(w_hh.dtype)
    dw_hh = jnp.dot(hs_prev.T, dz2, preferred_element_type=jnp.float32).astype(w_hh.dtype)
    db = jnp.sum(dz2.astype(jnp.float32), axis=0)
    mask_ct = np.zeros(mask.shape, dtype=jax.dtypes.float0)
    return dx, mask_ct, dw_ih, dw_hh, db


lstm_direction.defvjp(_direction_fwd, _direction_bwd)


# ----------------------------------------------------------------------------------------------
# Modules
# ----------------------------------------------------------------------------------------------


def _recurrent_init(key, shape, dtype=jnp.float32):
    """Orthogonal [H, H] block per gate, concatenated to [H, 4H]."""
    hidden, four_h = shape
    keys = jax.random.split(key, four_h // hidden)
    ortho = jax.nn.initializers.orthogonal()
    return jnp.concatenate([ortho(k, (hidden, hidden), dtype) for k in keys], axis=1)


def _time_mask(lengths, seq_len):
    """bool[T, B, 1]: t < length."""
    return (jnp.arange(seq_len, dtype=jnp.int32)[:, None] < lengths[None, :])[..., None]


def _reverse_index(lengths, seq_len):
    """int32[T, B]: length-1-t inside each row's valid prefix, t elsewhere (an involution)."""
    t = jnp.arange(seq_len, dtype=jnp.int32)[:, None]
    return jnp.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)


def _time_gather(x, index):
    """x [T, B, D], index int[T, B] -> x[index[t, b], b]."""
    return jnp.take_along_axis(x, index[..., None], axis=0)


class LSTMDirection(nnx.Module):
    """One direction of one LSTM layer: time-major in, time-major out."""

    def __init__(self, in_dim: int, hidden_dim: int, *, dtype="float32", unroll: int = 1, rngs: nnx.Rngs):
        self.hidden_dim = hidden_dim
        self.dtype = str(jnp.dtype(dtype))
        self.unroll = unroll
        self.w_ih = nnx.Param(jax.nn.initializers.lecun_normal()(rngs.params(), (in_dim, 4 * hidden_dim)))
        self.w_hh = nnx.Param(_recurrent_init(rngs.params(), (hidden_dim, 4 * hidden_dim)))
        b = jnp.zeros((4 * hidden_dim,), jnp.float32).at[hidden_dim : 2 * hidden_dim].set(1.0)  # forget bias 1
        self.b = nnx.Param(b)

    def __call__(self, x, mask):
        """x [T, B, D], mask bool[T, B, 1] -> (hs float32[T, B, H], (h_final, c_final))."""
        dt = jnp.dtype(self.dtype)
        hs, cs = lstm_direction(
            x.astype(dt), mask, self.w_ih[...].astype(dt), self.w_hh[...].astype(dt), self.b[...], self.unroll
        )
        return hs, (hs[-1], cs[-1])


class LSTMLayer(nnx.Module):
    """One LSTM layer, uni- or bidirectional (outputs of the two directions concatenated)."""

    def __init__(
        self, in_dim: int, hidden_dim: int, *, bidirectional: bool = False, dtype="float32", unroll: int = 1,
        backend: str = "scan", rngs: nnx.Rngs,
    ):
        _check_backend(backend, dtype)
        self.backend = backend
        self.fwd = LSTMDirection(in_dim, hidden_dim, dtype=dtype, unroll=unroll, rngs=rngs)
        self.bwd = LSTMDirection(in_dim, hidden_dim, dtype=dtype, unroll=unroll, rngs=rngs) if bidirectional else None

    def __call__(self, x, lengths):
        """x [T, B, D] time-major, lengths int[B] -> (ys float32[T, B, H*dirs], (h_n, c_n) [B, H*dirs]).

        Outputs at padded positions are unspecified (finite); callers mask them.
        """
        if self.backend == "cudnn":
            dirs = [self.fwd] if self.bwd is None else [self.fwd, self.bwd]
            return lstm_cudnn.lstm_layer(x, lengths, [(d.w_ih[...], d.w_hh[...], d.b[...]) for d in dirs])
        seq_len = x.shape[0]
        mask = _time_mask(lengths, seq_len)
        hs, (h, c) = self.fwd(x, mask)
        if self.bwd is None:
            return hs, (h, c)
        rev = _reverse_index(lengths, seq_len)
        hs_b, (h_b, c_b) = self.bwd(_time_gather(x, rev), mask)
        hs_b = _time_gather(hs_b, rev)
        return jnp.concatenate([hs, hs_b], axis=-1), (jnp.concatenate([h, h_b], -1), jnp.concatenate([c, c_b], -1))


def pool(pooling: str, x, h_last, lengths):
    """Features of time-major outputs x [T, B, H] over each row's valid steps: ``last`` (h_last), ``mean``, ``max``
    or ``concat`` ([last ‖ max ‖ mean], ULMFiT). Pads never count; an empty row gives zeros."""
    if pooling == "last":
        return h_last
    valid = _time_mask(lengths, x.shape[0])  # [T, B, 1]
    mean = jnp.sum(jnp.where(valid, x, 0.0), axis=0) / jnp.maximum(lengths, 1)[:, None].astype(x.dtype)
    if pooling == "mean":
        return mean
    big = jnp.where(lengths[:, None] > 0, jnp.max(jnp.where(valid, x, -jnp.inf), axis=0), 0.0)
    return big if pooling == "max" else jnp.concatenate([h_last, big, mean], axis=-1)


class LSTMClassifier(nnx.Module):
    """tokens int32[B, T] (0 = pad), lengths int32[B] -> one logit per example, float32[B]."""

    def __init__(self, cfg: LSTMConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.embed = nnx.Embed(cfg.vocab_size, cfg.embed_dim, rngs=rngs)
        layers = []
        in_dim = cfg.embed_dim
        for _ in range(cfg.num_layers):
            layers.append(
                LSTMLayer(in_dim, cfg.hidden_dim, bidirectional=cfg.bidirectional, dtype=cfg.dtype, unroll=cfg.unroll,
                          backend=cfg.backend, rngs=rngs)
            )
            in_dim = cfg.output_dim
        self.layers = nnx.List(layers)
        self.dropout = Dropout(cfg.dropout)
        self.embed_dropout = Dropout(cfg.embed_dropout)
        self.head = nnx.Linear(cfg.feature_dim, 1, rngs=rngs)

    def features(self, tokens, lengths, *, deterministic: bool = True, rngs: nnx.Rngs | None = None):
        """Pooled features float32[B, cfg.feature_dim] (before the head dropout)."""
        cfg = self.cfg
        tokens = jnp.asarray(tokens, jnp.int32)
        seq_len = tokens.shape[1]
        lengths = jnp.clip(jnp.asarray(lengths, jnp.int32), 0, seq_len)
        x = self.embed(tokens.T)  # [T, B, E], float32 params
        x = self.embed_dropout(x, deterministic=deterministic, rngs=rngs)
        h = None
        for k, layer in enumerate(self.layers):
            if k > 0:
                x = self.dropout(x, deterministic=deterministic, rngs=rngs)
            x, (h, _) = layer(x, lengths)
        return pool(cfg.pooling, x, h, lengths)

    def __call__(self, tokens, lengths, *, deterministic: bool = True, rngs: nnx.Rngs | None = None):
        feats = self.features(tokens, lengths, deterministic=deterministic, rngs=rngs)
        feats = self.dropout(feats, deterministic=deterministic, rngs=rngs)
        return self.head(feats)[:, 0].astype(jnp.float32)
