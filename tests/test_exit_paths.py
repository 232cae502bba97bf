"""After a correct error message, nothing else: damaged or mismatched checkpoints, a full disk, Ctrl-C.

The orbax/tensorstore noise these cases used to print (asyncio tracebacks from background threads, some at
interpreter exit) never reaches pytest's capture, so the command-line cases run ``python -m jaxsenti`` in a
subprocess and read its whole stderr: a user error is exit 2 and one line, Ctrl-C is exit 130 and one line
(progress lines starting ``[jaxsenti]`` may come before either).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import orbax.checkpoint as ocp
import pytest
from tests.conftest import REPO
from tests.test_cli import TINY_LSTM
from tests.test_pretrain import TINY_LM

from jaxsenti import atomic
from jaxsenti.cli import main
from jaxsenti.pipeline import Predictor
from jaxsenti.training import checkpoints


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(REPO), MPLBACKEND="Agg")


def _jaxsenti(*argv) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jaxsenti", *map(str, argv)], env=_env(), capture_output=True,
                          text=True, timeout=300)


def _last_line(stderr: str, prefix: str) -> str:
    """The one line the command ended with; every line before it is a progress line; no traceback anywhere."""
    lines = stderr.strip().splitlines()
    assert lines and "Traceback" not in stderr and "Event loop" not in stderr, stderr
    assert lines[-1].startswith(prefix) and all(x.startswith("[jaxsenti]") for x in lines[:-1]), stderr
    return lines[-1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_csv_module):
    """A tiny trained LSTM folder (checkpoint every step, so state/ holds steps); tests copy it before damaging it."""
    root = tmp_path_factory.mktemp("exit_paths")
    cfg = root / "tiny.py"
    cfg.write_text(TINY_LSTM, encoding="utf-8")
    out = root / "model"
    assert main(["train", "lstm", "--config", str(cfg), "--data", str(tiny_csv_module), "--out", str(out), "--quiet",
                 "--set", "checkpoint_every=1"]) == 0
    return out


@pytest.fixture(scope="module")
def tiny_csv_module(tmp_path_factory):
    from tests.conftest import NEGATIVE, POSITIVE

    rows = ["comment,sentiment"]
    for k in range(3):
        rows += [f"{t}{'！' * k},1" for t in POSITIVE] + [f"{t}{'。' * k},0" for t in NEGATIVE]
    p = tmp_path_factory.mktemp("exit_paths_data") / "reviews.csv"
    p.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return p


def _copy(trained: Path, tmp_path: Path) -> Path:
    d = tmp_path / "model"
    shutil.copytree(trained, d)
    return d


def _train_argv(trained: Path, out: Path, *extra) -> list[str]:
    """The command that trained ``trained``, into ``out``."""
    return ["train", "lstm", "--config", str(trained.parent / "tiny.py"), "--out", str(out), "--quiet", "--set",
            "checkpoint_every=1", *extra]


# ------------------------------------------------------------------------------------- damaged checkpoints


@pytest.mark.parametrize("pattern", ["*", "manifest.ocdbt"])  # every file; the OCDBT index alone
def test_zero_byte_best_checkpoint_is_one_line(trained, tmp_path, pattern):
    d = _copy(trained, tmp_path)
    for f in (d / "checkpoints" / "best").rglob(pattern):
        if f.is_file():
            f.write_bytes(b"")
    r = _jaxsenti("predict", "--model", d, "好吃")
    assert r.returncode == 2 and r.stdout == ""
    assert "checkpoints/best is damaged and cannot be restored" in _last_line(r.stderr, "jaxsenti: error:")


def test_zero_byte_state_checkpoints_are_one_line_on_resume_and_do_not_matter_to_predict(trained, tiny_csv_module,
                                                                                         tmp_path):
    d = _copy(trained, tmp_path)
    for f in (d / "checkpoints" / "state").rglob("process_0"):  # this variant printed ~130 lines of asyncio tracebacks
        if f.is_file():
            f.write_bytes(b"")
    r = _jaxsenti(*_train_argv(trained, d, "--resume"), "--data", tiny_csv_module)
    assert r.returncode == 2
    assert "every checkpoint is damaged" in _last_line(r.stderr, "jaxsenti: error:")
    r = _jaxsenti("predict", "--model", d, "好吃")  # prediction reads only checkpoints/best
    assert r.returncode == 0 and r.stderr == "" and json.loads(r.stdout)["text"] == "好吃"


def test_config_that_disagrees_with_the_weights_names_the_array_and_both_shapes(trained, tmp_path):
    d = _copy(trained, tmp_path)
    cfg = json.loads((d / "config.json").read_text())
    cfg["model"]["hidden_dim"] = 16
    (d / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    r = _jaxsenti("predict", "--model", d, "好吃")
    assert r.returncode == 2
    line = _last_line(r.stderr, "jaxsenti: error:")
    assert f"{d}/config.json and the weights saved in {d}/checkpoints/best disagree" in line
    assert "head.kernel is (8, 1) in the weights but (16, 1) by the config (and 3 more difference(s))" in line
    assert "damaged" not in line and "retrain the model, or restore the config" in line


def test_disagreement_lists_missing_and_extra_arrays():
    saved = {"embed.embedding": (52, 8), "layers.0.fwd.w_ih": (8, 32)}
    assert checkpoints._disagreement(saved, dict(saved)) is None
    msg = checkpoints._disagreement(saved, {"embed.embedding": (52, 8), "layers.0.fwd.w_ih": (8, 32), "layers.1.fwd.w_ih": (8, 32)})
    assert msg == "the weights have no layers.1.fwd.w_ih (8, 32)"
    msg = checkpoints._disagreement(saved, {"embed.embedding": (99, 8)})
    assert msg.startswith("embed.embedding is (52, 8) in the weights but (99, 8) by the config") and "1 more" in msg


# ------------------------------------------------------------------------------------- full disk


def _enospc(what="x"):
    return OSError(errno.ENOSPC, "No space left on device", what)


def test_disk_full_while_saving_the_state_keeps_earlier_checkpoints(trained, tiny_csv_module, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    argv = _train_argv(trained, out, "--data", str(tiny_csv_module))
    real, calls = ocp.CheckpointManager.save, []

    def save(self, step, *a, **k):  # the 7th save writes part of its folder, then the disk is full
        calls.append(step)
        if len(calls) == 7:
            partial = Path(self.directory) / f"{step}.orbax-checkpoint-tmp-1234"
            partial.mkdir(parents=True)
            (partial / "half").write_bytes(b"\0" * 10)
            raise ValueError(f'RESOURCE_EXHAUSTED: Error writing local file "{partial}/x": No space left on device '
                             "[os_error_code='28']")
        return real(self, step, *a, **k)

    monkeypatch.setattr(ocp.CheckpointManager, "save", save)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"the disk is full: no space left to save the train state of step {calls[-1]} in {out}/checkpoints" \
           in _last_line(err, "jaxsenti: error:")
    state = out / "checkpoints" / "state"
    assert sorted(int(p.name) for p in state.iterdir()) == calls[-3:-1]  # the two before it, whole; no partial folder
    assert json.loads((out / "failed.json").read_text())["reason"].startswith("the disk is full")
    Predictor(out)  # the best of epoch 1 is intact
    monkeypatch.undo()
    assert main(argv + ["--resume"]) == 0  # with space again, it continues from the last checkpoint
    assert not (out / "failed.json").exists() and (out / "metrics.json").is_file()


def test_disk_full_while_saving_the_best_keeps_the_old_best(tmp_path, monkeypatch):
    ckpt = checkpoints.Checkpoints(tmp_path)
    ckpt.save_best({"w": np.ones(3, np.float32)})
    real = ocp.StandardCheckpointer.save

    def full(self, directory, *a, **k):
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / "half").write_bytes(b"\0")
        raise _enospc(str(directory))

    monkeypatch.setattr(ocp.StandardCheckpointer, "save", full)
    with pytest.raises(atomic.DiskFullError, match=f"no space left to save the best parameters in {tmp_path}"):
        ckpt.save_best({"w": np.full(3, 2.0, np.float32)})
    monkeypatch.setattr(ocp.StandardCheckpointer, "save", real)
    ckpt.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best", "state"]  # no best.incoming left
    restored = checkpoints.restore_params(tmp_path / "best", {"w": np.zeros(3, np.float32)})
    np.testing.assert_array_equal(restored["w"], np.ones(3))


def test_disk_full_on_an_atomic_write_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    p = tmp_path / "metrics.json"
    p.write_text("old", encoding="utf-8")

    def fsync(fd):
        raise _enospc()

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(atomic.DiskFullError, match=f"the disk is full: no space left to write {p}"):
        atomic.write_json(p, {"new": 1})
    assert p.read_text(encoding="utf-8") == "old" and [x.name for x in tmp_path.iterdir()] == ["metrics.json"]


def test_disk_full_anywhere_is_one_line_naming_the_file(trained, tiny_csv_module, tmp_path, capsys, monkeypatch):
    import jaxsenti.pipeline as pipeline

    def results(folder, *a, **k):  # a library writing its own file (e.g. a tokenizer) hits the full disk
        try:
            raise _enospc(str(folder / "tokenizer" / "vocab.txt"))
        except OSError as e:
            raise RuntimeError("could not save the tokenizer") from e

    monkeypatch.setattr(pipeline, "_write_results", results)
    assert main(_train_argv(trained, tmp_path / "run", "--data", str(tiny_csv_module))) == 2
    line = _last_line(capsys.readouterr().err, "jaxsenti: error:")
    assert line == f"jaxsenti: error: the disk is full (no space left on device writing {tmp_path}/run/tokenizer/vocab.txt); " \
                   "free some space and run again"


def test_a_multi_line_message_is_printed_as_one_line(write_csv, capsys):
    from jaxsenti.data import DataError
    from jaxsenti.cli import _error_line

    assert _error_line(DataError("f.csv: 2 row(s) with x\n  3 row(s) with y")) == "f.csv: 2 row(s) with x; 3 row(s) with y"
    assert _error_line(RuntimeError("a bug")) is None  # a bug keeps its traceback


# ------------------------------------------------------------------------------------- Ctrl-C

# Runs the command with a SIGINT sent to itself at a chosen point: the n-th state save (inside orbax's save),
# the n-th best save, the n-th training step, or while the command's modules are being imported.
_HARNESS = r"""
import builtins, os, signal, sys
where, at = sys.argv[1], int(sys.argv[2])
calls = []

def ctrl_c():
    # What a SIGINT does: its Python handler runs at the main thread's next bytecode boundary. Called here
    # directly, that boundary is this one however busy the machine (os.kill let a loaded machine deliver it
    # after the run had finished, or while a long C call was under way).
    calls.append(1)
    if len(calls) == at:
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            handler(signal.SIGINT, None)  # a handler that holds the interrupt returns, and the code goes on
        elif handler == signal.SIG_DFL:
            raise KeyboardInterrupt

def hook(owner, name):
    real = getattr(owner, name)
    def wrapped(*a, **k):
        ctrl_c()
        return real(*a, **k)
    setattr(owner, name, wrapped)

if where == "import":
    real_import = builtins.__import__
    def imp(name, *a, **k):
        if name == "jaxsenti.cli":
            ctrl_c()
        return real_import(name, *a, **k)
    builtins.__import__ = imp
else:
    import orbax.checkpoint as ocp
    import jaxsenti.training.loop as loop
    owner, name = {"save": (ocp.CheckpointManager, "save"), "best": (ocp.StandardCheckpointer, "save"),
                   "step": (loop, "jit_train_step")}[where]
    hook(owner, name)
sys.argv = ["jaxsenti", *sys.argv[3:]]
from jaxsenti.__main__ import run
sys.exit(run())
"""


def _interrupt(where: str, at: int, *argv) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _HARNESS, where, str(at), *map(str, argv)], env=_env(),
                          capture_output=True, text=True, timeout=300)


def _leftovers(folder: Path) -> list[str]:
    return [str(p) for p in folder.rglob("*") if "tmp" in p.name or "incoming" in p.name or p.name == atomic.LOCK_NAME]


def test_ctrl_c_during_a_state_save_finishes_it_and_says_how_to_resume(trained, tiny_csv_module, tmp_path, capsys):
    out = tmp_path / "run"
    argv = _train_argv(trained, out, "--data", str(tiny_csv_module))
    r = _interrupt("save", 3, *argv)
    assert r.returncode == 130
    line = _last_line(r.stderr, "jaxsenti: interrupted")
    again = " ".join(["jaxsenti", *argv, "--resume"])
    assert line == f"jaxsenti: interrupted; `{again}` continues from step 3"
    assert (out / "checkpoints" / "state" / "3").is_dir() and not _leftovers(out) and not (out / "failed.json").exists()
    assert main(argv + ["--resume"]) == 0  # the checkpoint the interrupt waited for restores
    assert "resuming" not in capsys.readouterr().err  # no damaged step was skipped


def test_ctrl_c_during_a_best_save_keeps_a_whole_best(trained, tiny_csv_module, tmp_path):
    out = tmp_path / "run"
    r = _interrupt("best", 1, *_train_argv(trained, out, "--data", str(tiny_csv_module)))
    assert r.returncode == 130 and "--resume` continues from step" in _last_line(r.stderr, "jaxsenti: interrupted")
    assert not _leftovers(out)
    Predictor(out)  # the best written under Ctrl-C is complete


def test_ctrl_c_during_training_of_a_replacing_run_leaves_the_old_folder(trained, tiny_csv_module, tmp_path):
    out = _copy(trained, tmp_path)
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    r = _interrupt("step", 4, *_train_argv(trained, out, "--data", str(tiny_csv_module), "--overwrite"))
    assert r.returncode == 130
    assert "the output folder is as it was before this run" in _last_line(r.stderr, "jaxsenti: interrupted")
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no staged folder left beside it


def test_ctrl_c_while_loading_the_libraries(tmp_path):
    r = _interrupt("import", 1, "predict", "--model", tmp_path, "好吃")
    assert r.returncode == 130 and r.stderr == "jaxsenti: interrupted\n"


def test_ctrl_c_in_a_study_and_in_pretraining(trained, tiny_csv_module, tmp_path, write_csv):
    study = tmp_path / "study"
    r = _interrupt("save", 2, "study", "--data", tiny_csv_module, "--out", study, "--models", "lstm", "--config",
                   f"lstm={trained.parent / 'tiny.py'}", "--neural-seeds", "1", "--split", "0.6/0.2/0.2", "--no-eda", "--quiet")
    assert r.returncode == 130
    assert _last_line(r.stderr, "jaxsenti: interrupted") == \
           f"jaxsenti: interrupted; {study} holds an unfinished run: run again with --overwrite to replace it"

    corpus = write_csv("\n".join(["菜很好吃，服务也很好", "环境太差，味道一般", "非常满意，下次还来"] * 40) + "\n", "corpus.txt")
    cfg = tmp_path / "tiny_lm.py"
    cfg.write_text(TINY_LM.replace("CORPUS", repr(str(corpus))), encoding="utf-8")
    lm = tmp_path / "lm"
    r = _interrupt("save", 1, "pretrain", "lstm", "--config", cfg, "--out", lm, "--quiet")
    assert r.returncode == 130
    line = _last_line(r.stderr, "jaxsenti: interrupted")
    assert line.startswith(f"jaxsenti: interrupted; `jaxsenti pretrain lstm --config {cfg} --out {lm} --quiet --resume` "
                           "continues from step")
    assert main(["pretrain", "lstm", "--config", str(cfg), "--out", str(lm), "--quiet", "--resume"]) == 0
