"""Encoders: review texts → token id arrays, fitted on the training split and saved in the model folder.

Each encoder has a small frozen config (what a user can set under ``encoder.`` in an experiment
config) and the same interface, so the registry can pair any model with one:

* ``fit(cfg, texts, words, max_len, pretrained)`` builds it from the training split
  (``words`` are the jieba words of ``texts``, only read by encoders that set ``uses_words``);
* ``encode(texts, words=None)`` → one int32 array per text, at most ``max_len`` long;
* ``vocab_size``, ``save(folder)`` and ``load(folder, max_len)``;
* ``check(cfg, pretrained)`` fails fast (seconds) when what ``fit`` will need is missing.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxsenti.assets import bert_tokenizer_dir
from jaxsenti.data.text import Vocab, segment_many
from jaxsenti.models.hf_bert import load_tokenizer


@dataclasses.dataclass(frozen=True)
class WordVocabConfig:
    """jieba words indexed by a vocabulary of the training split."""

    min_freq: int = 1  # words seen fewer times in the training split map to <unk>


@dataclasses.dataclass(frozen=True)
class WordPieceConfig:
    """A Hugging Face WordPiece tokenizer (folder or hub id)."""

    tokenizer: str | None = None  # None: the pretrained folder's own tokenizer, else the default (see tokenizer_source)


class WordEncoder:
    """jieba words → vocabulary ids (the LSTM's input)."""

    uses_words = True

    def __init__(self, vocab: Vocab, max_len: int):
        self.vocab, self.max_len = vocab, max_len

    @classmethod
    def fit(cls, cfg: WordVocabConfig, texts: Sequence[str], words: Sequence[Sequence[str]] | None, max_len: int,
            pretrained: str | None = None) -> WordEncoder:
        words = words if words is not None else segment_many(list(texts))
        return cls(Vocab.build(words, min_freq=cfg.min_freq), max_len)

    @classmethod
    def check(cls, cfg: WordVocabConfig, pretrained: str | None = None) -> None:
        """Nothing to fetch: the vocabulary comes from the training split."""

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, texts: Sequence[str], words: Sequence[Sequence[str]] | None = None) -> list[np.ndarray]:
        if words is None:
            words = segment_many(list(texts), use_disk_cache=len(texts) > 1000)
        return [self.vocab.encode(w, self.max_len) for w in words]

    def save(self, folder: Path) -> None:
        self.vocab.save(Path(folder) / "vocab.json")

    @classmethod
    def load(cls, folder: Path, max_len: int) -> WordEncoder:
        return cls(Vocab.load(Path(folder) / "vocab.json"), max_len)


class WordPieceEncoder:
    """WordPiece ids with [CLS] … [SEP], truncated to ``max_len`` (BERT's input)."""

    uses_words = False

    def __init__(self, tokenizer, max_len: int):
        self.tokenizer, self.max_len = tokenizer, max_len

    @classmethod
    def fit(cls, cfg: WordPieceConfig, texts: Sequence[str], words, max_len: int,
            pretrained: str | None = None) -> WordPieceEncoder:
        return cls(load_tokenizer(tokenizer_source(cfg.tokenizer, pretrained)), max_len)

    @classmethod
    def check(cls, cfg: WordPieceConfig, pretrained: str | None = None) -> None:
        """Load the tokenizer once: a folder that is missing or a hub id that can't be reached fails here."""
        load_tokenizer(tokenizer_source(cfg.tokenizer, pretrained))

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def encode(self, texts: Sequence[str], words=None) -> list[np.ndarray]:
        enc = self.tokenizer(list(texts), truncation=True, max_length=self.max_len, add_special_tokens=True)
        return [np.asarray(ids, np.int32) for ids in enc["input_ids"]]

    def save(self, folder: Path) -> None:
        self.tokenizer.save_pretrained(Path(folder) / "tokenizer")

    @classmethod
    def load(cls, folder: Path, max_len: int) -> WordPieceEncoder:
        return cls(load_tokenizer(Path(folder) / "tokenizer"), max_len)


def default_tokenizer_dir() -> str:
    """The tokenizer to use when nothing names one: $JAXSENTI_BERT_TOKENIZER_DIR, else the bert-base-chinese
    tokenizer shipped with the package (so nothing needs the Hugging Face hub unless a config names a hub id)."""
    return os.environ.get("JAXSENTI_BERT_TOKENIZER_DIR") or str(bert_tokenizer_dir())


def tokenizer_source(tokenizer: str | None, pretrained: str | None) -> str:
    """A pretrained folder that carries its tokenizer wins; then the configured tokenizer; then, for a hub id,
    the hub's tokenizer; then the default (a local folder without tokenizer files, such as the checkpoints
    shipped in the package, was pretrained with the default bert-base-chinese tokenizer)."""
    if pretrained and os.path.isdir(pretrained):
        if any(os.path.isfile(os.path.join(pretrained, f)) for f in ("vocab.txt", "tokenizer.json")):
            return pretrained
        return tokenizer or default_tokenizer_dir()
    return tokenizer or pretrained or default_tokenizer_dir()
