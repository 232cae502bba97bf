"""A folder of one kind handed where another is wanted says what it is and what to do (one line, exit 2)."""

import shutil

import pytest

from jaxsenti import folders
from jaxsenti.cli import main
from tests.test_cli import TINY_LSTM
from tests.test_user_errors import TINY_BERT, _one_error_line


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Trained tiny LSTM and BERT model folders, their exports, and a copy of the shipped LSTM LM."""
    from tests.conftest import NEGATIVE, POSITIVE

    root = tmp_path_factory.mktemp("kinds")
    rows = ["comment,sentiment"] + [f"{t}{'！' * k},1" for k in range(3) for t in POSITIVE] + \
           [f"{t}{'。' * k},0" for k in range(3) for t in NEGATIVE]
    (root / "d.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (root / "lstm.py").write_text(TINY_LSTM, encoding="utf-8")
    (root / "bert.py").write_text(TINY_BERT, encoding="utf-8")
    base = ["--data", str(root / "d.csv"), "--quiet"]
    assert main(["train", "lstm", "--config", str(root / "lstm.py"), "--out", str(root / "m_lstm"), *base]) == 0
    assert main(["train", "bert", "--config", str(root / "bert.py"), "--pretrained", "none", "--out", str(root / "m_bert"), *base]) == 0
    assert main(["export", "--model", str(root / "m_bert"), "--out", str(root / "hf")]) == 0
    assert main(["export", "--model", str(root / "m_lstm"), "--out", str(root / "pt")]) == 0
    from jaxsenti.pretrain import packaged_pretrained_dir

    shutil.copytree(packaged_pretrained_dir("lstm_lm"), root / "lm")
    return root


def test_kind_of_each_folder(made):
    kinds = {n: folders.kind_of(made / n) for n in ("m_lstm", "m_bert", "hf", "pt", "lm")}
    assert kinds == {"m_lstm": "model", "m_bert": "model", "hf": "hf_export", "pt": "torch_export", "lm": "lstm_lm"}
    from jaxsenti.pretrain import packaged_pretrained_dir

    assert folders.kind_of(packaged_pretrained_dir("bert_mlm_small")) == "bert"
    assert folders.kind_of(made / "d.csv") is None and folders.kind_of(made / "nowhere") is None


@pytest.mark.parametrize("argv, words", [
    (["predict", "--model", "{hf}", "好吃"], ["Hugging Face export of the model", "m_bert", "transformers.pipeline"]),
    (["predict", "--model", "{pt}", "好吃"], ["PyTorch export of the model", "m_lstm", "sentiment_lstm.load"]),
    (["pretrain", "bert", "--init-from", "{lm}", "--corpus", "{data}", "--out", "{x}"],
     ["--init-from", "a pretrained LSTM language model, not a BERT checkpoint", "pretrain lstm --init-from"]),
    (["pretrain", "bert", "--init-from", "{m_bert}", "--corpus", "{data}", "--out", "{x}"],
     ["a trained jaxsenti bert model folder, not a BERT checkpoint", "jaxsenti export --model"]),
    (["train", "bert", "--pretrained", "{lm}", "--data", "{data}", "--out", "{x}"],
     ["a pretrained LSTM language model, not a BERT checkpoint"]),
    (["train", "bert", "--pretrained", "{m_bert}", "--data", "{data}", "--out", "{x}"], ["export it first"]),
    (["train", "lstm", "--config", "lstm_dianping_lm", "--pretrained", "{m_lstm}", "--data", "{data}", "--out", "{x}"],
     ["a trained jaxsenti lstm model folder, not a pretrained LSTM language model"]),
    (["train", "lstm", "--config", "lstm_dianping_lm", "--pretrained", "{hf}", "--data", "{data}", "--out", "{x}"],
     ["a Hugging Face export, not a pretrained LSTM language model", "train bert --pretrained"]),
])
def test_the_wrong_kind_of_folder_says_what_it_is(made, tmp_path, capsys, argv, words):
    names = {n: str(made / n) for n in ("hf", "pt", "lm", "m_bert", "m_lstm")} | {"data": str(made / "d.csv"),
                                                                                 "x": str(tmp_path / "x")}
    assert main([a.format(**names) for a in argv] + ["--quiet"] * (argv[0] != "predict")) == 2
    line = _one_error_line(capsys.readouterr().err)
    for w in words:
        assert w in line, line
    assert "--pretrained none" not in line and not (tmp_path / "x").exists()


def test_an_export_of_a_bert_model_is_a_checkpoint_to_fine_tune(made, tmp_path, capsys):
    out = tmp_path / "again"
    assert main(["train", "bert", "--config", str(made / "bert.py"), "--pretrained", str(made / "hf"),
                 "--data", str(made / "d.csv"), "--out", str(out), "--quiet"]) == 0
    assert (out / "metrics.json").is_file()
