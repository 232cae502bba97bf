"""Write our NNX BERTs as Hugging Face checkpoints, and load MLM checkpoints back.

``save_pretrained(model, folder, tokenizer=None)`` writes ``config.json``, ``model.safetensors`` and
(optionally) the tokenizer files, so that transformers' ``BertForMaskedLM.from_pretrained(folder)``
(for a :class:`~jaxsenti.models.bert_mlm.BertForMaskedLM`) or ``BertModel.from_pretrained(folder)``
(for a :class:`~jaxsenti.models.bert.BertModel`) loads it with no missing and no unexpected keys, and
our own :func:`jaxsenti.models.hf_bert.from_pretrained` builds a fine-tuning ``BertClassifier`` from it.

Conversion (NNX -> PyTorch layout) is the inverse of :mod:`jaxsenti.models.hf_bert`'s table, reused
from there so the two directions cannot drift: Dense kernels ``[in, out]`` are transposed to
``[out, in]``, the fused ``qkv`` kernel ``[H, 3H]`` is split into ``query``/``key``/``value``.

Tied weights: HF ties ``cls.predictions.decoder.weight`` to the word embeddings and
``cls.predictions.decoder.bias`` to ``cls.predictions.bias``, and its own ``save_pretrained`` leaves
both decoder keys out of the safetensors file (a tensor may appear there once); we do the same.
:func:`load_mlm` accepts checkpoints with or without them (older ones, e.g. the original
bert-base-chinese, store the decoder), but refuses a decoder that differs from the embeddings,
since our model ties them.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxsenti.models.bert import BertClassifier, BertConfig, BertModel
from jaxsenti.models.bert_mlm import BertForMaskedLM
from jaxsenti.models.hf_bert import (
    CONFIG,
    SAFETENSORS,
    TOKENIZER_FILES,
    CheckpointError,
    _get_param,
    _param_map,
    convert_hf_to_nnx,
    load_hf_checkpoint,
)

# our MLM head path -> (HF key, rule); "T" transposes a Dense kernel
_HEAD_MAP = (
    (("cls", "transform", "dense", "kernel"), "cls.predictions.transform.dense.weight", "T"),
    (("cls", "transform", "dense", "bias"), "cls.predictions.transform.dense.bias", "copy"),
    (("cls", "transform", "layer_norm", "scale"), "cls.predictions.transform.LayerNorm.weight", "copy"),
    (("cls", "transform", "layer_norm", "bias"), "cls.predictions.transform.LayerNorm.bias", "copy"),
    (("cls", "bias"), "cls.predictions.bias", "copy"),
)
_WORD_EMB = "bert.embeddings.word_embeddings.weight"
_DECODER_W, _DECODER_B = "cls.predictions.decoder.weight", "cls.predictions.decoder.bias"


def _value(param) -> np.ndarray:
    return np.asarray(param.get_value(), np.float32)


def _encoder_state_dict(bert: BertModel, prefix: str) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    H = bert.cfg.hidden_size
    for path, keys, rule in _param_map(bert.cfg):
        if path[0] == "pooler" and bert.pooler is None:
            continue
        v = _value(_get_param(bert, path))
        if rule == "T":
            parts = [v.T]
        elif rule == "qkv_kernel":  # [H, 3H] columns q|k|v -> three [H_out, H_in]
            parts = [v[:, i * H:(i + 1) * H].T for i in range(3)]
        elif rule == "qkv_bias":
            parts = [v[i * H:(i + 1) * H] for i in range(3)]
        else:
            parts = [v]
        for k, a in zip(keys, parts):
            out[prefix + k] = np.ascontiguousarray(a)
    return out


def to_hf_state_dict(model: BertModel | BertForMaskedLM) -> dict[str, np.ndarray]:
    """HF-named float32 numpy arrays: ``bert.*`` + ``cls.predictions.*`` for an MLM (tied decoder left
    out, as HF saves it), bare ``embeddings.*``/``encoder.*``/``pooler.*`` for a ``BertModel``."""
    if isinstance(model, BertForMaskedLM):
        sd = _encoder_state_dict(model.bert, "bert.")
        for path, key, rule in _HEAD_MAP:
            v = _value(_get_param(model, path))
            sd[key] = np.ascontiguousarray(v.T if rule == "T" else v)
        return sd
    if isinstance(model, BertModel):
        return _encoder_state_dict(model, "")
    raise TypeError(f"expected a BertModel or BertForMaskedLM, got {type(model).__name__} "
                    "(for a BertClassifier export its encoder: model.bert)")


def hf_config(cfg: BertConfig, architecture: str) -> dict[str, Any]:
    """The ``config.json`` transformers' ``BertConfig`` reads (our ``pooling``/``dtype`` are fine-tuning choices, not saved)."""
    return {
        "architectures": [architecture],
        "model_type": "bert",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "intermediate_size": cfg.intermediate_size,
        "hidden_act": cfg.hidden_act,
        "hidden_dropout_prob": cfg.hidden_dropout_prob,
        "attention_probs_dropout_prob": cfg.attention_probs_dropout_prob,
        "max_position_embeddings": cfg.max_position_embeddings,
        "type_vocab_size": cfg.type_vocab_size,
        "initializer_range": cfg.initializer_range,
        "layer_norm_eps": cfg.layer_norm_eps,
        "pad_token_id": cfg.pad_token_id,
        "position_embedding_type": "absolute",
        "tie_word_embeddings": True,
        "dtype": "float32",
    }


LABELS = ("negative", "positive")  # the classifier's P(positive) is the softmax of logits [0, ours]


def classifier_state_dict(model: BertClassifier) -> dict[str, np.ndarray]:
    """``BertForSequenceClassification`` weights for our one-logit classifier, as two labels.

    Our head gives one logit ``l`` and P(positive) = sigmoid(l). Hugging Face's text-classification
    heads give one logit per label and a softmax; logits ``[0, l]`` give softmax ``[1 - sigmoid(l),
    sigmoid(l)]``, the same probability, so the exported head is our row with a zero row above it
    (label 0 negative, label 1 positive), which the ``text-classification`` pipeline reads as is.
    """
    if model.cfg.pooling != "cls":
        raise ValueError(f"only pooling='cls' (the [CLS] pooler, as Hugging Face's BertForSequenceClassification) "
                         f"can be exported; this model pools with {model.cfg.pooling!r}")
    sd = _encoder_state_dict(model.bert, "bert.")
    w = _value(model.classifier.kernel)[:, 0]  # [H]
    b = _value(model.classifier.bias)[0]
    sd["classifier.weight"] = np.stack([np.zeros_like(w), w])
    sd["classifier.bias"] = np.asarray([0.0, b], np.float32)
    return sd


def save_classifier(model: BertClassifier, folder: str | os.PathLike, tokenizer, *, max_len: int) -> str:
    """A ``BertForSequenceClassification`` folder (config with the label names, safetensors, tokenizer whose
    ``model_max_length`` is ``max_len``) that ``transformers.pipeline("text-classification")`` loads."""
    from jaxsenti.atomic import write_safetensors

    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    cfg = hf_config(model.cfg, "BertForSequenceClassification") | {
        "num_labels": len(LABELS), "id2label": dict(enumerate(LABELS)), "label2id": {k: i for i, k in enumerate(LABELS)},
        "problem_type": "single_label_classification"}
    cfg.pop("tie_word_embeddings")  # a classifier has no decoder to tie
    with open(os.path.join(folder, CONFIG), "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2)
    write_safetensors(os.path.join(folder, SAFETENSORS), classifier_state_dict(model), metadata={"format": "pt"})
    _save_tokenizer(tokenizer, folder)
    path = os.path.join(folder, "tokenizer_config.json")
    tok_cfg = {}
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            tok_cfg = json.load(f)
    with open(path, "w", encoding="utf-8") as f:  # the pipeline truncates (truncation=True) where we did
        json.dump(tok_cfg | {"model_max_length": max_len}, f, indent=2, ensure_ascii=False)
    return folder


def _save_tokenizer(tokenizer, folder: str) -> None:
    if hasattr(tokenizer, "save_pretrained"):
        tokenizer.save_pretrained(folder)
        return
    src = os.fspath(tokenizer)
    if not os.path.isdir(src):
        raise FileNotFoundError(f"tokenizer folder {src!r} does not exist")
    copied = [f for f in TOKENIZER_FILES if os.path.isfile(os.path.join(src, f))]
    if not any(f in copied for f in ("vocab.txt", "tokenizer.json")):
        raise FileNotFoundError(f"no vocab.txt or tokenizer.json in tokenizer folder {src}")
    for f in copied:
        shutil.copyfile(os.path.join(src, f), os.path.join(folder, f))


def save_pretrained(model: BertModel | BertForMaskedLM, folder: str | os.PathLike, tokenizer=None) -> str:
    """Write ``config.json`` + ``model.safetensors`` (+ tokenizer files: a tokenizer object or a folder) into ``folder``."""
    from jaxsenti.atomic import write_safetensors

    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    arch = "BertForMaskedLM" if isinstance(model, BertForMaskedLM) else "BertModel"
    sd = to_hf_state_dict(model)
    cfg = model.cfg
    with open(os.path.join(folder, CONFIG), "w", encoding="utf-8") as f:
        json.dump(hf_config(cfg, arch), f, indent=2)
    # "pt": transformers reads numpy-written files as torch tensors
    write_safetensors(os.path.join(folder, SAFETENSORS), sd, metadata={"format": "pt"})
    if tokenizer is not None:
        _save_tokenizer(tokenizer, folder)
    return folder


def _normalise_head_key(k: str) -> str:
    return k.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")


def load_mlm(path_or_hub_id: str | os.PathLike, *, rngs: nnx.Rngs | None = None, strict: bool = True,
             **config_overrides: Any) -> BertForMaskedLM:
    """A :class:`BertForMaskedLM` from a Hugging Face MLM checkpoint (ours, HF's, or the original bert-base-chinese).

    Encoder weights go through :func:`jaxsenti.models.hf_bert.convert_hf_to_nnx` (pooler and NSP weights
    are ignored); the ``cls.predictions`` head must be present. ``config_overrides`` as in
    ``hf_bert.from_pretrained`` (e.g. ``dtype="bfloat16"``, ``hidden_dropout_prob=0.0``).
    """
    cfg, weights = load_hf_checkpoint(path_or_hub_id, **config_overrides)
    model = BertForMaskedLM(cfg, rngs=rngs if rngs is not None else nnx.Rngs(0))
    convert_hf_to_nnx(weights, model.bert, strict=strict)

    head = {_normalise_head_key(k): v for k, v in weights.items() if k.startswith("cls.predictions.")}
    missing = [key for _, key, _ in _HEAD_MAP if key not in head]
    if missing:
        raise CheckpointError(
            f"checkpoint has no MLM head weights {missing} (is it a BertModel or a classifier rather than "
            "a BertForMaskedLM / BertForPreTraining checkpoint?)")
    emb = model.bert.embeddings.word_embeddings.embedding.get_value()
    if _DECODER_W in head and not np.allclose(head[_DECODER_W], np.asarray(emb), rtol=0, atol=1e-6):
        raise CheckpointError(f"{_DECODER_W} differs from {_WORD_EMB}; our model ties the decoder to the word embeddings")
    if _DECODER_B in head and not np.allclose(head[_DECODER_B], head["cls.predictions.bias"], rtol=0, atol=1e-6):
        raise CheckpointError(f"{_DECODER_B} differs from cls.predictions.bias; HF ties them")
    for path, key, rule in _HEAD_MAP:
        param = _get_param(model, path)
        v = np.asarray(head[key], np.float32)
        shape = tuple(param.get_value().shape)
        want = shape[::-1] if rule == "T" else shape  # PyTorch layout
        if v.shape != want:
            raise CheckpointError(f"shape mismatch for {key!r}: checkpoint has {v.shape}, the model "
                                  f"(hidden_size={cfg.hidden_size}, vocab_size={cfg.vocab_size}) expects {want}")
        param.set_value(jnp.asarray(v.T if rule == "T" else v))
    unexpected = sorted(set(head) - {key for _, key, _ in _HEAD_MAP} - {_DECODER_W, _DECODER_B})
    if unexpected and strict:
        raise CheckpointError(f"unexpected MLM head key(s) {unexpected}; pass strict=False to ignore them")
    return model


__all__ = ["LABELS", "classifier_state_dict", "hf_config", "load_mlm", "save_classifier", "save_pretrained",
           "to_hf_state_dict"]
