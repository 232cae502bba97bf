"""Seeded, stratified train/validation/test splits (the study used 1600/200/200 and 1620/180/200)."""

from __future__ import annotations

import dataclasses

import numpy as np
from sklearn.model_selection import train_test_split


@dataclasses.dataclass(frozen=True)
class Split:
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def resolve_sizes(n: int, sizes: tuple[float, float, float]) -> tuple[int, int, int]:
    """Sizes may be counts (the study's 1600/200/200) or fractions; counts larger than the data are scaled."""
    if all(0 < s < 1 for s in sizes) or all(isinstance(s, float) and s <= 1 for s in sizes):
        fr = np.asarray(sizes, float) / sum(sizes)
        val, test = int(round(n * fr[1])), int(round(n * fr[2]))
        return n - val - test, val, test
    counts = [int(s) for s in sizes]
    if sum(counts) > n:
        raise ValueError(f"split sizes {counts} need {sum(counts)} examples, data has {n}; pass fractions instead")
    return counts[0], counts[1], counts[2]


def stratified_split(labels: np.ndarray, sizes=(1600, 200, 200), seed: int = 0) -> Split:
    """Indices for a stratified split; examples beyond ``sum(sizes)`` are left out (reported by callers)."""
    labels = np.asarray(labels)
    n_train, n_val, n_test = resolve_sizes(len(labels), tuple(sizes))
    idx = np.arange(len(labels))
    used = n_train + n_val + n_test
    if used < len(labels):
        idx, _ = train_test_split(idx, train_size=used, stratify=labels, random_state=seed)
    rest, test = train_test_split(idx, test_size=n_test, stratify=labels[idx], random_state=seed)
    train, val = train_test_split(rest, test_size=n_val, stratify=labels[rest], random_state=seed + 1)
    return Split(np.sort(train), np.sort(val), np.sort(test))
