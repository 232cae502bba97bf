"""Encoders: review texts → token id arrays, fitted on the training split and saved in the model folder.

Each encoder has a small frozen config (what a user can set under ``encoder.`` in an experiment
config) and the same interface, so the registry can pair any model with one:

* ``fit(cfg, texts, words, max_len, pretrained)`` builds it from the training split
  (``words`` are the jieba words of ``texts``, only read by encoders that set ``uses_words``);
* ``encode(texts, words=None)`` → one int32 array per text, at most ``max_len`` long;
* ``vocab_size``, ``save(folder)`` and ``load(folder, max_len)``;
* ``check(cfg, pretrained)`` fails fast (seconds) when what ``fit`` will need is missing;
* ``check_model(vocab_size, where)`` refuses an encoder whose ids the model's embedding cannot hold
  (a vocabulary or tokenizer that was not saved with the model: JAX would clamp the ids silently);
* ``note(text)`` says why a text's score means little (None when it is an ordinary review).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxsenti.assets import bert_tokenizer_dir
from jaxsenti.data.text import Vocab, cjk_only, no_cjk_note, segment_many
from jaxsenti.fields import ConfigError, check_fields, ranged
from jaxsenti.models.hf_bert import NO_WEIGHTS_HINT, load_tokenizer, looks_like_local_path


@dataclasses.dataclass(frozen=True)
class WordVocabConfig:
    """jieba words indexed by a vocabulary of the training split."""

    min_freq: int = ranged(1, ge=1)  # words seen fewer times in the training split map to <unk>

    def __post_init__(self):
        check_fields(self)


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

    def check_model(self, vocab_size: int, where: str) -> None:
        if self.vocab_size != vocab_size:
            raise ConfigError(f"{where}: vocab.json has {self.vocab_size:,} words but the model's embedding has "
                              f"{vocab_size:,} rows (model.vocab_size): they were not saved together; put the folder's "
                              "own vocab.json back, or train the model again")

    def note(self, text: str) -> str | None:
        if cjk_only(text):
            return None
        return f"{no_cjk_note(text)}: the LSTM sees an empty review, so the score means nothing"

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

    def check_model(self, vocab_size: int, where: str) -> None:
        if self.vocab_size > vocab_size:
            raise ConfigError(f"{where}: the tokenizer has {self.vocab_size:,} tokens but the model's embedding only "
                              f"{vocab_size:,} rows (model.vocab_size): they do not belong together; use the tokenizer "
                              "the model was trained with")

    def note(self, text: str) -> str | None:
        if cjk_only(text):
            return None
        return f"{no_cjk_note(text)}: BERT scores the text as it is, but it was trained on Chinese reviews only"

    def save(self, folder: Path) -> None:
        self.tokenizer.save_pretrained(Path(folder) / "tokenizer")

    @classmethod
    def load(cls, folder: Path, max_len: int) -> WordPieceEncoder:
        return cls(load_tokenizer(Path(folder) / "tokenizer"), max_len)


def default_tokenizer_dir() -> str:
    """The tokenizer to use when nothing names one: $JAXSENTI_BERT_TOKENIZER_DIR, else the bert-base-chinese
    tokenizer shipped with the package (so nothing needs the Hugging Face hub unless a config names a hub id)."""
    env = os.environ.get("JAXSENTI_BERT_TOKENIZER_DIR")
    if env and not os.path.isdir(env):
        raise FileNotFoundError(f"JAXSENTI_BERT_TOKENIZER_DIR={env!r} is not a folder; point it at a tokenizer folder "
                                "(vocab.txt or tokenizer.json), or unset it to use the bert-base-chinese tokenizer shipped "
                                "with the package")
    return env or str(bert_tokenizer_dir())


def tokenizer_source(tokenizer: str | None, pretrained: str | None) -> str:
    """A pretrained folder that carries its tokenizer wins; then the configured tokenizer; then, for a hub id,
    the hub's tokenizer; then the default (a local folder without tokenizer files, such as the checkpoints
    shipped in the package, was pretrained with the default bert-base-chinese tokenizer)."""
    if pretrained and not os.path.isdir(pretrained) and looks_like_local_path(pretrained):
        raise FileNotFoundError(f"checkpoint folder {pretrained!r} does not exist" + NO_WEIGHTS_HINT)
    if pretrained and os.path.isdir(pretrained):
        if any(os.path.isfile(os.path.join(pretrained, f)) for f in ("vocab.txt", "tokenizer.json")):
            return pretrained
        return tokenizer or default_tokenizer_dir()
    return tokenizer or pretrained or default_tokenizer_dir()
