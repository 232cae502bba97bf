"""Hand-off both ways: folders jaxsenti writes load in the tools people already run.

`jaxsenti export` of a BERT classifier is a `BertForSequenceClassification` folder that the Hugging Face
text-classification pipeline scores as `jaxsenti predict` does; of an LSTM, a PyTorch state_dict with a
reference module that needs no JAX; every BERT folder jaxsenti pretrains (and the shipped one) answers the
fill-mask pipeline with Chinese tokens.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from flax import nnx
from tests.test_cli import TINY_LSTM
from tests.test_pretrain import TINY_MLM
from tests.test_user_errors import TINY_BERT

from jaxsenti.cli import main
from jaxsenti.models.lstm import LSTMClassifier, LSTMConfig
from jaxsenti.models.torch_export import REFERENCE, lstm_state_dict
from jaxsenti.pipeline import Predictor
from jaxsenti.pretrain import packaged_pretrained_dir

transformers = pytest.importorskip("transformers")


def _import_reference():
    import importlib.util

    spec = importlib.util.spec_from_file_location("sentiment_lstm_ref", REFERENCE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("pooling, bidirectional, layers", [("last", False, 2), ("last", True, 2), ("mean", True, 1),
                                                            ("max", False, 1), ("concat", True, 2)])
def test_lstm_state_dict_in_the_reference_module_gives_our_logits(pooling, bidirectional, layers):
    cfg = LSTMConfig(vocab_size=50, embed_dim=12, hidden_dim=8, num_layers=layers, bidirectional=bidirectional,
                     dropout=0.0, pooling=pooling)
    ours = LSTMClassifier(cfg, rngs=nnx.Rngs(3))
    rng = np.random.default_rng(0)
    lengths = np.array([9, 1, 0, 5, 9, 3], np.int32)  # an empty review and a full row among them
    tokens = np.where(np.arange(9)[None] < lengths[:, None], rng.integers(2, 50, (6, 9)), 0).astype(np.int32)
    ref = _import_reference().SentimentLSTM(50, 12, 8, layers, bidirectional, pooling)
    ref.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in lstm_state_dict(ours).items()})
    with torch.no_grad():
        theirs = ref.eval()(torch.from_numpy(tokens).long(), torch.from_numpy(lengths).long()).numpy()
    np.testing.assert_allclose(theirs, np.asarray(ours(tokens, lengths)), rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def reviews(dianping):
    return dianping.texts[:48] + ["", "good!", "这家的环境不差，但是菜不怎么好吃。"]


def _train(tmp_path, config_text, data, name):
    cfg = tmp_path / f"{name}.py"
    cfg.write_text(config_text, encoding="utf-8")
    out = tmp_path / name
    assert main(["train", name.split("_")[0], "--config", str(cfg), "--data", str(data), "--out", str(out), "--quiet"]) == 0
    return out


def test_exported_lstm_scores_as_predict_without_jax(tiny_csv, tmp_path, reviews, capsys):
    model = _train(tmp_path, TINY_LSTM.replace("epochs=2", "epochs=3"), tiny_csv, "lstm_model")
    out = tmp_path / "lstm_export"
    assert main(["export", "--model", str(model), "--out", str(out)]) == 0
    assert "sentiment_lstm.load" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} - {".jaxsenti-files.json"} == {"config.json", "vocab.json", "model.safetensors", "sentiment_lstm.py",
                                               "jaxsenti.json"}
    expected = Predictor(model).predict(reviews)
    # a fresh interpreter where importing jax or jaxsenti fails: the exported folder stands on its own
    code = ("import json, sys; sys.modules['jax'] = None; sys.modules['jaxsenti'] = None; sys.modules['flax'] = None\n"
            f"sys.path.insert(0, {str(out)!r}); import sentiment_lstm\n"
            f"print(json.dumps(sentiment_lstm.load({str(out)!r}).predict(json.loads(sys.stdin.read()))))")
    p = subprocess.run([sys.executable, "-c", code], input=json.dumps(reviews), capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=""), timeout=300)
    assert p.returncode == 0, p.stderr
    np.testing.assert_allclose(json.loads(p.stdout), expected, atol=1e-4)


def test_exported_bert_is_a_hugging_face_text_classifier_that_scores_as_predict(tiny_csv, tmp_path, reviews, capsys):
    model = _train(tmp_path, TINY_BERT.replace("epochs=2", "epochs=1"), tiny_csv, "bert_model")
    out = tmp_path / "bert_export"
    assert main(["export", "--model", str(model), "--out", str(out)]) == 0
    capsys.readouterr()
    clf = transformers.pipeline("text-classification", model=str(out), top_k=None)
    scored = clf(reviews, truncation=True)
    got = np.array([{d["label"]: d["score"] for d in row}["positive"] for row in scored])
    np.testing.assert_allclose(got, Predictor(model).predict(reviews), atol=1e-4)
    loaded = transformers.AutoModelForSequenceClassification.from_pretrained(out)
    assert loaded.config.id2label == {0: "negative", 1: "positive"}
    info = json.loads((out / "jaxsenti.json").read_text(encoding="utf-8"))
    assert info["run"]["data"]["sha256"] and info["metrics"]["accuracy"] >= 0 and info["exported_from"] == str(model)


def test_export_refuses_what_it_cannot_write(tiny_csv, tmp_path, capsys):
    model = _train(tmp_path, TINY_BERT.replace("epochs=2", "epochs=1").replace('name="tiny"', 'name="tiny_mean"')
                   .replace("max_position_embeddings=64)", "max_position_embeddings=64, pooling='mean')"), tiny_csv,
                   "bert_mean")
    assert main(["export", "--model", str(model), "--out", str(tmp_path / "x")]) == 2
    assert "only pooling='cls'" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert main(["export", "--model", str(tmp_path / "nothing"), "--out", str(tmp_path / "y")]) == 2


def _fill_mask_tokens(folder) -> list[str]:
    fill = transformers.pipeline("fill-mask", model=str(folder))
    return [r["token_str"] for r in fill("服务[MASK]差了")]


def test_the_shipped_bert_checkpoint_is_a_complete_hugging_face_model():
    folder = packaged_pretrained_dir("bert_mlm_small")
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    assert len(tok) == 21128 and tok.tokenize("服务太差了") == ["服", "务", "太", "差", "了"]
    tokens = _fill_mask_tokens(folder)
    assert len(tokens) == 5 and all(len(t) == 1 and "\u4e00" <= t <= "\u9fff" for t in tokens), tokens


def test_a_pretraining_output_folder_answers_fill_mask(tmp_path, corpus_txt):
    cfg = tmp_path / "tiny_mlm.py"
    cfg.write_text(TINY_MLM.replace("CORPUS", repr(str(corpus_txt))), encoding="utf-8")
    out = tmp_path / "mlm"
    assert main(["pretrain", "bert", "--config", str(cfg), "--out", str(out), "--quiet"]) == 0
    tokens = _fill_mask_tokens(out)
    assert len(tokens) == 5 and all(t.strip() and not t.startswith("[") for t in tokens), tokens
    assert len(transformers.AutoTokenizer.from_pretrained(out)) == 21128


def test_a_checkpoint_without_pooler_is_one_line_of_the_commands_output(tiny_csv, tmp_path, capsys):
    # Hugging Face's BertForMaskedLM (and so the shipped checkpoint) has no pooler: the CLI says so in one
    # line of its own, not as a Python warning with its source line.
    shipped = packaged_pretrained_dir("bert_mlm_small")
    args = ["train", "bert", "--config", "bert_small_mlm", "--pretrained", str(shipped), "--data", str(tiny_csv),
            "--split", "32/8/8", "--out", str(tmp_path / "run"), "--quiet",
            "--set", "epochs=1", "--set", "max_len=32", "--set", "buckets=(32,)"]
    assert main(args) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "pooler" in line]
    assert len(lines) == 1 and lines[0].startswith("jaxsenti: warning: checkpoint has no pooler weights"), err
    assert "warnings.warn" not in err and "UserWarning" not in err
