"""Tests for BERT's attention kernel choice (BertConfig.attention): XLA vs einsum, "auto", cuDNN guards."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxsenti.models import bert as bert_mod
from jaxsenti.models.bert import BertClassifier, BertConfig, BertSelfAttention, attention_implementation

# head dim 8: every kernel accepts it
TINY = BertConfig(vocab_size=300, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                  max_position_embeddings=64, initializer_range=0.2)
T = 9
LENGTHS = np.array([T, 4, 0, 1, 7], np.int32)  # full, padded, a filler row with no valid key, one token


def attention_pair(a: str, b: str, dtype="float32"):
    """Two BertSelfAttention modules with identical parameters and different kernels."""
    m1 = BertSelfAttention(TINY.replace(attention=a, dtype=dtype), rngs=nnx.Rngs(0))
    m2 = BertSelfAttention(TINY.replace(attention=b, dtype=dtype), rngs=nnx.Rngs(0))
    jax.tree.map(np.testing.assert_array_equal, nnx.state(m1, nnx.Param), nnx.state(m2, nnx.Param))
    return m1, m2


def inputs(dtype=jnp.float32, lengths=LENGTHS):
    x = jax.random.normal(jax.random.key(0), (len(lengths), T, TINY.hidden_size)).astype(dtype)
    mask = jnp.arange(T)[None, :] < jnp.asarray(lengths)[:, None]
    return x, mask, jnp.asarray(lengths)


# ---------------------------------------------------------------- numerics


def test_xla_path_matches_einsum_path_with_padding_and_an_empty_row():
    xla, ein = attention_pair("xla", "einsum")
    x, mask, lengths = inputs()
    out_xla = xla(x, mask, deterministic=True, rngs=None, lengths=lengths)
    out_ein = ein(x, mask, deterministic=True, rngs=None, lengths=lengths)
    assert np.all(np.isfinite(out_xla)) and np.all(np.isfinite(out_ein))
    # every position, padded queries and the length-0 row included (both give that row uniform attention)
    np.testing.assert_allclose(out_xla, out_ein, atol=1e-5, rtol=0)
    # padding is really masked: changing a padded key/value changes no valid query's output
    x2 = x.at[1, 6].set(100.0)
    out2 = xla(x2, mask, deterministic=True, rngs=None, lengths=lengths)
    np.testing.assert_allclose(out2[1, :4], out_xla[1, :4], atol=1e-5, rtol=0)


def test_xla_path_gradients_finite_with_an_empty_row():
    xla, ein = attention_pair("xla", "einsum")
    x, mask, lengths = inputs()

    def loss(module, x):
        return jnp.sum(module(x, mask, deterministic=True, rngs=None, lengths=lengths) ** 2)

    g_xla, g_ein = jax.grad(lambda x: loss(xla, x))(x), jax.grad(lambda x: loss(ein, x))(x)
    assert np.all(np.isfinite(g_xla))
    np.testing.assert_allclose(g_xla, g_ein, atol=1e-4, rtol=1e-4)


def test_xla_matches_einsum_in_bfloat16():
    xla, ein = attention_pair("xla", "einsum", dtype="bfloat16")
    x, mask, lengths = inputs(jnp.bfloat16)
    out_xla = xla(x, mask, deterministic=True, rngs=None, lengths=lengths)
    out_ein = ein(x, mask, deterministic=True, rngs=None, lengths=lengths)
    assert out_xla.dtype == jnp.bfloat16 and np.all(np.isfinite(np.asarray(out_xla, np.float32)))
    np.testing.assert_allclose(np.asarray(out_xla, np.float32), np.asarray(out_ein, np.float32), atol=3e-2)


def test_classifier_logits_agree_across_kernels():
    models = {a: BertClassifier(TINY.replace(attention=a), rngs=nnx.Rngs(1)) for a in ("auto", "xla", "einsum")}
    tokens = np.random.default_rng(0).integers(1, TINY.vocab_size, size=(len(LENGTHS), T), dtype=np.int32)
    logits = {a: np.asarray(m(tokens, LENGTHS)) for a, m in models.items()}
    assert np.all(np.isfinite(logits["auto"]))
    np.testing.assert_allclose(logits["xla"], logits["einsum"], atol=1e-5, rtol=0)
    np.testing.assert_array_equal(logits["auto"], logits["xla"])


# ---------------------------------------------------------------- kernel choice


def test_auto_choice():
    auto, bf16 = TINY, TINY.replace(dtype="bfloat16")
    on_cpu = dict(platform="cpu", has_lengths=True)
    assert attention_implementation(auto, deterministic=True, **on_cpu) == "xla"
    assert attention_implementation(bf16, deterministic=True, **on_cpu) == "xla"
    assert attention_implementation(auto, deterministic=False, **on_cpu) == "einsum"  # dropout on probabilities
    assert attention_implementation(auto.replace(attention_probs_dropout_prob=0.0), deterministic=False,
                                    **on_cpu) == "xla"
    # on a CUDA GPU: cuDNN only for bf16, known right-padding lengths, a head dim it takes, no dropout
    gpu = dict(platform="cuda", deterministic=True)
    assert attention_implementation(bf16, has_lengths=True, **gpu) == "cudnn"
    assert attention_implementation(bf16, has_lengths=False, **gpu) == "xla"  # only a boolean mask
    assert attention_implementation(auto, has_lengths=True, **gpu) == "xla"  # float32
    odd = bf16.replace(hidden_size=36, num_attention_heads=3)  # head dim 12
    assert attention_implementation(odd, has_lengths=True, **gpu) == "xla"
    assert attention_implementation(bf16, has_lengths=True, platform="cuda", deterministic=False) == "einsum"
    # the detected platform here
    here = attention_implementation(auto, deterministic=True, has_lengths=True)
    assert here == "xla"


def test_explicit_choices_and_their_errors():
    assert attention_implementation(TINY.replace(attention="einsum"), deterministic=True, has_lengths=False) == "einsum"
    assert attention_implementation(TINY.replace(attention="xla"), deterministic=True, has_lengths=False) == "xla"
    with pytest.raises(ValueError, match="cannot apply dropout"):
        attention_implementation(TINY.replace(attention="xla"), deterministic=False, has_lengths=True)
    cudnn = TINY.replace(attention="cudnn", dtype="bfloat16", attention_probs_dropout_prob=0.0)
    assert attention_implementation(cudnn, deterministic=False, has_lengths=True, platform="cuda") == "cudnn"
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        attention_implementation(cudnn, deterministic=True, has_lengths=True, platform="cpu")


def test_auto_on_this_platform_calls_xla_then_einsum_when_training(monkeypatch):
    if bert_mod._on_cuda():
        pytest.skip("CUDA present")
    calls = []
    real = jax.nn.dot_product_attention

    def spy(*args, **kwargs):
        calls.append(kwargs.get("implementation"))
        return real(*args, **kwargs)

    monkeypatch.setattr(jax.nn, "dot_product_attention", spy)
    model = BertClassifier(TINY.replace(num_hidden_layers=1), rngs=nnx.Rngs(0))
    tokens = np.ones((2, T), np.int32)
    model(tokens, np.array([T, 3]))
    assert calls == ["xla"]
    model(tokens, np.array([T, 3]), deterministic=False, rngs=nnx.Rngs(dropout=1))
    assert calls == ["xla"]  # training with attention dropout: the einsum path, no dot_product_attention


def test_config_validation_and_hf_mapping():
    assert TINY.attention == "auto"
    with pytest.raises(ValueError, match="attention: must be one of"):
        TINY.replace(attention="flash")
    with pytest.raises(ValueError, match="bfloat16"):
        TINY.replace(attention="cudnn")
    with pytest.raises(ValueError, match="multiple of 8"):
        TINY.replace(attention="cudnn", dtype="bfloat16", hidden_size=36, num_attention_heads=3)
    # not a Hugging Face field: from_hf never reads it (nor needs it), overrides still set it
    hf = {"model_type": "bert", "hidden_size": 32, "num_attention_heads": 4, "attention": "bogus"}
    assert BertConfig.from_hf(hf).attention == "auto"
    assert BertConfig.from_hf(hf, attention="einsum").attention == "einsum"


def test_cudnn_requested_off_gpu_fails_clearly():
    if bert_mod._on_cuda():
        pytest.skip("CUDA present")
    model = BertClassifier(TINY.replace(attention="cudnn", dtype="bfloat16", num_hidden_layers=1), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        model(np.ones((2, T), np.int32), np.array([T, 3]))


# ---------------------------------------------------------------- GPU only


@pytest.mark.gpu
@pytest.mark.skipif(jax.default_backend() != "gpu", reason="needs a CUDA GPU (cuDNN flash attention)")
def test_cudnn_path_matches_xla_on_gpu():
    assert bert_mod._on_cuda()
    cudnn, xla = attention_pair("cudnn", "xla", dtype="bfloat16")
    x, mask, lengths = inputs(jnp.bfloat16)
    out_c = cudnn(x, mask, deterministic=True, rngs=None, lengths=lengths)
    out_x = xla(x, mask, deterministic=True, rngs=None, lengths=lengths)
    out_c32, out_x32 = np.asarray(out_c, np.float32), np.asarray(out_x, np.float32)
    assert np.all(np.isfinite(out_c32))  # the length-0 row too (its key length is raised to 1)
    # valid queries only: the filler row differs by design (key 0 vs uniform), padded queries are unused
    valid = np.asarray(mask)
    np.testing.assert_allclose(out_c32[valid], out_x32[valid], atol=3e-2)
    # "auto" takes the cuDNN path here when it is told the lengths
    assert attention_implementation(TINY.replace(dtype="bfloat16"), deterministic=True, has_lengths=True) == "cudnn"
