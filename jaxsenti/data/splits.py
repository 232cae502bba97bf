"""Seeded, stratified train/validation/test splits (the study used 1600/200/200 and 1620/180/200)."""

from __future__ import annotations

import dataclasses

import numpy as np
from sklearn.model_selection import train_test_split

from jaxsenti.data.csv_reader import DataError


@dataclasses.dataclass(frozen=True)
class Split:
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def is_fractions(sizes) -> bool:
    """Whether split sizes are fractions of the data (0.8/0.1/0.1) rather than counts (1600/200/200)."""
    return all(0 < s < 1 for s in sizes) or all(isinstance(s, float) and s <= 1 for s in sizes)


def resolve_sizes(n: int, sizes: tuple[float, float, float]) -> tuple[int, int, int]:
    """Sizes may be counts (the study's 1600/200/200) or fractions; counts larger than the data are an error."""
    if is_fractions(sizes):
        fr = np.asarray(sizes, float) / sum(sizes)
        val, test = int(round(n * fr[1])), int(round(n * fr[2]))
        return n - val - test, val, test
    counts = [int(s) for s in sizes]
    if sum(counts) > n:
        raise DataError(f"split sizes {counts} need {sum(counts)} reviews, the data has {n}; pass fractions "
                        f"instead, e.g. --split 0.8/0.1/0.1")
    return counts[0], counts[1], counts[2]


def split_text(sizes) -> str:
    """``1600/200/200`` or ``0.8/0.1/0.1``, as the --split flag takes it."""
    return "/".join(f"{s:g}" if isinstance(s, float) else str(s) for s in sizes)


def unused_note(n: int, sizes, what: str = "split") -> str | None:
    """One line saying how many of ``n`` reviews a split of counts leaves out of every part (None: it uses all)."""
    used = sum(resolve_sizes(n, tuple(sizes)))
    if used >= n:
        return None
    return (f"{what} {split_text(sizes)} uses {used} of the {n} reviews: {n - used} are in no part (not trained, "
            f"validated or tested on); pass fractions (e.g. --split 0.8/0.1/0.1) to use them all")


def check_splittable(labels: np.ndarray, sizes, source: str = "the data") -> tuple[int, int, int]:
    """The split sizes, after checking that both classes are there and every part can hold both.

    A stratified split needs at least one review of each class in each part, so each part needs
    two reviews and each class three. Anything less is a clear error naming ``source`` and the
    counts, instead of meaningless metrics or an exception deep inside scikit-learn.
    """
    labels = np.asarray(labels)
    counts = {int(k): int(v) for k, v in zip(*np.unique(labels, return_counts=True))}
    if len(counts) < 2:
        only = next(iter(counts), None)
        raise DataError(f"{source}: every review has label {only} ({len(labels)} reviews); sentiment training and "
                        "the baselines need both classes, 0 and 1")
    n_train, n_val, n_test = resolve_sizes(len(labels), tuple(sizes))
    parts = {"train": n_train, "validation": n_val, "test": n_test}
    small = {k: v for k, v in parts.items() if v < 2}
    rare = {k: v for k, v in counts.items() if v < 3}
    if small or rare:
        what = []
        if small:
            what.append("split parts " + ", ".join(f"{k} {v}" for k, v in small.items()) + " (need >= 2 each)")
        if rare:
            what.append("label counts " + ", ".join(f"{k}: {v}" for k, v in rare.items()) + " (need >= 3 each)")
        raise DataError(f"{source}: too few reviews to split {len(labels)} into train/validation/test "
                        f"{n_train}/{n_val}/{n_test} with both classes in each part: {'; '.join(what)}")
    return n_train, n_val, n_test


def stratified_split(labels: np.ndarray, sizes=(1600, 200, 200), seed: int = 0, *, source: str = "the data") -> Split:
    """Indices for a stratified split; examples beyond ``sum(sizes)`` are left out (reported by callers)."""
    labels = np.asarray(labels)
    n_train, n_val, n_test = check_splittable(labels, sizes, source)
    idx = np.arange(len(labels))
    used = n_train + n_val + n_test
    if used < len(labels):
        idx, _ = train_test_split(idx, train_size=used, stratify=labels, random_state=seed)
    rest, test = train_test_split(idx, test_size=n_test, stratify=labels[idx], random_state=seed)
    train, val = train_test_split(rest, test_size=n_val, stratify=labels[rest], random_state=seed + 1)
    return Split(np.sort(train), np.sort(val), np.sort(test))
