"""Our LSTM classifier as a PyTorch ``state_dict`` (``nn.Embedding`` + ``nn.LSTM`` + ``nn.Linear``), written without torch.

The names and layouts are those of ``jaxsenti/assets/sentiment_lstm.py``'s ``SentimentLSTM``:

* ``embedding.weight`` [V, E]: our ``embed.embedding`` as is;
* ``lstm.weight_ih_l{k}{_reverse}`` [4H, in] and ``lstm.weight_hh_l{k}{_reverse}`` [4H, H]: our ``w_ih`` [in, 4H]
  and ``w_hh`` [H, 4H] transposed (both use the gate order i, f, g, o); ``lstm.bias_ih_l{k}`` is our one bias
  ``b`` and ``lstm.bias_hh_l{k}`` zeros (PyTorch adds the two);
* ``head.weight`` [1, H·dirs], ``head.bias`` [1]: our ``head`` kernel transposed.

The file is safetensors (``safetensors.torch.load_file`` gives the ``state_dict``), so exporting needs no torch.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from jaxsenti.models.lstm import LSTMClassifier

REFERENCE = Path(__file__).resolve().parents[1] / "assets" / "sentiment_lstm.py"


def _np(param) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(param[...], np.float32))


def lstm_layers_state_dict(layers, prefix: str = "lstm.") -> dict[str, np.ndarray]:
    """Our stack of ``LSTMLayer`` (classifier or language model) as one ``nn.LSTM``'s parameters."""
    sd = {}
    for k, layer in enumerate(layers):
        for suffix, d in (("", layer.fwd), ("_reverse", getattr(layer, "bwd", None))):
            if d is None:
                continue
            sd[f"{prefix}weight_ih_l{k}{suffix}"] = np.ascontiguousarray(_np(d.w_ih).T)
            sd[f"{prefix}weight_hh_l{k}{suffix}"] = np.ascontiguousarray(_np(d.w_hh).T)
            sd[f"{prefix}bias_ih_l{k}{suffix}"] = _np(d.b)
            sd[f"{prefix}bias_hh_l{k}{suffix}"] = np.zeros_like(_np(d.b))
    return sd


def lstm_state_dict(model: LSTMClassifier) -> dict[str, np.ndarray]:
    return {"embedding.weight": _np(model.embed.embedding), **lstm_layers_state_dict(model.layers),
            "head.weight": np.ascontiguousarray(_np(model.head.kernel).T), "head.bias": _np(model.head.bias)}


def lstm_lm_state_dict(model) -> dict[str, np.ndarray]:
    """Our ``LSTMLanguageModel`` in PyTorch's layout: ``embed`` (tied output table), one ``nn.LSTM``, ``proj``
    (``nn.Linear(H, E)``: our kernel transposed) and ``out_bias`` [V] (``benchmarks/lm_torch.py``'s module)."""
    return {"embed.weight": _np(model.embed.embedding), **lstm_layers_state_dict(model.layers),
            "proj.weight": np.ascontiguousarray(_np(model.proj.kernel).T), "proj.bias": _np(model.proj.bias),
            "out_bias": _np(model.out_bias)}


def save_lstm(model: LSTMClassifier, vocab_words: list[str], folder: str | os.PathLike, *, max_len: int,
              labels: tuple[str, str] = ("negative", "positive")) -> Path:
    """``config.json``, ``vocab.json``, ``model.safetensors`` and the reference module ``sentiment_lstm.py``."""
    from jaxsenti.atomic import write_safetensors

    cfg = model.cfg
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({
        "architecture": "SentimentLSTM (sentiment_lstm.py)", "embed_dim": cfg.embed_dim, "hidden_dim": cfg.hidden_dim,
        "num_layers": cfg.num_layers, "bidirectional": cfg.bidirectional, "pooling": cfg.pooling,
        "vocab_size": cfg.vocab_size, "max_len": max_len, "labels": list(labels),
        "preprocessing": "keep U+4E00-U+9FFF, jieba.lcut, vocab ids (<unk> = 1), first max_len words"}, indent=2),
        encoding="utf-8")
    (folder / "vocab.json").write_text(json.dumps(vocab_words, ensure_ascii=False), encoding="utf-8")
    write_safetensors(folder / "model.safetensors", lstm_state_dict(model), metadata={"format": "pt"})
    shutil.copyfile(REFERENCE, folder / "sentiment_lstm.py")
    return folder


__all__ = ["REFERENCE", "lstm_layers_state_dict", "lstm_lm_state_dict", "lstm_state_dict", "save_lstm"]
