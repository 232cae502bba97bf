"""Files shipped inside the package so that nothing has to be downloaded at run time.

``bert-base-chinese/``: the bert-base-chinese tokenizer (vocab.txt, tokenizer.json,
tokenizer_config.json) and model config.json, Apache-2.0, from huggingface.co/bert-base-chinese
(see its NOTICE). About 400 KB; no weights.
"""

from __future__ import annotations

from pathlib import Path

BERT_BASE_CHINESE = "bert-base-chinese"


def bert_tokenizer_dir() -> Path:
    """Folder holding the bert-base-chinese tokenizer and config.json, loadable with ``from_pretrained``."""
    return Path(__file__).resolve().parent / BERT_BASE_CHINESE


__all__ = ["BERT_BASE_CHINESE", "bert_tokenizer_dir"]
