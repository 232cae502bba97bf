"""Hugging Face checkpoint loading: numerical parity with transformers' PyTorch BERT, and clear errors.

Needs torch (the reference) and the genuine bert-base-chinese tokenizer + config, found through
``JAXSENTI_BERT_TOKENIZER_DIR`` (default ``<repo>/../shared/models/bert-base-chinese-tokenizer``).
The reference model is a small randomly initialised BERT (2 layers, hidden 128) with the real 21128 vocab,
initialised with a large std so that every numerical detail (erf GELU, LayerNorm eps, mask) shows up.
"""

from __future__ import annotations

import os
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from flax import nnx

from jaxsenti.models.bert import BertClassifier, BertConfig, BertModel
from jaxsenti.models import hf_bert
from jaxsenti.models.hf_bert import (
    CheckpointError,
    convert_hf_to_nnx,
    from_pretrained,
    load_hf_checkpoint,
    load_tokenizer,
)

torch = pytest.importorskip("torch", reason="torch is the numerical reference for the parity tests")
transformers = pytest.importorskip("transformers")

REPO_ROOT = Path(__file__).resolve().parents[1]
TOKENIZER_DIR = Path(
    os.environ.get("JAXSENTI_BERT_TOKENIZER_DIR", str(REPO_ROOT / "../shared/models/bert-base-chinese-tokenizer"))
).resolve()

pytestmark = pytest.mark.skipif(
    not (TOKENIZER_DIR / "config.json").is_file() or not (TOKENIZER_DIR / "vocab.txt").is_file(),
    reason=f"bert-base-chinese tokenizer/config not found at {TOKENIZER_DIR} (set JAXSENTI_BERT_TOKENIZER_DIR)",
)

SENTENCES = [
    "这家的环境不差，但是菜不怎么好吃。",
    "好吃！",
    "服务态度很好，价格也实惠，下次还会再来，推荐大家试试他们家的招牌菜。",
    "一般般吧",
]
ATOL = 1e-4


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(TOKENIZER_DIR)


@pytest.fixture(scope="module")
def hf_ckpts(tmp_path_factory):
    """A random small HF BertForSequenceClassification saved three ways: safetensors, .bin, bare BertModel."""
    hc = transformers.BertConfig.from_pretrained(
        TOKENIZER_DIR, num_hidden_layers=2, hidden_size=128, num_attention_heads=2, intermediate_size=256,
        num_labels=1,
        # 10x BERT's 0.02 so pre-activations are O(1): with std 0.02 they are tiny and e.g. a tanh-approximate
        # GELU would pass the 1e-4 tolerance unnoticed
        initializer_range=0.2,
    )
    assert hc.vocab_size == 21128
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(hc).eval()
    # random LayerNorm affine and biases too (HF initialises them to 1/0, which would hide mix-ups)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name:
                p.add_(0.1 * torch.randn_like(p))
    root = tmp_path_factory.mktemp("hf_bert")
    st = root / "safetensors"
    model.save_pretrained(st)
    assert (st / "model.safetensors").is_file()
    # transformers 5 always writes safetensors (safe_serialization=False is gone): write the .bin by hand
    pt = root / "bin"
    pt.mkdir()
    shutil.copy(st / "config.json", pt / "config.json")
    torch.save(model.state_dict(), pt / "pytorch_model.bin")
    bare = root / "bare"
    model.bert.save_pretrained(bare)
    return {"safetensors": st, "bin": pt, "bare": bare, "model": model}


@pytest.fixture(scope="module")
def encoded(tokenizer):
    enc = tokenizer(SENTENCES, padding="max_length", max_length=40, truncation=True, return_tensors="np")
    return {k: np.asarray(v) for k, v in enc.items()}


def _torch_outputs(hf_model, enc):
    with torch.no_grad():
        out = hf_model.bert(
            input_ids=torch.tensor(enc["input_ids"]),
            attention_mask=torch.tensor(enc["attention_mask"]),
            token_type_ids=torch.tensor(enc["token_type_ids"]),
        )
    return out.last_hidden_state.numpy(), out.pooler_output.numpy()


def test_tokenizer_is_the_real_bert_base_chinese(tokenizer, encoded):
    assert tokenizer.vocab_size == 21128
    ids = encoded["input_ids"]
    lengths = encoded["attention_mask"].sum(1)
    assert ids.shape == (4, 40) and len(set(lengths.tolist())) == 4  # four different lengths
    assert (ids[:, 0] == tokenizer.cls_token_id).all()
    assert ids[1, : lengths[1]].tolist() == [101, 1962, 1391, 8013, 102]  # [CLS] 好 吃 ！ [SEP]
    assert (ids[np.arange(4), lengths - 1] == tokenizer.sep_token_id).all()
    assert (ids[encoded["attention_mask"] == 0] == 0).all()


@pytest.mark.parametrize("fmt", ["safetensors", "bin", "bare"])
def test_parity_with_pytorch_bert(hf_ckpts, encoded, fmt):
    cfg, weights = load_hf_checkpoint(hf_ckpts[fmt])
    assert (cfg.vocab_size, cfg.hidden_size, cfg.num_hidden_layers) == (21128, 128, 2)
    assert all(isinstance(v, np.ndarray) for v in weights.values())
    assert any(k.startswith("bert.") for k in weights) == (fmt != "bare")
    model = convert_hf_to_nnx(weights, BertModel(cfg, rngs=nnx.Rngs(0)))
    ref_seq, ref_pooled = _torch_outputs(hf_ckpts["model"], encoded)
    seq, pooled = model(encoded["input_ids"], encoded["attention_mask"], encoded["token_type_ids"])
    valid = encoded["attention_mask"].astype(bool)
    np.testing.assert_allclose(np.asarray(seq)[valid], ref_seq[valid], atol=ATOL, rtol=0)
    np.testing.assert_allclose(np.asarray(pooled), ref_pooled, atol=ATOL, rtol=0)
    # and under jit
    seq_j, pooled_j = nnx.jit(lambda m, a, b: m(a, b))(model, encoded["input_ids"], encoded["attention_mask"])
    np.testing.assert_allclose(np.asarray(pooled_j), ref_pooled, atol=ATOL, rtol=0)


def test_parity_sentence_pairs_use_token_types(hf_ckpts, tokenizer):
    enc = tokenizer(SENTENCES[:2], SENTENCES[2:], padding=True, return_tensors="np")
    enc = {k: np.asarray(v) for k, v in enc.items()}
    assert enc["token_type_ids"].max() == 1
    cfg, weights = load_hf_checkpoint(hf_ckpts["safetensors"])
    assert cfg == BertConfig.from_hf(hf_ckpts["safetensors"])
    model = convert_hf_to_nnx(weights, BertModel(cfg, rngs=nnx.Rngs(0)))
    ref_seq, ref_pooled = _torch_outputs(hf_ckpts["model"], enc)
    seq, pooled = model(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
    valid = enc["attention_mask"].astype(bool)
    np.testing.assert_allclose(np.asarray(seq)[valid], ref_seq[valid], atol=ATOL, rtol=0)
    np.testing.assert_allclose(np.asarray(pooled), ref_pooled, atol=ATOL, rtol=0)


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_from_pretrained_classifier(hf_ckpts, encoded, fmt):
    clf = from_pretrained(hf_ckpts[fmt], rngs=nnx.Rngs(7))
    assert isinstance(clf, BertClassifier) and clf.cfg.pooling == "cls"
    lengths = encoded["attention_mask"].sum(1).astype(np.int32)
    logits = np.asarray(clf(encoded["input_ids"], lengths))
    assert logits.shape == (4,) and logits.dtype == np.float32
    # the head is fresh, the encoder pretrained: logits = HF pooled output @ our head
    _, ref_pooled = _torch_outputs(hf_ckpts["model"], encoded)
    k, b = np.asarray(clf.classifier.kernel[...]), np.asarray(clf.classifier.bias[...])
    np.testing.assert_allclose(logits, (ref_pooled @ k + b)[:, 0], atol=ATOL, rtol=0)
    hf_head = hf_ckpts["model"].classifier.weight.detach().numpy().T
    assert not np.allclose(k, hf_head)
    # config overrides: pooling, dtype, fewer layers (the first layer of the checkpoint is kept)
    one = from_pretrained(hf_ckpts[fmt], rngs=nnx.Rngs(7), num_hidden_layers=1, pooling="mean", dtype="bfloat16")
    assert one.cfg.num_hidden_layers == 1 and len(one.bert.layers) == 1 and one.cfg.dtype == "bfloat16"
    np.testing.assert_array_equal(
        np.asarray(one.bert.layers[0].intermediate.kernel[...]),
        hf_ckpts["model"].bert.encoder.layer[0].intermediate.dense.weight.detach().numpy().T,
    )
    assert np.all(np.isfinite(np.asarray(one(encoded["input_ids"], lengths))))
    with pytest.raises(TypeError, match="no_such_field"):
        from_pretrained(hf_ckpts[fmt], rngs=nnx.Rngs(0), no_such_field=1)


def test_tf_style_gamma_beta_names_and_ignored_heads(hf_ckpts, encoded):
    cfg, weights = load_hf_checkpoint(hf_ckpts["safetensors"])
    renamed = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
               for k, v in weights.items()}
    assert any(k.endswith("gamma") for k in renamed)
    rng = np.random.default_rng(0)
    renamed["cls.predictions.bias"] = rng.normal(size=21128).astype(np.float32)  # MLM head: ignored
    renamed["cls.seq_relationship.weight"] = rng.normal(size=(2, 128)).astype(np.float32)  # NSP head: ignored
    renamed["bert.embeddings.position_ids"] = np.arange(512)[None]  # old buffer: ignored
    model = convert_hf_to_nnx(renamed, BertModel(cfg, rngs=nnx.Rngs(0)))
    _, ref_pooled = _torch_outputs(hf_ckpts["model"], encoded)
    _, pooled = model(encoded["input_ids"], encoded["attention_mask"])
    np.testing.assert_allclose(np.asarray(pooled), ref_pooled, atol=ATOL, rtol=0)


# ---------------------------------------------------------------- errors


def test_missing_weights_file_is_a_clear_error(hf_ckpts, tmp_path):
    shutil.copy(hf_ckpts["safetensors"] / "config.json", tmp_path / "config.json")
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors.*pytorch_model\.bin"):
        from_pretrained(tmp_path, rngs=nnx.Rngs(0))
    (tmp_path / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_hf_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_hf_checkpoint(tmp_path / "nope")


def test_shape_mismatch_names_the_key(hf_ckpts):
    cfg, weights = load_hf_checkpoint(hf_ckpts["safetensors"])
    bad = dict(weights)
    bad["bert.encoder.layer.1.intermediate.dense.weight"] = bad["bert.encoder.layer.1.intermediate.dense.weight"][:200]
    with pytest.raises(CheckpointError, match=r"encoder\.layer\.1\.intermediate\.dense\.weight.*\(200, 128\).*\(256, 128\)"):
        convert_hf_to_nnx(bad, BertModel(cfg, rngs=nnx.Rngs(0)))
    # a config override that changes shapes is reported the same way
    with pytest.raises(CheckpointError, match="shape mismatch"):
        from_pretrained(hf_ckpts["safetensors"], rngs=nnx.Rngs(0), intermediate_size=512)


def test_missing_and_unexpected_keys(hf_ckpts):
    cfg, weights = load_hf_checkpoint(hf_ckpts["safetensors"])
    missing = {k: v for k, v in weights.items() if "layer.0.attention.self.key" not in k}
    with pytest.raises(CheckpointError, match=r"missing.*encoder\.layer\.0\.attention\.self\.key"):
        convert_hf_to_nnx(missing, BertModel(cfg, rngs=nnx.Rngs(0)))
    extra = dict(weights)
    extra["bert.encoder.layer.0.attention.self.rel_pos.weight"] = np.zeros((3, 3), np.float32)
    with pytest.raises(CheckpointError, match="unexpected.*rel_pos"):
        convert_hf_to_nnx(extra, BertModel(cfg, rngs=nnx.Rngs(0)))
    convert_hf_to_nnx(extra, BertModel(cfg, rngs=nnx.Rngs(0)), strict=False)
    # BertForMaskedLM checkpoints carry no pooler: warn and keep the fresh pooler
    no_pooler = {k: v for k, v in weights.items() if "pooler" not in k}
    m = BertModel(cfg, rngs=nnx.Rngs(0))
    fresh = np.asarray(m.pooler.dense.kernel[...]).copy()
    with pytest.warns(UserWarning, match="pooler"):
        convert_hf_to_nnx(no_pooler, m)
    np.testing.assert_array_equal(np.asarray(m.pooler.dense.kernel[...]), fresh)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        convert_hf_to_nnx(weights, BertModel(cfg, rngs=nnx.Rngs(0)))


def test_bin_without_torch_says_how_to_fix(hf_ckpts, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    with pytest.raises(ImportError, match=r"pytorch_model\.bin.*install torch.*safetensors"):
        load_hf_checkpoint(hf_ckpts["bin"])


def test_unreachable_hub_id_is_a_clear_error(monkeypatch):
    import huggingface_hub

    calls = []

    def offline(repo_id, **kw):
        calls.append((repo_id, kw.get("allow_patterns")))
        raise huggingface_hub.errors.LocalEntryNotFoundError("no network and not in the local cache")

    # never touch the real hub from a test (it would download ~400 MB when online)
    monkeypatch.setattr(hf_bert, "snapshot_download", offline)
    with pytest.raises(OSError, match=r"can't reach .*bert-base-chinese.*local folder"):
        from_pretrained("bert-base-chinese", rngs=nnx.Rngs(0))
    assert calls and calls[0][0] == "bert-base-chinese"
    assert "config.json" in calls[0][1] and not any("tf_model" in p or "flax" in p for p in calls[0][1])
    with pytest.raises(OSError, match="can't reach"):
        load_tokenizer("google-bert/bert-base-chinese")


def test_hub_id_resolves_through_snapshot_download(hf_ckpts, monkeypatch):

    monkeypatch.setattr(hf_bert, "snapshot_download", lambda repo_id, **kw: str(hf_ckpts["safetensors"]))
    clf = from_pretrained("someone/tiny-bert", rngs=nnx.Rngs(0))
    assert clf.cfg.hidden_size == 128
