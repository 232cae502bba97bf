"""Which split a command uses on a user's own CSV, and that rows a split leaves out are always said (never silent)."""

import json

import pytest
from tests.conftest import NEGATIVE, POSITIVE
from tests.test_cli import TINY_LSTM

from jaxsenti.cli import main
from jaxsenti.data.splits import unused_note

COUNTS_LSTM = TINY_LSTM.replace("DataConfig(split=(0.6, 0.2, 0.2))", "DataConfig(split=(1600, 200, 200))")


@pytest.fixture
def reviews_120(write_csv):
    rows = ["comment,sentiment"] + [f"{POSITIVE[i % 8]}第{i}号,1" for i in range(60)] + \
           [f"{NEGATIVE[i % 8]}第{i}号,0" for i in range(60)]
    return write_csv("\n".join(rows) + "\n", "mine.csv")


def _config(tmp_path, text=COUNTS_LSTM):
    p = tmp_path / "counts.py"
    p.write_text(text, encoding="utf-8")
    return p


def test_unused_note_counts_what_no_part_holds():
    assert unused_note(120, (60, 20, 20)) .startswith("split 60/20/20 uses 100 of the 120 reviews: 20 are in no part")
    assert unused_note(100, (60, 20, 20)) is None and unused_note(7, (0.8, 0.1, 0.1)) is None


def test_train_on_another_csv_splits_all_of_it_80_10_10_and_says_so(reviews_120, tmp_path, capsys):
    out = tmp_path / "model"
    assert main(["train", "lstm", "--config", str(_config(tmp_path)), "--data", str(reviews_120), "--out", str(out),
                 "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "is not the study's dianping.csv: splitting all 120 reviews 80/10/10 instead of tiny's split 1600/200/200" in err
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert run["data"]["rows"] == {"train": 96, "val": 12, "test": 12, "unused": 0}


@pytest.mark.parametrize("flags, rows", [
    (["--split", "60/20/20"], {"train": 60, "val": 20, "test": 20, "unused": 20}),
    (["--set", "data.split=(60,20,20)"], {"train": 60, "val": 20, "test": 20, "unused": 20}),
    (["--split", "0.5/0.25/0.25"], {"train": 60, "val": 30, "test": 30, "unused": 0}),
])
def test_an_explicit_split_is_used_and_unused_rows_are_said(reviews_120, tmp_path, capsys, flags, rows):
    out = tmp_path / "model"
    assert main(["train", "lstm", "--config", str(_config(tmp_path)), "--data", str(reviews_120), "--out", str(out),
                 "--quiet", *flags]) == 0
    err = capsys.readouterr().err
    assert "is not the study's" not in err
    assert ("20 are in no part" in err) == bool(rows["unused"])
    assert json.loads((out / "run.json").read_text(encoding="utf-8"))["data"]["rows"] == rows


def test_lr_find_takes_split_too(reviews_120, tmp_path, capsys):
    argv = ["lr-find", "lstm", "--config", str(_config(tmp_path)), "--data", str(reviews_120), "--split", "60/20/20",
            "--steps", "5", "--out", str(tmp_path / "lr.png")]
    assert main(argv) == 0
    assert "20 are in no part" in capsys.readouterr().err


def test_baselines_and_study_say_what_a_split_leaves_out(reviews_120, tmp_path, capsys):
    argv = ["baselines", "--data", str(reviews_120), "--split", "60/20/20", "--seeds", "1", "--out", str(tmp_path / "b"),
            "--quiet"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "split (baselines) 60/20/20 uses 100 of the 120 reviews: 20 are in no part" in err
    assert "20 are in no part" in (tmp_path / "b" / "report.md").read_text(encoding="utf-8")
