"""Load Hugging Face BERT checkpoints (PyTorch layout) into :mod:`jaxsenti.models.bert`.

``from_pretrained("path/to/folder" or "bert-base-chinese", rngs=nnx.Rngs(0))`` returns a
:class:`~jaxsenti.models.bert.BertClassifier` whose encoder and pooler hold the pretrained weights and
whose one-logit head is freshly initialised. A folder must contain ``config.json`` and the weights as
``model.safetensors`` or ``pytorch_model.bin`` (or their sharded ``*.index.json`` forms). A hub id is
resolved through ``huggingface_hub.snapshot_download`` — the local Hugging Face cache first, the
network when there is one.

Conversion rules (PyTorch -> NNX):
  * ``nn.Linear.weight`` ``[out, in]``  -> ``nnx.Linear.kernel`` ``[in, out]`` (transpose);
    ``query``/``key``/``value`` are concatenated into the fused ``qkv`` kernel ``[H, 3H]`` (q|k|v).
  * ``nn.Embedding.weight`` -> ``nnx.Embed.embedding`` (as is).
  * LayerNorm ``weight``/``bias`` (or ``gamma``/``beta`` in TF-converted checkpoints) -> ``scale``/``bias``.
  * Keys may carry the ``bert.`` prefix (``BertForMaskedLM``, ``BertForSequenceClassification``, ...) or
    none (``BertModel``). Task heads (``cls.*`` MLM/NSP, ``classifier.*``, ...) are ignored.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from typing import Any, Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx
from huggingface_hub import snapshot_download
from safetensors import safe_open

from jaxsenti.models.bert import BertClassifier, BertConfig, BertModel

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
TORCH_BIN = "pytorch_model.bin"
TORCH_BIN_INDEX = "pytorch_model.bin.index.json"
CONFIG = "config.json"
TOKENIZER_FILES = ["vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]

# top-level key prefixes of task heads that the encoder does not use
_HEAD_PREFIXES = ("cls.", "classifier.", "qa_outputs.", "dropout.", "lm_head.", "pre_classifier.")
# non-parameter buffers some checkpoints carry
_IGNORED_ENCODER_KEYS = ("embeddings.position_ids", "embeddings.token_type_ids")
_LAYER_RE = re.compile(r"^encoder\.layer\.(\d+)\.")
# appended to "weights not found" errors, the one case where starting without them is the likely fix
NO_WEIGHTS_HINT = ("; to start BERT from random weights instead, leave --pretrained out (study) or pass "
                   "--pretrained none / --config bert_small_random (train)")


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded into the model (missing/unexpected keys, wrong shapes)."""


# --------------------------------------------------------------------------------------------------
# locating and reading files


def looks_like_local_path(s: str) -> bool:
    """Hub ids are ``name`` or ``org/name``; anything else (absolute, ./, ~, deeper paths) is a path."""
    return s.startswith((".", "/", "~", "\\")) or s.count("/") > 1 or "\\" in s or os.path.exists(s)


def _snapshot(repo_id: str, patterns: list[str]) -> str:
    try:
        return snapshot_download(repo_id, allow_patterns=patterns)
    except Exception as e:
        raise OSError(
            f"can't reach the Hugging Face checkpoint {repo_id!r}: it is not a local folder, not in the local "
            f"Hugging Face cache, and downloading it failed ({type(e).__name__}: {e}). Either run once with "
            "internet access (the files are then cached), or download the checkpoint elsewhere "
            "(e.g. `huggingface-cli download bert-base-chinese config.json model.safetensors vocab.txt "
            "tokenizer.json tokenizer_config.json --local-dir ./bert-base-chinese`) and pass that local folder"
            + NO_WEIGHTS_HINT
        ) from e


def _weight_files_in(folder: str) -> list[str] | None:
    """Weight files of a checkpoint folder, safetensors preferred; None when there are none."""
    for single, index in ((SAFETENSORS, SAFETENSORS_INDEX), (TORCH_BIN, TORCH_BIN_INDEX)):
        if os.path.isfile(os.path.join(folder, single)):
            return [os.path.join(folder, single)]
        ip = os.path.join(folder, index)
        if os.path.isfile(ip):
            try:
                with open(ip, encoding="utf-8") as f:
                    shards = sorted(set(json.load(f)["weight_map"].values()))
            except (ValueError, KeyError, TypeError, AttributeError) as e:  # not JSON, or no weight_map of file names
                raise CheckpointError(f"{ip} is damaged ({type(e).__name__}: {e}); restore it from the checkpoint's source") from None
            paths = [os.path.join(folder, s) for s in shards]
            missing = [p for p in paths if not os.path.isfile(p)]
            if missing:
                raise FileNotFoundError(f"checkpoint index {ip} lists shard(s) that are missing: {missing}")
            return paths
    return None


def resolve_checkpoint_dir(path_or_hub_id: str | os.PathLike) -> str:
    """A local folder holding ``config.json`` and weights; hub ids are fetched via ``snapshot_download``."""
    s = os.fspath(path_or_hub_id)
    if os.path.isdir(s):
        return s
    if looks_like_local_path(s):
        raise FileNotFoundError(f"checkpoint folder {s!r} does not exist" + NO_WEIGHTS_HINT)
    folder = _snapshot(s, [CONFIG, SAFETENSORS, SAFETENSORS_INDEX, "model-*.safetensors"])
    if _weight_files_in(folder) is None:  # no safetensors on the hub for this repo: fall back to the .bin
        folder = _snapshot(s, [CONFIG, TORCH_BIN, TORCH_BIN_INDEX, "pytorch_model-*.bin"])
    return folder


def _damaged(path: str, e: BaseException) -> CheckpointError:
    why = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
    return CheckpointError(f"{path} is damaged or is not a weights file ({why}); "
                           "download or copy it again from the checkpoint's source")


def _read_safetensors(path: str) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError

    out: dict[str, np.ndarray] = {}
    try:
        with safe_open(path, framework="numpy") as f:
            for k in f.keys():
                out[k] = f.get_tensor(k)
        return out
    except SafetensorError as e:  # truncated, 0-byte, random bytes: the header does not parse
        raise _damaged(path, e) from None
    except (TypeError, ValueError) as e:  # e.g. bfloat16 tensors, which numpy cannot hold
        try:
            import torch  # noqa: F401
        except ImportError:
            raise CheckpointError(f"cannot read {path} with numpy ({e}); install torch to read it") from e
    try:
        with safe_open(path, framework="pt") as f:
            for k in f.keys():
                out[k] = _torch_to_numpy(f.get_tensor(k))
    except SafetensorError as e:
        raise _damaged(path, e) from None
    return out


def _torch_to_numpy(t) -> np.ndarray:
    import torch

    t = t.detach().cpu()
    if t.is_floating_point():
        t = t.to(torch.float32)
    return t.numpy()


def _read_torch_bin(path: str) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError as e:
        raise ImportError(
            f"{path} is a PyTorch pickle; reading it needs torch (`pip install torch`, the CPU wheel is enough), "
            "or convert the checkpoint to model.safetensors once, e.g. with "
            "`transformers.AutoModel.from_pretrained(folder).save_pretrained(folder)` on a machine with torch"
        ) from e
    import pickle

    try:
        # weights_only: a pickle that would build anything but tensors is refused, never run
        with warnings.catch_warnings():  # torch warns of pickle protocols; the error below says what matters
            warnings.simplefilter("ignore", UserWarning)
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's own text advises weights_only=False, i.e. running the pickle: keep only its diagnosis
        m = (re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", str(e))
             or re.search(r"\n(Trying to load unsupported[^\n]*)", str(e)))
        why = m.group(1).strip()[:160] if m else "not a PyTorch weights file"
        raise CheckpointError(
            f"{path} cannot be loaded safely ({why}): it is damaged, or its pickle holds more than tensors "
            "(such a pickle can run code; none of it was run). Use the checkpoint's model.safetensors, "
            "or download the file again from its source") from None
    except (EOFError, OSError, RuntimeError, ValueError, KeyError, IndexError, AttributeError) as e:
        # 0 bytes (EOFError), truncated zip (OSError/RuntimeError), random bytes
        raise _damaged(path, e) from None
    if not isinstance(sd, Mapping):
        raise CheckpointError(f"{path} does not hold a state dict (got {type(sd).__name__})")
    return {k: _torch_to_numpy(v) for k, v in sd.items()}


def check_checkpoint(path_or_hub_id: str | os.PathLike) -> str:
    """The checkpoint's local folder after checking that config.json and weight files are there (nothing is read)."""
    folder = resolve_checkpoint_dir(path_or_hub_id)
    from jaxsenti.folders import check_kind

    check_kind(folder, "bert", "--pretrained")  # an LSTM LM or a trained model folder: say what it is
    if not os.path.isfile(os.path.join(folder, CONFIG)):
        raise FileNotFoundError(f"no {CONFIG} in checkpoint folder {folder}" + NO_WEIGHTS_HINT)
    if _weight_files_in(folder) is None:
        raise FileNotFoundError(f"no weights in checkpoint folder {folder}: expected {SAFETENSORS} or {TORCH_BIN}"
                                + NO_WEIGHTS_HINT)
    return folder


def load_hf_checkpoint(path_or_hub_id: str | os.PathLike, **config_overrides: Any) -> tuple[BertConfig, dict[str, np.ndarray]]:
    """Read ``config.json`` and the weights of a Hugging Face BERT checkpoint.

    Returns the :class:`BertConfig` (with ``config_overrides`` applied; an unknown field is a ``TypeError``)
    and the raw state dict as float32 numpy arrays (keys as saved).
    """
    folder = resolve_checkpoint_dir(path_or_hub_id)
    from jaxsenti.folders import check_kind

    check_kind(folder, "bert", "--pretrained")
    cfg_path = os.path.join(folder, CONFIG)
    if not os.path.isfile(cfg_path):
        raise FileNotFoundError(f"no {CONFIG} in checkpoint folder {folder}")
    cfg = BertConfig.from_hf(cfg_path)
    files = _weight_files_in(folder)
    if files is None:
        raise FileNotFoundError(
            f"no weights in checkpoint folder {folder}: expected {SAFETENSORS} or {TORCH_BIN} "
            f"(or {SAFETENSORS_INDEX} / {TORCH_BIN_INDEX} with shards)"
        )
    weights: dict[str, np.ndarray] = {}
    for p in files:
        weights.update(_read_safetensors(p) if p.endswith(".safetensors") else _read_torch_bin(p))
    if config_overrides:
        unknown = set(config_overrides) - set(cfg.to_dict())
        if unknown:
            raise TypeError(f"unknown BertConfig field(s): {sorted(unknown)}")
        cfg = cfg.replace(**config_overrides)
    return cfg, weights


# --------------------------------------------------------------------------------------------------
# conversion


def _normalise_keys(hf_weights: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], list[str]]:
    """Strip the ``bert.`` prefix, rename gamma/beta; returns (encoder weights, ignored head keys)."""
    prefixed = any(k.startswith("bert.") for k in hf_weights)
    enc: dict[str, np.ndarray] = {}
    ignored: list[str] = []
    for k, v in hf_weights.items():
        if prefixed:
            if k.startswith("bert."):
                name = k[len("bert."):]
            elif k.startswith(_HEAD_PREFIXES):
                ignored.append(k)
                continue
            else:
                name = k  # reported as unexpected below unless it is a known buffer
        else:
            if k.startswith(_HEAD_PREFIXES):
                ignored.append(k)
                continue
            name = k
        if "LayerNorm." in name:
            name = name.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        enc[name] = np.asarray(v)
    return enc, ignored


def _param_map(cfg: BertConfig) -> list[tuple[tuple, list[str], str]]:
    """(our path under BertModel, HF keys, rule) for every parameter; rule in {copy, T, qkv_kernel, qkv_bias}."""
    entries: list[tuple[tuple, list[str], str]] = []

    def dense(ours: tuple, hf: str):
        entries.append((ours + ("kernel",), [hf + ".weight"], "T"))
        entries.append((ours + ("bias",), [hf + ".bias"], "copy"))

    def norm(ours: tuple, hf: str):
        entries.append((ours + ("scale",), [hf + ".weight"], "copy"))
        entries.append((ours + ("bias",), [hf + ".bias"], "copy"))

    for ours, hf in (
        ("word_embeddings", "word_embeddings"),
        ("position_embeddings", "position_embeddings"),
        ("token_type_embeddings", "token_type_embeddings"),
    ):
        entries.append((("embeddings", ours, "embedding"), [f"embeddings.{hf}.weight"], "copy"))
    norm(("embeddings", "layer_norm"), "embeddings.LayerNorm")
    for i in range(cfg.num_hidden_layers):
        p = f"encoder.layer.{i}."
        a = f"{p}attention.self."
        entries.append((("layers", i, "attention", "qkv", "kernel"), [f"{a}{n}.weight" for n in ("query", "key", "value")], "qkv_kernel"))
        entries.append((("layers", i, "attention", "qkv", "bias"), [f"{a}{n}.bias" for n in ("query", "key", "value")], "qkv_bias"))
        dense(("layers", i, "attention", "out"), f"{p}attention.output.dense")
        norm(("layers", i, "attention_norm"), f"{p}attention.output.LayerNorm")
        dense(("layers", i, "intermediate"), f"{p}intermediate.dense")
        dense(("layers", i, "output"), f"{p}output.dense")
        norm(("layers", i, "output_norm"), f"{p}output.LayerNorm")
    dense(("pooler", "dense"), "pooler.dense")
    return entries


def _expected_hf_shape(rule: str, target_shape: tuple[int, ...]) -> tuple[int, ...]:
    if rule == "T":
        return tuple(reversed(target_shape))
    if rule == "qkv_kernel":  # [H, 3H] <- three [H, H]
        return (target_shape[1] // 3, target_shape[0])
    if rule == "qkv_bias":
        return (target_shape[0] // 3,)
    return tuple(target_shape)


def _get_param(module: nnx.Module, path: tuple) -> nnx.Param:
    obj: Any = module
    for p in path:
        obj = obj[p] if isinstance(p, int) else getattr(obj, p)
    return obj


def convert_hf_to_nnx(
    hf_weights: Mapping[str, Any], model: BertModel | BertClassifier, *, strict: bool = True
) -> BertModel | BertClassifier:
    """Copy Hugging Face BERT weights into ``model`` (a ``BertModel``, or a ``BertClassifier``'s ``.bert``) in place.

    Missing pooler weights (``BertForMaskedLM`` saves none) only warn and keep the fresh pooler; a model
    built without a pooler (``add_pooling_layer=False``) ignores the checkpoint's pooler weights. Any other
    missing key, a shape mismatch, or (with ``strict``) an unexpected encoder key raises
    :class:`CheckpointError`. Encoder layers beyond ``cfg.num_hidden_layers`` are skipped, so a
    checkpoint can be loaded into a shallower model. Returns ``model``.
    """
    bert = model.bert if isinstance(model, BertClassifier) else model
    if not isinstance(bert, BertModel):
        raise TypeError(f"expected a BertModel or BertClassifier, got {type(model).__name__}")
    cfg = bert.cfg
    enc, _ignored = _normalise_keys(hf_weights)

    entries = _param_map(cfg)
    if bert.pooler is None:  # a pooler-less encoder (BertForMaskedLM): checkpoint pooler weights are ignored
        entries = [e for e in entries if e[0][0] != "pooler"]
    used: set[str] = set()
    missing: list[str] = []
    new_values: list[tuple[nnx.Param, np.ndarray]] = []
    for path, keys, rule in entries:
        absent = [k for k in keys if k not in enc]
        if absent:
            missing.extend(absent)
            continue
        param = _get_param(bert, path)
        target_shape = tuple(param.get_value().shape)
        want = _expected_hf_shape(rule, target_shape)
        for k in keys:
            if tuple(enc[k].shape) != want:
                raise CheckpointError(
                    f"shape mismatch for checkpoint key {k!r}: checkpoint has {tuple(enc[k].shape)}, the model "
                    f"(hidden_size={cfg.hidden_size}, intermediate_size={cfg.intermediate_size}, "
                    f"vocab_size={cfg.vocab_size}) expects {want} (PyTorch layout) for {'.'.join(map(str, path))}"
                )
        arrs = [np.asarray(enc[k], np.float32) for k in keys]
        if rule == "T":
            value = arrs[0].T
        elif rule == "qkv_kernel":
            value = np.concatenate([a.T for a in arrs], axis=1)
        elif rule == "qkv_bias":
            value = np.concatenate(arrs, axis=0)
        else:
            value = arrs[0]
        used.update(keys)
        new_values.append((param, value))

    pooler_missing = [k for k in missing if k.startswith("pooler.")]
    other_missing = [k for k in missing if not k.startswith("pooler.")]
    if other_missing:
        raise CheckpointError(
            f"checkpoint is missing {len(other_missing)} BERT weight(s), e.g. {other_missing[:6]} "
            f"(keys looked up after stripping any 'bert.' prefix; the checkpoint has e.g. {sorted(enc)[:4]})"
        )

    unexpected = []
    for k in enc:
        if k in used or k in _IGNORED_ENCODER_KEYS or (bert.pooler is None and k.startswith("pooler.")):
            continue
        m = _LAYER_RE.match(k)
        if m and int(m.group(1)) >= cfg.num_hidden_layers:
            continue  # deeper checkpoint loaded into a shallower model
        unexpected.append(k)
    if unexpected and strict:
        raise CheckpointError(
            f"checkpoint has {len(unexpected)} unexpected key(s) that do not belong to a BERT encoder, e.g. "
            f"{sorted(unexpected)[:6]}; pass strict=False to ignore them"
        )

    for param, value in new_values:
        param.set_value(jnp.asarray(value, dtype=param.get_value().dtype))
    if pooler_missing:
        warnings.warn(
            "checkpoint has no pooler weights (typical of BertForMaskedLM saved by transformers); "
            "the pooler keeps its fresh initialisation",
            stacklevel=2,
        )
    return model


def from_pretrained(
    path_or_hub_id: str | os.PathLike, *, rngs: nnx.Rngs, strict: bool = True, **config_overrides: Any
) -> BertClassifier:
    """A :class:`BertClassifier` with pretrained encoder/pooler weights and a freshly initialised head.

    ``config_overrides`` replace config fields, e.g. ``pooling="mean"``, ``dtype="bfloat16"``,
    ``hidden_dropout_prob=0.2`` or ``num_hidden_layers=4`` (keeps the first 4 layers). Overrides that
    change weight shapes fail with a :class:`CheckpointError` naming the key.
    """
    cfg, weights = load_hf_checkpoint(path_or_hub_id, **config_overrides)
    model = BertClassifier(cfg, rngs=rngs)
    convert_hf_to_nnx(weights, model, strict=strict)
    return model


# Fine-tuning choices that come from the experiment config; everything else from the checkpoint's config.json.
FINE_TUNING_FIELDS = ("pooling", "dtype", "attention", "hidden_dropout_prob", "attention_probs_dropout_prob")


def load_pretrained_classifier(path_or_hub_id: str | os.PathLike, cfg: BertConfig, encoder, rngs: nnx.Rngs
                               ) -> tuple[BertClassifier, BertConfig]:
    """The model registry's loader: a pretrained :class:`BertClassifier` keeping ``cfg``'s fine-tuning choices."""
    model = from_pretrained(path_or_hub_id, rngs=rngs, **{k: getattr(cfg, k) for k in FINE_TUNING_FIELDS})
    return model, model.cfg


def load_tokenizer(path_or_hub_id: str | os.PathLike):
    """``transformers.BertTokenizerFast`` from a local folder (vocab.txt / tokenizer.json) or a hub id."""
    # We use transformers for tokenizers only: imported here because it is slow to import (seconds) and only
    # the BERT paths need it; its import-time "PyTorch was not found" warning is noise here.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from transformers import BertTokenizerFast

    s = os.fspath(path_or_hub_id)
    if not os.path.isdir(s):
        if looks_like_local_path(s):
            raise FileNotFoundError(f"tokenizer folder {s!r} does not exist")
        s = _snapshot(s, TOKENIZER_FILES)
    if not any(os.path.isfile(os.path.join(s, f)) for f in ("vocab.txt", "tokenizer.json")):
        raise FileNotFoundError(f"no vocab.txt or tokenizer.json in tokenizer folder {s}")
    return BertTokenizerFast.from_pretrained(s)


__all__ = [
    "CheckpointError",
    "check_checkpoint",
    "convert_hf_to_nnx",
    "from_pretrained",
    "load_hf_checkpoint",
    "load_pretrained_classifier",
    "load_tokenizer",
    "resolve_checkpoint_dir",
]
