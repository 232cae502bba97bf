"""What a hostile-but-fair user can do to the command line: each case of the hardening issue, checked end to end.

The CSV reader's own cases (field limit, unclosed quotes, encodings, header-only files) are in test_data_io.py,
config validation in test_config.py, crash-safe folder swaps in test_atomic.py; here they are seen through
the commands, with exit codes and messages.
"""

import argparse
import csv
import json
import os
import shutil
from pathlib import Path

import pytest
from tests.test_cli import TINY_LSTM, train_tiny_folder

from jaxsenti.cli import build_parser, main


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """One tiny trained LSTM folder shared by the predict cases (they only read it)."""
    return train_tiny_folder(tmp_path_factory.mktemp("hardening"))[2]


def _tiny_config(tmp_path) -> Path:
    p = tmp_path / "tiny.py"
    p.write_text(TINY_LSTM, encoding="utf-8")
    return p


def _err(capsys) -> str:
    return capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- predict


def test_predict_csv_keeps_every_row_and_column_and_notes_non_chinese(model_dir, write_csv, tmp_path, capsys):
    src = write_csv('id,comment,city\n1,好吃,北京\n2,,上海\n3,"good food!",广州\n4,"很好吃，\n下次还来",深圳\n', "in.csv")
    out = tmp_path / "pred.csv"
    assert main(["predict", "--model", str(model_dir), "--csv", str(src), "--out", str(out)]) == 0
    err = _err(capsys)
    assert "no Chinese characters" in err and "4 rows written" in err
    rows = list(csv.reader(out.open(encoding="utf-8", newline="")))
    assert rows[0] == ["id", "comment", "city", "label", "p_positive", "note"]
    assert [r[0] for r in rows[1:]] == ["1", "2", "3", "4"] and rows[4][1] == "很好吃，\n下次还来"
    assert rows[2][3:] == ["", "", "empty text"] and rows[3][5] == "no Chinese characters (U+4E00–U+9FFF)"
    assert rows[1][3] in ("0", "1") and 0.0 <= float(rows[1][4]) <= 1.0


def test_predict_csv_with_an_unclosed_quote_is_an_error_naming_the_line(model_dir, write_csv, tmp_path, capsys):
    src = write_csv('comment\n好吃\n"没有关上的引号\n' + "".join(f"第{i}行\n" for i in range(115)), "bad.csv")
    out = tmp_path / "pred.csv"
    assert main(["predict", "--model", str(model_dir), "--csv", str(src), "--out", str(out)]) == 2
    assert "line 3" in _err(capsys) and not out.exists()


def test_predict_refuses_to_overwrite_its_input(model_dir, write_csv, capsys):
    src = write_csv("comment\n好吃\n", "in.csv")
    before = src.read_bytes()
    assert main(["predict", "--model", str(model_dir), "--csv", str(src), "--out", str(src)]) == 2
    assert "refusing to overwrite it" in _err(capsys) and src.read_bytes() == before


def test_predict_text_without_chinese_warns(model_dir, capsys):
    assert main(["predict", "--model", str(model_dir), "good!", "好吃"]) == 0
    out, err = capsys.readouterr()
    first, second = (json.loads(line) for line in out.splitlines())
    assert "no Chinese characters" in first["note"] and "note" not in second and "'good!'" in err


def test_predict_column_with_bom_and_gbk_encoding(model_dir, tmp_path, capsys):
    src = tmp_path / "gbk.csv"
    src.write_bytes("comment,x\n很好吃,1\n".encode("gb18030"))
    assert main(["predict", "--model", str(model_dir), "--csv", str(src)]) == 2
    assert "--encoding gb18030" in _err(capsys)
    assert main(["predict", "--model", str(model_dir), "--csv", str(src), "--encoding", "gb18030"]) == 0
    assert "很好吃" in capsys.readouterr().out


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "config.json").write_text("{not json", encoding="utf-8"), "config.json is damaged"),
    (lambda d: (d / "vocab.json").write_text("[1, 2", encoding="utf-8"), "vocab.json is damaged"),
    (lambda d: (d / "config.json").write_text(json.dumps({k: v for k, v in json.loads((d / "config.json").read_text()).items()
                                                          if k != "max_len"}), encoding="utf-8"), "missing key(s) ['max_len']"),
    (lambda d: [f.write_bytes(b"\x00") for f in (d / "checkpoints" / "best").rglob("*") if f.is_file()],
     "checkpoints/best is damaged"),
])
def test_a_damaged_model_folder_is_named_not_a_traceback(model_dir, tmp_path, capsys, damage, message):
    d = tmp_path / "copy"
    shutil.copytree(model_dir, d)
    damage(d)
    assert main(["predict", "--model", str(d), "好吃"]) == 2
    err = _err(capsys)
    assert message in err and "Traceback" not in err


# ---------------------------------------------------------------------------------------------- train


def test_retraining_into_a_used_folder_needs_overwrite_and_a_crash_keeps_the_old_run(tiny_csv, tmp_path, capsys, monkeypatch):
    cfg, out = _tiny_config(tmp_path), tmp_path / "model"
    argv = ["train", "lstm", "--config", str(cfg), "--data", str(tiny_csv), "--out", str(out), "--quiet"]
    assert main(argv) == 0
    old = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert main(argv + ["--set", "model.hidden_dim=16"]) == 2
    assert "--overwrite" in _err(capsys)

    import jaxsenti.pipeline as pipeline

    def crash(*a, **k):
        raise RuntimeError("killed mid-run")

    monkeypatch.setattr(pipeline, "evaluate", crash)  # dies after training, before the results are written
    with pytest.raises(RuntimeError, match="killed mid-run"):
        main(argv + ["--set", "model.hidden_dim=16", "--overwrite"])
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == old  # the old run, whole
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".model.")]  # no leftovers
    monkeypatch.undo()
    assert main(argv + ["--set", "model.hidden_dim=16", "--overwrite"]) == 0
    assert json.loads((out / "config.json").read_text())["model"]["hidden_dim"] == 16


def test_resume_refuses_another_architecture_before_touching_the_folder(tiny_csv, tmp_path, capsys):
    cfg, out = _tiny_config(tmp_path), tmp_path / "model"
    argv = ["train", "lstm", "--config", str(cfg), "--data", str(tiny_csv), "--out", str(out), "--quiet"]
    assert main(argv) == 0
    before = (out / "config.json").read_bytes()
    assert main(argv + ["--resume", "--set", "model.hidden_dim=16"]) == 2
    assert "model.hidden_dim: 8 -> 16" in _err(capsys) and (out / "config.json").read_bytes() == before


def test_resume_on_an_empty_folder_says_it_starts_fresh(tiny_csv, tmp_path, capsys):
    out = tmp_path / "empty"
    out.mkdir()
    assert main(["train", "lstm", "--config", str(_tiny_config(tmp_path)), "--data", str(tiny_csv), "--out", str(out),
                 "--resume", "--quiet"]) == 0
    assert "starting a fresh run" in _err(capsys)


def test_resume_falls_back_past_a_damaged_checkpoint(tiny_csv, tmp_path, capsys):
    from jaxsenti import config as config_lib
    from jaxsenti.data import load_reviews, stratified_split
    from jaxsenti.pipeline import train_on_split

    cfg = config_lib.apply_overrides(config_lib.load_config(_tiny_config(tmp_path)), ["epochs=3", "checkpoint_every=1"])
    reviews = load_reviews(tiny_csv)
    split = stratified_split(reviews.labels, cfg.data.split)
    out = tmp_path / "model"
    train_on_split(cfg, reviews, split, out, progress=False, stop_after_steps=6)
    steps = sorted(int(p.name) for p in (out / "checkpoints" / "state").iterdir() if p.name.isdigit())
    for f in (out / "checkpoints" / "state" / str(steps[-1])).rglob("*"):
        if f.is_file():
            f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2])  # truncated, as by a kill mid-write
    res = train_on_split(cfg, reviews, split, out, progress=False, resume=True)
    assert f"resuming from step {steps[-2]}" in _err(capsys) and res.test_metrics["n"] > 0


def test_killed_while_replacing_best_keeps_the_old_best(tmp_path, monkeypatch):
    import numpy as np

    from jaxsenti import atomic
    from jaxsenti.training import checkpoints

    ckpt = checkpoints.Checkpoints(tmp_path)
    ckpt.save_best({"w": np.ones(3, np.float32)})

    def killed(src, dst):
        raise KeyboardInterrupt  # the process dies between writing the new best and swapping it in

    monkeypatch.setattr(checkpoints, "replace_dir", killed)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_best({"w": np.full(3, 2.0, np.float32)})
    monkeypatch.setattr(checkpoints, "replace_dir", atomic.replace_dir)
    restored = checkpoints.Checkpoints(tmp_path).restore_best({"w": np.zeros(3, np.float32)})
    np.testing.assert_array_equal(restored["w"], np.ones(3))


@pytest.mark.parametrize("content, message", [
    ("comment,sentiment\n" + "".join(f"好吃{i},1\n" for i in range(20)), "every review has label 1"),
    ("comment,sentiment\n好吃,1\n难吃,0\n一般,1\n", "too few reviews to split 3"),
    ("comment,sentiment\n", "the file has a header but no data rows"),
])
@pytest.mark.parametrize("command", ["train", "baselines"])
def test_unusable_data_is_refused_up_front(write_csv, tmp_path, capsys, content, message, command):
    p = write_csv(content)
    argv = ["train", "lstm", "--config", str(_tiny_config(tmp_path))] if command == "train" else ["baselines"]
    assert main(argv + ["--data", str(p), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = _err(capsys)
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize("argv, message", [
    (["--set", "optim.lrr=1"], "unknown config key 'optim.lrr'"),
    (["--set", "epochs=abc"], "config field epochs: expected int"),
    (["--set", "buckets=[64, 32]"], "must be strictly increasing"),
    (["--max-chars", "0"], "must be >= 1"),
])
def test_bad_settings_are_one_line_without_traceback(tiny_csv, tmp_path, capsys, argv, message):
    base = ["train", "lstm", "--config", str(_tiny_config(tmp_path)), "--data", str(tiny_csv), "--out", str(tmp_path / "o")]
    try:
        code = main(base + argv)
    except SystemExit as e:  # argparse's own usage errors exit 2 too
        code = e.code
    err = _err(capsys)
    assert code == 2 and message in err and "Traceback" not in err


def test_config_file_with_a_syntax_error(tiny_csv, tmp_path, capsys):
    p = tmp_path / "broken.py"
    p.write_text("def get_config(:\n", encoding="utf-8")
    assert main(["train", "lstm", "--config", str(p), "--data", str(tiny_csv)]) == 2
    assert f"{p}: line 1: syntax error" in _err(capsys)


def test_packaged_config_by_name_works_from_any_folder(tiny_csv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["train", "lstm", "--config", "lstm_dianping", "--data", str(tiny_csv), "--out", "m", "--quiet",
            "--set", "epochs=1", "--set", "model.embed_dim=8", "--set", "model.hidden_dim=8", "--set", "data.split=[0.6, 0.2, 0.2]"]
    assert main(argv) == 0 and (tmp_path / "m" / "metrics.json").is_file()


# ---------------------------------------------------------------------------------------------- study


def test_study_checks_the_tokenizer_before_any_long_step(tiny_csv, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("JAXSENTI_BERT_TOKENIZER_DIR", str(tmp_path / "no_such_tokenizer"))
    out = tmp_path / "study"
    assert main(["study", "--data", str(tiny_csv), "--out", str(out), "--models", "baselines,bert", "--quiet"]) == 2
    assert "no_such_tokenizer" in _err(capsys) and not out.exists()  # failed before the baselines ran


def test_study_progress_lines_without_a_terminal_and_a_short_summary(tiny_csv, tmp_path, capsys):
    out = tmp_path / "study"
    assert main(["study", "--data", str(tiny_csv), "--out", str(out), "--models", "baselines,lstm", "--seeds", "1",
                 "--neural-seeds", "1", "--config", f"lstm={_tiny_config(tmp_path)}", "--no-eda"]) == 0
    stdout, err = capsys.readouterr()
    assert "splitting all 56 reviews 80/10/10" in err  # not dianping.csv: fractions of the whole file
    assert "study: baselines seed 1/1" in err and "lstm seed 1/1: test accuracy" in err and "lstm seed 0: epoch 1:" in err
    assert "![" not in stdout and "report:" in stdout and "naive_bayes" in stdout  # a summary, not the report
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "1 seed," in report and "1 seeds" not in report and "± 0.000" not in report
    assert (out / "models" / "lstm_reviews_seed0" / "metrics.json").is_file()  # named after the data
    assert main(["study", "--data", str(tiny_csv), "--out", str(out), "--models", "baselines", "--seeds", "1"]) == 2
    assert "--overwrite" in capsys.readouterr().err  # a finished study is never overwritten silently


# ---------------------------------------------------------------------------------------------- help


def _all_actions(parser):
    for a in parser._actions:  # argparse has no public iterator over a parser's options
        if isinstance(a, argparse._SubParsersAction):
            for sub in a.choices.values():
                yield from _all_actions(sub)
        elif not isinstance(a, argparse._HelpAction):
            yield a


def test_every_option_has_help_and_the_environment_is_documented():
    parser = build_parser()
    missing = [a.option_strings or a.dest for a in _all_actions(parser) if not a.help]
    assert not missing, missing
    text = parser.format_help()
    assert "``" not in text and "lr-find" in text and "pretrain" in text
    for var in ("JAXSENTI_DATA_DIR", "JAXSENTI_BERT_TOKENIZER_DIR", "JAXSENTI_CJK_FONT", "JAXSENTI_NO_DOWNLOAD"):
        assert var in text
    assert os.environ.get("MPLBACKEND")  # conftest sets it: figures never need a display


# ---------------------------------------------------------------------------------------------- input files


def test_predict_csv_gives_a_blank_line_its_row_and_a_note(model_dir, write_csv, tmp_path, capsys):
    src = write_csv("comment\n好吃\n\n难吃\n很好\n", "blank.csv")
    out = tmp_path / "pred.csv"
    assert main(["predict", "--model", str(model_dir), "--csv", str(src), "--out", str(out)]) == 0
    err = _err(capsys)
    assert "1 row(s) with empty text (blank line) (see the note column): rows 2" in err and "4 rows written" in err
    rows = list(csv.reader(out.open(encoding="utf-8", newline="")))
    assert [r[0] for r in rows[1:]] == ["好吃", "", "难吃", "很好"]
    assert rows[2] == ["", "", "", "empty text (blank line)"] and all(r[1] in ("0", "1") for r in rows[1:] if r[0])


# UTF-8 that gb18030 also decodes (into other characters); too few rows to split, so train & co. stop after loading.
_BOTH = "comment,sentiment\n好吃,1\n很差,0\n好的,1\n"


@pytest.mark.parametrize("argv", [
    ["train", "lstm", "--config", "TINY"], ["lr-find", "lstm", "--config", "TINY"], ["baselines"],
    ["study", "--models", "baselines"], ["eda"], ["predict", "--model", "MODEL", "--csv"], ["pretrain", "lstm", "--corpus"],
])
def test_a_utf8_file_read_as_gb18030_is_warned_about_by_every_command(argv, model_dir, write_csv, tmp_path, capsys):
    src = write_csv(_BOTH, "both.csv")
    argv = [str(_tiny_config(tmp_path)) if a == "TINY" else str(model_dir) if a == "MODEL" else a for a in argv]
    data = [str(src)] if argv[-1] in ("--csv", "--corpus") else ["--data", str(src)]
    out = [] if argv[0] == "predict" else ["--out", str(tmp_path / ("out.png" if argv[0] == "lr-find" else "out"))]
    main(argv + data + ["--encoding", "gb18030"] + out)
    err = _err(capsys)
    assert "also decodes as UTF-8, and reads differently as gb18030: if the Chinese looks garbled, drop --encoding" in err
    assert "Traceback" not in err


def test_data_naming_a_folder_or_a_huge_line_gives_a_short_true_message(tiny_csv, tmp_path, capsys):
    base = ["train", "lstm", "--config", str(_tiny_config(tmp_path)), "--out", str(tmp_path / "o")]
    assert main(base + ["--data", str(tiny_csv.parent)]) == 2
    err = _err(capsys)
    assert err.startswith(f"jaxsenti: error: {tiny_csv.parent} is a folder, not a file; CSV/TXT files in it: ")
    assert tiny_csv.name in err and "file not found" not in err
    one_line = tmp_path / "one_line.csv"
    one_line.write_text("好" * 5_000_000, encoding="utf-8")
    assert main(base + ["--data", str(one_line)]) == 2
    err = _err(capsys)
    assert err.count("\n") == 1 and len(err) < 500 and "(+4,999,960 characters)" in err
