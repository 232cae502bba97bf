"""Word-level language-model corpus and fixed-shape next-word batches for LSTM pretraining.

Corpus (``build_lm_corpus`` / ``default_lm_corpus``): the non-hotel reviews of
online_shopping_10_cats.csv (the ``酒店`` rows are excluded and asserted absent: they overlap a
public benchmark) plus the *training* split of the fine-tuning dataset. Any review whose text, as
the models see it (CJK characters only), equals a validation or test text of the fine-tuning
dataset is removed, and that is asserted. A seeded slice of the online-shopping reviews is held
out for validation perplexity; the vocabulary is built from the LM training reviews only.
Words come from ``segment_many`` (CJK filter + jieba, disk-cached), exactly as the classifier
sees them.

Batches (``LMBatches``): one sequence per review, bucketed by length, not a concatenated
stream cut into BPTT windows. The train step is stateless (no carry between windows), so a
stream window would start from a zero state in the middle of a review; per-review sequences
start from the zero state at the review's first word and end by predicting ``<eos>`` from the
state after its last word, which is exactly the state the classifier's ``last`` pooling reads.
Reviews longer than the longest bucket are cut into consecutive chunks (only the last chunk
predicts ``<eos>``), so no text is dropped. Input = the review's words w_1..w_n; target at
position t = w_{t+1} (``<eos>`` after w_n); w_1 itself is not predicted (the classifier sees no
beginning-of-review token, so the LM input has none either).
"""

from __future__ import annotations

import csv
import dataclasses
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from jaxsenti.data.text import PAD, UNK, Vocab, cjk_only, segment_many
from jaxsenti.training.batching import batch_plan

__all__ = ["EOS", "HOTEL", "LMBatches", "LMCorpus", "build_lm_corpus", "default_lm_corpus", "lm_vocab",
           "read_shopping_reviews"]

EOS = "<eos>"  # end of review; jieba words after the CJK filter never contain '<'
HOTEL = "酒店"  # the online-shopping category that must never be pretraining text
SHOPPING_CSV = "online_shopping_10_cats.csv"
DEFAULT_BUCKETS = (8, 16, 24, 32, 48, 64)


def read_shopping_reviews(path: str | os.PathLike, *, exclude_cats: Sequence[str] = (HOTEL,)) -> list[str]:
    """Review texts of online_shopping_10_cats.csv outside ``exclude_cats`` (always excluding ``酒店``).

    BOMs are stripped, reviews without a CJK ideograph dropped, exact duplicates keep their first copy.
    """
    exclude = set(exclude_cats) | {HOTEL}
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found (set JAXSENTI_DATA_DIR or pass the path)")
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        missing = {"cat", "review"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: column(s) {sorted(missing)} not found; columns are {reader.fieldnames}")
        texts, seen = [], set()
        for row in reader:
            cat = (row["cat"] or "").replace("\ufeff", "").strip()
            if cat in exclude:
                continue
            assert cat != HOTEL  # the hard rule, checked where the row is taken
            text = (row["review"] or "").replace("\ufeff", "").strip()
            if cjk_only(text) and text not in seen:
                seen.add(text)
                texts.append(text)
    return texts


def lm_vocab(docs: Sequence[Sequence[str]], *, min_freq: int = 2, max_size: int | None = 30000) -> Vocab:
    """``<pad>``=0, ``<unk>``=1, ``<eos>``=2, then words most frequent first (at most ``max_size`` entries in all)."""
    if max_size is not None and max_size < 4:
        raise ValueError(f"max_size must be >= 4, got {max_size}")
    words = Vocab.build(docs, min_freq=min_freq).itos[2:]
    if max_size is not None:
        words = words[: max_size - 3]
    return Vocab([PAD, UNK, EOS, *words])


@dataclasses.dataclass(frozen=True)
class LMCorpus:
    """Segmented LM reviews (lists of words), their vocabulary and where the reviews came from."""

    train: list[list[str]]
    val: list[list[str]]
    vocab: Vocab
    stats: dict

    def encode(self, docs: Sequence[Sequence[str]]) -> list[np.ndarray]:
        return [self.vocab.encode(d) for d in docs]


def _key(text: str) -> str:
    return cjk_only(text)


def build_lm_corpus(pretrain_texts: Sequence[str], finetune_train: Sequence[str], finetune_heldout: Sequence[str], *,
                    val_size: float = 0.02, seed: int = 0, min_freq: int = 2, max_size: int | None = 30000,
                    use_disk_cache: bool = True) -> LMCorpus:
    """LM corpus from unlabeled ``pretrain_texts`` plus the fine-tuning ``finetune_train`` texts.

    ``finetune_heldout`` are the fine-tuning validation and test texts: any corpus review equal to
    one of them (on CJK characters) is removed, and ``finetune_train`` must not contain one.
    ``val_size`` (a count or a fraction) reviews of ``pretrain_texts``, chosen with ``seed``, are held
    out for validation perplexity; the fine-tuning training texts always stay in training.
    """
    heldout = {_key(t) for t in finetune_heldout}
    leaked = [t for t in finetune_train if _key(t) in heldout]
    if leaked:
        raise ValueError(f"{len(leaked)} fine-tuning training text(s) equal a validation/test text, e.g. {leaked[0]!r}")
    pre, seen, removed = [], set(), 0
    for t in pretrain_texts:
        k = _key(t)
        if k in heldout:
            removed += 1
        elif k and k not in seen:
            seen.add(k)
            pre.append(t)
    ft = [t for t in finetune_train if _key(t) and _key(t) not in seen]
    n_val = round(len(pre) * val_size) if isinstance(val_size, float) else int(val_size)
    if not 0 <= n_val < len(pre):
        raise ValueError(f"val_size {val_size} gives {n_val} held-out reviews out of {len(pre)}")
    val_idx = set(np.random.default_rng(seed).choice(len(pre), size=n_val, replace=False).tolist())
    # Segment the shopping reviews and the fine-tuning split separately: each keeps its own disk cache entry.
    pre_words = segment_many(pre, use_disk_cache=use_disk_cache)
    ft_words = segment_many(ft, use_disk_cache=use_disk_cache) if ft else []
    train = [w for i, w in enumerate(pre_words) if i not in val_idx and w] + [w for w in ft_words if w]
    val = [w for i, w in enumerate(pre_words) if i in val_idx and w]
    corpus_keys = {_key(t) for t in pre} | {_key(t) for t in ft}
    assert not corpus_keys & heldout, "validation/test text of the fine-tuning data leaked into the LM corpus"
    vocab = lm_vocab(train, min_freq=min_freq, max_size=max_size)
    n_words = sum(len(w) for w in train)
    unk = sum(vocab.stoi.get(x, 1) == 1 for w in train for x in w)
    stats = {"pretrain_reviews": len(pre) - n_val, "finetune_train_reviews": len(ft_words), "val_reviews": len(val),
             "removed_heldout_duplicates": removed, "train_words": n_words, "vocab_size": len(vocab),
             "train_unk_rate": unk / max(n_words, 1), "min_freq": min_freq, "max_size": max_size, "seed": seed}
    return LMCorpus(train=train, val=val, vocab=vocab, stats=stats)


def default_lm_corpus(finetune_texts: Sequence[str], split, *, shopping_csv: str | os.PathLike | None = None,
                      **kwargs) -> LMCorpus:
    """The study's corpus: non-hotel online-shopping reviews + ``split.train`` of ``finetune_texts``.

    ``split`` is the fine-tuning ``data.splits.Split``; its ``val`` and ``test`` texts are excluded.
    ``shopping_csv`` defaults to ``$JAXSENTI_DATA_DIR/online_shopping_10_cats.csv`` (else ``data/``).
    """
    if shopping_csv is None:
        shopping_csv = Path(os.environ.get("JAXSENTI_DATA_DIR", "data")) / SHOPPING_CSV
    heldout = [finetune_texts[i] for i in np.concatenate([split.val, split.test])]
    train = [finetune_texts[i] for i in split.train]
    return build_lm_corpus(read_shopping_reviews(shopping_csv), train, heldout, **kwargs)


class LMBatches:
    """Fixed-shape next-word batches over encoded reviews; ``epoch(e)`` is a pure function of (seed, e).

    Each batch has ``batch_size`` rows and a length from ``buckets`` (one compile per bucket);
    a partial batch is filled with weight-0 rows. Keys: ``tokens`` int32[B, T], ``lengths`` int32[B],
    ``targets`` int32[B, T], ``target_weights`` float32[B, T] (1 where a next word is predicted),
    ``weights`` float32[B].
    """

    def __init__(self, seqs: Sequence[np.ndarray], *, eos_id: int, batch_size: int = 64,
                 buckets: Sequence[int] = DEFAULT_BUCKETS, shuffle: bool = True, seed: int = 0):
        if batch_size < 1 or not buckets or any(b < 1 for b in buckets) or list(buckets) != sorted(set(buckets)):
            raise ValueError(f"need batch_size >= 1 and strictly increasing positive buckets, got {batch_size}, {buckets}")
        self.batch_size, self.buckets = int(batch_size), tuple(int(b) for b in buckets)
        self.shuffle, self.seed, self.eos_id = shuffle, int(seed), int(eos_id)
        # Each review becomes its word ids followed by <eos>; a chunk of n inputs reads n + 1 of them.
        self._streams = [np.append(np.asarray(s, np.int32), np.int32(eos_id)) for s in seqs if len(s)]
        cap = self.buckets[-1]
        items = []  # (review, offset, number of inputs)
        for r, s in enumerate(self._streams):
            n = len(s) - 1
            items += [(r, o, min(cap, n - o)) for o in range(0, n, cap)]
        self._items = np.asarray(items, np.int64).reshape(-1, 3)
        self._len = len(batch_plan(self._items[:, 2], self.batch_size, self.buckets, shuffle=False))

    def __len__(self) -> int:
        return self._len

    @property
    def num_targets(self) -> int:
        """Predicted words per epoch (every review's words after the first, plus its ``<eos>``)."""
        return int(self._items[:, 2].sum())

    def padding_fraction(self) -> float:
        """Share of the batches' [B, T] positions that are padding or filler rows (wasted compute)."""
        slots = sum(length * self.batch_size for length, _ in self._plan(0))
        return 1.0 - self.num_targets / max(slots, 1)

    def _plan(self, epoch: int):
        return batch_plan(self._items[:, 2], self.batch_size, self.buckets, shuffle=self.shuffle, seed=self.seed,
                          epoch=epoch)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[dict[str, np.ndarray]]:
        """Batches of ``epoch`` from batch ``start`` on (exact resume: the plan depends only on seed and epoch)."""
        for length, idx in self._plan(epoch)[start:]:
            yield self._batch(idx, length)

    def _batch(self, idx: np.ndarray, length: int) -> dict[str, np.ndarray]:
        b = self.batch_size
        out = {"tokens": np.zeros((b, length), np.int32), "lengths": np.zeros((b,), np.int32),
               "targets": np.zeros((b, length), np.int32), "target_weights": np.zeros((b, length), np.float32),
               "weights": np.zeros((b,), np.float32)}
        for row, (r, o, n) in enumerate(self._items[idx]):
            s = self._streams[r]
            out["tokens"][row, :n] = s[o : o + n]
            out["targets"][row, :n] = s[o + 1 : o + n + 1]
            out["target_weights"][row, :n] = 1.0
            out["lengths"][row] = n
            out["weights"][row] = 1.0
        return out
