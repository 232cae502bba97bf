"""Chinese text preprocessing as in the study: keep CJK ideographs, segment with jieba, index words."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import jieba
import numpy as np
from tqdm.auto import tqdm

from jaxsenti.atomic import write_text

PAD, UNK = "<pad>", "<unk>"
# CJK Unified Ideographs, the study's filter: punctuation, Latin letters and digits are removed.
_NON_CJK = re.compile(r"[^\u4e00-\u9fff]+")
CJK_RANGE = "U+4E00–U+9FFF"
NO_CJK = f"no Chinese characters ({CJK_RANGE})"
# Ideographs the filter removes although they are Chinese: Extension A, compatibility ideographs, Extension B on.
_OTHER_CJK = re.compile("[\u3400-\u4dbf\uf900-\ufaff\U00020000-\U0003ffff]")


def cjk_only(text: str) -> str:
    return _NON_CJK.sub("", text)


def no_cjk_note(text: str) -> str:
    """Why the filter leaves nothing of ``text`` (for notes and warnings), naming the range it keeps."""
    if _OTHER_CJK.search(text):
        return f"{NO_CJK}: CJK Extension ideographs are outside it"
    return NO_CJK


@functools.cache
def jieba_tokenizer() -> jieba.Tokenizer:
    """The process's one initialised jieba tokenizer (its dictionary loads once, ~1 s)."""
    jieba.setLogLevel(logging.WARNING)  # jieba prints its dictionary loading at INFO
    tok = jieba.Tokenizer()
    tok.initialize()
    return tok


@functools.lru_cache(maxsize=65536)
def _segment_cached(clean: str) -> tuple[str, ...]:
    return tuple(jieba_tokenizer().lcut(clean))


def segment(text: str) -> list[str]:
    """CJK filter then jieba words (memoised per text in this process)."""
    return list(_segment_cached(cjk_only(text)))


def cache_dir() -> Path:
    return Path(os.environ.get("JAXSENTI_CACHE", Path.home() / ".cache" / "jaxsenti"))


def segment_many(texts: Sequence[str], *, use_disk_cache: bool = True, progress: bool | None = None) -> list[list[str]]:
    """Segment many texts; results are cached on disk keyed by the texts' hash.

    Segmenting the 62k online-shopping reviews takes tens of seconds; with the cache
    a second run reads them back in well under a second.
    """
    key = hashlib.sha256(("jieba-" + jieba.__version__ + "\x00" + "\x00".join(texts)).encode()).hexdigest()[:24]
    path = cache_dir() / f"segments-{key}.json"
    if use_disk_cache and path.exists():
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            pass  # corrupt cache: recompute and overwrite
    if progress is None:
        progress = len(texts) > 5000
    it: Iterable[str] = texts
    if progress:
        it = tqdm(texts, desc="jieba", unit="review", leave=False, disable=None)  # no bar in a log file
    out = [segment(t) for t in it]
    if use_disk_cache:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")  # two processes may fill the cache at once
            tmp.write_text(json.dumps(out, ensure_ascii=False), encoding="utf-8")
            tmp.replace(path)
        except OSError:
            pass  # a read-only home must not stop training
    return out


class Vocab:
    """Word ↔ index map with ``<pad>`` = 0 and ``<unk>`` = 1."""

    def __init__(self, itos: Sequence[str]):
        if list(itos[:2]) != [PAD, UNK]:
            raise ValueError(f"vocab must start with {PAD!r}, {UNK!r}")
        self.itos = list(itos)
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    @classmethod
    def build(cls, docs: Iterable[Sequence[str]], min_freq: int = 1, max_size: int | None = None) -> "Vocab":
        counts = Counter(w for d in docs for w in d)
        # Most frequent first, ties broken alphabetically, so the vocab is deterministic.
        words = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
        if max_size is not None:
            words = words[: max_size - 2]
        return cls([PAD, UNK, *words])

    def __len__(self) -> int:
        return len(self.itos)

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocab) and self.itos == other.itos

    def encode(self, words: Sequence[str], max_len: int | None = None) -> np.ndarray:
        ids = np.fromiter((self.stoi.get(w, 1) for w in words), np.int32, len(words))
        return ids[:max_len] if max_len is not None else ids

    def save(self, path: str | os.PathLike) -> None:
        write_text(path, json.dumps(self.itos, ensure_ascii=False))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Vocab":
        """A saved vocabulary; a missing or damaged file is an error naming it."""
        try:
            itos = json.loads(Path(path).read_text(encoding="utf-8"))
            if not isinstance(itos, list) or not all(isinstance(w, str) for w in itos):
                raise ValueError("expected a JSON list of words")
            if len(set(itos)) != len(itos):
                seen: set[str] = set()
                dup = next(w for w in itos if w in seen or seen.add(w))
                raise ValueError(f"the word {dup!r} is listed twice, so the rows after it would be misread")
        except FileNotFoundError:
            raise FileNotFoundError(f"{path} is missing: the model folder is incomplete") from None
        except (UnicodeDecodeError, ValueError) as e:  # JSONDecodeError is a ValueError
            raise ValueError(f"{path} is damaged ({e}); retrain the model or restore the file") from None
        return cls(itos)
