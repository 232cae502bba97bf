"""A model folder says what produced it (run.json), and one whose parts no longer belong together is refused:
a vocabulary of another size or content, a resume on other data."""

import json
import shutil

import pytest
from tests.test_cli import train_tiny_folder
from tests.test_user_errors import TINY_BERT

from jaxsenti import provenance
from jaxsenti.cli import main


def _one_error_line(err: str) -> str:
    lines = [x for x in err.strip().splitlines() if not x.startswith("[jaxsenti]")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("folders")
    return (root, *train_tiny_folder(root, "--set", "checkpoint_every=1"))


def _copy(trained, tmp_path):
    d = tmp_path / "copy"
    shutil.copytree(trained[3], d)
    return d


def test_run_json_records_command_data_rows_versions_and_encoder(trained):
    _, data, _, out = trained
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert run["command"].startswith("jaxsenti ") or "train lstm" in run["command"]
    assert run["data"]["path"] == str(data.resolve()) and run["data"]["sha256"] == provenance.file_sha256(data)
    rows = run["data"]["rows"]
    assert sum(rows.values()) == run["data"]["reviews"] == 48 and rows["unused"] == 0
    assert run["versions"]["jax"] and run["versions"]["flax"] and run["encoder_files"]["vocab.json"]
    if provenance.git_commit() is not None:  # run from a checkout (as in CI): the commit is recorded
        assert len(run["git"]["commit"]) == 40
    assert json.loads((out / "config.json").read_text(encoding="utf-8"))["data"]["path"] == str(data.resolve())


@pytest.mark.parametrize("words", [2, 15000])
def test_a_vocabulary_of_another_size_is_refused(trained, tmp_path, capsys, words):
    d = _copy(trained, tmp_path)
    vocab = json.loads((d / "vocab.json").read_text(encoding="utf-8"))
    vocab = vocab[:words] if words < len(vocab) else vocab + [f"词{i}" for i in range(words - len(vocab))]
    (d / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (d / "run.json").unlink()  # as in a folder written before run.json existed: the size check alone catches it
    assert main(["predict", "--model", str(d), "好吃"]) == 2
    assert f"vocab.json has {len(vocab):,} words but the model's embedding has" in _one_error_line(capsys.readouterr().err)


def test_a_vocabulary_of_the_same_size_but_other_words_is_refused(trained, tmp_path, capsys):
    d = _copy(trained, tmp_path)
    vocab = json.loads((d / "vocab.json").read_text(encoding="utf-8"))
    vocab = vocab[:2] + vocab[2:][::-1]
    (d / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    assert main(["predict", "--model", str(d), "好吃"]) == 2
    assert "vocab.json differ from what training wrote" in _one_error_line(capsys.readouterr().err)


def test_resume_on_other_data_names_the_data_not_a_derived_field(trained, tmp_path, capsys, write_csv):
    _, data, cfg, out = trained
    d = _copy(trained, tmp_path)
    other = write_csv(data.read_text(encoding="utf-8") + "又好吃又便宜,1\n太咸了,0\n", "other.csv")
    assert main(["train", "lstm", "--config", str(cfg), "--data", str(other), "--out", str(d), "--resume",
                 "--quiet"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"was trained on {data.resolve()}" in line and "not on" in line and "vocab_size" not in line


def test_resume_from_a_moved_data_file_is_allowed(trained, tmp_path, capsys):
    _, data, cfg, _ = trained
    d = _copy(trained, tmp_path)
    moved = tmp_path / "moved.csv"
    shutil.copy(data, moved)
    assert main(["train", "lstm", "--config", str(cfg), "--data", str(moved), "--out", str(d), "--resume",
                 "--quiet", "--set", "epochs=3", "--set", "checkpoint_every=1"]) == 0
    run = json.loads((d / "run.json").read_text(encoding="utf-8"))
    assert len(run["resumed"]) == 1 and "--resume" in run["resumed"][0]["command"]


def test_bert_predict_does_not_claim_it_sees_an_empty_review(tiny_csv, tmp_path, capsys):
    cfg = tmp_path / "tiny_bert.py"
    cfg.write_text(TINY_BERT, encoding="utf-8")
    out = tmp_path / "bert"
    assert main(["train", "bert", "--config", str(cfg), "--data", str(tiny_csv), "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["predict", "--model", str(out), "good food!"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert "BERT scores the text as it is" in row["note"] and "empty review" not in row["note"]
