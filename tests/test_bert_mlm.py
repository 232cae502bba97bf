"""BertForMaskedLM: HF layout, export/import parity with transformers' PyTorch BertForMaskedLM.

A small random BERT (2 layers × 64, the real 21128 vocab, init std 0.2 and random LayerNorm/biases so
that mix-ups show) is exported by us and loaded by transformers, and vice versa; MLM logits must agree
to 1e-4 on padded batches.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxsenti.models.bert import BertConfig, BertModel
from jaxsenti.models.bert_mlm import BertForMaskedLM
from jaxsenti.models.hf_bert import CheckpointError, from_pretrained, load_tokenizer
from jaxsenti.models.hf_export import load_mlm, save_pretrained, to_hf_state_dict

torch = pytest.importorskip("torch", reason="torch is the numerical reference")
transformers = pytest.importorskip("transformers")

REPO_ROOT = Path(__file__).resolve().parents[1]
TOKENIZER_DIR = Path(
    os.environ.get("JAXSENTI_BERT_TOKENIZER_DIR", str(REPO_ROOT / "../shared/models/bert-base-chinese-tokenizer"))
).resolve()
pytestmark = pytest.mark.skipif(not (TOKENIZER_DIR / "vocab.txt").is_file(),
                                reason=f"bert-base-chinese tokenizer not found at {TOKENIZER_DIR}")

SENTENCES = ["这家的环境不差，但是菜不怎么好吃。", "好吃！", "服务态度很好，价格也实惠，下次还会再来。"]
ATOL = 1e-4
CFG = BertConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=2, intermediate_size=128,
                 initializer_range=0.2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def _perturb_nnx(model: nnx.Module, seed: int) -> nnx.Module:
    """Random LayerNorm scales/biases and biases (init leaves them 1/0, which would hide swaps)."""
    graphdef, params = nnx.split(model, nnx.Param)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    leaves = [x + 0.1 * jax.random.normal(k, x.shape) if x.ndim == 1 else x for x, k in zip(leaves, keys)]
    return nnx.merge(graphdef, jax.tree.unflatten(tree, leaves))


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(TOKENIZER_DIR)


@pytest.fixture(scope="module")
def batch(tokenizer):
    enc = tokenizer(SENTENCES, padding="max_length", max_length=24, return_tensors="np")
    ids, am = np.asarray(enc["input_ids"]), np.asarray(enc["attention_mask"])
    return {"tokens": ids, "lengths": am.sum(1).astype(np.int32), "mask": am}


@pytest.fixture(scope="module")
def ours():
    return _perturb_nnx(BertForMaskedLM(CFG, rngs=nnx.Rngs(3)), seed=1)


@pytest.fixture(scope="module")
def exported(ours, tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlm_export")
    save_pretrained(ours, folder, tokenizer=TOKENIZER_DIR)
    return folder


def _torch_logits(hf, batch):
    with torch.no_grad():
        return hf(input_ids=torch.tensor(batch["tokens"]), attention_mask=torch.tensor(batch["mask"])).logits.numpy()


def test_layout_matches_hf_and_decoder_is_tied(ours):
    assert ours.bert.pooler is None  # HF's BertForMaskedLM has none (add_pooling_layer=False)
    sd = to_hf_state_dict(ours)
    hf = transformers.BertForMaskedLM(transformers.BertConfig(
        vocab_size=CFG.vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128))
    hf_keys = {k for k in hf.state_dict() if not k.startswith("cls.predictions.decoder.")}
    assert set(sd) == hf_keys
    assert all(tuple(sd[k].shape) == tuple(hf.state_dict()[k].shape) for k in sd)
    # no separate decoder matrix: the only vocab-sized parameters are the embeddings and the output bias
    vocab_sized = [p for p, v in nnx.to_flat_state(nnx.state(ours, nnx.Param)) if CFG.vocab_size in v.get_value().shape]
    assert sorted(map(str, vocab_sized)) == sorted(map(str, [("bert", "embeddings", "word_embeddings", "embedding"),
                                                             ("cls", "bias")]))


def test_transformers_loads_our_export_cleanly_and_matches(exported, ours, batch):
    hf, info = transformers.BertForMaskedLM.from_pretrained(exported, output_loading_info=True)
    assert info["missing_keys"] == set() and info["unexpected_keys"] == set(), info
    assert info["mismatched_keys"] == set() and not info["error_msgs"], info
    hf.eval()
    assert hf.cls.predictions.decoder.weight.data_ptr() == hf.bert.embeddings.word_embeddings.weight.data_ptr()
    ref = _torch_logits(hf, batch)
    full = np.asarray(ours.full_logits(batch["tokens"], batch["lengths"]))
    valid = batch["mask"].astype(bool)
    assert full.dtype == np.float32 and np.abs(ref[valid]).max() > 1.0  # logits are O(1): the tolerance means something
    np.testing.assert_allclose(full[valid], ref[valid], atol=ATOL, rtol=0)
    # the files a user needs are all there, and the config round-trips
    assert {"config.json", "model.safetensors", "vocab.txt"} <= set(os.listdir(exported))
    assert BertConfig.from_hf(exported) == CFG.replace(pooling="cls", dtype="float32")
    assert load_tokenizer(exported).vocab_size == 21128


def test_gather_at_positions_equals_slicing_full_logits(ours, batch):
    full = np.asarray(ours.full_logits(batch["tokens"], batch["lengths"]))
    positions = np.array([[1, 5, 0], [2, 3, 3], [7, 1, 9]], np.int32)
    got = np.asarray(nnx.jit(lambda m, t, l, p: m(t, l, p))(ours, batch["tokens"], batch["lengths"], positions))
    assert got.shape == (3, 3, CFG.vocab_size)
    want = np.take_along_axis(full, positions[..., None], axis=1)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_import_from_transformers_random_init(tmp_path, batch):
    hc = transformers.BertConfig(vocab_size=21128, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=128, initializer_range=0.2)
    torch.manual_seed(0)
    hf = transformers.BertForMaskedLM(hc).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name:
                p.add_(0.1 * torch.randn_like(p))
    hf.save_pretrained(tmp_path / "hf")
    model = load_mlm(tmp_path / "hf")
    assert isinstance(model, BertForMaskedLM)
    ref = _torch_logits(hf, batch)
    valid = batch["mask"].astype(bool)
    np.testing.assert_allclose(np.asarray(model.full_logits(batch["tokens"], batch["lengths"]))[valid], ref[valid],
                               atol=ATOL, rtol=0)
    # an old-style checkpoint that stores the tied decoder (and a pooler, as BertForPreTraining) loads too
    from safetensors.numpy import load_file, save_file

    sd = load_file(tmp_path / "hf" / "model.safetensors")
    sd["cls.predictions.decoder.weight"] = sd["bert.embeddings.word_embeddings.weight"]
    sd["bert.pooler.dense.weight"], sd["bert.pooler.dense.bias"] = np.zeros((64, 64), np.float32), np.zeros(64, np.float32)
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "config.json").write_text((tmp_path / "hf" / "config.json").read_text())
    save_file(sd, tmp_path / "old" / "model.safetensors")
    again = load_mlm(tmp_path / "old")
    np.testing.assert_allclose(np.asarray(again.cls.bias[...]), np.asarray(model.cls.bias[...]))
    # an untied decoder cannot be represented: refuse rather than silently drop it
    sd["cls.predictions.decoder.weight"] = sd["cls.predictions.decoder.weight"] + 1.0
    save_file(sd, tmp_path / "old" / "model.safetensors")
    with pytest.raises(CheckpointError, match="ties the decoder"):
        load_mlm(tmp_path / "old")


def test_round_trip_and_classifier_loads_the_encoder(exported, ours, batch):
    back = load_mlm(exported)
    a = nnx.to_flat_state(nnx.state(ours, nnx.Param))
    b = dict(nnx.to_flat_state(nnx.state(back, nnx.Param)))
    assert len(a) == len(b)
    for path, v in a:
        np.testing.assert_array_equal(np.asarray(v.get_value()), np.asarray(b[path].get_value()), err_msg=str(path))
    # fine-tuning starts from the export: encoder weights identical, cls.* ignored, pooler fresh (HF MLM has none)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        clf = from_pretrained(exported, rngs=nnx.Rngs(0))
    assert any("no pooler weights" in str(x.message) for x in w)
    mask = np.arange(batch["tokens"].shape[1])[None] < batch["lengths"][:, None]
    seq_clf, _ = clf.bert(batch["tokens"], mask)
    np.testing.assert_array_equal(np.asarray(seq_clf), np.asarray(ours.encode(batch["tokens"], batch["lengths"])))


def test_bert_model_export_loads_in_transformers_bert_model(tmp_path, batch):
    enc = _perturb_nnx(BertModel(CFG, rngs=nnx.Rngs(5)), seed=2)
    save_pretrained(enc, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == ["BertModel"]
    hf, info = transformers.BertModel.from_pretrained(tmp_path, output_loading_info=True)
    assert info["missing_keys"] == set() and info["unexpected_keys"] == set(), info
    with torch.no_grad():
        out = hf.eval()(input_ids=torch.tensor(batch["tokens"]), attention_mask=torch.tensor(batch["mask"]))
    seq, pooled = enc(batch["tokens"], batch["mask"])
    np.testing.assert_allclose(np.asarray(pooled), out.pooler_output.numpy(), atol=ATOL, rtol=0)
    with pytest.raises(CheckpointError, match="no MLM head"):
        load_mlm(tmp_path)


def test_bfloat16_compute_keeps_float32_params_and_logits(ours, batch):
    bf = BertForMaskedLM(CFG.replace(dtype="bfloat16"), rngs=nnx.Rngs(3))
    nnx.update(bf, nnx.state(ours, nnx.Param))
    assert all(v.get_value().dtype == jnp.float32 for _, v in nnx.to_flat_state(nnx.state(bf, nnx.Param)))
    positions = np.tile(np.arange(1, 4, dtype=np.int32), (3, 1))
    lo, hi = np.asarray(bf(batch["tokens"], batch["lengths"], positions)), np.asarray(ours(batch["tokens"], batch["lengths"], positions))
    assert lo.dtype == np.float32 and np.isfinite(lo).all()
    # bf16 rounding, not a different function: same top prediction almost everywhere, small relative error
    assert np.mean(lo.argmax(-1) == hi.argmax(-1)) >= 0.75
    assert np.abs(lo - hi).max() < 0.1 * np.abs(hi).max()
