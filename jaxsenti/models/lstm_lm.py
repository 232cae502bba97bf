"""Word-level LSTM language model whose embedding and LSTM stack transfer into ``LSTMClassifier``.

tokens int32[B, T] (a review's words, 0 = pad) -> embedding -> N unidirectional ``LSTMLayer``s ->
dropout -> ``proj`` (H -> E) -> logits over the LM vocabulary = ``proj(h) @ embed.T + out_bias``.

* ``embed`` and ``layers`` are built exactly as in ``LSTMClassifier`` (same names, shapes and
  ``LSTMLayer`` code), so ``models.lstm_transfer`` copies them across without renaming.
* The output embedding is *tied* to the input embedding through the H -> E projection (Press &
  Wolf 2017, Inan et al. 2017): every predicted word trains the input row the classifier will
  reuse, and the output layer adds only H*E + V parameters instead of another V x E matrix.
* Logits are computed on flattened positions ``z [N, E]`` (``output_vectors``), so callers pick
  which positions get a softmax. Two output modes share the same parameters:
  ``full_logits`` (exact softmax, always used for evaluation) and ``sampled_logits`` (sampled
  softmax for training, Jean et al. 2015: S candidates shared by the whole batch, drawn from a
  log-uniform proposal, which matches a frequency-sorted vocabulary, with the log-Q correction
  and accidental hits removed). See ``objectives.language_model.NextWordLM``.
* The ``<pad>`` column (id 0) never receives probability: its logit is -inf in both modes.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxsenti.fields import check_fields, ranged
from jaxsenti.models.dropout import Dropout
from jaxsenti.models.lstm import LSTMConfig, LSTMLayer

__all__ = ["LSTMLMConfig", "LSTMLanguageModel", "log_uniform_sample"]

_NEG = -1e30  # finite "minus infinity": keeps 0 * logit and softmax gradients NaN-free


@dataclasses.dataclass(frozen=True)
class LSTMLMConfig:
    """Hyperparameters of ``LSTMLanguageModel``; ``embed_dim``/``hidden_dim``/``num_layers`` must match the classifier."""

    vocab_size: int = ranged(30000, ge=4)  # <pad>, <unk>, <eos> and at least one word
    embed_dim: int = ranged(400, ge=1)
    hidden_dim: int = ranged(256, ge=1)
    num_layers: int = ranged(2, ge=1)
    dropout: float = ranged(0.2, ge=0.0, lt=1.0)  # between LSTM layers and on the last layer's output (before ``proj``)
    embed_dropout: float = ranged(0.1, ge=0.0, lt=1.0)  # on the embedded tokens
    dtype: str = "float32"  # compute dtype of the LSTM matmuls, as in LSTMConfig
    unroll: int = ranged(1, ge=1)

    def __post_init__(self):
        check_fields(self)
        # LSTMConfig validates the shared fields (dropout ranges, num_layers, dtype).
        self.lstm_config()

    def lstm_config(self) -> LSTMConfig:
        """The classifier-side view of the shared fields (unidirectional, no head)."""
        return LSTMConfig(vocab_size=self.vocab_size, embed_dim=self.embed_dim, hidden_dim=self.hidden_dim,
                          num_layers=self.num_layers, bidirectional=False, dropout=self.dropout,
                          embed_dropout=self.embed_dropout, dtype=self.dtype, unroll=self.unroll)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> LSTMLMConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown LSTMLMConfig field(s) {unknown}; known: {sorted(known)}")
        return cls(**d)


def log_uniform_sample(key: jax.Array, num_sampled: int, vocab_size: int) -> tuple[jax.Array, jax.Array]:
    """S ids drawn with replacement from P(k) = log((k+2)/(k+1)) / log(V+1), and log(S * P(id)).

    The log-uniform (Zipf) proposal approximates the unigram distribution of a vocabulary sorted
    by frequency (``Vocab.build`` sorts most frequent first), so frequent words are sampled often.
    """
    u = jax.random.uniform(key, (num_sampled,), jnp.float32)
    log_range = math.log(vocab_size + 1.0)
    ids = jnp.clip(jnp.floor(jnp.exp(u * log_range)).astype(jnp.int32) - 1, 0, vocab_size - 1)
    return ids, log_expected_count(ids, num_sampled, vocab_size)


def log_expected_count(ids: jax.Array, num_sampled: int, vocab_size: int) -> jax.Array:
    """log(S * P(id)) under the log-uniform proposal (the sampled-softmax correction term)."""
    idf = ids.astype(jnp.float32)
    p = (jnp.log1p(1.0 / (idf + 1.0))) / math.log(vocab_size + 1.0)
    return jnp.log(num_sampled * p)


class LSTMLanguageModel(nnx.Module):
    """Next-word LSTM LM; ``__call__(tokens, lengths)`` -> full logits float32[B, T, V] (small inputs only)."""

    def __init__(self, cfg: LSTMLMConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        # Same construction order and names as LSTMClassifier: weights transfer by name.
        self.embed = nnx.Embed(cfg.vocab_size, cfg.embed_dim, rngs=rngs)
        layers = []
        in_dim = cfg.embed_dim
        for _ in range(cfg.num_layers):
            layers.append(LSTMLayer(in_dim, cfg.hidden_dim, bidirectional=False, dtype=cfg.dtype, unroll=cfg.unroll,
                                    rngs=rngs))
            in_dim = cfg.hidden_dim
        self.layers = nnx.List(layers)
        self.dropout = Dropout(cfg.dropout)
        self.embed_dropout = Dropout(cfg.embed_dropout)
        # Scaled so the initial logits have O(1) spread with the std-1 embedding rows (loss starts near log V).
        init = jax.nn.initializers.variance_scaling(1.0 / cfg.embed_dim, "fan_in", "normal")
        self.proj = nnx.Linear(cfg.hidden_dim, cfg.embed_dim, kernel_init=init, rngs=rngs)
        self.out_bias = nnx.Param(jnp.zeros((cfg.vocab_size,), jnp.float32))

    def hidden(self, tokens, lengths, *, deterministic: bool = True, rngs: nnx.Rngs | None = None):
        """Last LSTM layer's outputs, time-major float32[T, B, H] (after dropout; unspecified past each length)."""
        tokens = jnp.asarray(tokens, jnp.int32)
        seq_len = tokens.shape[1]
        lengths = jnp.clip(jnp.asarray(lengths, jnp.int32), 0, seq_len)
        x = self.embed(tokens.T)  # [T, B, E]; transposing ints is cheaper than activations
        x = self.embed_dropout(x, deterministic=deterministic, rngs=rngs)
        for k, layer in enumerate(self.layers):
            if k > 0:
                x = self.dropout(x, deterministic=deterministic, rngs=rngs)
            x, _ = layer(x, lengths)
        return self.dropout(x, deterministic=deterministic, rngs=rngs)

    def output_vectors(self, h):
        """h float32[..., H] -> query vectors float32[..., E] in the (tied) embedding space."""
        return self.proj(h)

    def full_logits(self, z):
        """z [N, E] -> float32[N, V]: exact logits over the whole vocabulary (``<pad>`` = -inf)."""
        logits = jnp.dot(z, self.embed.embedding[...].T, preferred_element_type=jnp.float32) + self.out_bias[...]
        return logits.at[:, 0].set(_NEG)

    def sampled_logits(self, z, targets, key, num_sampled: int):
        """Sampled-softmax logits float32[N, 1 + S]; column 0 is the target (the label is always 0).

        Candidates are S ids shared by all N rows; each logit is corrected by -log(S * Q(id)), and a
        candidate equal to the row's target (an accidental hit) or to ``<pad>`` is masked out.
        """
        vocab = self.cfg.vocab_size
        ids, log_q = log_uniform_sample(key, num_sampled, vocab)
        table, bias = self.embed.embedding[...], self.out_bias[...]
        true_logit = jnp.sum(z * table[targets], axis=-1) + bias[targets]
        true_logit = true_logit - log_expected_count(targets, num_sampled, vocab)
        cand = jnp.dot(z, table[ids].T, preferred_element_type=jnp.float32) + bias[ids] - log_q
        cand = jnp.where((ids[None, :] == targets[:, None]) | (ids[None, :] == 0), _NEG, cand)
        return jnp.concatenate([true_logit[:, None], cand], axis=1)

    def __call__(self, tokens, lengths, *, deterministic: bool = True, rngs: nnx.Rngs | None = None):
        h = self.hidden(tokens, lengths, deterministic=deterministic, rngs=rngs)  # [T, B, H]
        seq_len, batch, _ = h.shape
        z = self.output_vectors(h.reshape(seq_len * batch, -1))
        return jnp.swapaxes(self.full_logits(z).reshape(seq_len, batch, -1), 0, 1)
