"""Atomic files and folders: crashes at every stage leave the complete old or the complete new output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jaxsenti import atomic, ownership

REPO = Path(__file__).resolve().parents[1]

# Two "runs" that write different file sets, so a folder holding files of both is easy to spot.
RUNS = {"old": ("shared.txt", "only_old.txt", "sub/deep.txt"), "new": ("shared.txt", "only_new.txt", "sub/deep.txt")}


def _write_run(folder: Path, run: str, upto: int | None = None) -> None:
    for name in RUNS[run][:upto]:
        p = folder / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(run, encoding="utf-8")


def _run_in(folder: Path, complete: bool = True) -> str | None:
    """Which run wrote this folder; fails if it mixes two runs or (``complete``) lacks a file."""
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != ownership.MANIFEST_NAME)
    owners = {(folder / f).read_text(encoding="utf-8") for f in files}
    assert len(owners) <= 1, f"{folder} mixes runs: {owners}"
    run = owners.pop() if owners else None
    if complete:
        assert run and files == sorted(RUNS[run]), f"{folder} holds an incomplete run {run!r}: {files}"
    return run


def _siblings(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name != out.name)


def _check_no_mix(out: Path) -> None:
    """``out`` holds one complete run, or (killed between the renames) the named .old does.

    A stage being written (.tmp) or an old folder being deleted once ``out`` is in place may be
    partial, but no folder ever holds files of two runs.
    """
    if out.exists():
        _run_in(out)
    for p in out.parent.iterdir():
        if p.name.startswith(f".{out.name}.old-"):
            _run_in(p, complete=not out.exists())
        elif p.name.startswith(f".{out.name}.tmp-"):
            _run_in(p, complete=False)
        elif p != out:
            assert p.name.startswith(f".{out.name}.tmp-"), f"unexpected leftover {p.name}"


@pytest.fixture
def out(tmp_path) -> Path:
    """runs/out already holding the complete 'old' run."""
    o = tmp_path / "runs" / "out"
    o.mkdir(parents=True)
    _write_run(o, "old")
    ownership.record(o, complete=True)  # a run jaxsenti wrote: --overwrite may replace it
    return o


# --------------------------------------------------------------------------- files


def test_write_text_and_json(tmp_path):
    p = atomic.write_text(tmp_path / "a" / "r.md", "好评\n")
    assert p.read_text(encoding="utf-8") == "好评\n"
    atomic.write_json(tmp_path / "a" / "r.json", {"准确率": 0.9})
    assert json.loads((tmp_path / "a" / "r.json").read_text(encoding="utf-8")) == {"准确率": 0.9}
    assert "准确率" in (tmp_path / "a" / "r.json").read_text(encoding="utf-8")  # not \\u-escaped
    assert sorted(x.name for x in (tmp_path / "a").iterdir()) == ["r.json", "r.md"]


def test_write_text_respects_umask(tmp_path):
    old = os.umask(0o022)
    try:
        p = atomic.write_text(tmp_path / "m.txt", "x")
    finally:
        os.umask(old)
    assert p.stat().st_mode & 0o777 == 0o644


def test_write_text_failure_keeps_old_file(tmp_path, monkeypatch):
    p = tmp_path / "r.json"
    p.write_text("old", encoding="utf-8")

    def boom(*a):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic.write_json(p, {"new": 1})
    assert p.read_text(encoding="utf-8") == "old"
    assert [x.name for x in tmp_path.iterdir()] == ["r.json"]


def test_write_text_fsyncs(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    atomic.write_text(tmp_path / "f.txt", "x")
    assert synced


def test_atomic_path_for_figures(tmp_path):
    from matplotlib.figure import Figure

    target = tmp_path / "fig.png"
    with atomic.atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".png" and tmp != target
        fig = Figure()
        fig.subplots().plot([0, 1])
        fig.savefig(tmp)  # format picked from the suffix
        assert not target.exists()
    assert target.read_bytes()[:4] == b"\x89PNG"
    assert [x.name for x in tmp_path.iterdir()] == ["fig.png"]


def test_atomic_path_error_keeps_old_file(tmp_path):
    target = tmp_path / "fig.png"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("renderer crashed")
    assert target.read_bytes() == b"old"
    assert [x.name for x in tmp_path.iterdir()] == ["fig.png"]
    with pytest.raises(FileNotFoundError, match="nothing was written"):
        with atomic.atomic_path(target):
            pass
    assert target.read_bytes() == b"old"


# --------------------------------------------------------------------------- staged_dir


def test_staged_dir_creates_new_folder(tmp_path):
    out = tmp_path / "runs" / "fresh"
    with atomic.staged_dir(out, overwrite=False) as d:
        assert d.parent == out.parent and d.name.startswith(".fresh.tmp-") and not out.exists()
        _write_run(d, "new")
    assert _run_in(out) == "new" and _siblings(out) == []


def test_staged_dir_replaces_with_overwrite(out):
    with atomic.staged_dir(out, overwrite=True) as d:
        _write_run(d, "new")
        assert _run_in(out) == "old"  # the old run stays readable while the new one is written
    assert _run_in(out) == "new" and _siblings(out) == []


def test_staged_dir_refuses_non_empty_without_overwrite(out):
    with pytest.raises(atomic.OutputExistsError, match=r"--overwrite") as e:
        with atomic.staged_dir(out, overwrite=False):
            pytest.fail("must not start")
    assert "--resume" not in str(e.value) and str(out) in str(e.value)
    with pytest.raises(FileExistsError, match=r"--overwrite.*--resume"):
        with atomic.staged_dir(out, overwrite=False, can_resume=True):
            pass
    assert _run_in(out) == "old" and _siblings(out) == []


def test_staged_dir_accepts_empty_existing_folder(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    with atomic.staged_dir(out, overwrite=False) as d:
        _write_run(d, "new")
    assert _run_in(out) == "new"


def test_staged_dir_rejects_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError, match="not a folder"):
        with atomic.staged_dir(tmp_path / "f", overwrite=True):
            pass


def test_exception_while_writing_leaves_old_untouched(out):
    with pytest.raises(KeyboardInterrupt):
        with atomic.staged_dir(out, overwrite=True) as d:
            _write_run(d, "new", upto=2)
            raise KeyboardInterrupt
    assert _run_in(out) == "old" and _siblings(out) == []


@pytest.mark.parametrize("failing_call", [1, 2])
def test_rename_failure_keeps_old_and_the_finished_run(out, monkeypatch, failing_call):
    """A failing rename (1: old aside, 2: new in) leaves the old folder, and the new run kept aside."""
    real, calls = os.rename, []

    def rename(a, b):
        calls.append((a, b))
        if len(calls) == failing_call:
            raise PermissionError(13, "denied")
        real(a, b)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(atomic.CommitError, match=r"outputs were kept in .*out\.new-") as e:
        with atomic.staged_dir(out, overwrite=True) as d:
            _write_run(d, "new")
    monkeypatch.setattr(os, "rename", real)
    assert _run_in(out) == "old"
    kept = [p for p in out.parent.iterdir() if p.name.startswith("out.new-")]
    assert len(kept) == 1 and _run_in(kept[0]) == "new" and str(kept[0]) in str(e.value)
    assert [s for s in _siblings(out) if s.startswith(".")] == []


def test_output_appearing_during_run_is_not_clobbered(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(atomic.OutputExistsError, match="kept in"):
        with atomic.staged_dir(out, overwrite=False) as d:
            _write_run(d, "new")
            out.mkdir()
            _write_run(out, "old")  # another process wrote there meanwhile
    assert _run_in(out) == "old"
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("out.new-")]
    assert len(kept) == 1 and _run_in(kept[0]) == "new"


# --------------------------------------------------------------------------- kills

_KILLER = r"""
import os, shutil, sys
from pathlib import Path
from jaxsenti import atomic, ownership

mode, kill_at, out = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
calls = [0]
real_rename, real_rmtree = os.rename, shutil.rmtree

def tick():
    calls[0] += 1
    if calls[0] == kill_at:
        os._exit(9)  # like SIGKILL: no except/finally runs

def rename(a, b):
    tick()
    real_rename(a, b)

def rmtree(p, *a, **k):  # die after deleting one file of the old folder
    first = next(x for x in Path(p).rglob("*") if x.is_file())
    first.unlink()
    tick()
    real_rmtree(p, *a, **k)

os.rename, shutil.rmtree = rename, rmtree

def write(folder, upto=None):
    for name in {names}[:upto]:
        q = folder / name
        q.parent.mkdir(parents=True, exist_ok=True)
        q.write_text("new", encoding="utf-8")
        if upto is not None:
            tick()

if mode == "staged":
    with atomic.staged_dir(out, overwrite=True) as d:
        write(d, 2 if kill_at == 0 else None)
        if kill_at == 0:
            os._exit(9)
else:
    src = out.parent / "incoming"
    src.mkdir()
    write(src)
    atomic.replace_dir(src, out)
os._exit(0)
""".replace("{names}", repr(list(RUNS["new"])))


def _run_killer(mode: str, kill_at: int, out: Path) -> int:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", _KILLER, mode, str(kill_at), str(out)], env=env, timeout=60).returncode


# kill_at counts os.rename / shutil.rmtree calls: 0 = killed while writing the run's files,
# 1 = before "out -> .old", 2 = before ".tmp -> out" (between the two renames), 3 = while deleting .old.
@pytest.mark.parametrize("kill_at, expect", [(0, "old"), (1, "old"), (2, "new"), (3, "new")])
def test_kill_at_any_point_leaves_one_complete_run(out, kill_at, expect):
    assert _run_killer("staged", kill_at, out) == 9
    _check_no_mix(out)  # right after the kill, before any repair
    if kill_at == 2:
        assert not out.exists()  # both complete folders are there under their .old/.tmp names
    done = atomic.recover_dir(out)
    assert _run_in(out) == expect and _siblings(out) == [], done
    with atomic.staged_dir(out, overwrite=True) as d:  # and the next run works normally
        _write_run(d, "old")
    assert _run_in(out) == "old" and _siblings(out) == []


@pytest.mark.parametrize("kill_at, expect", [(2, "old"), (3, "new"), (4, "new")])
def test_replace_dir_kill(out, kill_at, expect):
    # replace_dir renames: 1 = src -> .tmp, 2 = out -> .old, 3 = .tmp -> out, then 4 = rmtree(.old)
    assert _run_killer("replace", kill_at, out) == 9
    _check_no_mix(out)
    atomic.recover_dir(out)
    assert _run_in(out) == expect
    assert [s for s in _siblings(out) if s.startswith(".")] == []


def test_replace_dir(tmp_path, out):
    src = tmp_path / "best-new"
    src.mkdir()
    _write_run(src, "new")
    assert atomic.replace_dir(src, out) == out
    assert _run_in(out) == "new" and not src.exists() and _siblings(out) == []
    # dst that does not exist yet
    src.mkdir()
    _write_run(src, "old")
    atomic.replace_dir(src, tmp_path / "runs" / "best")
    assert _run_in(tmp_path / "runs" / "best") == "old"


def test_replace_dir_failure_keeps_old_and_hands_src_back(tmp_path, out, monkeypatch):
    src = tmp_path / "best-new"
    src.mkdir()
    _write_run(src, "new")
    real, calls = os.rename, []

    def rename(a, b):
        calls.append(1)
        if len(calls) == 3:  # ".tmp -> out" fails after "out -> .old" succeeded
            raise OSError("rename failed")
        real(a, b)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OSError, match="rename failed"):
        atomic.replace_dir(src, out)
    monkeypatch.setattr(os, "rename", real)
    assert _run_in(out) == "old" and _run_in(src) == "new" and _siblings(out) == []


def test_recover_leaves_live_processes_alone(tmp_path):
    out = tmp_path / "out"
    mine = tmp_path / f".out.tmp-{os.getpid()}-abcd"  # a stage this very process is writing
    mine.mkdir()
    dead_pid = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True).stdout.strip()
    dead = tmp_path / f".out.tmp-{dead_pid}-abcd"
    dead.mkdir()
    assert atomic.recover_dir(out) == [f"removed leftover {dead.name}"]
    assert mine.is_dir() and not dead.exists()
