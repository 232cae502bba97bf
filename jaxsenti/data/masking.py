"""Packing and whole-word masking for MLM pretraining, vectorised in numpy.

:func:`pack` turns a :class:`~jaxsenti.data.corpus.TokenizedCorpus` into fixed-length sequences:
the reviews (in a seeded random order) form one stream ``r1 [SEP] r2 [SEP] …`` that is cut into
chunks of ``max_len - 1`` tokens, each prefixed with ``[CLS]`` (RoBERTa's "full sentences"). A review
longer than a chunk continues in the next sequence; only the very last sequence is padded, so every
batch has the same shape and the jitted step compiles once.

:class:`MaskedLMBatches` draws new masks every epoch, a pure function of ``(seed, epoch)`` so that a
resumed run sees exactly the masks it would have seen. Whole-word masking (Chinese-BERT-wwm): the
tokens of a jieba word are masked together. Per sequence, the budget is
``min(max(1, round(rate · candidates)), max_predictions)`` tokens, where candidates are all tokens
but [PAD] [UNK] [CLS] [SEP] [MASK]; words are visited in a random order and taken while they fit
(three passes, each taking the words that still fit, approximate the usual "skip a word that would
overflow, keep going" loop). A word is never cut and a sequence never has more than
``max_predictions`` masked tokens, so there is no overflow to handle: a long word that does not fit
the remaining budget is simply not chosen. Each chosen token becomes [MASK] (80 %), a random real
token (10 %) or stays (10 %).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np

from jaxsenti.data.corpus import TokenizedCorpus, VocabInfo

BATCH_KEYS = ("tokens", "lengths", "positions", "targets", "target_weights", "weights")


@dataclasses.dataclass(frozen=True)
class PackedCorpus:
    """``tokens`` int32[N, T] ([CLS] first, [PAD] after ``lengths``), ``word_start`` bool[N, T]."""

    tokens: np.ndarray
    lengths: np.ndarray
    word_start: np.ndarray
    vocab: VocabInfo

    def __len__(self) -> int:
        return self.tokens.shape[0]

    @property
    def max_len(self) -> int:
        return self.tokens.shape[1]


def pack(corpus: TokenizedCorpus, max_len: int, *, seed: int | None = 0, reviews: np.ndarray | None = None) -> PackedCorpus:
    """Pack ``reviews`` (indices, default all) of ``corpus`` into sequences of ``max_len`` tokens; ``seed=None`` keeps their order."""
    if max_len < 3:
        raise ValueError(f"max_len must be >= 3 ([CLS], a token, [SEP]), got {max_len}")
    v = corpus.vocab
    idx = np.arange(len(corpus)) if reviews is None else np.asarray(reviews, np.int64)
    if len(idx) == 0:
        raise ValueError("no reviews to pack")
    if seed is not None:
        idx = np.random.default_rng([seed, 11]).permutation(idx)
    starts, lens = corpus.offsets[idx], np.diff(corpus.offsets)[idx]
    n_tok = int(lens.sum())
    out_start = np.cumsum(lens) - lens  # where each review's tokens start, not counting the [SEP]s
    src = np.arange(n_tok) + np.repeat(starts - out_start, lens)
    dst = np.arange(n_tok) + np.repeat(np.arange(len(idx)), lens)  # shifted by the [SEP]s before it
    S = n_tok + len(idx)
    C = max_len - 1
    N = -(-S // C)
    stream = np.full(N * C, v.pad_id, np.int32)
    ws = np.zeros(N * C, bool)
    stream[dst], ws[dst] = corpus.ids[src], corpus.word_start[src]
    sep_at = np.cumsum(lens) + np.arange(len(idx))
    stream[sep_at], ws[sep_at] = v.sep_id, True
    tokens = np.concatenate([np.full((N, 1), v.cls_id, np.int32), stream.reshape(N, C)], axis=1)
    word_start = np.concatenate([np.ones((N, 1), bool), ws.reshape(N, C)], axis=1)
    word_start[:, 1] = True  # a word cut by a chunk boundary: its continuation is a unit of its own
    lengths = np.full(N, max_len, np.int32)
    lengths[-1] = 1 + S - (N - 1) * C
    return PackedCorpus(tokens, lengths, word_start, v)


def default_max_predictions(max_len: int, rate: float = 0.15) -> int:
    """The largest budget any sequence of ``max_len`` can get (at most ``max_len - 1`` candidates)."""
    return max(1, int(np.rint(rate * (max_len - 1))))


class MaskedLMBatches:
    """Fixed-shape MLM batches of a :class:`PackedCorpus`, with new whole-word masks every epoch.

    ``epoch(e, start=k)`` yields batches k, k+1, … of epoch ``e`` as dicts of numpy arrays
    (:data:`BATCH_KEYS`): ``tokens`` int32[B, T] (masked input), ``lengths`` int32[B], ``positions``
    int32[B, P], ``targets`` int32[B, P] (original ids), ``target_weights`` float32[B, P] (0 in unused
    slots), ``weights`` float32[B] (0 for the all-zero rows that fill the last batch). Masks and the
    row order are pure functions of ``(seed, epoch)``. For validation use ``shuffle=False`` and always
    epoch 0, so every evaluation scores the same masks.
    """

    def __init__(self, packed: PackedCorpus, batch_size: int, max_predictions: int | None = None, seed: int = 0, *,
                 shuffle: bool = True, mask_rate: float = 0.15, mask_token_rate: float = 0.8,
                 random_token_rate: float = 0.1):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if not (0 < mask_rate < 1 and 0 <= mask_token_rate and 0 <= random_token_rate
                and mask_token_rate + random_token_rate <= 1):
            raise ValueError("need 0 < mask_rate < 1 and mask_token_rate + random_token_rate <= 1")
        self.packed, self.batch_size, self.seed, self.shuffle = packed, int(batch_size), int(seed), shuffle
        self.max_predictions = int(max_predictions or default_max_predictions(packed.max_len, mask_rate))
        self.mask_rate, self.mask_token_rate, self.random_token_rate = mask_rate, mask_token_rate, random_token_rate
        N, T = packed.tokens.shape
        # static word structure: words are runs of candidate tokens, split at word starts
        cand_grid = ~np.isin(packed.tokens, packed.vocab.special_ids) & (np.arange(T)[None] < packed.lengths[:, None])
        self._cand = np.flatnonzero(cand_grid)
        new = packed.word_start.ravel()[self._cand]
        if len(new):
            new[0] = True
            new[1:] |= np.diff(self._cand) != 1
        first = np.flatnonzero(new)
        self._word_len = np.diff(np.append(first, len(self._cand)))
        self._word_seq = self._cand[first] // T  # sorted: words come in sequence order
        self._seq_first_word = np.minimum(np.searchsorted(self._word_seq, np.arange(N)), max(len(first) - 1, 0))
        n_cand = np.bincount(self._cand // T, minlength=N)
        budget = np.maximum(1, np.rint(mask_rate * n_cand)).astype(np.int64)
        self._budget = np.where(n_cand > 0, np.minimum(budget, self.max_predictions), 0)

    def __len__(self) -> int:
        return -(-len(self.packed) // self.batch_size)

    def masks(self, epoch: int) -> dict[str, np.ndarray]:
        """This epoch's masked inputs for every sequence (rows in packed order): tokens/positions/targets/target_weights."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        rng = np.random.default_rng([self.seed, int(epoch), 0])
        N, T = self.packed.tokens.shape
        P, S, L = self.max_predictions, self._word_seq, self._word_len
        # a random order of the words within each sequence (S is sorted, so S + u sorts by S first)
        order = np.argsort(S + rng.random(len(S)), kind="stable")
        Lo = L[order]
        remaining = self._budget.copy()
        taken = np.zeros(len(S), bool)
        for _ in range(3 if len(S) else 0):
            elig = ~taken & (Lo <= remaining[S])
            lo = np.where(elig, Lo, 0)
            cs = np.cumsum(lo)
            within = cs - (cs - lo)[self._seq_first_word][S]  # running total inside each sequence
            take = elig & (within <= remaining[S])
            if not take.any():
                break
            taken |= take
            remaining -= np.bincount(S, weights=lo * take, minlength=N).astype(np.int64)
        chosen = np.zeros(len(S), bool)
        chosen[order] = taken
        flat = self._cand[np.repeat(chosen, L)]  # masked token indices into tokens.ravel(), ascending

        targets_flat = self.packed.tokens.ravel()[flat]
        u = rng.random(len(flat))
        inputs = self.packed.tokens.copy().ravel()
        to_mask = u < self.mask_token_rate
        to_rand = ~to_mask & (u < self.mask_token_rate + self.random_token_rate)
        inputs[flat[to_mask]] = self.packed.vocab.mask_id
        pool = self.packed.vocab.replacement_ids
        inputs[flat[to_rand]] = pool[rng.integers(0, len(pool), int(to_rand.sum()))]

        rows, cols = flat // T, (flat % T).astype(np.int32)
        counts = np.bincount(rows, minlength=N)
        rank = np.arange(len(flat)) - np.repeat(np.cumsum(counts) - counts, counts)
        positions = np.zeros((N, P), np.int32)
        targets = np.zeros((N, P), np.int32)
        target_weights = np.zeros((N, P), np.float32)
        positions[rows, rank], targets[rows, rank], target_weights[rows, rank] = cols, targets_flat, 1.0
        return {"tokens": inputs.reshape(N, T), "positions": positions, "targets": targets,
                "target_weights": target_weights}

    def epoch(self, epoch: int, start: int = 0) -> Iterator[dict[str, np.ndarray]]:
        """Batches ``start, start+1, …`` of ``epoch``, each of exactly ``batch_size`` rows (arguments checked now)."""
        if not 0 <= start <= len(self):
            raise ValueError(f"start must be in [0, {len(self)}], got {start}")
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        return self._batches(epoch, start)

    def _batches(self, epoch: int, start: int) -> Iterator[dict[str, np.ndarray]]:
        m = self.masks(epoch)
        N, B = len(self.packed), self.batch_size
        order = np.random.default_rng([self.seed, int(epoch), 1]).permutation(N) if self.shuffle else np.arange(N)
        lengths = self.packed.lengths
        for b in range(start, len(self)):
            idx = order[b * B:(b + 1) * B]
            batch = {"tokens": m["tokens"][idx], "lengths": lengths[idx], "positions": m["positions"][idx],
                     "targets": m["targets"][idx], "target_weights": m["target_weights"][idx],
                     "weights": np.ones(len(idx), np.float32)}
            if len(idx) < B:  # filler rows: all zeros, weight 0 (the objective contract)
                batch = {k: np.concatenate([v, np.zeros((B - len(idx),) + v.shape[1:], v.dtype)]) for k, v in batch.items()}
            yield batch


__all__ = ["BATCH_KEYS", "MaskedLMBatches", "PackedCorpus", "default_max_predictions", "pack"]
