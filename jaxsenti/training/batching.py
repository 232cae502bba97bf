"""Length-bucketed batches with fixed shapes, so a jitted step compiles once per bucket.

Every batch has exactly ``batch_size`` rows and a bucket length from a short list; a
partial batch is filled with rows of weight 0 (never dropped), so evaluation covers
every example and metrics divide by the real count.

The epoch loop reads batches through a *batch source*: ``len(source)`` batches per epoch and
``source.epoch(e, start)`` yielding them, a pure function of (seed, epoch) so a resumed run
sees the same batches. :class:`LabelledBatches` is the source for classification; pretraining
objectives bring their own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import numpy as np


@dataclasses.dataclass
class Encoded:
    """A split after encoding: variable-length token id arrays and 0/1 labels."""

    seqs: list[np.ndarray]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.seqs)


def bucket_for(length: int, buckets: Sequence[int]) -> int:
    for b in buckets:
        if length <= b:
            return b
    return buckets[-1]  # sequences are truncated to the last bucket beforehand


def pad_batch(seqs: Sequence[np.ndarray], labels: np.ndarray, batch_size: int, length: int) -> dict[str, np.ndarray]:
    n = len(seqs)
    if n > batch_size:
        raise ValueError(f"{n} sequences do not fit a batch of {batch_size}")
    tokens = np.zeros((batch_size, length), np.int32)
    lengths = np.zeros((batch_size,), np.int32)
    for i, s in enumerate(seqs):
        s = s[:length]
        tokens[i, : len(s)] = s
        lengths[i] = len(s)
    lab = np.zeros((batch_size,), np.int32)
    lab[:n] = labels
    weights = np.zeros((batch_size,), np.float32)
    weights[:n] = 1.0
    return {"tokens": tokens, "lengths": lengths, "labels": lab, "weights": weights}


def batch_plan(lengths: Sequence[int], batch_size: int, buckets: Sequence[int], *, shuffle: bool, seed: int = 0, epoch: int = 0) -> list[tuple[int, np.ndarray]]:
    """List of (bucket length, example indices) — a pure function of (seed, epoch) for resumability."""
    rng = np.random.default_rng([seed, epoch])
    by_bucket: dict[int, list[int]] = {}
    for i, n in enumerate(lengths):
        by_bucket.setdefault(bucket_for(int(n), buckets), []).append(i)
    plan = []
    for b in sorted(by_bucket):
        idx = np.asarray(by_bucket[b])
        if shuffle:
            idx = rng.permutation(idx)
        plan += [(b, idx[i : i + batch_size]) for i in range(0, len(idx), batch_size)]
    if shuffle:
        plan = [plan[i] for i in rng.permutation(len(plan))]
    return plan


def iterate_batches(seqs: Sequence[np.ndarray], labels: np.ndarray, batch_size: int, buckets: Sequence[int], *,
                    shuffle: bool = False, seed: int = 0, epoch: int = 0, start: int = 0) -> Iterator[dict[str, np.ndarray]]:
    """Yield padded batches following ``batch_plan``; ``start`` skips batches already done (resume)."""
    plan = batch_plan([len(s) for s in seqs], batch_size, buckets, shuffle=shuffle, seed=seed, epoch=epoch)
    for b, idx in plan[start:]:
        batch = pad_batch([seqs[i] for i in idx], labels[idx], batch_size, b)
        batch["index"] = np.full((batch_size,), -1, np.int64)
        batch["index"][: len(idx)] = idx
        yield batch


def num_batches(seqs: Sequence[np.ndarray], batch_size: int, buckets: Sequence[int]) -> int:
    return len(batch_plan([len(s) for s in seqs], batch_size, buckets, shuffle=False))


@dataclasses.dataclass(frozen=True)
class LabelledBatches:
    """Batches of an encoded split for classification (``tokens, lengths, labels, weights``, plus the
    host-only ``index`` of each row, -1 for filler rows)."""

    data: Encoded
    batch_size: int
    buckets: tuple
    shuffle: bool = False
    seed: int = 0

    def __len__(self) -> int:
        return num_batches(self.data.seqs, self.batch_size, self.buckets)

    def epoch(self, epoch: int = 0, start: int = 0) -> Iterator[dict[str, np.ndarray]]:
        return iterate_batches(self.data.seqs, self.data.labels, self.batch_size, self.buckets, shuffle=self.shuffle,
                               seed=self.seed, epoch=epoch, start=start)
