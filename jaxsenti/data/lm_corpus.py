"""Word-level next-word batches for LSTM language-model pretraining.

The corpus itself (which texts, the 酒店 and validation/test exclusions) is the one every pretraining
task shares, ``jaxsenti.data.corpus``; here are the LM's vocabulary (:func:`lm_vocab`, built from the
training texts' jieba words, as the classifier sees them) and its batches.

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

from collections.abc import Iterator, Sequence

import numpy as np

from jaxsenti.data.text import PAD, UNK, Vocab
from jaxsenti.training.batching import batch_plan

__all__ = ["EOS", "LMBatches", "extend_vocab", "lm_vocab"]

EOS = "<eos>"  # end of review; jieba words after the CJK filter never contain '<'
DEFAULT_BUCKETS = (8, 16, 24, 32, 48, 64)


def lm_vocab(docs: Sequence[Sequence[str]], *, min_freq: int = 2, max_size: int | None = 30000) -> Vocab:
    """``<pad>``=0, ``<unk>``=1, ``<eos>``=2, then words most frequent first (at most ``max_size`` entries in all)."""
    if max_size is not None and max_size < 4:
        raise ValueError(f"max_size must be >= 4, got {max_size}")
    words = Vocab.build(docs, min_freq=min_freq).itos[2:]
    if max_size is not None:
        words = words[: max_size - 3]
    return Vocab([PAD, UNK, EOS, *words])


def extend_vocab(base: Vocab, corpus_vocab: Vocab) -> tuple[Vocab, list[str]]:
    """``base`` (a pretrained model's vocabulary, every word at its index) followed by the words of ``corpus_vocab``
    it lacks, in ``corpus_vocab``'s order (most frequent first); returns the vocabulary and the words added."""
    if base.itos[:3] != [PAD, UNK, EOS]:
        raise ValueError(f"not a language-model vocabulary (starts {base.itos[:3]}, expected {[PAD, UNK, EOS]})")
    added = [w for w in corpus_vocab.itos[3:] if w not in base.stoi]
    return Vocab([*base.itos, *added]), added


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
