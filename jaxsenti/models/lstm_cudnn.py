"""cuDNN LSTM backend: our weight layout <-> cuDNN's flat weight vector, and one layer's forward pass.

``LSTMConfig(backend="cudnn")`` runs each :class:`~jaxsenti.models.lstm.LSTMLayer` through
:func:`jax.experimental.rnn.lstm` (one cuDNN call per layer, both directions in it). The model's
parameters stay in OUR layout in every backend, so checkpoints are interchangeable; the conversion
below runs inside the forward pass (it is a few transposes and one concatenate, differentiable).

Layouts (per direction, gate order i, f, g, o in both, as in torch and cuDNN's ``CUDNN_LSTM``)::

    ours:  w_ih [D, 4H], w_hh [H, 4H], b [4H]           (b = torch b_ih + b_hh)
    cuDNN: one float32 vector; for pseudo-layers p = (layer 0 fwd, layer 0 bwd, layer 1 fwd, ...):
           W_ih^0 [4H, D], W_hh^0 [4H, H], W_ih^1, W_hh^1, ..., then b_ih^0, b_hh^0, b_ih^1, b_hh^1, ...

cuDNN keeps two biases; ours is their sum. :func:`to_cudnn_weights` puts our whole bias in ``b_ih``
and zeros in ``b_hh``, so ours -> cuDNN -> ours is exact; :func:`from_cudnn_weights` sums them
(cuDNN -> ours -> cuDNN keeps the sum, not the split, which cuDNN's maths cannot tell apart).

Platforms and precision:

* On a CUDA GPU the forward pass is :func:`jax.experimental.rnn.lstm` (cuDNN, with its own VJP).
* Elsewhere (CPU, TPU, ROCm, whose MIOpen gate layout is not verified here) it falls back to
  :func:`jax.experimental.rnn.lstm_ref` -- a plain-scan *reference* implementation, slower than our
  ``"scan"`` backend -- and warns once per trace. It exists so that the conversion and the padding
  semantics of this path can be tested without a GPU; do not train or benchmark with it.
* float32 only (cuDNN may use TF32 matmuls on Ampere+ under JAX's default matmul precision):
  ``jax.experimental.rnn`` has no bfloat16 path, so ``dtype="bfloat16"`` is rejected.

Padding matches the scan backend: each row's final (h, c) is the state at its true length, the
backward direction runs over each row's valid prefix reversed (cuDNN's padded-data layout with
``seq_lengths``), and outputs past a row's length are unspecified but finite (zeros here). Rows
of length 0 are run for one step (cuDNN and ``lstm_ref`` need >= 1 step: ``lstm_ref`` reads the
state at index ``length - 1``) and their final state is then reset to zero, as in the scan backend.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import jax
import jax.numpy as jnp
from jax.experimental import rnn
from jax.extend import backend as jax_backend

__all__ = ["cuda_lstm_available", "from_cudnn_weights", "lstm_layer", "num_cudnn_params", "to_cudnn_weights"]

Direction = tuple[jax.Array, jax.Array, jax.Array]  # (w_ih [D, 4H], w_hh [H, 4H], b [4H])

FALLBACK_WARNING = "LSTM backend 'cudnn' has no CUDA GPU here"


def num_cudnn_params(input_size: int, hidden_size: int, num_layers: int = 1, bidirectional: bool = False) -> int:
    """Length of the flat cuDNN weight vector."""
    return rnn.get_num_params_in_lstm(input_size, hidden_size, num_layers, bidirectional)


def _check_directions(directions: Sequence[Direction], bidirectional: bool) -> tuple[int, int, int]:
    """Validate shapes; returns (input_size, hidden_size, num_layers)."""
    dirs = 2 if bidirectional else 1
    if not directions or len(directions) % dirs:
        raise ValueError(f"need a positive multiple of {dirs} directions (bidirectional={bidirectional}), "
                         f"got {len(directions)}")
    input_size, four_h = directions[0][0].shape
    hidden = four_h // 4
    for p, (w_ih, w_hh, b) in enumerate(directions):
        d_in = input_size if p < dirs else hidden * dirs
        want = ((d_in, 4 * hidden), (hidden, 4 * hidden), (4 * hidden,))
        got = (tuple(w_ih.shape), tuple(w_hh.shape), tuple(b.shape))
        if got != want:
            raise ValueError(f"pseudo-layer {p}: (w_ih, w_hh, b) shapes {got}, expected {want}")
    return input_size, hidden, len(directions) // dirs


def to_cudnn_weights(directions: Sequence[Direction], *, bidirectional: bool = False) -> jax.Array:
    """Our per-direction weights -> cuDNN's flat float32 vector.

    ``directions`` lists cuDNN's pseudo-layers in order: layer 0 forward, [layer 0 backward,]
    layer 1 forward, ... Our bias goes to ``b_ih``; ``b_hh`` is zero.
    """
    input_size, hidden, num_layers = _check_directions(directions, bidirectional)
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    mats, biases = [], []
    for w_ih, w_hh, b in directions:
        mats += [f32(w_ih).T.reshape(-1), f32(w_hh).T.reshape(-1)]
        biases += [f32(b), jnp.zeros((4 * hidden,), jnp.float32)]
    flat = jnp.concatenate(mats + biases)
    assert flat.shape[0] == num_cudnn_params(input_size, hidden, num_layers, bidirectional)
    return flat


def from_cudnn_weights(
    flat: jax.Array, *, input_size: int, hidden_size: int, num_layers: int = 1, bidirectional: bool = False
) -> list[Direction]:
    """cuDNN's flat vector -> our per-direction ``(w_ih, w_hh, b = b_ih + b_hh)``, in pseudo-layer order."""
    n = num_cudnn_params(input_size, hidden_size, num_layers, bidirectional)
    if tuple(flat.shape) != (n,):
        raise ValueError(f"cuDNN weight vector has shape {tuple(flat.shape)}, expected ({n},)")
    w_ih, w_hh, b_ih, b_hh = rnn.unpack_lstm_weights(flat, input_size, hidden_size, num_layers, bidirectional)
    return [(w_ih[p].T, w_hh[p].T, b_ih[p] + b_hh[p]) for p in range(len(w_ih))]


def cuda_lstm_available() -> bool:
    """True when the default backend is a CUDA GPU and jaxlib has its cuDNN RNN kernels."""
    if jax.default_backend() != "gpu" or rnn.gpu_rnn is None:
        return False
    # the same test JAX's cuDNN attention uses; ROCm reports "rocm ..." here
    return "cuda" in jax_backend.get_backend().platform_version.lower()


def lstm_layer(x: jax.Array, lengths: jax.Array, directions: Sequence[Direction], *, precision=None):
    """One (uni- or bidirectional) LSTM layer through cuDNN; same contract as ``LSTMLayer``'s scan path.

    Args:
      x: [T, B, D] time-major inputs (computed in float32).
      lengths: int[B] valid lengths (clipped to [0, T]).
      directions: ``[fwd]`` or ``[fwd, bwd]``, each ``(w_ih, w_hh, b)`` in our layout.
      precision: passed to :func:`jax.experimental.rnn.lstm` (``None``: TF32 allowed).

    Returns:
      ``(ys float32[T, B, H*dirs], (h_n, c_n) float32[B, H*dirs])``.
    """
    bidirectional = len(directions) == 2
    input_size, hidden, _ = _check_directions(directions, bidirectional)
    seq_len, batch, _ = x.shape
    dirs = len(directions)
    lengths = jnp.clip(jnp.asarray(lengths, jnp.int32), 0, seq_len)
    seq_lengths = jnp.maximum(lengths, 1)  # see the module docstring: length-0 rows run one step
    flat = to_cudnn_weights(directions, bidirectional=bidirectional)
    xb = jnp.swapaxes(x, 0, 1).astype(jnp.float32)  # the cuDNN op is batch-major
    zeros = jnp.zeros((dirs, batch, hidden), jnp.float32)
    kw = dict(input_size=input_size, hidden_size=hidden, num_layers=1, dropout=0.0, bidirectional=bidirectional)
    if cuda_lstm_available():
        y, h_n, c_n = rnn.lstm(xb, zeros, zeros, flat, seq_lengths, precision=precision, **kw)
    else:
        warnings.warn(
            f"{FALLBACK_WARNING} (default backend {jax.default_backend()!r}); running the slow reference "
            "jax.experimental.rnn.lstm_ref instead -- use backend='scan' off CUDA",
            RuntimeWarning,
            stacklevel=2,
        )
        w_ih, w_hh, b_ih, b_hh = rnn.unpack_lstm_weights(flat, input_size, hidden, 1, bidirectional)
        y, h_n, c_n = rnn.lstm_ref(xb, zeros, zeros, w_ih, w_hh, b_ih, b_hh, seq_lengths, **kw)
    empty = (lengths == 0)[:, None]
    h = jnp.where(empty, 0.0, jnp.concatenate(list(h_n), axis=-1))
    c = jnp.where(empty, 0.0, jnp.concatenate(list(c_n), axis=-1))
    return jnp.swapaxes(y, 0, 1).astype(jnp.float32), (h, c)
