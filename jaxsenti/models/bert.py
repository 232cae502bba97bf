"""BERT encoder and sentiment classifier in Flax NNX (modules and config only).

The architecture follows Hugging Face ``BertModel`` exactly (post-LayerNorm encoder, exact-erf GELU,
absolute position embeddings, tanh pooler on [CLS]), so a Hugging Face checkpoint loads into it with
:mod:`jaxsenti.models.hf_bert` and reproduces PyTorch's hidden states to float32 rounding.

One deliberate layout difference: the query/key/value projections are one fused ``qkv`` Dense
(kernel ``[H, 3H]``, columns ordered q|k|v) — one larger matmul is faster than three small ones; the
checkpoint converter concatenates Hugging Face's separate ``query``/``key``/``value`` weights.

Parameters are always float32; ``BertConfig.dtype`` sets the *compute* dtype ("bfloat16" runs the
matmuls in bf16). The embedding sum, LayerNorm statistics, softmax and the final logit stay float32.

``BertConfig.attention`` picks the attention kernel (see :func:`attention_implementation`); it changes
no parameter and is not part of the Hugging Face config.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Any, Mapping

import jax
import jax.numpy as jnp
from flax import nnx
from jax.extend import backend as jax_backend

from jaxsenti.fields import ConfigError, check_fields, ranged
from jaxsenti.models.dropout import Dropout

POOLINGS = ("cls", "mean", "max")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
ATTENTIONS = ("auto", "xla", "cudnn", "einsum")
# cuDNN flash attention: head dim a multiple of 8, <= 128 before Hopper (<= 256 from Hopper on)
CUDNN_MAX_HEAD_DIM = 256
AUTO_CUDNN_MAX_HEAD_DIM = 128  # "auto" stays within what every cuDNN-capable GPU accepts
_OUR_FIELDS = ("pooling", "dtype", "attention")  # never read from a Hugging Face config


@dataclass(frozen=True)
class BertConfig:
    vocab_size: int = ranged(21128, ge=1)
    hidden_size: int = ranged(768, ge=1)
    num_hidden_layers: int = ranged(12, ge=1)
    num_attention_heads: int = ranged(12, ge=1)
    intermediate_size: int = ranged(3072, ge=1)
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = ranged(0.1, ge=0.0, lt=1.0)
    attention_probs_dropout_prob: float = ranged(0.1, ge=0.0, lt=1.0)
    max_position_embeddings: int = ranged(512, ge=1)
    type_vocab_size: int = ranged(2, ge=1)
    layer_norm_eps: float = ranged(1e-12, gt=0.0)
    pad_token_id: int = ranged(0, ge=0)
    initializer_range: float = ranged(0.02, gt=0.0)
    # ours
    pooling: str = "cls"  # "cls": pooler(tanh dense on [CLS]) -> dropout -> dense(1); "mean"/"max": masked over tokens
    dtype: str = "float32"  # compute dtype; parameters stay float32
    attention: str = "auto"  # kernel: "auto" | "xla" | "cudnn" | "einsum"; see attention_implementation

    def __post_init__(self):
        check_fields(self)
        if self.pooling not in POOLINGS:
            raise ConfigError.of_field("pooling", f"must be one of {POOLINGS}, got {self.pooling!r}")
        if self.dtype not in DTYPES:
            raise ConfigError.of_field("dtype", f"must be one of {tuple(DTYPES)}, got {self.dtype!r}")
        if self.hidden_act not in _ACTIVATIONS:
            raise ConfigError.of_field("hidden_act", f"{self.hidden_act!r} not supported; expected one of {tuple(_ACTIVATIONS)}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads {self.num_attention_heads}"
            )
        if self.attention not in ATTENTIONS:
            raise ConfigError.of_field("attention", f"must be one of {ATTENTIONS}, got {self.attention!r}")
        if self.attention == "cudnn":
            if self.dtype != "bfloat16":
                raise ValueError("attention='cudnn' needs dtype='bfloat16' (cuDNN flash attention takes fp16/bf16 only)")
            if self.head_dim % 8 or self.head_dim > CUDNN_MAX_HEAD_DIM:
                raise ValueError(
                    f"attention='cudnn' needs a head dim that is a multiple of 8 and <= {CUDNN_MAX_HEAD_DIM}, "
                    f"got {self.head_dim}"
                )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def compute_dtype(self):
        return DTYPES[self.dtype]

    def replace(self, **overrides: Any) -> "BertConfig":
        return dataclasses.replace(self, **overrides)

    @classmethod
    def from_hf(cls, config: Mapping[str, Any] | str | os.PathLike, **overrides: Any) -> "BertConfig":
        """From a Hugging Face ``config.json`` (a dict, the file, or the folder holding it); unknown keys are ignored.
        A hand-edited file with a value of the wrong type or range is a :class:`ConfigError` naming file and key."""
        where = "Hugging Face config"
        if not isinstance(config, Mapping):
            where = os.fspath(config)
            if os.path.isdir(where):
                where = os.path.join(where, "config.json")
            if not os.path.isfile(where):
                raise FileNotFoundError(f"no BERT config.json at {where}")
            try:
                with open(where, encoding="utf-8") as f:
                    config = json.load(f)
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise ConfigError(f"{where} is damaged (not valid JSON: {e})") from None
            if not isinstance(config, Mapping):
                raise ConfigError(f"{where} is damaged: expected a JSON object, got {type(config).__name__}")
        model_type = config.get("model_type")
        if model_type not in (None, "bert"):
            raise ValueError(f"{where}: config is for model_type {model_type!r}, not 'bert'")
        pet = config.get("position_embedding_type", "absolute")
        if pet != "absolute":
            raise ValueError(f"{where}: position_embedding_type {pet!r} not supported (only 'absolute')")
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in config.items() if k in names and k not in _OUR_FIELDS}
        if kwargs.get("pad_token_id") is None:
            kwargs.pop("pad_token_id", None)
        kwargs.update(overrides)
        try:
            return cls(**kwargs)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e.field}: {e.what}" if e.field else f"{where}: {e}") from None
        except ValueError as e:  # the config's own checks, e.g. heads not dividing the width
            raise ConfigError(f"{where}: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _gelu_erf(x):
    """Exact GELU as PyTorch writes it, x * Phi(x) via erf: XLA's erf is one rational polynomial,
    cheaper on CPU than the erfc form ``jax.nn.gelu(approximate=False)`` uses (same values to 1e-6)."""
    return 0.5 * x * (1.0 + jax.lax.erf(x * jnp.asarray(0.7071067811865476, x.dtype)))


_ACTIVATIONS = {
    "gelu": _gelu_erf,
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
}


def _dense(cfg: BertConfig, n_in: int, n_out: int, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(
        n_in,
        n_out,
        dtype=cfg.compute_dtype,
        param_dtype=jnp.float32,
        kernel_init=nnx.initializers.normal(cfg.initializer_range),
        bias_init=nnx.initializers.zeros_init(),
        rngs=rngs,
    )


def _layer_norm(cfg: BertConfig, dtype, rngs: nnx.Rngs) -> nnx.LayerNorm:
    # use_fast_variance=False: two-pass variance, like torch.nn.LayerNorm (matters at eps=1e-12)
    return nnx.LayerNorm(
        cfg.hidden_size, epsilon=cfg.layer_norm_eps, dtype=dtype, param_dtype=jnp.float32,
        use_fast_variance=False, rngs=rngs,
    )


class BertEmbeddings(nnx.Module):
    def __init__(self, cfg: BertConfig, *, rngs: nnx.Rngs):
        init = nnx.initializers.normal(cfg.initializer_range)
        self.cfg = cfg
        self.word_embeddings = nnx.Embed(cfg.vocab_size, cfg.hidden_size, embedding_init=init, rngs=rngs)
        self.position_embeddings = nnx.Embed(cfg.max_position_embeddings, cfg.hidden_size, embedding_init=init, rngs=rngs)
        self.token_type_embeddings = nnx.Embed(cfg.type_vocab_size, cfg.hidden_size, embedding_init=init, rngs=rngs)
        # the embedding sum is normalised in float32 and only then cast to the compute dtype
        self.layer_norm = _layer_norm(cfg, jnp.float32, rngs)
        self.dropout = Dropout(cfg.hidden_dropout_prob)

    def __call__(self, input_ids, token_type_ids, *, deterministic: bool, rngs):
        T = input_ids.shape[1]
        if T > self.cfg.max_position_embeddings:
            raise ValueError(f"sequence length {T} exceeds max_position_embeddings {self.cfg.max_position_embeddings}")
        x = self.word_embeddings(input_ids)
        x = x + self.token_type_embeddings(token_type_ids)
        x = x + self.position_embeddings.embedding[...][:T][None]
        x = self.layer_norm(x).astype(self.cfg.compute_dtype)
        return self.dropout(x, deterministic=deterministic, rngs=rngs)


def _on_cuda() -> bool:
    # the same test JAX's own cuDNN attention uses; ROCm reports "rocm ..." here
    return jax.default_backend() == "gpu" and "cuda" in jax_backend.get_backend().platform_version.lower()


def attention_implementation(
    cfg: BertConfig, *, deterministic: bool, has_lengths: bool, platform: str | None = None
) -> str:
    """The kernel :class:`BertSelfAttention` runs for one call: ``"xla"``, ``"cudnn"`` or ``"einsum"``.

    ``cfg.attention``:

    * ``"auto"``: ``"einsum"`` when attention-probability dropout is active (training with
      ``attention_probs_dropout_prob > 0``); else ``"cudnn"`` on a CUDA GPU when the compute dtype is
      bfloat16, the head dim is a multiple of 8 and <= 128, and the caller passed right-padding
      ``lengths``; else ``"xla"``.
    * ``"xla"`` / ``"cudnn"``: that kernel; a ``ValueError`` if dropout on the probabilities would be
      needed (neither applies it), a ``RuntimeError`` for ``"cudnn"`` off a CUDA GPU.
    * ``"einsum"``: the explicit einsum/softmax path (the only one with attention dropout).

    ``platform``: ``"cuda"`` or a JAX backend name; detected when None (lets tests ask about a GPU).
    """
    platform = ("cuda" if _on_cuda() else jax.default_backend()) if platform is None else platform
    dropout = not deterministic and cfg.attention_probs_dropout_prob > 0.0
    if cfg.attention == "einsum":
        return "einsum"
    if cfg.attention == "auto":
        if dropout:
            return "einsum"
        cudnn_ok = cfg.dtype == "bfloat16" and cfg.head_dim % 8 == 0 and cfg.head_dim <= AUTO_CUDNN_MAX_HEAD_DIM
        return "cudnn" if platform == "cuda" and has_lengths and cudnn_ok else "xla"
    if dropout:
        raise ValueError(
            f"attention={cfg.attention!r} cannot apply dropout to attention probabilities "
            f"(attention_probs_dropout_prob={cfg.attention_probs_dropout_prob}); use attention='auto' or "
            "'einsum' for training, or set attention_probs_dropout_prob=0"
        )
    if cfg.attention == "cudnn" and platform != "cuda":
        raise ValueError(f"attention='cudnn' needs a CUDA GPU (platform here: {platform!r}); use 'auto' or 'xla'")
    return cfg.attention


class BertSelfAttention(nnx.Module):
    """Multi-head self-attention with a fused qkv projection and a key padding mask.

    The kernel is chosen per call by :func:`attention_implementation`. Mask pitfalls:

    * A boolean mask alone keeps "auto" on XLA's path: cuDNN's flash kernel takes padding only as
      sequence lengths (a boolean mask would become a dense additive bias). So the "cudnn" path uses
      ``key_value_seq_lengths`` and assumes RIGHT padding (real tokens at ``[0, length)``); without
      ``lengths`` it takes ``mask.sum(-1)``, wrong for left-padded masks. Queries are never masked
      (padded positions still attend, as in Hugging Face); their outputs are unused.
    * Fully masked rows (filler rows of length 0) must stay finite: XLA and einsum give them uniform
      attention over all keys (a large finite negative, never -inf); for cuDNN, whose softmax over
      zero keys is 0/0, the key length is raised to 1.
    * cuDNN needs fp16/bf16 inputs (so ``dtype="bfloat16"``) and a head dim that is a multiple of 8.
    * ``jax.nn.dot_product_attention`` has no dropout on the probabilities: training with
      ``attention_probs_dropout_prob > 0`` needs the einsum path ("auto" switches to it).
    """

    def __init__(self, cfg: BertConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.qkv = _dense(cfg, cfg.hidden_size, 3 * cfg.hidden_size, rngs)
        self.out = _dense(cfg, cfg.hidden_size, cfg.hidden_size, rngs)
        self.dropout = Dropout(cfg.attention_probs_dropout_prob)

    def __call__(self, x, mask, *, deterministic: bool, rngs, lengths=None):
        """x: [B,T,H]; mask: bool[B,T] (True = real token, may be attended to); lengths: optional
        int[B] when ``mask`` is right padding (``t < length``), which lets "auto" pick cuDNN."""
        cfg = self.cfg
        B, T, _ = x.shape
        qkv = self.qkv(x).reshape(B, T, 3, cfg.num_attention_heads, cfg.head_dim)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # [B,T,N,D]
        key_mask = mask[:, None, None, :]  # [B,1,1,T] broadcast over heads and queries
        impl = attention_implementation(cfg, deterministic=deterministic, has_lengths=lengths is not None)
        if impl == "cudnn":
            kv_len = jnp.sum(mask, axis=-1) if lengths is None else lengths
            kv_len = jnp.clip(jnp.asarray(kv_len, jnp.int32), 1, T)  # >= 1 key: see the class docstring
            ctx = jax.nn.dot_product_attention(q, k, v, key_value_seq_lengths=kv_len, implementation="cudnn")
        elif impl == "xla":
            ctx = jax.nn.dot_product_attention(q, k, v, mask=key_mask, implementation="xla")
        else:
            # dot_product_attention has no dropout on the probabilities; spell it out for training
            logits = jnp.einsum("bqnd,bknd->bnqk", q, k, preferred_element_type=jnp.float32)
            logits = logits * (cfg.head_dim**-0.5)
            logits = jnp.where(key_mask, logits, jnp.finfo(jnp.float32).min)
            probs = jax.nn.softmax(logits, axis=-1)
            probs = self.dropout(probs, deterministic=deterministic, rngs=rngs).astype(v.dtype)
            ctx = jnp.einsum("bnqk,bknd->bqnd", probs, v)
        return self.out(ctx.reshape(B, T, cfg.hidden_size))


class BertLayer(nnx.Module):
    def __init__(self, cfg: BertConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.attention = BertSelfAttention(cfg, rngs=rngs)
        self.attention_norm = _layer_norm(cfg, cfg.compute_dtype, rngs)
        self.intermediate = _dense(cfg, cfg.hidden_size, cfg.intermediate_size, rngs)
        self.output = _dense(cfg, cfg.intermediate_size, cfg.hidden_size, rngs)
        self.output_norm = _layer_norm(cfg, cfg.compute_dtype, rngs)
        self.dropout = Dropout(cfg.hidden_dropout_prob)

    def __call__(self, x, mask, *, deterministic: bool, rngs, lengths=None):
        a = self.attention(x, mask, deterministic=deterministic, rngs=rngs, lengths=lengths)
        x = self.attention_norm(x + self.dropout(a, deterministic=deterministic, rngs=rngs))
        h = _ACTIVATIONS[self.cfg.hidden_act](self.intermediate(x))
        h = self.output(h)
        return self.output_norm(x + self.dropout(h, deterministic=deterministic, rngs=rngs))


class BertPooler(nnx.Module):
    def __init__(self, cfg: BertConfig, *, rngs: nnx.Rngs):
        self.dense = _dense(cfg, cfg.hidden_size, cfg.hidden_size, rngs)

    def __call__(self, sequence_output):
        return jnp.tanh(self.dense(sequence_output[:, 0]))


class BertModel(nnx.Module):
    def __init__(self, cfg: BertConfig, *, rngs: nnx.Rngs, add_pooling_layer: bool = True):
        self.cfg = cfg
        self.embeddings = BertEmbeddings(cfg, rngs=rngs)
        self.layers = nnx.List([BertLayer(cfg, rngs=rngs) for _ in range(cfg.num_hidden_layers)])
        # False as in HF's BertForMaskedLM, whose checkpoints have no pooler; ``pooled`` is then None
        self.pooler = BertPooler(cfg, rngs=rngs) if add_pooling_layer else None

    def __call__(
        self,
        input_ids,
        attention_mask,
        token_type_ids=None,
        *,
        deterministic: bool = True,
        rngs: nnx.Rngs | None = None,
        lengths=None,
    ):
        """Returns ``(sequence_output [B,T,H], pooled [B,H] or None without a pooler)`` in the compute dtype.

        ``lengths`` (optional int[B]): pass it when ``attention_mask`` is right padding
        (``t < length``); it lets ``attention="auto"`` use cuDNN flash attention on a GPU.
        """
        input_ids = jnp.asarray(input_ids, jnp.int32)
        mask = jnp.asarray(attention_mask).astype(bool)
        if token_type_ids is None:
            token_type_ids = jnp.zeros_like(input_ids)
        x = self.embeddings(input_ids, jnp.asarray(token_type_ids, jnp.int32), deterministic=deterministic, rngs=rngs)
        for layer in self.layers:
            x = layer(x, mask, deterministic=deterministic, rngs=rngs, lengths=lengths)
        return x, (None if self.pooler is None else self.pooler(x))


class BertClassifier(nnx.Module):
    """BERT + one-logit sentiment head; ``model(tokens, lengths) -> float32[B]``."""

    def __init__(self, cfg: BertConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.bert = BertModel(cfg, rngs=rngs)
        self.dropout = Dropout(cfg.hidden_dropout_prob)
        self.classifier = _dense(cfg, cfg.hidden_size, 1, rngs)

    def __call__(self, tokens, lengths, *, deterministic: bool = True, rngs: nnx.Rngs | None = None):
        tokens = jnp.asarray(tokens, jnp.int32)
        T = tokens.shape[1]
        lengths = jnp.clip(jnp.asarray(lengths, jnp.int32), 0, T)
        mask = jnp.arange(T)[None, :] < lengths[:, None]
        seq, pooled = self.bert(tokens, mask, deterministic=deterministic, rngs=rngs, lengths=lengths)
        if self.cfg.pooling == "cls":
            feats = pooled
        elif self.cfg.pooling == "mean":
            m = mask[..., None].astype(jnp.float32)
            feats = jnp.sum(seq.astype(jnp.float32) * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1.0)
        else:  # max
            neg = jnp.finfo(jnp.float32).min
            feats = jnp.max(jnp.where(mask[..., None], seq.astype(jnp.float32), neg), axis=1)
            feats = jnp.where(jnp.any(mask, axis=1, keepdims=True), feats, 0.0)
        feats = self.dropout(feats, deterministic=deterministic, rngs=rngs)
        return self.classifier(feats)[:, 0].astype(jnp.float32)
