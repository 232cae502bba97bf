import numpy as np
import pytest

from jaxsenti.data import stratified_split
from jaxsenti.data.splits import resolve_sizes


@pytest.mark.parametrize("sizes", [(1600, 200, 200), (1620, 180, 200)])
def test_study_splits(dianping, sizes):
    sp = stratified_split(dianping.labels, sizes, seed=0)
    assert (len(sp.train), len(sp.val), len(sp.test)) == sizes
    all_idx = np.concatenate([sp.train, sp.val, sp.test])
    assert len(np.unique(all_idx)) == 2000
    for part in (sp.train, sp.val, sp.test):
        assert abs(dianping.labels[part].mean() - 0.5) < 0.01  # stratified


def test_seeded():
    y = np.array([0, 1] * 50)
    a, b, c = (stratified_split(y, (80, 10, 10), seed=s) for s in (1, 1, 2))
    assert np.array_equal(a.test, b.test) and not np.array_equal(a.test, c.test)


def test_fractions_and_too_large():
    assert resolve_sizes(1000, (0.8, 0.1, 0.1)) == (800, 100, 100)
    with pytest.raises(ValueError, match="need 2100 reviews, the data has 2000"):
        resolve_sizes(2000, (1800, 200, 100))


def test_subset_when_sizes_smaller_than_data():
    y = np.array([0, 1] * 100)
    sp = stratified_split(y, (50, 10, 10), seed=0)
    assert len(np.unique(np.concatenate([sp.train, sp.val, sp.test]))) == 70
