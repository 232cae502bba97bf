"""BERT through the whole pipeline: a saved Hugging Face checkpoint → `jaxsenti train bert` → predict."""

import json
import os
import shutil
from pathlib import Path

import pytest

from jaxsenti.cli import main

TOKENIZER_DIR = Path(os.environ.get("JAXSENTI_BERT_TOKENIZER_DIR", Path(__file__).parents[2] / "shared" / "models" / "bert-base-chinese-tokenizer"))

TINY_BERT = '''"""Tiny BERT for tests.

    jaxsenti train bert --config THIS --pretrained DIR

Expected: runs in seconds.
"""
from jaxsenti.config import DataConfig, OptimConfig, TrainConfig
from jaxsenti.data.encoders import WordPieceConfig
from jaxsenti.models.bert import BertConfig


def get_config():
    return TrainConfig(name="tiny_bert",
                       model=BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                        max_position_embeddings=64),
                       data=DataConfig(split=(0.6, 0.2, 0.2)),
                       optim=OptimConfig(name="adamw", lr=1e-3, schedule="linear", warmup_ratio=0.1, weight_decay=0.01),
                       batch_size=8, eval_batch_size=16, epochs=1, patience=0, max_len=32, buckets=(16, 32),
                       encoder=WordPieceConfig(tokenizer=TOKENIZER))
'''


@pytest.fixture(scope="module")
def tiny_hf_checkpoint(tmp_path_factory):
    if not TOKENIZER_DIR.is_dir():
        pytest.skip(f"{TOKENIZER_DIR} missing; set JAXSENTI_BERT_TOKENIZER_DIR")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")
    cfg = transformers.BertConfig.from_pretrained(TOKENIZER_DIR, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                                  intermediate_size=64, max_position_embeddings=64)
    out = tmp_path_factory.mktemp("hf_tiny")
    transformers.BertForSequenceClassification(cfg).save_pretrained(out)
    for f in ("vocab.txt", "tokenizer.json", "tokenizer_config.json"):
        if (TOKENIZER_DIR / f).exists():
            shutil.copy(TOKENIZER_DIR / f, out / f)
    return out


def _config(tmp_path):
    p = tmp_path / "tiny_bert.py"
    p.write_text(TINY_BERT.replace("TOKENIZER", repr(str(TOKENIZER_DIR))), encoding="utf-8")
    return p


def test_train_bert_from_hf_checkpoint_then_predict(tiny_hf_checkpoint, tiny_csv, tmp_path, capsys):
    out = tmp_path / "model"
    argv = ["train", "bert", "--config", str(_config(tmp_path)), "--pretrained", str(tiny_hf_checkpoint),
            "--data", str(tiny_csv), "--out", str(out), "--quiet"]
    assert main(argv) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["pretrained"] == str(tiny_hf_checkpoint) and saved["model"]["hidden_size"] == 32
    assert (out / "tokenizer" / "tokenizer.json").is_file()
    capsys.readouterr()
    assert main(["predict", "--model", str(out), "这家的环境不差，但是菜不怎么好吃。"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert 0.0 < line["p_positive"] < 1.0


def test_train_bert_random_init(tiny_csv, tmp_path):
    if not TOKENIZER_DIR.is_dir():
        pytest.skip(f"{TOKENIZER_DIR} missing")
    out = tmp_path / "model"
    assert main(["train", "bert", "--config", str(_config(tmp_path)), "--pretrained", "none", "--data", str(tiny_csv),
                 "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "config.json").read_text())["pretrained"] is None
    assert json.loads((out / "metrics.json").read_text())["n"] == 11
