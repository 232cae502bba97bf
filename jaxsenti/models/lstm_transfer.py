"""Pretrained LSTM language model -> LSTM classifier: weight transfer and the LM folder format.

Transfer (``transfer_lm_to_classifier``): the classifier keeps its own vocabulary (built from the
fine-tuning training split). Each classifier word that the LM vocabulary also has (matched by
string, ``<unk>`` included) gets the LM's embedding row; words new to the LM keep their fresh
vectors; the ``<pad>`` row is never read by the classifier (padding is masked) and is left alone.
The LSTM layers' ``w_ih``, ``w_hh`` and ``b`` are copied exactly; the classifier head stays fresh.
The LM's output projection and bias are not used by the classifier.

Folder format (``save_lm`` / ``load_lm`` / ``load_pretrained_lstm``), readable with numpy and json
alone (no training code, no orbax):

* ``config.json``: ``{"format": "jaxsenti-lstm-lm", "version": 1, "config": LSTMLMConfig fields,
  "info": {...}}``
* ``vocab.json``: the LM vocabulary (``Vocab.save``: a JSON list, ``<pad>``, ``<unk>``, ``<eos>``, words)
* ``params.npz``: one float32 array per parameter, keyed by its path in the module,
  e.g. ``embed/embedding``, ``layers/0/fwd/w_ih`` (npz: no extra dependency, memory-mappable, and
  the parameter tree is flat and small, so a checkpointing library buys nothing here).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxsenti import ownership
from jaxsenti.data.text import Vocab
from jaxsenti.models.lstm import LSTMClassifier, LSTMConfig
from jaxsenti.models.lstm_lm import LSTMLanguageModel, LSTMLMConfig

__all__ = ["TransferReport", "extend_lm", "flat_params", "load_lm", "load_pretrained_lstm", "read_lm_config", "save_lm",
           "transfer_lm_to_classifier"]

FORMAT, VERSION = "jaxsenti-lstm-lm", 1
_DIRECTION_PARAMS = ("w_ih", "w_hh", "b")


@dataclasses.dataclass(frozen=True)
class TransferReport:
    """``copied``: classifier rows taken from the LM (``<unk>`` included); ``fresh``: classifier words the LM
    lacks, left as initialised (``copied + fresh == len(classifier_vocab) - 1``: ``<pad>`` is neither)."""

    copied: int
    fresh: int
    layers: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def flat_params(tree) -> dict[str, np.ndarray]:
    """``{"embed/embedding": array, "layers/0/fwd/w_ih": array, ...}`` from a module or an ``nnx.State`` of params."""
    state = nnx.state(tree, nnx.Param) if isinstance(tree, nnx.Module) else tree
    return {"/".join(map(str, path)): np.asarray(v[...]) for path, v in nnx.to_flat_state(state)}


def _lm_dims(params: Mapping[str, np.ndarray]) -> dict[str, int]:
    if "embed/embedding" not in params:
        raise ValueError("pretrained LM parameters have no 'embed/embedding'")
    layers = 0
    while f"layers/{layers}/fwd/w_hh" in params:
        layers += 1
    if layers == 0:
        raise ValueError("pretrained LM parameters have no LSTM layers ('layers/0/fwd/w_hh')")
    if any(k.startswith("layers/") and "/bwd/" in k for k in params):
        raise ValueError("pretrained LM parameters hold a backward direction; expected a unidirectional LM")
    return {"embed_dim": int(params["embed/embedding"].shape[1]), "hidden_dim": int(params["layers/0/fwd/w_hh"].shape[0]),
            "num_layers": layers}


def _check_compatible(lm_dims: Mapping[str, int], cfg: LSTMConfig) -> None:
    for name, value in lm_dims.items():
        if getattr(cfg, name) != value:
            raise ValueError(f"pretrained LM and classifier disagree on {name}: LM has {value}, "
                             f"classifier config has {getattr(cfg, name)}")
    if cfg.bidirectional:
        raise ValueError("classifier config has bidirectional=True, but the pretrained LM is unidirectional: "
                         "its layers cannot fill a backward direction (set bidirectional=False)")


def transfer_lm_to_classifier(lm, lm_vocab: Vocab, classifier: LSTMClassifier,
                              classifier_vocab: Vocab) -> tuple[LSTMClassifier, TransferReport]:
    """Copy shared-word embedding rows and all LSTM weights from ``lm`` into ``classifier`` (in place).

    ``lm``: an ``LSTMLanguageModel``, an ``nnx.State`` of its parameters (e.g. ``TrainState.params``)
    or a ``flat_params`` dict. Raises ``ValueError`` naming the field when the shapes disagree.
    """
    params = lm if isinstance(lm, Mapping) and not isinstance(lm, nnx.State) else flat_params(lm)
    dims = _lm_dims(params)
    _check_compatible(dims, classifier.cfg)
    table = params["embed/embedding"]
    if table.shape[0] != len(lm_vocab):
        raise ValueError(f"LM embedding has {table.shape[0]} rows but its vocabulary has {len(lm_vocab)} words")
    if classifier.cfg.vocab_size != len(classifier_vocab):
        raise ValueError(f"classifier vocab_size is {classifier.cfg.vocab_size} but its vocabulary has "
                         f"{len(classifier_vocab)} words")
    dst, src = [], []
    for i, word in enumerate(classifier_vocab.itos):
        j = lm_vocab.stoi.get(word)
        if i > 0 and j is not None:  # row 0 (<pad>) is masked in the classifier: nothing to transfer
            dst.append(i)
            src.append(j)
    dst_idx, src_idx = np.asarray(dst, np.int32), np.asarray(src, np.int32)
    emb = classifier.embed.embedding
    emb[...] = emb[...].at[dst_idx].set(jnp.asarray(table[src_idx], emb[...].dtype))
    for k, layer in enumerate(classifier.layers):
        for name in _DIRECTION_PARAMS:
            var = getattr(layer.fwd, name)
            var[...] = jnp.asarray(params[f"layers/{k}/fwd/{name}"], var[...].dtype)
    report = TransferReport(copied=len(dst), fresh=len(classifier_vocab) - 1 - len(dst), layers=dims["num_layers"])
    return classifier, report


def save_lm(folder: str | os.PathLike, model: LSTMLanguageModel, vocab: Vocab, *, info: Mapping | None = None) -> Path:
    """Write ``config.json``, ``vocab.json`` and ``params.npz`` for ``model`` into ``folder``."""
    if model.cfg.vocab_size != len(vocab):
        raise ValueError(f"model vocab_size {model.cfg.vocab_size} != len(vocab) {len(vocab)}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "version": VERSION, "config": model.cfg.to_dict(), "info": dict(info or {})}
    (folder / "config.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
    vocab.save(folder / "vocab.json")
    tmp = folder / "params.tmp.npz"
    np.savez(tmp, **flat_params(model))
    tmp.replace(folder / "params.npz")  # written last and atomically: a folder with params.npz is complete
    return folder


def _read_folder(folder: str | os.PathLike) -> tuple[LSTMLMConfig, Vocab, dict[str, np.ndarray], dict]:
    folder = Path(folder)
    from jaxsenti.folders import check_kind

    check_kind(folder, "lstm_lm", "--pretrained")  # a BERT checkpoint or a trained model: say what it is
    for name in ("config.json", "vocab.json", "params.npz"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder}: no {name}; not a pretrained LSTM LM folder (see save_lm)")
    meta = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ValueError(f"{folder}/config.json: format {meta.get('format')!r} v{meta.get('version')}, "
                         f"expected {FORMAT!r} v{VERSION}")
    cfg = LSTMLMConfig.from_dict(meta["config"])
    vocab = Vocab.load(folder / "vocab.json")
    # a swap of two words parses and keeps the size: only the hash recorded when the folder was written tells (a
    # trained classifier's vocabulary is checked against run.json instead, jaxsenti.pipeline)
    ownership.check_unchanged(folder / "vocab.json")
    with np.load(folder / "params.npz") as z:
        params = {k: z[k] for k in z.files}
    if len(vocab) != cfg.vocab_size:
        raise ValueError(f"{folder}: vocab.json has {len(vocab)} words, config.json says vocab_size {cfg.vocab_size}")
    return cfg, vocab, params, meta.get("info", {})


def load_lm(folder: str | os.PathLike) -> tuple[LSTMLanguageModel, Vocab]:
    """The ``LSTMLanguageModel`` and vocabulary saved by ``save_lm`` (every parameter checked by name and shape)."""
    cfg, vocab, params, _ = _read_folder(folder)
    model = LSTMLanguageModel(cfg, rngs=nnx.Rngs(0))
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    expected = {"/".join(map(str, p)) for p, _ in flat}
    if expected != set(params):
        raise ValueError(f"{folder}/params.npz: missing {sorted(expected - set(params))}, "
                         f"unexpected {sorted(set(params) - expected)}")
    new = []
    for path, var in flat:
        key = "/".join(map(str, path))
        if params[key].shape != var[...].shape:
            raise ValueError(f"{folder}/params.npz: {key} has shape {params[key].shape}, config implies {var[...].shape}")
        new.append((path, var.replace(jnp.asarray(params[key], jnp.float32))))
    nnx.update(model, nnx.from_flat_state(new))
    return model, vocab


def read_lm_config(folder: str | os.PathLike) -> LSTMLMConfig:
    """The ``LSTMLMConfig`` of an LM folder (nothing else is read)."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no config.json; not a pretrained LSTM LM folder (see save_lm)")
    try:
        return LSTMLMConfig.from_dict(json.loads(path.read_text(encoding="utf-8"))["config"])
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path} is not an LSTM LM config ({type(e).__name__}: {e})") from None


def extend_lm(lm: LSTMLanguageModel, vocab_size: int, cfg: LSTMLMConfig | None = None) -> LSTMLanguageModel:
    """``lm`` with its vocabulary grown to ``vocab_size`` (new words appended): every weight copied, and each new
    word's embedding row and output bias set to the mean of the known words' (ULMFiT's choice for words new to a
    pretrained LM). ``cfg``: the new model's other settings (dropout, dtype; default ``lm.cfg``'s)."""
    old = lm.cfg.vocab_size
    if vocab_size < old:
        raise ValueError(f"cannot shrink the vocabulary from {old} to {vocab_size} words")
    cfg = dataclasses.replace(cfg or lm.cfg, vocab_size=vocab_size)
    grown = LSTMLanguageModel(cfg, rngs=nnx.Rngs(0))
    params = flat_params(lm)
    emb, bias = params["embed/embedding"], params["out_bias"]
    words = slice(3, old) if old > 3 else slice(0, old)  # <pad>, <unk>, <eos> are not words
    params["embed/embedding"] = np.concatenate([emb, np.repeat(emb[words].mean(0, keepdims=True), vocab_size - old, 0)])
    params["out_bias"] = np.concatenate([bias, np.full(vocab_size - old, bias[words].mean(), bias.dtype)])
    flat = nnx.to_flat_state(nnx.state(grown, nnx.Param))
    nnx.update(grown, nnx.from_flat_state([(p, v.replace(jnp.asarray(params["/".join(map(str, p))], jnp.float32)))
                                           for p, v in flat]))
    return grown


def load_pretrained_lstm(folder: str | os.PathLike, classifier_vocab: Vocab, classifier_cfg: LSTMConfig,
                         rngs: nnx.Rngs) -> tuple[LSTMClassifier, TransferReport]:
    """A fresh ``LSTMClassifier(classifier_cfg)`` initialised from the pretrained LM in ``folder``.

    The config is checked against the LM (embed_dim, hidden_dim, num_layers, unidirectional) before
    anything is built; ``classifier_cfg.vocab_size`` must equal ``len(classifier_vocab)``.
    """
    _, lm_vocab, params, _ = _read_folder(folder)
    _check_compatible(_lm_dims(params), classifier_cfg)
    classifier = LSTMClassifier(classifier_cfg, rngs=rngs)
    return transfer_lm_to_classifier(params, lm_vocab, classifier, classifier_vocab)
