"""Pretraining text for masked-language-model (MLM) pretraining: sources, leak checks, tokenization.

Rules this module enforces (the study's results are compared with public review data, so leaks matter):

* Rows of the ``酒店`` (hotel) category are never read: every CSV source skips rows whose ``cat``
  column is ``酒店`` (:data:`DEFAULT_DROP`), and any text equal to a skipped hotel text is removed
  from the other sources too (a hotel review copied into another category is still a hotel review).
* Texts of the fine-tuning dataset's validation and test splits never enter the corpus: pass them as
  ``exclude_texts``; every corpus text whose normalised form matches one is removed (counted per
  source and per split), and the result is checked again before it is returned.

"Normalised form" (:func:`text_key`) = NFKC, then only the CJK ideographs the LSTM keeps. BERT's
tokenizer normalisation (lower-casing, whitespace, accents) never changes an ideograph, so two texts
that either model sees as identical share a key; the key is deliberately the coarser of the two
(punctuation variants also match), because a removed pretraining text costs little and a leaked
test text invalidates a result. Texts are also deduplicated by this key (first copy kept), and texts
with no CJK Unified Ideograph (U+4E00–U+9FFF) are dropped (counted).

Files are read like training data (:mod:`jaxsenti.data.csv_reader`): the same errors naming file, row,
line and column (undecodable bytes, an unclosed quote where it opens, malformed rows, a missing column),
fields of any length, BOMs stripped (inside cells: counted), an ``encoding`` per source, and the warning
when a file read with another encoding also decodes as UTF-8. A TXT file is one review per line (``\n``,
``\r\n`` or ``\r``); blank lines between reviews count as empty, trailing ones are ignored, as in CSVs.
Texts are kept whole, however long: packing (MLM) and chunking (LM) split long texts without loss.
Each source's :class:`SourceReport` counts what happened to its rows, the kinds of training data's load
report, so that ``rows_read = sum of filtered + empty + no_cjk + excluded + matching_filtered +
duplicates + kept``.

:func:`tokenize_corpus` does the expensive part once and caches it on disk: WordPiece ids of each
review plus whole-word boundaries from jieba (run on the raw text, mapped to tokens with the fast
tokenizer's character offsets). Packing and per-epoch masking are in :mod:`jaxsenti.data.masking`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from jaxsenti.data.csv_reader import BOM, DataError, excerpt, names, raise_problems, read_csv, read_text
from jaxsenti.data.text import NO_CJK, cache_dir, cjk_only, jieba_tokenizer

HOTEL = "酒店"
DEFAULT_DROP: tuple = (("cat", (HOTEL,)),)
_TEXT_COLUMNS = ("review", "comment", "text", "content")
_CACHE_FORMAT = "mlm-tokens-v1"


def text_key(text: str) -> str:
    """The form leak checks and deduplication compare: NFKC, CJK ideographs only (see module docstring)."""
    return cjk_only(unicodedata.normalize("NFKC", text))


@dataclasses.dataclass(frozen=True)
class TextSource:
    """A CSV (``text_column``; auto-detected among review/comment/text/content), a TXT file (one review per
    line; a file not named .csv with no ``text_column``) or in-memory ``texts``. CSV rows whose column value
    is listed in ``drop_rows`` are skipped."""

    path: str | None = None
    text_column: str | None = None
    drop_rows: tuple = DEFAULT_DROP
    name: str | None = None
    texts: tuple[str, ...] | None = None
    encoding: str = "utf-8"

    @classmethod
    def from_texts(cls, name: str, texts: Iterable[str]) -> "TextSource":
        return cls(name=name, texts=tuple(texts))

    @property
    def label(self) -> str:
        return self.name or str(self.path)


@dataclasses.dataclass
class SourceReport:
    """What reading did to one source's rows (the field order is the order the rules apply in)."""

    name: str
    rows_read: int = 0  # data rows (CSV) or lines (TXT), blank lines between them included
    filtered: dict = dataclasses.field(default_factory=dict)  # "cat=酒店" -> rows skipped
    empty: int = 0
    no_cjk: int = 0
    duplicates: int = 0
    excluded: dict = dataclasses.field(default_factory=dict)  # exclude set name -> texts removed
    matching_filtered: int = 0  # texts equal to a skipped (hotel) row's text
    kept: int = 0
    bom_stripped: int = 0  # texts with a BOM inside (stripped; not a drop)
    blank_lines: int = 0  # of the empty ones, blank lines
    warnings: list = dataclasses.field(default_factory=list)  # e.g. the file also decodes as UTF-8

    def lines(self) -> list[str]:
        """Human-readable notes for stderr, one per kind of handling that happened."""
        out = list(self.warnings)
        if self.bom_stripped:
            out.append(f"stripped {self.bom_stripped} UTF-8 byte-order mark(s) inside texts")
        if not self.rows_read:
            return out + ["no data rows (the file is empty or has a header only)"]
        out += [f"{n} row(s) skipped ({what}: never read)" for what, n in self.filtered.items() if n]
        blank = ("" if not self.blank_lines else " (all blank lines)" if self.blank_lines == self.empty
                 else f" ({self.blank_lines} of them blank lines)")
        for n, what in ((self.empty, f"row(s) with empty text dropped{blank}"),
                        (self.no_cjk, f"text(s) with {NO_CJK} dropped"),
                        *((k, f"text(s) of the fine-tuning {name} split removed") for name, k in self.excluded.items()),
                        (self.matching_filtered, "text(s) equal to a skipped row's text removed"),
                        (self.duplicates, "duplicate text(s) dropped (first copy kept)")):
            if n:
                out.append(f"{n} {what}")
        return out + [f"{self.kept} of {self.rows_read} row(s) kept"]


@dataclasses.dataclass
class Corpus:
    """Pretraining texts (``source[i]`` indexes ``report.sources``) and what loading did."""

    texts: list[str]
    source: np.ndarray
    sources: list[SourceReport]
    sha256: str  # of the texts in order: a cache key for everything derived from them

    def __len__(self) -> int:
        return len(self.texts)

    def report(self) -> dict:
        return {"texts": len(self.texts), "chars": sum(map(len, self.texts)), "sha256": self.sha256,
                "sources": [dataclasses.asdict(s) for s in self.sources]}


def _read_source(src: TextSource) -> tuple[list[str], SourceReport, list[str]]:
    """Raw texts of one source (BOM/whitespace stripped; "" for an empty row), its report, and the texts of skipped rows."""
    rep = SourceReport(src.label)
    if src.texts is not None:
        rep.rows_read = len(src.texts)
        return [_clean(t, rep) for t in src.texts], rep, []
    path = Path(src.path)
    if path.suffix.lower() != ".csv" and src.text_column is None:
        return _read_txt(path, src.encoding, rep), rep, []
    data = read_csv(path, src.encoding)
    rep.warnings = list(data.warnings)
    with data.hints():
        column = src.text_column or next((c for c in _TEXT_COLUMNS if c in data.header), None)
        if column is None:
            raise DataError(f"{path}: no text column found (looked for {', '.join(_TEXT_COLUMNS)}){data.separator_hint()}; "
                            f"columns are {names(data.header)}. Choose the column with --text-column after its --corpus.")
        ti = data.column(column, "--text-column after its --corpus")
        raise_problems(path, [("malformed CSV", None, data.malformed)])
    drops = [(data.header.index(c), c, set(vals)) for c, vals in src.drop_rows if c in data.header]
    rep.filtered = {f"{c}={'|'.join(sorted(v))}": 0 for _, c, v in drops}
    rep.rows_read = len(data.rows)
    texts, dropped = [], []
    for r in data.rows:
        if r.blank:
            rep.blank_lines += 1
            texts.append("")
            continue
        # a BOM or spaces around the category must not let a 酒店 row through
        hit = next((f"{c}={'|'.join(sorted(v))}" for i, c, v in drops if r.fields[i].replace(BOM, "").strip() in v), None)
        if hit:
            rep.filtered[hit] += 1
            dropped.append(r.fields[ti].replace(BOM, "").strip())
            continue
        texts.append(_clean(r.fields[ti], rep))
    return texts, rep, dropped


def _clean(text: str, rep: SourceReport) -> str:
    if BOM in text:
        rep.bom_stripped += 1
        text = text.replace(BOM, "")
    return text.strip()


def _read_txt(path: Path, encoding: str, rep: SourceReport) -> list[str]:
    """One text per line of a TXT file (line breaks as the CSV reader sees them; trailing blank lines are not rows)."""
    content, rep.warnings = read_text(path, encoding)
    lines = re.split(r"\r\n|\r|\n", content)
    while lines and not lines[-1].strip():
        lines.pop()
    rep.rows_read = len(lines)
    rep.blank_lines = sum(not t.strip() for t in lines)
    head = [h.strip().strip('"').lower() for h in lines[0].split(",")] if lines else []
    if len(lines) > 1 and set(head) & set(_TEXT_COLUMNS):  # read as reviews, "review" would be one text of no CJK
        rep.warnings.append(f"read as TXT (one review per line), but its first line looks like a CSV header "
                            f"({excerpt(lines[0])}): to read it as CSV, give --text-column after its --corpus")
    return [_clean(t, rep) for t in lines]


def load_corpus(sources: Sequence[TextSource | str | os.PathLike], *,
                exclude_texts: Mapping[str, Iterable[str]] | Iterable[str] = ()) -> Corpus:
    """Read, clean, leak-check and deduplicate pretraining texts (policy in the module docstring).

    ``exclude_texts``: texts that must not be pretrained on, e.g. ``{"val": [...], "test": [...]}``
    (a plain iterable counts as one set named ``"excluded"``).
    """
    if isinstance(exclude_texts, Mapping):
        excl = {name: {text_key(t) for t in ts} - {""} for name, ts in exclude_texts.items()}
    else:
        excl = {"excluded": {text_key(t) for t in exclude_texts} - {""}}
    read = [_read_source(s if isinstance(s, TextSource) else TextSource(os.fspath(s))) for s in sources]
    filtered_keys = {text_key(t) for _, _, dropped in read for t in dropped} - {""}

    texts, source, seen = [], [], set()
    for i, (raw, rep, _) in enumerate(read):
        rep.excluded = dict.fromkeys(excl, 0)
        for t in raw:
            if not t:
                rep.empty += 1
                continue
            k = text_key(t)
            if not k:
                rep.no_cjk += 1
            elif hit := next((name for name, keys in excl.items() if k in keys), None):
                rep.excluded[hit] += 1
            elif k in filtered_keys:
                rep.matching_filtered += 1
            elif k in seen:
                rep.duplicates += 1
            else:
                seen.add(k)
                texts.append(t)
                source.append(i)
        rep.kept = source.count(i)
    # an independent check of the property the loop above is meant to guarantee
    for name, keys in excl.items():
        if leaked := keys & seen:
            shown = ", ".join(excerpt(t) for t in sorted(leaked)[:3])
            raise RuntimeError(f"{len(leaked)} {name} text(s) in the pretraining corpus, e.g. {shown}")
    sha = hashlib.sha256("\x00".join(texts).encode("utf-8")).hexdigest()
    return Corpus(texts, np.asarray(source, np.int32), [r for _, r, _ in read], sha)


def default_corpus(shopping_csv: str | os.PathLike, *, train_texts: Iterable[str] = (), val_texts: Iterable[str],
                   test_texts: Iterable[str], extra: Sequence[TextSource] = ()) -> Corpus:
    """Online-shopping reviews without ``酒店`` + the fine-tuning dataset's training texts (+ ``extra``),
    with the fine-tuning validation and test texts removed.

    When one corpus serves several fine-tuning splits (the study's seed i uses split i), pass the
    *union* of their validation and test texts: anything in any of them is removed, including from
    ``train_texts`` (which may then simply be the whole fine-tuning dataset).
    """
    shop = TextSource(os.fspath(shopping_csv), text_column="review", name="online_shopping_10_cats")
    corpus = load_corpus([shop, TextSource.from_texts("finetune_train", train_texts), *extra],
                         exclude_texts={"val": list(val_texts), "test": list(test_texts)})
    if "cat=" + HOTEL not in corpus.sources[0].filtered:
        raise DataError(f"{shopping_csv}: no 'cat' column, so its {HOTEL} (hotel) rows cannot be left out")
    return corpus


def split_heldout(n: int, fraction: float = 0.02, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, heldout) indices of ``n`` texts; ``round(fraction·n)`` (at least 1) held out for validation MLM loss."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"heldout fraction must be in (0, 1), got {fraction}")
    k = max(1, int(round(fraction * n)))
    if k >= n:
        raise ValueError(f"a corpus of {n} text(s) is too small to hold out {fraction:.1%}")
    perm = np.random.default_rng([seed, 7]).permutation(n)
    return np.sort(perm[k:]), np.sort(perm[:k])


# --------------------------------------------------------------------------------------------------
# tokenization with whole-word boundaries


@dataclasses.dataclass(frozen=True)
class VocabInfo:
    """The token ids masking needs, read from the tokenizer."""

    vocab_size: int
    cls_id: int
    sep_id: int
    pad_id: int
    mask_id: int
    special_ids: tuple[int, ...]  # never masked: [PAD] [UNK] [CLS] [SEP] [MASK]
    replacement_ids: np.ndarray = dataclasses.field(compare=False, repr=False)  # the "random token" pool

    @classmethod
    def from_tokenizer(cls, tokenizer) -> "VocabInfo":
        vocab = tokenizer.get_vocab()
        special = tuple(sorted(set(tokenizer.all_special_ids)))
        # random replacements are real tokens: not special, not [unusedN], not <S>/<T>
        bracketed = re.compile(r"^\[.*\]$|^<.*>$")
        pool = np.array(sorted(i for t, i in vocab.items() if i not in special and not bracketed.match(t)), np.int32)
        return cls(len(vocab), tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id,
                   tokenizer.mask_token_id, special, pool)


@dataclasses.dataclass(frozen=True)
class TokenizedCorpus:
    """Review i is ``ids[offsets[i]:offsets[i+1]]`` (no special tokens); ``word_start`` marks each jieba word's first token."""

    ids: np.ndarray  # int32[total]
    word_start: np.ndarray  # bool[total]
    offsets: np.ndarray  # int64[n+1]
    vocab: VocabInfo

    def __len__(self) -> int:
        return len(self.offsets) - 1


def _plain_backend(tokenizer):
    """A copy of the fast tokenizer's Rust backend with no truncation/padding (a previous call may have set them)."""
    from tokenizers import Tokenizer

    if not getattr(tokenizer, "is_fast", False):
        raise TypeError("whole-word masking needs a fast tokenizer (character offsets); use BertTokenizerFast")
    cfg = json.loads(tokenizer.backend_tokenizer.to_str())
    cfg["truncation"] = cfg["padding"] = None
    s = json.dumps(cfg, sort_keys=True, ensure_ascii=False)
    return Tokenizer.from_str(s), hashlib.sha256(s.encode("utf-8")).hexdigest()


def _tokenize(texts: Sequence[str], backend) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    encs = backend.encode_batch(list(texts), add_special_tokens=False)
    lens = np.fromiter((len(e.ids) for e in encs), np.int64, len(encs))
    total = int(lens.sum())
    ids = np.fromiter(itertools.chain.from_iterable(e.ids for e in encs), np.int32, total)
    tok_char = np.fromiter(itertools.chain.from_iterable((o[0] for o in e.offsets) for e in encs), np.int64, total)
    # one global character axis (each text followed by a gap) so the word boundaries are one lookup
    base = np.concatenate([[0], np.cumsum([len(t) + 1 for t in texts])])
    jb = jieba_tokenizer()
    word_char = np.fromiter(itertools.chain.from_iterable(
        (b + s for _, s, _ in jb.tokenize(t)) for t, b in zip(texts, base[:-1].tolist())), np.int64)
    is_start = np.zeros(int(base[-1]) + 1, bool)
    is_start[word_char] = True
    offsets = np.concatenate([[0], np.cumsum(lens)])
    word_start = is_start[tok_char + np.repeat(base[:-1], lens)]
    word_start[offsets[:-1][lens > 0]] = True  # a review's first token always starts a word
    return ids, word_start, offsets


def tokenize_corpus(texts: Sequence[str], tokenizer, *, corpus_sha256: str | None = None,
                    use_disk_cache: bool = True) -> TokenizedCorpus:
    """WordPiece ids and jieba word starts of every text, cached under ``cache_dir()`` by corpus + tokenizer + jieba.

    The full non-hotel online-shopping corpus takes about a minute on a busy 2-core machine; the cache
    reads it back in well under a second.
    """
    import jieba

    vocab = VocabInfo.from_tokenizer(tokenizer)
    backend, tok_hash = _plain_backend(tokenizer)
    sha = corpus_sha256 or hashlib.sha256("\x00".join(texts).encode("utf-8")).hexdigest()
    key = hashlib.sha256(f"{_CACHE_FORMAT}|{sha}|{tok_hash}|jieba-{jieba.__version__}".encode()).hexdigest()[:24]
    path = cache_dir() / f"mlm-tokens-{key}.npz"
    if use_disk_cache and path.exists():
        try:
            with np.load(path) as z:
                if int(z["n"]) == len(texts):
                    return TokenizedCorpus(z["ids"], z["word_start"], z["offsets"], vocab)
        except (OSError, ValueError, KeyError):
            pass  # corrupt cache: recompute and overwrite
    ids, word_start, offsets = _tokenize(texts, backend)
    if use_disk_cache:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.stem + ".tmp.npz")
            np.savez(tmp, ids=ids, word_start=word_start, offsets=offsets, n=len(texts))
            tmp.replace(path)
        except OSError:
            pass  # a read-only cache must not stop pretraining
    return TokenizedCorpus(ids, word_start, offsets, vocab)


__all__ = [
    "DEFAULT_DROP", "HOTEL", "Corpus", "SourceReport", "TextSource", "TokenizedCorpus", "VocabInfo",
    "default_corpus", "load_corpus", "split_heldout", "text_key", "tokenize_corpus",
]
