"""What kind of folder a path is, so that handing one kind where another is wanted says what it is and what to do.

Kinds: a trained jaxsenti ``model`` folder (``config.json`` with ``model_name``), a Hugging Face export of one
(``hf_export``, ``jaxsenti export`` of a BERT model), a PyTorch export (``torch_export``, of an LSTM model), a
pretrained LSTM language model (``lstm_lm``, ``jaxsenti pretrain lstm``) and a BERT checkpoint (``bert``: a
Hugging Face folder, e.g. ``jaxsenti pretrain bert``'s output or bert-base-chinese). Nothing is loaded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

LSTM_LM_FORMAT = "jaxsenti-lstm-lm"


def _json(path: Path) -> dict:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return d if isinstance(d, dict) else {}


def kind_of(folder: str | os.PathLike) -> str | None:
    """``model``, ``hf_export``, ``torch_export``, ``lstm_lm``, ``bert``, or None (none of these, or not a folder)."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    cfg = _json(folder / "config.json")
    exported = _json(folder / "jaxsenti.json").get("exported_from")
    if exported and (folder / "sentiment_lstm.py").is_file():
        return "torch_export"
    if exported and "model_type" in cfg and any(a.endswith("ForSequenceClassification") for a in cfg.get("architectures") or []):
        return "hf_export"
    if "model_name" in cfg:
        return "model"
    if cfg.get("format") == LSTM_LM_FORMAT:
        return "lstm_lm"
    if cfg.get("model_type") == "bert":
        return "bert"
    return None


def _exported_from(folder: Path) -> str:
    return str(_json(folder / "jaxsenti.json").get("exported_from") or "the model folder it was exported from")


def not_a_model(folder: str | os.PathLike) -> str | None:
    """Why ``folder`` (handed to predict/evaluate as ``--model``) is not a trained model folder, or None."""
    folder = Path(folder)
    kind = kind_of(folder)
    if kind == "hf_export":
        return (f"{folder} is a Hugging Face export of the model {_exported_from(folder)}: --model takes jaxsenti model "
                f"folders, so pass that one; or use the export with transformers, "
                f"`transformers.pipeline(\"text-classification\", model=\"{folder}\", top_k=None)`")
    if kind == "torch_export":
        return (f"{folder} is a PyTorch export of the model {_exported_from(folder)}: --model takes jaxsenti model folders, "
                f"so pass that one; or use the export without JAX, `sentiment_lstm.load(\"{folder}\")` (the module is in it)")
    return None


_USE = {
    "lstm_lm": "use it with `jaxsenti train lstm --config lstm_dianping_lm --pretrained {f}` or `jaxsenti pretrain lstm --init-from {f}`",
    "bert": "use it with `jaxsenti train bert --pretrained {f}` or `jaxsenti pretrain bert --init-from {f}`",
    "hf_export": "it is a BERT classifier, usable as `jaxsenti train bert --pretrained {f}`",
}
_WHAT = {"lstm_lm": "a pretrained LSTM language model", "bert": "a BERT checkpoint", "hf_export": "a Hugging Face export",
         "torch_export": "a PyTorch export of an LSTM model", "model": "a trained jaxsenti model folder"}


def check_kind(folder: str | os.PathLike, wanted: str, flag: str) -> None:
    """Raise ``FileNotFoundError`` saying what ``folder`` is when it is a known kind that is not ``wanted``
    (``lstm_lm`` or ``bert``; an HF export is a BERT checkpoint too). An unknown folder is left to the loader."""
    folder = Path(folder)
    kind = kind_of(folder)
    if kind is None or kind == wanted or (wanted == "bert" and kind == "hf_export"):
        return
    want = _WHAT[wanted]
    if kind == "model":
        cfg = _json(folder / "config.json")
        advice = (f"export it first (`jaxsenti export --model {folder} --out DIR`) and pass DIR"
                  if cfg.get("model_name") == "bert" and wanted == "bert" else
                  f"{flag} takes {want}")
        raise FileNotFoundError(f"{flag} {folder}: a trained jaxsenti {cfg.get('model_name', '')} model folder, not {want}; {advice}")
    use = _USE.get(kind, "").format(f=folder)
    raise FileNotFoundError(f"{flag} {folder}: {_WHAT[kind]}, not {want}" + (f"; {use}" if use else ""))


__all__ = ["LSTM_LM_FORMAT", "check_kind", "kind_of", "not_a_model"]
