"""Hashed dropout masks: rate, unbiasedness, reproducibility, independence, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxsenti.models.dropout import Dropout, dropout_keep_mask, keep_scale, lowbias32

N = 1 << 20


@pytest.mark.parametrize("rate", [0.1, 0.25, 0.5, 0.9])
def test_drop_fraction_matches_rate(rate):
    keep = np.asarray(dropout_keep_mask(jax.random.key(3), (N,), rate))
    sigma = np.sqrt(rate * (1 - rate) / N)
    assert abs((1 - keep.mean()) - rate) < 5 * sigma


def test_output_is_unbiased_and_values_are_zero_or_scaled():
    drop = Dropout(0.1)
    x = jnp.ones((256, 4096))
    y = np.asarray(drop(x, deterministic=False, rngs=nnx.Rngs(dropout=0)))
    assert set(np.unique(y)) <= {0.0, np.float32(keep_scale(0.1))}
    assert abs(y.mean() - 1.0) < 5 * np.sqrt(0.1 / 0.9 / y.size)


def test_identity_when_deterministic_or_rate_zero():
    x = jax.random.normal(jax.random.key(0), (4, 5))
    assert Dropout(0.5)(x, deterministic=True) is x
    np.testing.assert_array_equal(Dropout(0.0)(x, deterministic=False, rngs=nnx.Rngs(dropout=1)), x)


def test_same_key_same_mask_different_key_independent_mask():
    shape = (64, 128, 32)
    a = np.asarray(dropout_keep_mask(jax.random.key(1), shape, 0.5)).ravel()
    a2 = np.asarray(dropout_keep_mask(jax.random.key(1), shape, 0.5)).ravel()
    b = np.asarray(dropout_keep_mask(jax.random.fold_in(jax.random.key(1), 1), shape, 0.5)).ravel()
    np.testing.assert_array_equal(a, a2)
    n = a.size
    # two independent fair masks agree on half the positions (5 sigma)
    assert abs((a == b).mean() - 0.5) < 5 * 0.5 / np.sqrt(n)


def test_neighbouring_elements_are_uncorrelated():
    m = np.asarray(dropout_keep_mask(jax.random.key(7), (N,), 0.5)).astype(np.float64)
    m -= m.mean()
    for lag in (1, 2, 16, 128, 1024):
        corr = np.dot(m[:-lag], m[lag:]) / np.dot(m, m)
        assert abs(corr) < 5 / np.sqrt(N), lag


def test_seeds_do_not_give_shifted_copies_of_one_stream():
    # with a plain counter+seed the stream of one key could be the other's shifted by a constant
    a = np.asarray(dropout_keep_mask(jax.random.key(11), (N,), 0.5))
    b = np.asarray(dropout_keep_mask(jax.random.key(12), (N,), 0.5))
    for shift in range(1, 64):
        assert abs((a[shift:] == b[:-shift]).mean() - 0.5) < 5 * 0.5 / np.sqrt(N)


def test_lowbias32_is_a_bijection_on_a_sample():
    x = jnp.arange(1 << 18, dtype=jnp.uint32) * jnp.uint32(2654435761)
    assert len(np.unique(np.asarray(lowbias32(x)))) == 1 << 18


def test_gradient_is_mask_times_scale():
    drop = Dropout(0.3)
    x = jnp.ones((32, 64))
    key = jax.random.key(5)
    g = jax.grad(lambda x: jnp.sum(drop(x, deterministic=False, rngs=nnx.Rngs(dropout=key))))(x)
    keep = np.asarray(dropout_keep_mask(nnx.Rngs(dropout=key).dropout(), x.shape, 0.3))
    np.testing.assert_allclose(np.asarray(g), keep * keep_scale(0.3), rtol=1e-6)


def test_bad_rate_and_missing_rngs_raise():
    with pytest.raises(ValueError, match="rate"):
        Dropout(1.0)
    with pytest.raises(ValueError, match="rngs"):
        Dropout(0.5)(jnp.ones(3), deterministic=False)
