"""`jaxsenti pretrain bert` end to end on a tiny corpus: export, exact resume, fine-tuning from it, the study row."""

import dataclasses
import json

import jax
import numpy as np
import pytest

from jaxsenti import config as config_lib
from jaxsenti.cli import main
from jaxsenti.pretrain import FinetuneTexts, build_corpus, find_or_pretrain, pretrain, pretrained_key

TINY_MLM = '''"""Tiny MLM pretraining for tests.

    jaxsenti pretrain bert --config THIS --corpus corpus.txt

Expected: seconds.
"""
from jaxsenti.config import CorpusConfig, OptimConfig, PretrainConfig
from jaxsenti.models.bert import BertConfig


def get_config():
    return PretrainConfig(name="tiny_mlm",
                          model=BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                           max_position_embeddings=64),
                          corpus=CorpusConfig(sources=((CORPUS, None),), shopping=False, heldout_fraction=0.1),
                          optim=OptimConfig(name="adamw", lr=3e-3, schedule="linear", warmup_ratio=0.1),
                          batch_size=8, eval_batch_size=16, epochs=2, max_len=32, checkpoint_every=0)
'''

TINY_BERT = '''"""Tiny BERT fine-tuning for tests.

    jaxsenti train bert --config THIS --pretrained DIR

Expected: seconds.
"""
from jaxsenti.config import DataConfig, OptimConfig, TrainConfig
from jaxsenti.models.bert import BertConfig


def get_config():
    return TrainConfig(name="tiny_bert_mlm",
                       model=BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                        max_position_embeddings=64),
                       data=DataConfig(split=(0.6, 0.2, 0.2)),
                       optim=OptimConfig(name="adamw", lr=1e-3, schedule="linear", warmup_ratio=0.1),
                       batch_size=8, eval_batch_size=16, epochs=1, patience=0, max_len=32, buckets=(16, 32))
'''


@pytest.fixture
def mlm_config(tmp_path, corpus_txt):
    p = tmp_path / "tiny_mlm.py"
    p.write_text(TINY_MLM.replace("CORPUS", repr(str(corpus_txt))), encoding="utf-8")
    return p


def test_pretrain_command_exports_a_hugging_face_checkpoint(mlm_config, tmp_path, capsys):
    out = tmp_path / "mlm"
    assert main(["pretrain", "bert", "--config", str(mlm_config), "--out", str(out), "--quiet"]) == 0
    assert "held-out loss" in capsys.readouterr().out
    for f in ("config.json", "model.safetensors", "tokenizer.json", "pretraining.json", "history.json", "pretraining_curves.png"):
        assert (out / f).is_file(), f
    info = json.loads((out / "pretraining.json").read_text())
    assert info["tokens_seen"] > 0 and info["epochs_run"] == 2 and info["corpus"]["texts"] > 100 and info["key"]
    transformers = pytest.importorskip("transformers")
    model, loading = transformers.BertForMaskedLM.from_pretrained(out, output_loading_info=True)
    assert not loading["missing_keys"] and not loading["unexpected_keys"] and not loading["mismatched_keys"]
    assert model.config.vocab_size == 21128  # the compact training vocabulary was expanded back


def test_pretraining_resumes_exactly(mlm_config, tmp_path):
    cfg = config_lib.load_config(mlm_config)
    full = pretrain(cfg, tmp_path / "full", progress=False)
    part = pretrain(cfg, tmp_path / "resumed", progress=False, stop_after_steps=5)
    assert part.interrupted
    resumed = pretrain(cfg, tmp_path / "resumed", resume=True, progress=False)
    assert [h["train_loss"] for h in resumed.history] == pytest.approx([h["train_loss"] for h in full.history], rel=1e-6)
    a = json.loads((tmp_path / "full" / "history.json").read_text())
    b = json.loads((tmp_path / "resumed" / "history.json").read_text())
    assert [h["val_loss"] for h in a] == pytest.approx([h["val_loss"] for h in b], rel=1e-6)
    from safetensors.numpy import load_file

    wa, wb = load_file(tmp_path / "full" / "model.safetensors"), load_file(tmp_path / "resumed" / "model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        np.testing.assert_allclose(wa[k], wb[k], rtol=1e-5, atol=1e-6)


def test_resume_with_another_config_is_refused_before_touching_the_folder(mlm_config, tmp_path):
    cfg = config_lib.load_config(mlm_config)
    pretrain(cfg, tmp_path / "run", progress=False, stop_after_steps=3)
    before = sorted(p.name for p in (tmp_path / "run").iterdir())
    other = config_lib.apply_overrides(cfg, ["model.hidden_size=64"])
    with pytest.raises(config_lib.ConfigError, match="model.hidden_size: 32 -> 64"):
        pretrain(other, tmp_path / "run", resume=True, progress=False)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == before


def test_fine_tuning_starts_from_the_pretrained_folder(mlm_config, tmp_path, tiny_csv, capsys):
    out = tmp_path / "mlm"
    assert main(["pretrain", "bert", "--config", str(mlm_config), "--out", str(out), "--quiet"]) == 0
    ft = tmp_path / "tiny_bert.py"
    ft.write_text(TINY_BERT, encoding="utf-8")
    model = tmp_path / "model"
    assert main(["train", "bert", "--config", str(ft), "--pretrained", str(out), "--data", str(tiny_csv), "--out",
                 str(model), "--quiet"]) == 0
    saved = json.loads((model / "config.json").read_text())
    assert saved["pretrained"] == str(out) and saved["model"]["hidden_size"] == 32
    from jaxsenti.models.hf_bert import from_pretrained
    from jaxsenti.pipeline import Predictor

    pretrained = from_pretrained(out, rngs=__import__("flax").nnx.Rngs(0))
    emb0 = np.asarray(pretrained.bert.embeddings.word_embeddings.embedding.get_value())
    tuned = Predictor(model).params["bert"]["embeddings"]["word_embeddings"]["embedding"]
    assert np.abs(np.asarray(jax.device_get(tuned.get_value() if hasattr(tuned, "get_value") else tuned)) - emb0).max() < 0.05


def test_the_corpus_never_holds_validation_or_test_text(tiny_csv, dianping):
    from jaxsenti.data import load_reviews

    reviews = load_reviews(tiny_csv)
    ft = FinetuneTexts.of(reviews, (0.6, 0.2, 0.2), seeds=3, name=str(tiny_csv))
    cfg = config_lib.CorpusConfig(sources=(), shopping=False, finetune_train=True)
    corpus = build_corpus(cfg, finetune=ft)
    held = set(ft.exclude["val"]) | set(ft.exclude["test"])
    assert held and not held & set(corpus.texts) and set(corpus.texts) <= set(reviews.texts)


def test_study_reuses_a_matching_pretrained_folder_and_pretrains_otherwise(mlm_config, tmp_path, tiny_csv):
    from jaxsenti.data import load_reviews

    cfg = config_lib.load_config(mlm_config)
    ft = FinetuneTexts.of(load_reviews(tiny_csv), (0.6, 0.2, 0.2), seeds=5, name=str(tiny_csv))
    folder, info, origin = find_or_pretrain(cfg, ft, time_budget_s=5, progress=False)
    assert origin.startswith("pretrained now") and info["key"] == pretrained_key(cfg, ft)
    again, _, origin2 = find_or_pretrain(cfg, ft, time_budget_s=5, progress=False)
    assert again == folder and origin2 == "cached"
    other = FinetuneTexts.of(load_reviews(tiny_csv), (0.6, 0.2, 0.2), seeds=2, name=str(tiny_csv))
    assert pretrained_key(cfg, other) != info["key"]  # other fine-tuning splits: another key
    assert pretrained_key(config_lib.apply_overrides(cfg, ["model.hidden_size=64"]), ft) != info["key"]
    assert pretrained_key(config_lib.apply_overrides(cfg, ["time_budget_s=99", "log_every=3"]), ft) == info["key"]


def test_study_shows_the_pretrained_row_with_how_it_was_pretrained(mlm_config, tmp_path, tiny_csv):
    ft = tmp_path / "tiny_bert.py"
    ft.write_text(TINY_BERT, encoding="utf-8")
    out = tmp_path / "study"
    argv = ["study", "--data", str(tiny_csv), "--out", str(out), "--split", "0.6/0.2/0.2", "--models", "bert,bert_pretrained",
            "--config", f"bert={ft}", "--config", f"bert_pretrained={ft}", "--pretrain-config", f"bert={mlm_config}",
            "--pretrain-budget", "10", "--neural-seeds", "1", "--no-eda", "--quiet"]
    assert main(argv) == 0
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "| bert_pretrained |" in report and "| bert |" in report
    assert "fine-tuned from bert pretraining done by this project (pretrained now (budget 10 s))" in report
    res = json.loads((out / "results.json").read_text(encoding="utf-8"))
    p = res["models"]["bert_pretrained"]["pretraining"]
    assert p["info"]["tokens_seen"] > 0 and p["info"]["corpus"]["texts"] > 100
    assert "bert_pretrained" in res["figures"]["confusion"]


TINY_LM = '''"""Tiny LSTM LM pretraining for tests.

    jaxsenti pretrain lstm --config THIS

Expected: seconds.
"""
from jaxsenti.config import CorpusConfig, OptimConfig, PretrainConfig
from jaxsenti.models.lstm_lm import LSTMLMConfig
from jaxsenti.tasks.language_model import LMTaskConfig


def get_config():
    return PretrainConfig(name="tiny_lm", model=LSTMLMConfig(embed_dim=8, hidden_dim=8, num_layers=1),
                          task=LMTaskConfig(min_freq=1, num_sampled=16, buckets=(8, 16)),
                          corpus=CorpusConfig(sources=((CORPUS, None),), shopping=False, heldout_fraction=0.1),
                          optim=OptimConfig(name="adam", lr=1e-2), batch_size=16, eval_batch_size=32, epochs=2,
                          max_len=16, checkpoint_every=0)
'''


def test_lstm_pretraining_then_fine_tuning_copies_the_shared_word_vectors(corpus_txt, tmp_path, tiny_csv, capsys):
    cfg = tmp_path / "tiny_lm.py"
    cfg.write_text(TINY_LM.replace("CORPUS", repr(str(corpus_txt))), encoding="utf-8")
    lm = tmp_path / "lm"
    assert main(["pretrain", "lstm", "--config", str(cfg), "--out", str(lm), "--quiet"]) == 0
    for f in ("config.json", "vocab.json", "params.npz", "pretraining.json"):
        assert (lm / f).is_file(), f
    capsys.readouterr()
    ft = tmp_path / "tiny_lstm.py"
    ft.write_text(TINY_LSTM_FT, encoding="utf-8")
    out = tmp_path / "model"
    assert main(["train", "lstm", "--config", str(ft), "--pretrained", str(lm), "--data", str(tiny_csv), "--out", str(out),
                 "--quiet"]) == 0
    assert "word vectors and 1 LSTM layer(s) from the pretrained LM" in capsys.readouterr().err
    bad = tmp_path / "bad.py"
    bad.write_text(TINY_LSTM_FT.replace("hidden_dim=8", "hidden_dim=12"), encoding="utf-8")
    assert main(["train", "lstm", "--config", str(bad), "--pretrained", str(lm), "--data", str(tiny_csv), "--out",
                 str(tmp_path / "m2"), "--quiet"]) == 2
    assert "hidden_dim" in capsys.readouterr().err


TINY_LSTM_FT = '''"""Tiny LSTM fine-tuning from a tiny LM.

    jaxsenti train lstm --config THIS --pretrained DIR

Expected: seconds.
"""
from jaxsenti.config import DataConfig, OptimConfig, TrainConfig
from jaxsenti.models.lstm import LSTMConfig


def get_config():
    return TrainConfig(name="tiny_lstm_lm", model=LSTMConfig(embed_dim=8, hidden_dim=8, num_layers=1, dropout=0.0),
                       data=DataConfig(split=(0.6, 0.2, 0.2)), optim=OptimConfig(name="adam", lr=1e-2),
                       batch_size=8, eval_batch_size=16, epochs=1, patience=0, max_len=32, buckets=(8, 32))
'''


@pytest.mark.parametrize("model", ["lstm", "bert"])
def test_the_shipped_checkpoint_fits_the_default_study_and_loads(model, dianping_path):
    """The study's *_pretrained rows use the package's checkpoint on dianping (seeds up to 5), and only there."""
    from jaxsenti import registry
    from jaxsenti.data import load_reviews
    from jaxsenti.pretrain import find_pretrained, packaged_pretrained_dir

    spec = registry.get(model)
    pcfg = config_lib.load_config(spec.pretrain_config)
    folder = packaged_pretrained_dir(pcfg.name)
    assert sum(p.stat().st_size for p in folder.iterdir()) <= 16e6  # weights, vocabulary and corpus_keys.npy (0.4 MB)
    reviews = load_reviews(dianping_path)
    split = config_lib.load_config(spec.study_pretrained_here_config).data.split
    found = find_pretrained(pcfg, FinetuneTexts.of(reviews, split, 5, str(dianping_path)))
    assert found is not None and found[0] == folder and found[2] == "shipped with the package"
    info = found[1]
    assert info["corpus"]["texts"] > 50_000 and info["tokens_seen"] > 1e6
    assert info["corpus"]["sources"][0]["filtered"] == {"cat=酒店": 10000}  # every hotel row left out
    assert find_pretrained(pcfg, FinetuneTexts.of(reviews, split, 6, str(dianping_path))) is None  # a 6th test split
    spec.check_pretrained(str(folder))
    # Fine-tuning starts from it exactly as the study's row does: its encoder, its weights, one forward pass.
    from jaxsenti.pipeline import make_model
    from jaxsenti.training.batching import pad_batch

    cfg = dataclasses.replace(config_lib.load_config(spec.study_pretrained_here_config), pretrained=str(folder))
    texts = reviews.texts[:16]
    encoder = spec.encoder.fit(cfg.encoder, texts, None, cfg.max_len, cfg.pretrained)
    model, full = make_model(cfg, encoder, seed=0)
    batch = pad_batch(encoder.encode(texts), np.zeros(len(texts)), len(texts), cfg.max_len)
    assert np.isfinite(np.asarray(model(batch["tokens"], batch["lengths"]))).all()
