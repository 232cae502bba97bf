"""End to end through the command line: study, train → predict, clear errors on bad data."""

import csv
import sys

import numpy as np
import json

import pytest

from jaxsenti.cli import main

TINY_LSTM = '''"""Tiny LSTM for tests.

    jaxsenti train lstm --config THIS

Expected: runs in seconds.
"""
from jaxsenti.config import DataConfig, OptimConfig, TrainConfig
from jaxsenti.models.lstm import LSTMConfig


def get_config():
    return TrainConfig(name="tiny",
                       model=LSTMConfig(embed_dim=8, hidden_dim=8, num_layers=1, dropout=0.0),
                       data=DataConfig(split=(0.6, 0.2, 0.2)), optim=OptimConfig(name="adam", lr=1e-2),
                       batch_size=8, eval_batch_size=16, epochs=2, patience=0, max_len=32, buckets=(8, 32))
'''


def train_tiny_folder(root, *extra: str):
    """(data, config, model folder): TINY_LSTM trained on 60 short reviews under ``root`` (for module fixtures)."""
    from tests.conftest import NEGATIVE, POSITIVE

    rows = ["comment,sentiment"] + [f"{t}{'！' * k},1" for k in range(3) for t in POSITIVE] + \
           [f"{t}{'。' * k},0" for k in range(3) for t in NEGATIVE]
    data = root / "reviews.csv"
    data.write_text("\n".join(rows) + "\n", encoding="utf-8")
    cfg = root / "tiny.py"
    cfg.write_text(TINY_LSTM, encoding="utf-8")
    out = root / "model"
    assert main(["train", "lstm", "--config", str(cfg), "--data", str(data), "--out", str(out), "--quiet", *extra]) == 0
    return data, cfg, out


def test_train_then_predict(tiny_csv, tmp_path, capsys):
    cfg = tmp_path / "tiny.py"
    cfg.write_text(TINY_LSTM, encoding="utf-8")
    out = tmp_path / "model"
    assert main(["train", "lstm", "--config", str(cfg), "--data", str(tiny_csv), "--out", str(out), "--quiet"]) == 0
    assert "test: accuracy" in capsys.readouterr().out
    for f in ("config.json", "vocab.json", "metrics.json", "history.json", "training_curves.png", "confusion_matrix.png"):
        assert (out / f).is_file(), f
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["n"] == 11  # round(0.2 * 56)

    assert main(["predict", "--model", str(out), "这家的菜很好吃", "太难吃了"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert [x["text"] for x in lines] == ["这家的菜很好吃", "太难吃了"]
    assert all(0.0 < x["p_positive"] < 1.0 and x["label"] in ("positive", "negative") for x in lines)

    pred_csv = tmp_path / "pred.csv"
    assert main(["predict", "--model", str(out), "--csv", str(tiny_csv), "--out", str(pred_csv)]) == 0
    rows = list(csv.DictReader(open(pred_csv, encoding="utf-8")))
    assert len(rows) == 56 and {r["label"] for r in rows} <= {"0", "1"}


def test_study_writes_report(tiny_csv, tmp_path, capsys):
    cfg = tmp_path / "tiny.py"
    cfg.write_text(TINY_LSTM, encoding="utf-8")
    out = tmp_path / "study"
    argv = ["study", "--data", str(tiny_csv), "--out", str(out), "--seeds", "2", "--split", "0.6/0.2/0.2",
            "--models", "baselines,lstm", "--config", f"lstm={cfg}", "--neural-seeds", "2", "--quiet"]
    assert main(argv) == 0
    report = (out / "report.md").read_text(encoding="utf-8")
    rows = [line for line in report.splitlines() if line.startswith("| ") and " ± " in line]
    names = [r.split("|")[1].strip() for r in rows]
    assert names == ["tfidf_svm", "naive_bayes", "knn", "tfidf_svm_unsegmented", "lstm"]
    for r in rows:
        cells = [c.strip() for c in r.split("|")[2:6]]
        for c in cells:
            mean, std = (float(x) for x in c.split(" ± "))
            assert 0.0 <= mean <= 1.0 and 0.0 <= std <= 1.0
    assert "这家的环境不差" in report
    res = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert res["models"]["naive_bayes"]["summary"]["runs"] == 2
    assert len(res["models"]["lstm"]["prefix_p_positive"][0]) == 15  # one per CJK character of the sentence
    for rel in [*res["figures"]["confusion"].values(), *res["figures"]["curves"].values(), res["figures"]["prefix"],
                *res["figures"]["tsne"].values(), "eda/log_ratio_words.png"]:
        assert (out / rel).is_file() and (out / rel).read_bytes()[:4] == b"\x89PNG", rel
        assert f"]({rel})" in report or rel.startswith("eda/")


def test_study_rejects_unknown_model(tiny_csv, tmp_path, capsys):
    assert main(["study", "--data", str(tiny_csv), "--out", str(tmp_path), "--models", "baselines,gpt"]) == 2
    assert "--models 'baselines,gpt': choose from baselines, lstm, lstm_pretrained, bert, bert_pretrained" in capsys.readouterr().err


@pytest.mark.parametrize("content, message", [
    ("comment,sentiment\n好吃,1\n难吃,5\n", "row 2 (line 3): '5'"),
    ("text,label\n好吃,1\n", "column 'comment' not found"),
])
def test_bad_data_exits_2_with_message(write_csv, tmp_path, capsys, content, message):
    p = write_csv(content)
    assert main(["study", "--data", str(p), "--out", str(tmp_path / "o"), "--models", "baselines", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert str(p) in err and message in err


def test_predict_on_a_folder_that_is_not_a_model(tmp_path, capsys):
    assert main(["predict", "--model", str(tmp_path), "好吃"]) == 2
    assert "not a trained model folder" in capsys.readouterr().err


def test_predictor_pads_each_bucket_to_a_small_batch(tiny_csv, tmp_path):
    from jaxsenti.pipeline import Predictor

    cfg = tmp_path / "tiny.py"
    cfg.write_text(TINY_LSTM, encoding="utf-8")
    out = tmp_path / "model"
    assert main(["train", "lstm", "--config", str(cfg), "--data", str(tiny_csv), "--out", str(out), "--quiet"]) == 0
    p = Predictor(out)
    shapes = []
    inner = p._predict
    p._predict = lambda params, t, n: (shapes.append(t.shape), inner(params, t, n))[1]
    texts = ["好吃"] * 10 + ["很好吃，" * 20]  # 10 short reviews and one long one
    probs = p.predict(texts)
    assert sorted(shapes) == [(1, 32), (64, 8)]  # 1 long review: 1 row; 10 short: the 64-row size
    assert probs.shape == (11,) and np.allclose(probs[:10], probs[0])
    assert np.allclose(p.predict(texts[::-1])[::-1], probs, atol=1e-6)  # order does not matter


def test_script_main_ends_a_user_error_in_one_line_and_keeps_a_bugs_traceback(capsys, monkeypatch):
    """The benchmarks', experiments' and tools' __main__: the jaxsenti command's error policy."""
    from jaxsenti.cli import script_main

    monkeypatch.setattr(sys, "argv", ["bench.py"])

    def raising(e):
        def main():
            raise e
        return main

    for error, code, line in ((FileNotFoundError(2, "No such file or directory", "x.json"), 2, "bench.py: error: "),
                              (KeyboardInterrupt(), 130, "bench.py: interrupted")):
        with pytest.raises(SystemExit) as e:
            script_main(raising(error))
        err = capsys.readouterr().err
        assert e.value.code == code and err.startswith(line) and len(err.strip().splitlines()) == 1, err
    with pytest.raises(SystemExit) as e:
        script_main(lambda: 0)
    assert e.value.code == 0
    with pytest.raises(ZeroDivisionError):  # a bug: its traceback, not a one-liner
        script_main(lambda: 1 / 0)
