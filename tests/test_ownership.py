"""jaxsenti never deletes or changes a file it did not write (jaxsenti.ownership).

Each case of the hostile probe that destroyed files is a test here: ``--overwrite`` over inputs, the home
folder, the user's own files; failed-run replacement; writers that ignored a live run's lock; ``predict --out``
into a model folder; symlinked and mount-point ``--out``. A property test builds random folder trees and runs
the writing commands over them with and without ``--overwrite``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tests.test_cli import train_tiny_folder

from jaxsenti import atomic, ownership
from jaxsenti.cli import build_parser, main


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(data, config, trained model folder) of a tiny LSTM, trained once for the module."""
    return train_tiny_folder(tmp_path_factory.mktemp("tiny"))


def _snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file (and the target of every symlink) under ``root``."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            out[str(p.relative_to(root))] = "link:" + os.readlink(p)
        elif p.is_file():
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _refused(capsys, argv, *words) -> str:
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert "Traceback" not in err and len(err.splitlines()) >= 1
    line = err.splitlines()[-1]
    for w in words:
        assert w in line, line
    return line


def _user_files(folder: Path) -> dict[str, str]:
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    (folder / "notes.txt").write_text("my notes\n", encoding="utf-8")
    (folder / "sub" / "thesis.tex").write_text("\\section{}\n", encoding="utf-8")
    return _snapshot(folder)


def _copy_model(tiny, dst: Path) -> Path:
    shutil.copytree(tiny[2], dst)
    return dst


# ----------------------------------------------------------------------------- export


def test_export_never_replaces_the_folder_holding_its_model(tiny, tmp_path, capsys):
    proj = tmp_path / "proj"
    model = _copy_model(tiny, proj / "model")
    (proj / "sibling.txt").write_text("keep", encoding="utf-8")
    before = _snapshot(proj)
    _refused(capsys, ["export", "--model", str(model), "--out", str(proj), "--overwrite"], "holds", "input")
    _refused(capsys, ["export", "--model", str(model), "--out", str(model), "--overwrite"], "input")
    assert _snapshot(proj) == before


def test_export_never_replaces_the_home_folder(tiny, tmp_path, capsys, monkeypatch):
    home = tmp_path / "home"
    for f in (".config/app.ini", ".cache/x", "Documents/cv.pdf"):
        (home / f).parent.mkdir(parents=True, exist_ok=True)
        (home / f).write_text(f)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)  # elsewhere: the old guard ("the current folder is inside --out") did not apply
    before = _snapshot(home)
    _refused(capsys, ["export", "--model", str(tiny[2]), "--out", str(home), "--overwrite"], str(home))
    assert _snapshot(home) == before


def test_export_without_out_is_a_usage_error(tiny, capsys):
    with pytest.raises(SystemExit) as e:
        main(["export", "--model", str(tiny[2])])
    assert e.value.code == 2 and "--out" in capsys.readouterr().err


def test_export_over_its_own_earlier_export_replaces_it(tiny, tmp_path, capsys):
    out = tmp_path / "exported"
    assert main(["export", "--model", str(tiny[2]), "--out", str(out)]) == 0
    assert ownership.foreign_files(out) == [] and (out / ownership.MANIFEST_NAME).is_file()
    (out / "stale.bin").write_text("jaxsenti wrote this? no")  # one foreign file is enough to refuse
    _refused(capsys, ["export", "--model", str(tiny[2]), "--out", str(out), "--overwrite"], "stale.bin")
    (out / "stale.bin").unlink()
    assert main(["export", "--model", str(tiny[2]), "--out", str(out), "--overwrite"]) == 0


def test_export_into_an_empty_mount_point_writes_in_place(tiny, tmp_path, capsys, monkeypatch):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    real_ismount = os.path.ismount
    monkeypatch.setattr(os.path, "ismount", lambda p: Path(p) == mnt or real_ismount(p))
    assert main(["export", "--model", str(tiny[2]), "--out", str(mnt)]) == 0
    assert (mnt / ownership.MANIFEST_NAME).is_file() and ownership.foreign_files(mnt) == []
    assert not [p for p in tmp_path.iterdir() if ".new-" in p.name or ".tmp-" in p.name]
    _refused(capsys, ["export", "--model", str(tiny[2]), "--out", str(mnt), "--overwrite"], "mount point")


# ----------------------------------------------------------------------------- inputs inside --out


def test_train_pretrain_study_eda_never_replace_a_folder_holding_their_input(tiny, tmp_path, capsys):
    data, cfg, _ = tiny
    d = tmp_path / "d"
    (d / "raw").mkdir(parents=True)
    shutil.copy(data, d / "data.csv")
    shutil.copy(data, d / "raw" / "r.csv")
    (d / "c.txt").write_text("\n".join(["很好吃的一家店"] * 50), encoding="utf-8")
    before = _snapshot(d)
    _refused(capsys, ["train", "lstm", "--config", str(cfg), "--data", str(d / "data.csv"), "--out", str(d), "--overwrite",
                      "--quiet"], "input")
    _refused(capsys, ["pretrain", "lstm", "--corpus", str(d / "c.txt"), "--out", str(d), "--overwrite", "--quiet"], "input")
    _refused(capsys, ["study", "--data", str(d / "raw" / "r.csv"), "--out", str(d), "--overwrite", "--quiet",
                      "--models", "baselines"], "input")
    _refused(capsys, ["eda", "--data", str(d / "data.csv"), "--out", str(d), "--overwrite"], "input")
    _refused(capsys, ["train", "lstm", "--config", str(d / "data.csv"), "--data", str(data), "--out", str(d), "--overwrite"])
    assert _snapshot(d) == before


def test_overwrite_names_the_users_files_and_deletes_none(tiny, tmp_path, capsys):
    data, cfg, _ = tiny
    out = _copy_model(tiny, tmp_path / "m")  # a jaxsenti run folder (its manifest travels with the copy)
    assert ownership.foreign_files(out) == []
    mine = _user_files(out)
    line = _refused(capsys, ["train", "lstm", "--config", str(cfg), "--data", str(data), "--out", str(out), "--overwrite",
                             "--quiet"], "notes.txt", "sub/thesis.tex", "nothing was deleted")
    assert "jaxsenti did not write" in line
    assert {k: v for k, v in _snapshot(out).items() if k in mine} == {k: v for k, v in mine.items() if k in mine}
    assert set(mine) <= set(_snapshot(out))


def test_a_folder_without_a_manifest_is_not_jaxsentis(tiny, tmp_path, capsys):
    out = tmp_path / "theirs"
    out.mkdir()
    (out / "results.json").write_text("{}")
    before = _snapshot(out)
    _refused(capsys, ["eda", "--data", str(tiny[0]), "--out", str(out), "--overwrite"], "not written by jaxsenti")
    assert _snapshot(out) == before


# ----------------------------------------------------------------------------- failed runs


def test_a_failed_run_with_the_users_files_is_not_replaced(tiny, tmp_path, capsys, monkeypatch):
    from jaxsenti import pipeline

    data, cfg, _ = tiny
    out = tmp_path / "d"
    argv = ["train", "lstm", "--config", str(cfg), "--data", str(data), "--out", str(out), "--quiet"]
    real = pipeline.evaluate
    monkeypatch.setattr(pipeline, "evaluate", lambda *a, **k: (_ for _ in ()).throw(ValueError("boom")))
    assert main(argv) == 2
    monkeypatch.setattr(pipeline, "evaluate", real)
    assert (out / atomic.FAILED_NAME).is_file() and ownership.foreign_files(out) == []
    (out / "notes.txt").write_text("mine")
    (out / "fixed_data.csv").write_text("comment,sentiment\n")
    capsys.readouterr()
    _refused(capsys, argv, "failed run", "notes.txt", "fixed_data.csv", "nothing was deleted")
    assert (out / "notes.txt").read_text() == "mine" and (out / "fixed_data.csv").is_file()
    (out / "notes.txt").unlink()
    (out / "fixed_data.csv").unlink()
    assert main(argv) == 0
    assert "replacing the failed run" in capsys.readouterr().err


# ----------------------------------------------------------------------------- live runs


HOLD = textwrap.dedent("""
    import fcntl, os, sys
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, f"{os.getpid()}\\n".encode())
    print("locked", flush=True)
    sys.stdin.read()
""")


@pytest.fixture
def live_run():
    """Hold a folder's run lock from another process, as a running ``train`` does; yields (hold(folder), pids)."""
    procs = []

    def hold(folder: Path) -> int:
        folder.mkdir(parents=True, exist_ok=True)
        p = subprocess.Popen([sys.executable, "-c", HOLD, str(folder / atomic.LOCK_NAME)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
        procs.append(p)
        assert p.stdout.readline() == "locked\n"  # synchronised on the holder's own word, not on time
        return p.pid

    yield hold
    for p in procs:
        p.stdin.close()
        p.wait(timeout=60)


def test_every_writer_honours_a_live_runs_lock(tiny, tmp_path, capsys, live_run):
    data, cfg, model = tiny
    out = _copy_model(tiny, tmp_path / "running")
    pid = live_run(out)
    before = _snapshot(out)
    for argv in (["export", "--model", str(model), "--out", str(out), "--overwrite"],
                 ["export", "--model", str(model), "--out", str(out / "sub")],
                 ["eda", "--data", str(data), "--out", str(out), "--overwrite"],
                 ["predict", "--model", str(model), "--csv", str(data), "--out", str(out / "p.csv")],
                 ["train", "lstm", "--config", str(cfg), "--data", str(data), "--out", str(out), "--overwrite", "--quiet"],
                 ["baselines", "--data", str(data), "--out", str(out / "b"), "--quiet"]):
        _refused(capsys, argv, f"pid {pid}")
    assert {k: v for k, v in _snapshot(out).items() if k != atomic.LOCK_NAME} == \
           {k: v for k, v in before.items() if k != atomic.LOCK_NAME}


# ----------------------------------------------------------------------------- predict --out


def test_predict_out_never_writes_into_a_model_folder_or_over_a_foreign_file(tiny, tmp_path, capsys):
    data, _, model = tiny
    m = _copy_model(tiny, tmp_path / "m")
    before = _snapshot(m)
    _refused(capsys, ["predict", "--model", str(m), "--csv", str(data), "--out", str(m / "vocab.json")], "model folder")
    _refused(capsys, ["predict", "--model", str(m), "--csv", str(data), "--out", str(m / "new.csv")], "model folder")
    _refused(capsys, ["predict", "--model", str(m), "--csv", str(data), "--out", str(data)], "input")
    assert _snapshot(m) == before
    assert main(["predict", "--model", str(m), "这家的菜很好吃"]) == 0  # the model still loads

    theirs = tmp_path / "report.csv"
    theirs.write_text("a,b\n1,2\n")
    _refused(capsys, ["predict", "--model", str(m), "--csv", str(data), "--out", str(theirs)], "not a file jaxsenti wrote")
    assert theirs.read_text() == "a,b\n1,2\n"
    ours = tmp_path / "pred.csv"
    assert main(["predict", "--model", str(m), "--csv", str(data), "--out", str(ours)]) == 0
    assert main(["predict", "--model", str(m), "--csv", str(data), "--out", str(ours)]) == 0  # its own file: replaced


def test_lr_find_replaces_only_its_own_plot(tiny, tmp_path, capsys):
    data, cfg, _ = tiny
    theirs = tmp_path / "holiday.png"
    theirs.write_bytes(b"\x89PNG\r\n\x1a\n not jaxsenti's")
    _refused(capsys, ["lr-find", "lstm", "--config", str(cfg), "--data", str(data), "--out", str(theirs), "--steps", "5"],
             "not a file jaxsenti wrote")
    assert theirs.read_bytes().endswith(b"not jaxsenti's")
    ours = tmp_path / "lr.png"
    argv = ["lr-find", "lstm", "--config", str(cfg), "--data", str(data), "--out", str(ours), "--steps", "5"]
    assert main(argv) in (0, 2)  # 5 steps may find no suggestion; the plot is written either way
    assert ours.is_file()
    assert main(argv) in (0, 2)
    assert "not a file jaxsenti wrote" not in capsys.readouterr().err


# ----------------------------------------------------------------------------- symlinks


def test_a_symlinked_out_is_written_through_and_stays_a_link(tiny, tmp_path, capsys):
    data, _, model = tiny
    real = tmp_path / "real"
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    assert main(["export", "--model", str(model), "--out", str(link)]) == 0
    assert link.is_symlink() and (real / ownership.MANIFEST_NAME).is_file()
    assert main(["export", "--model", str(model), "--out", str(link), "--overwrite"]) == 0
    assert link.is_symlink() and os.readlink(link) == str(real) and ownership.foreign_files(real) == []
    assert main(["eda", "--data", str(data), "--out", str(link), "--overwrite"]) == 0
    assert link.is_symlink() and (real / "eda.md").is_file()


def test_a_symlink_inside_a_folder_is_a_foreign_file_and_its_target_is_never_touched(tiny, tmp_path, capsys):
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "a.txt").write_text("keep")
    out = tmp_path / "exp"
    assert main(["export", "--model", str(tiny[2]), "--out", str(out)]) == 0
    (out / "data").symlink_to(outside, target_is_directory=True)
    _refused(capsys, ["export", "--model", str(tiny[2]), "--out", str(out), "--overwrite"], "data")
    assert (outside / "a.txt").read_text() == "keep" and (out / "data").is_symlink()


# ----------------------------------------------------------------------------- the words


def test_the_help_states_the_rule():
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices
    for name in ("train", "pretrain", "study", "eda", "baselines", "export"):
        text = " ".join(sub[name].format_help().split())
        assert "replaces a jaxsenti output folder; never deletes other files" in text, name
    assert "export" in parser.format_help()


def test_manifest_bookkeeping(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "theirs.txt").write_text("x")
    ownership.begin(d)  # a run starts in a folder holding a foreign file (e.g. --resume): it stays foreign
    (d / "sub").mkdir()
    (d / "sub" / "mine.bin").write_text("y")
    ownership.record(d, complete=True)
    assert ownership.foreign_files(d) == ["theirs.txt"]
    assert ownership.read_manifest(d)["files"] == ["sub/mine.bin"]
    (d / ownership.MANIFEST_NAME).write_text("{not json")
    assert ownership.foreign_files(d) == ["sub/mine.bin", "theirs.txt"]  # a damaged manifest claims nothing


# ----------------------------------------------------------------------------- property test


def _random_tree(rng: random.Random, root: Path, tiny, model_copy: Path) -> dict:
    """A random situation at ``root/out``; returns what the command must not lose and what it may do."""
    out = root / "out"
    kind = rng.choice(["missing", "empty", "owned", "owned", "theirs"])
    if kind == "empty":
        out.mkdir(parents=True)
    elif kind == "owned":
        shutil.copytree(model_copy, out)  # an export's folder: every file in its manifest
    elif kind == "theirs":
        out.mkdir(parents=True)
        (out / "results.json").write_text("{}")
    foreign = []
    if kind != "missing":
        for i in range(rng.randint(0, 3)):
            depth = rng.randint(0, 3)
            p = out.joinpath(*[f"d{rng.randint(0, 2)}" for _ in range(depth)], f"user{i}.txt")
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(f"user file {i}")
            foreign.append(p)
        if rng.random() < 0.3:
            (root / "elsewhere").mkdir(exist_ok=True)
            (root / "elsewhere" / "x.txt").write_text("target of a link")
            (out / "link").symlink_to(root / "elsewhere", target_is_directory=True)
            foreign.append(out / "link")
    data = root / "data.csv"
    if kind != "missing" and rng.random() < 0.3:
        data = out / "in" / "data.csv"
        data.parent.mkdir(parents=True, exist_ok=True)
        foreign.append(data)
    shutil.copy(tiny[0], data)
    return {"out": out, "kind": kind, "foreign": foreign, "data": data}


@pytest.mark.parametrize("seed", range(8))
def test_random_trees_lose_no_file_jaxsenti_did_not_write(tiny, tmp_path, capsys, seed, live_run):
    rng = random.Random(seed)
    exported = tmp_path / "exported"
    assert main(["export", "--model", str(tiny[2]), "--out", str(exported)]) == 0
    root = tmp_path / "root"
    root.mkdir()
    t = _random_tree(rng, root, tiny, exported)
    locked = rng.random() < 0.25 and t["kind"] != "missing"
    if locked:
        live_run(t["out"])
    model = tiny[2]
    commands = [["export", "--model", str(model), "--out", str(t["out"])],
                ["eda", "--data", str(t["data"]), "--out", str(t["out"])],
                ["predict", "--model", str(model), "--csv", str(t["data"]), "--out", str(t["out"] / "p.csv")]]
    if seed < 2:
        commands.append(["train", "lstm", "--config", str(tiny[1]), "--data", str(t["data"]), "--out", str(t["out"]),
                         "--quiet"])
    for argv in commands:
        for overwrite in (False, True):
            if argv[0] == "predict" and overwrite:
                continue
            before = {str(p): _snapshot(p.parent)[p.name] for p in t["foreign"]}
            outside = _snapshot(root / "elsewhere") if (root / "elsewhere").is_dir() else {}
            rc = main(argv + (["--overwrite"] if overwrite else []))
            err = capsys.readouterr().err
            assert rc in (0, 2), err
            assert "Traceback" not in err
            after = {str(p): _snapshot(p.parent).get(p.name) for p in t["foreign"]}
            assert after == before, (argv, overwrite, err)
            if outside:
                assert _snapshot(root / "elsewhere") == outside
            if locked:
                assert rc == 2 and "in use by another jaxsenti run" in err, err
    assert (tiny[0]).is_file() and json.loads((tiny[2] / "metrics.json").read_text())


def test_the_scripts_results_files_replace_only_what_a_script_wrote(tmp_path, capsys):
    """benchmarks/ and experiments/ ``--json``, ``--md`` and ``--out``: a same-named file of the user's is refused
    before any work (exit 2, one line); a file a script wrote is replaced."""
    bench = Path(__file__).resolve().parents[1] / "benchmarks"
    sys.path.insert(0, str(bench))
    import common
    import harness
    import run_all

    mine = tmp_path / "mine.json"
    mine.write_text('{"mine": 1}')
    notes = tmp_path / "notes.md"
    notes.write_text("# my notes\n")
    (tmp_path / "o").mkdir()
    shutil.copy(mine, tmp_path / "o" / "lstm_throughput.json")
    before = _snapshot(tmp_path)
    for call in (lambda: harness.main(["lstm", "--smoke", "--json", str(mine)]),
                 lambda: run_all.main(["--quick", "--md", str(notes)]),
                 lambda: run_all.main(["--quick", "--out", str(tmp_path / "o"), "--md", str(tmp_path / "r.md")])):
        with pytest.raises((SystemExit, FileExistsError)) as e:
            call()
        assert issubclass(e.type, FileExistsError) or e.value.code == 2
    err = capsys.readouterr().err
    assert "mine.json exists and is not a file jaxsenti wrote" in err and "notes.md exists and is not" in err
    assert _snapshot(tmp_path) == before
    ours = tmp_path / "ours.json"
    common.write_json(ours, {"machine": {}, "x": 1})
    assert common.output_file("json")(str(ours)) == str(ours)  # a script's own file: replaced
    (tmp_path / "gen.md").write_text("# Benchmark results\n\n_Generated by `benchmarks/run_all.py` — do not edit_\n")
    assert common.output_file("md")(str(tmp_path / "gen.md"))


def test_export_never_writes_inside_its_model_folder(tiny, tmp_path, capsys):
    """``--out`` inside an input folder (here ``--model``) would change the model folder: refused, nothing written."""
    data, cfg, model = tiny
    before = _snapshot(model)
    assert main(["export", "--model", str(model), "--out", str(model / "exported")]) == 2
    assert "is inside" in capsys.readouterr().err and _snapshot(model) == before
