"""BERT with a masked-language-model head (Flax NNX), laid out as Hugging Face ``BertForMaskedLM``.

``BertForMaskedLM(cfg, rngs=...)`` = a pooler-less :class:`~jaxsenti.models.bert.BertModel` (HF builds
its MLM model with ``add_pooling_layer=False``, so its checkpoints hold no pooler) + the prediction
head ``cls.predictions``: ``transform.dense`` (H→H), the ``hidden_act`` activation,
``transform.LayerNorm``, and a decoder **tied** to the word embeddings (``logits = h @ E^T + bias``;
there is no decoder matrix parameter, only the output ``bias`` [vocab]).

The head runs only where it is needed: the hidden states are gathered at the masked ``positions``
*before* the transform and the [H → vocab] projection, so a batch with P predictions per row costs
``B·P·H·V`` multiply-adds instead of ``B·T·H·V`` (the projection dominates a small BERT's step).
``full_logits`` runs the head at every position (parity tests, inspection).

Precision follows ``BertConfig.dtype`` as in bert.py: float32 parameters; with ``"bfloat16"`` the
head's matmuls run in bf16, accumulate in float32, and the logits are float32.

:mod:`jaxsenti.models.hf_export` writes this model as a Hugging Face checkpoint and loads it back.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from jaxsenti.models.bert import _ACTIVATIONS, BertConfig, BertModel, _dense, _layer_norm


class MLMTransform(nnx.Module):
    """HF ``cls.predictions.transform``: dense(H→H) → activation → LayerNorm."""

    def __init__(self, cfg: BertConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.dense = _dense(cfg, cfg.hidden_size, cfg.hidden_size, rngs)
        self.layer_norm = _layer_norm(cfg, cfg.compute_dtype, rngs)

    def __call__(self, h):
        return self.layer_norm(_ACTIVATIONS[self.cfg.hidden_act](self.dense(h)))


class MLMHead(nnx.Module):
    """HF ``cls.predictions``: the transform and the output bias; the decoder matrix is the word embeddings."""

    def __init__(self, cfg: BertConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.transform = MLMTransform(cfg, rngs=rngs)
        self.bias = nnx.Param(jnp.zeros((cfg.vocab_size,), jnp.float32))

    def __call__(self, h, embedding):
        """h: [..., H] hidden states; embedding: [V, H] word embeddings -> float32 logits [..., V]."""
        cd = self.cfg.compute_dtype
        x = self.transform(h).astype(cd)
        logits = jnp.einsum("...h,vh->...v", x, embedding.astype(cd), preferred_element_type=jnp.float32)
        return logits + self.bias[...]


class BertForMaskedLM(nnx.Module):
    """``model(tokens, lengths, positions) -> float32[B, P, V]``: MLM logits at the given positions only."""

    def __init__(self, cfg: BertConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.bert = BertModel(cfg, rngs=rngs, add_pooling_layer=False)
        self.cls = MLMHead(cfg, rngs=rngs)

    def encode(self, tokens, lengths, token_type_ids=None, *, deterministic: bool = True, rngs=None):
        """Encoder hidden states [B, T, H] (compute dtype); the attention mask is ``position < length``."""
        tokens = jnp.asarray(tokens, jnp.int32)
        mask = jnp.arange(tokens.shape[1])[None, :] < jnp.asarray(lengths)[:, None]
        seq, _ = self.bert(tokens, mask, token_type_ids, deterministic=deterministic, rngs=rngs, lengths=lengths)
        return seq

    def __call__(self, tokens, lengths, positions, token_type_ids=None, *, deterministic: bool = True,
                 rngs: nnx.Rngs | None = None):
        """tokens int32[B, T], lengths int32[B], positions int32[B, P] (indices into T) -> logits float32[B, P, V]."""
        seq = self.encode(tokens, lengths, token_type_ids, deterministic=deterministic, rngs=rngs)
        picked = jnp.take_along_axis(seq, jnp.asarray(positions, jnp.int32)[..., None], axis=1)  # [B, P, H]
        return self.cls(picked, self.bert.embeddings.word_embeddings.embedding[...])

    def full_logits(self, tokens, lengths, token_type_ids=None, *, deterministic: bool = True, rngs=None):
        """Logits at every position, float32[B, T, V] (what HF's ``BertForMaskedLM`` returns)."""
        seq = self.encode(tokens, lengths, token_type_ids, deterministic=deterministic, rngs=rngs)
        return self.cls(seq, self.bert.embeddings.word_embeddings.embedding[...])


__all__ = ["BertForMaskedLM", "MLMHead", "MLMTransform"]
