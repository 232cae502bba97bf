"""User errors in configs, sizes and flags end in exit 2 and one line naming what to change, before anything is
written; also the messages that used to mislead (a sklearn seed message, unrelated fields named for `nan`)."""

import json
import shutil

import pytest
from tests.test_cli import TINY_LSTM

from jaxsenti.cli import main

TINY_BERT = TINY_LSTM.replace("from jaxsenti.models.lstm import LSTMConfig", "from jaxsenti.models.bert import BertConfig").replace(
    "model=LSTMConfig(embed_dim=8, hidden_dim=8, num_layers=1, dropout=0.0)",
    "model=BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, "
    "max_position_embeddings=64)")


def _one_error_line(err: str) -> str:
    lines = [x for x in err.strip().splitlines() if not x.startswith("[jaxsenti]")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def tiny_cfg(tmp_path):
    p = tmp_path / "tiny.py"
    p.write_text(TINY_LSTM, encoding="utf-8")
    return p


@pytest.mark.parametrize("flags, message", [
    (["--set", "model.hidden_dim=0"], "model.hidden_dim: must be >= 1, got 0"),
    (["--set", "model.hidden_dim=-1"], "model.hidden_dim: must be >= 1, got -1"),
    (["--set", "model.hidden_dim=10000000"], "this model and batch cannot fit"),
    (["--set", "model.embed_dim=100000000"], "this model and batch cannot fit"),
    (["--set", "batch_size=1000000000000"], "this model and batch cannot fit"),
    (["--set", "eval_batch_size=1000000000000"], "this model and batch cannot fit"),
    (["--set", "max_len=100000000000", "--set", "buckets=(100000000000,)"], "this model and batch cannot fit"),
    (["--set", "model.dropout=nan"], "model.dropout: must be a finite number, got nan"),
    (["--set", "optim.lr=1e999"], "optim.lr: must be a finite number, got inf"),
    (["--set", "optim.lr=-inf"], "optim.lr: must be a finite number, got -inf"),
    (["--seed", "-1"], r"seed: must be in [0, 2**32), got -1"),
    (["--set", "mesh_devices=2"], "mesh_devices: 2, but 1 device(s) are visible"),
    (["--config", "lstm_lm"], "lstm_lm is a pretraining config, not a training one"),
    (["--split", "inf/1/1"], "split must be three counts"),
    (["--split", "1.5/0.25/0.25"], "split must be three counts"),
    (["--split", "0.6/0.2/0.1"], "or three fractions summing to 1"),
    (["--set", "name=../../elsewhere"], "config field name: must be a plain folder name"),
    (["--set", "monitor=val_f1"], "config field monitor: 'val_f1' is not one this objective reports"),
])
def test_train_refuses_with_one_line_and_writes_nothing(tiny_csv, tiny_cfg, tmp_path, capsys, flags, message):
    out = tmp_path / "model"
    argv = ["train", "lstm", "--config", str(tiny_cfg), "--data", str(tiny_csv), "--out", str(out), "--quiet", *flags]
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse's own errors
        rc = e.code
    assert rc == 2
    assert message in _one_error_line(capsys.readouterr().err)
    assert not out.exists()


def test_lr_find_refuses_a_pretraining_config(tiny_csv, capsys):
    assert main(["lr-find", "lstm", "--config", "lstm_lm", "--data", str(tiny_csv)]) == 2
    assert "pretrain with it (`jaxsenti pretrain lstm --config lstm_lm`)" in _one_error_line(capsys.readouterr().err)


def test_pretrain_refuses_a_training_config(capsys, tmp_path):
    assert main(["pretrain", "lstm", "--config", "lstm_dianping", "--out", str(tmp_path / "x")]) == 2
    assert "lstm_dianping is a training config, not a pretraining one" in _one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize("body, message", [
    ("def get_config():\n    return None\n", "get_config() returned NoneType, not a TrainConfig or PretrainConfig"),
    ("get_config = 3\n", "must define get_config()"),
    ("from jaxsenti.models.lstm import LSTMConfig\n\ndef get_config():\n    return LSTMConfig(pooling='attention')\n",
     "line 4: config field pooling: must be one of"),
    ("from jaxsenti.models.lstm import LSTMConfig\n\ndef get_config():\n    return LSTMConfig(hidden_dim=0)\n",
     "line 4: config field hidden_dim: must be >= 1, got 0"),
])
def test_a_config_file_that_builds_no_config_is_one_line(tiny_csv, tmp_path, capsys, body, message):
    p = tmp_path / "mine.py"
    p.write_text(body, encoding="utf-8")
    assert main(["train", "lstm", "--config", str(p), "--data", str(tiny_csv), "--out", str(tmp_path / "m")]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert message in line and str(p) in line


def test_a_users_own_config_bug_keeps_its_traceback(tiny_csv, tmp_path):
    p = tmp_path / "mine.py"
    p.write_text("def get_config():\n    return undefined_name\n", encoding="utf-8")
    with pytest.raises(NameError):
        main(["train", "lstm", "--config", str(p), "--data", str(tiny_csv), "--out", str(tmp_path / "m")])


def test_bert_positions_beyond_the_table_fail_before_writing(tiny_csv, tmp_path, capsys):
    p = tmp_path / "tiny_bert.py"
    p.write_text(TINY_BERT, encoding="utf-8")
    out = tmp_path / "model"
    argv = ["train", "bert", "--config", str(p), "--data", str(tiny_csv), "--out", str(out), "--quiet",
            "--set", "max_len=600", "--set", "buckets=(64, 600)"]
    assert main(argv) == 2
    assert "the model has 64 positions" in _one_error_line(capsys.readouterr().err) and not out.exists()


@pytest.mark.parametrize("edit, message", [
    ({"hidden_size": "128"}, "hidden_size: expected int, got '128' (str)"),
    ({"num_hidden_layers": 0}, "num_hidden_layers: must be >= 1, got 0"),
    ({"hidden_dropout_prob": 1.5}, "hidden_dropout_prob: must be in [0.0, 1.0), got 1.5"),
    ({"num_attention_heads": 5}, "not divisible by num_attention_heads 5"),
])
def test_a_hand_edited_hugging_face_config_is_one_line(tiny_csv, tmp_path, capsys, edit, message):
    from jaxsenti.assets import bert_tokenizer_dir

    folder = tmp_path / "hf"
    shutil.copytree(bert_tokenizer_dir(), folder)
    cfg = json.loads((folder / "config.json").read_text(encoding="utf-8")) | edit
    (folder / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    (folder / "model.safetensors").write_bytes(b"")
    argv = ["train", "bert", "--pretrained", str(folder), "--data", str(tiny_csv), "--out", str(tmp_path / "m"),
            "--split", "0.6/0.2/0.2", "--quiet"]
    assert main(argv) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert message in line and "config.json" in line


def test_a_missing_bert_checkpoint_hints_at_random_weights_in_the_same_line(tiny_csv, tmp_path, capsys):
    argv = ["train", "bert", "--pretrained", str(tmp_path / "nowhere"), "--data", str(tiny_csv), "--split", "0.6/0.2/0.2"]
    assert main(argv) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "does not exist" in line and "--pretrained none" in line


def test_a_wrong_checksum_in_download_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("JAXSENTI_DATA_DIR", raising=False)
    (tmp_path / "dianping.csv").write_text("comment,sentiment\n好,1\n", encoding="utf-8")
    assert main(["download", "--dest", str(tmp_path)]) == 2
    assert "does not match the expected" in _one_error_line(capsys.readouterr().err)


def test_usage_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "lstm", "--no-such-flag"])
    assert e.value.code == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "unrecognized arguments: --no-such-flag" in line and "--help" in line


def test_pretrain_with_fewer_epochs_than_its_snapshots_drops_them_and_says_so(tmp_path, capsys, corpus_txt):
    out = tmp_path / "lm"
    argv = ["pretrain", "lstm", "--corpus", str(corpus_txt), "--out", str(out), "--quiet", "--set", "epochs=1",
            "--set", "model.embed_dim=8", "--set", "model.hidden_dim=8", "--set", "model.num_layers=1",
            "--set", "task.num_sampled=0", "--set", "corpus.heldout_fraction=0.1"]
    assert main(argv) == 0
    out_text, err = capsys.readouterr()
    assert "no snapshot after epoch(s) 2, 4" in err and not (out / "snapshots" / "epoch2").exists()
    assert (out / "snapshots" / "epoch1").is_dir()
    assert "--config lstm_dianping_lm --pretrained" in out_text  # the follow-up command names the fine-tuning config

