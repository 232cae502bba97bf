"""Runs that fail leave nothing in the way, and no two runs use one output folder at once.

A run written in place that fails keeps what it saved and says why in ``failed.json``; the next run into that
folder replaces it without ``--overwrite`` (and ``--resume`` continues it); a run that fails before writing
anything leaves no folder. Each train/pretrain/study run holds a lock on its output folder: another run that
would write, replace or resume it stops at once, naming the pid of the one holding it.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.conftest import REPO
from tests.test_cli import TINY_LSTM

from jaxsenti import atomic
from jaxsenti.cli import main


@pytest.fixture
def train_argv(tiny_csv, tmp_path):
    cfg = tmp_path / "tiny.py"
    cfg.write_text(TINY_LSTM, encoding="utf-8")

    def argv(out: Path, *extra) -> list[str]:
        return ["train", "lstm", "--config", str(cfg), "--data", str(tiny_csv), "--out", str(out), "--quiet", *extra]

    return argv


def _failing(monkeypatch, message: str = "the GPU fell off the bus") -> None:
    """The next run dies after training, before its results are written."""
    import jaxsenti.pipeline as pipeline

    def boom(*a, **k):
        raise ValueError(message)

    monkeypatch.setattr(pipeline, "evaluate", boom)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------- failed runs


def test_a_failed_run_keeps_what_it_saved_and_the_next_run_replaces_it(train_argv, tmp_path, capsys, monkeypatch):
    out = tmp_path / "model"
    _failing(monkeypatch)
    assert main(train_argv(out)) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == "jaxsenti: error: the GPU fell off the bus"
    failed = json.loads((out / "failed.json").read_text(encoding="utf-8"))
    assert failed["reason"] == "the GPU fell off the bus" and failed["error"] == "ValueError" and failed["command"]
    assert datetime.datetime.fromisoformat(failed["time_utc"]).utcoffset() == datetime.timedelta(0)
    assert (out / "checkpoints" / "best").is_dir() and (out / "config.json").is_file()  # nothing it saved is lost
    assert not (out / "metrics.json").exists() and not (out / atomic.LOCK_NAME).exists()

    before = _files(out)
    _failing(monkeypatch, "again")  # a replacing run that fails too leaves the failed run as it was
    assert main(train_argv(out)) == 2
    assert _files(out) == before and [p.name for p in tmp_path.iterdir() if p.name.startswith(".model")] == []

    monkeypatch.undo()
    assert main(train_argv(out)) == 0  # no --overwrite needed
    assert f"[jaxsenti] replacing the failed run in {out} (failed: the GPU fell off the bus)" in capsys.readouterr().err
    assert (out / "metrics.json").is_file() and not (out / "failed.json").exists()


def test_resume_continues_a_failed_run_and_clears_its_failure(train_argv, tmp_path, capsys, monkeypatch):
    out = tmp_path / "model"
    _failing(monkeypatch)
    assert main(train_argv(out)) == 2
    steps = sorted(int(p.name) for p in (out / "checkpoints" / "state").iterdir())
    monkeypatch.undo()
    capsys.readouterr()
    assert main(train_argv(out, "--resume")) == 0
    assert "replacing" not in capsys.readouterr().err
    assert not (out / "failed.json").exists()
    assert json.loads((out / "metrics.json").read_text())["steps"] == steps[-1]  # continued, not retrained


def test_a_finished_run_is_never_replaced_without_overwrite(train_argv, tmp_path, capsys, monkeypatch):
    out = tmp_path / "model"
    assert main(train_argv(out)) == 0
    _failing(monkeypatch)
    assert main(train_argv(out, "--resume", "--set", "epochs=3")) == 2  # a resumed run that fails is recorded...
    assert (out / "failed.json").is_file() and (out / "metrics.json").is_file()
    monkeypatch.undo()
    capsys.readouterr()
    assert main(train_argv(out)) == 2  # ...but the folder still holds a finished model
    assert "--overwrite" in capsys.readouterr().err


def test_a_run_that_fails_before_writing_leaves_no_folder(train_argv, tmp_path, monkeypatch):
    import jaxsenti.pipeline as pipeline

    def bad(*a, **k):
        raise ValueError("bad input")

    monkeypatch.setattr(pipeline, "prepare", bad)
    assert main(train_argv(tmp_path / "runs" / "new")) == 2
    assert not (tmp_path / "runs").exists()  # nor the parent it created
    (tmp_path / "empty").mkdir()
    assert main(train_argv(tmp_path / "empty")) == 2
    assert list((tmp_path / "empty").iterdir()) == []  # a folder the user made stays


def test_failed_run_helper(tmp_path):
    assert atomic.failed_run(tmp_path, "metrics.json") is None
    (tmp_path / "failed.json").write_text("{broken", encoding="utf-8")
    assert atomic.failed_run(tmp_path, "metrics.json") == "unknown (failed.json is unreadable)"
    (tmp_path / "metrics.json").write_text("{}", encoding="utf-8")
    assert atomic.failed_run(tmp_path, "metrics.json") is None


# ------------------------------------------------------------------------------------- one run per folder

_HOLD = r"""
import sys
from jaxsenti import atomic
with atomic.run_lock(sys.argv[1]):
    print("locked", flush=True)
    sys.stdin.read()
"""


def _holder(folder: Path) -> subprocess.Popen:
    """Another process holding ``folder`` until its stdin is closed."""
    p = subprocess.Popen([sys.executable, "-c", _HOLD, str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert p.stdout.readline() == "locked\n"
    return p


@pytest.mark.parametrize("extra", [(), ("--overwrite",), ("--resume",)])
def test_a_folder_in_use_is_refused_at_once(train_argv, tmp_path, capsys, extra, monkeypatch):
    out = tmp_path / "model"
    assert main(train_argv(out)) == 0
    before = _files(out)
    import jaxsenti.pipeline as pipeline

    monkeypatch.setattr(pipeline, "prepare", lambda *a, **k: pytest.fail("work started on a folder in use"))
    holder = _holder(out)
    try:
        capsys.readouterr()
        assert main(train_argv(out, *extra)) == 2
        assert capsys.readouterr().err.strip().splitlines()[-1] == \
               f"jaxsenti: error: {out} is in use by another jaxsenti run (pid {holder.pid}); wait for it or choose another --out"
    finally:
        holder.communicate("")
    assert _files(out) == before


def test_study_and_pretrain_hold_their_folder_too(tiny_csv, tmp_path, capsys):
    out = tmp_path / "busy"
    holder = _holder(out)
    try:
        assert main(["baselines", "--data", str(tiny_csv), "--out", str(out), "--seeds", "1", "--quiet"]) == 2
        assert f"{out} is in use by another jaxsenti run (pid {holder.pid})" in capsys.readouterr().err
        assert main(["pretrain", "lstm", "--out", str(out), "--quiet"]) == 2
        assert f"{out} is in use by another jaxsenti run (pid {holder.pid})" in capsys.readouterr().err
    finally:
        holder.communicate("")


def test_a_second_overwrite_run_cannot_swap_the_folder_of_a_running_one(train_argv, tmp_path, capsys):
    out = tmp_path / "model"
    first = subprocess.Popen([sys.executable, "-m", "jaxsenti", *train_argv(out, "--set", "epochs=1000000")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=dict(os.environ, PYTHONPATH=str(REPO), MPLBACKEND="Agg"))
    try:
        lock = out / atomic.LOCK_NAME
        while first.poll() is None and not (lock.is_file() and lock.read_text().strip()):
            time.sleep(0.1)  # waits for the first run to hold the folder (no time limit on it)
        assert first.poll() is None
        assert main(train_argv(out, "--overwrite")) == 2
        assert f"{out} is in use by another jaxsenti run (pid {first.pid})" in capsys.readouterr().err
        assert main(train_argv(out, "--resume")) == 2
    finally:
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=300)
    assert first.returncode == 130 and "Traceback" not in err
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".model")]  # nothing staged beside it
    assert not (out / atomic.LOCK_NAME).exists()  # the first run released it (its folder may be gone: nothing in it yet)


def test_a_killed_run_does_not_block_the_next_and_its_lock_file_is_not_content(train_argv, tmp_path, capsys):
    out = tmp_path / "model"
    out.mkdir()
    (out / atomic.LOCK_NAME).write_text("99999999\n")  # a lock file whose run was killed: nobody holds it
    assert main(train_argv(out)) == 0
    assert "replacing" not in capsys.readouterr().err  # written in place: the folder counted as empty
    assert not (out / atomic.LOCK_NAME).exists() and (out / "metrics.json").is_file()


def test_run_lock_removes_what_it_created_and_refuses_a_file(tmp_path):
    with atomic.run_lock(tmp_path / "a" / "b"):
        assert (tmp_path / "a" / "b" / atomic.LOCK_NAME).read_text() == f"{os.getpid()}\n"
        with pytest.raises(atomic.FolderInUseError, match=f"pid {os.getpid()}"):  # a second lock, even in-process
            with atomic.run_lock(tmp_path / "a" / "b"):
                pass
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError, match="is not a folder"):
        with atomic.run_lock(tmp_path / "f"):
            pass
    with atomic.run_lock(tmp_path / "off", enabled=False):  # a multi-host run's other processes
        assert not (tmp_path / "off").exists()


def test_a_failed_run_that_saved_only_empty_folders_leaves_nothing(tmp_path):
    with pytest.raises(ValueError):
        with atomic.output_folder(tmp_path / "study", finished="results.json") as d:
            (d / "figures").mkdir()
            raise ValueError("the disk filled before the first figure")
    assert list(tmp_path.iterdir()) == []  # no folder to block the next run, and no failed.json to write


def test_a_symlinked_out_is_locked_where_it_points(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with atomic.run_lock(tmp_path / "link"):
        with pytest.raises(atomic.FolderInUseError):
            with atomic.run_lock(tmp_path / "real"):
                pass
    assert list((tmp_path / "real").iterdir()) == []


def test_the_current_folder_is_never_swapped_out(tmp_path, monkeypatch):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "old.txt").write_text("old")
    monkeypatch.chdir(tmp_path / "run")
    with pytest.raises(OSError, match="is the current folder"):
        with atomic.output_folder(".", overwrite=True):
            pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"] and (tmp_path / "run" / "old.txt").is_file()
