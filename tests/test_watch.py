"""Watching a run: TensorBoard scalars and metrics.jsonl every log_every steps and epoch, the start-up line,
jax.profiler traces, the persistent compilation cache, and a divergence shown at the step it starts."""

import json
import math
import os
import struct
import subprocess
import sys

import pytest
from tests.test_cli import TINY_LSTM
from tests.test_pretrain import TINY_MLM

from jaxsenti.cli import main
from jaxsenti.training.optim import lr_schedule
from jaxsenti.config import OptimConfig
from jaxsenti.training.tracking import METRICS_FILE

pytest.importorskip("tensorboardX")


def read_events(folder) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the folder's TensorBoard event files, by tag: [(step, value)] (TFRecord framing read by
    hand: a length, its CRC, the record, its CRC; the records are tensorboardX's Event protos)."""
    from tensorboardX.proto.event_pb2 import Event

    out: dict[str, list[tuple[int, float]]] = {}
    files = sorted(folder.glob("events.out.tfevents.*"))
    assert files, f"no event file in {folder}"
    for path in files:
        data = path.read_bytes()
        pos = 0
        while pos < len(data):
            (n,) = struct.unpack("<Q", data[pos:pos + 8])
            event = Event.FromString(data[pos + 12:pos + 12 + n])
            pos += 12 + n + 4
            for v in event.summary.value:
                if v.HasField("simple_value"):
                    out.setdefault(v.tag, []).append((event.step, v.simple_value))
    return out


def read_texts(folder) -> dict[str, str]:
    from tensorboardX.proto.event_pb2 import Event

    out = {}
    for path in folder.glob("events.out.tfevents.*"):
        data, pos = path.read_bytes(), 0
        while pos < len(data):
            (n,) = struct.unpack("<Q", data[pos:pos + 8])
            event = Event.FromString(data[pos + 12:pos + 12 + n])
            pos += 12 + n + 4
            for v in event.summary.value:
                if v.HasField("tensor") and v.tensor.string_val:
                    out[v.tag.removesuffix("/text_summary")] = v.tensor.string_val[0].decode()
    return out


def rows(folder, kind=None) -> list[dict]:
    lines = (folder / METRICS_FILE).read_text(encoding="utf-8").splitlines()
    parsed = [json.loads(line) for line in lines]  # strict JSON: no NaN
    return [r for r in parsed if kind is None or r["kind"] == kind]


@pytest.fixture
def tiny_cfg(tmp_path):
    p = tmp_path / "tiny.py"
    p.write_text(TINY_LSTM, encoding="utf-8")
    return p


def _train(tiny_cfg, tiny_csv, out, *extra):
    return main(["train", "lstm", "--config", str(tiny_cfg), "--data", str(tiny_csv), "--out", str(out), "--quiet",
                 "--set", "log_every=1", *extra])


def test_train_writes_scalars_every_log_point_and_epoch(tiny_cfg, tiny_csv, tmp_path):
    out = tmp_path / "run"
    assert _train(tiny_cfg, tiny_csv, out) == 0
    history = json.loads((out / "history.json").read_text())
    steps = history[-1]["step"]
    train = rows(out, "train")
    assert [r["step"] for r in train] == list(range(1, steps + 1))  # log_every=1: every step
    schedule = lr_schedule(OptimConfig(name="adam", lr=1e-2), steps)
    for r in train:
        for key in ("loss", "accuracy", "grad_norm", "param_norm", "examples_per_s", "step_time_ms"):
            assert isinstance(r[key], float) and math.isfinite(r[key]), (key, r)
        assert r["lr"] == pytest.approx(float(schedule(r["step"])))
        assert r["grad_norm"] > 0 and r["param_norm"] > 0
    assert any("tflops_per_s" in r and "mfu" in r for r in train)  # XLA's cost analysis of the step
    epochs = rows(out, "epoch")
    assert [r["epoch"] for r in epochs] == [h["epoch"] for h in history]
    assert epochs[-1]["val_accuracy"] == pytest.approx(history[-1]["val_accuracy"])
    (start,) = rows(out, "start")
    assert start["devices"] >= 1 and start["global_batch"] == 8 and start["dtype"] == "float32"

    events = read_events(out)  # the same numbers in TensorBoard
    assert [s for s, _ in events["train/loss"]] == [r["step"] for r in train]
    assert [v for _, v in events["train/loss"]] == pytest.approx([r["loss"] for r in train], rel=1e-6)
    assert [v for _, v in events["val/accuracy"]] == pytest.approx([h["val_accuracy"] for h in history])
    for tag in ("train/lr", "train/grad_norm", "train/param_norm", "train/examples_per_s", "train/step_time_ms",
                "train_epoch/loss"):
        assert tag in events, tag
    texts = read_texts(out)
    assert "optim.lr" in texts["config"] and "model.hidden_dim" in texts["config"]


def test_pretrain_writes_tokens_per_second(corpus_txt, tmp_path):
    cfg = tmp_path / "mlm.py"
    cfg.write_text(TINY_MLM.replace("CORPUS", repr(str(corpus_txt))), encoding="utf-8")
    out = tmp_path / "pre"
    assert main(["pretrain", "bert", "--config", str(cfg), "--out", str(out), "--quiet", "--set", "log_every=2"]) == 0
    train = rows(out, "train")
    assert train and all(r["step"] % 2 == 0 and r["tokens_per_s"] > 0 for r in train)
    assert "train/tokens_per_s" in read_events(out) and "val/loss" in read_events(out)


def test_report_to_none_writes_nothing_and_a_bad_destination_is_one_line(tiny_cfg, tiny_csv, tmp_path, capsys):
    out = tmp_path / "quiet"
    assert _train(tiny_cfg, tiny_csv, out, "--report-to", "none") == 0
    assert not list(out.glob("events.out.tfevents.*")) and not (out / METRICS_FILE).exists()
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        _train(tiny_cfg, tiny_csv, tmp_path / "x", "--report-to", "tensorbored")
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tensorbored" in err[0] and "tensorboard" in err[0]


def test_a_divergence_is_logged_at_the_step_it_starts(tiny_cfg, tiny_csv, tmp_path):
    out = tmp_path / "diverged"
    assert _train(tiny_cfg, tiny_csv, out, "--set", "optim.name=sgd", "--set", "optim.clip_norm=None",
                  "--set", "optim.lr=1e38") == 2
    (first,) = rows(out, "train")  # the run stopped at its first log point, after logging it
    assert first["step"] == 1 and first["nonfinite_steps"] == 1
    bad = [k for k in ("loss", "grad_norm", "param_norm") if first[k] is None]  # nan/inf is null in JSON...
    assert bad
    events = read_events(out)
    for k in bad:  # ...and nan/inf in TensorBoard
        assert events[f"train/{k}"][0][0] == 1 and not math.isfinite(events[f"train/{k}"][0][1])


def test_resume_continues_the_logs_without_duplicates(tiny_cfg, tiny_csv, tmp_path):
    from jaxsenti.pipeline import train_on_split

    from jaxsenti.config import load_config
    from jaxsenti.data import load_reviews, stratified_split

    cfg = load_config(str(tiny_cfg))
    import dataclasses

    cfg = dataclasses.replace(cfg, log_every=1, checkpoint_every=3)
    reviews = load_reviews(tiny_csv)
    split = stratified_split(reviews.labels, cfg.data.split, seed=cfg.seed)
    out = tmp_path / "resumed"
    first = train_on_split(cfg, reviews, split, out, progress=False, stop_after_steps=4)
    assert first.interrupted
    with open(out / METRICS_FILE, "a", encoding="utf-8") as f:  # what a killed run logged past its checkpoint
        f.write(json.dumps({"step": 5, "kind": "train", "loss": 9.0}) + "\n")
    train_on_split(cfg, reviews, split, out, progress=False, resume=True)
    steps = [r["step"] for r in rows(out, "train")]
    assert steps == sorted(set(steps)) and steps[0] == 1 and 9.0 not in [r["loss"] for r in rows(out, "train")]


def test_profile_writes_a_trace(tiny_cfg, tiny_csv, tmp_path, capsys):
    out = tmp_path / "profiled"
    assert _train(tiny_cfg, tiny_csv, out, "--profile", "1:2") == 0
    traces = list((out / "profile").rglob("*.xplane.pb"))
    assert traces and traces[0].stat().st_size > 0
    assert "profile of steps 2-3" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _train(tiny_cfg, tiny_csv, tmp_path / "y", "--profile", "3")
    assert "START:N" in capsys.readouterr().err


def test_second_identical_run_hits_the_compilation_cache(tiny_cfg, tiny_csv, tmp_path):
    env = dict(os.environ, JAXSENTI_CACHE=str(tmp_path / "cache"))
    env.pop("JAXSENTI_NO_COMPILE_CACHE", None)
    lines = []
    for name in ("first", "second"):
        cmd = [sys.executable, "-m", "jaxsenti", "train", "lstm", "--config", str(tiny_cfg), "--data", str(tiny_csv),
               "--out", str(tmp_path / name)]
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
        lines.append(next(line for line in p.stderr.splitlines() if "first step" in line))
    assert "compilation cache: miss" in lines[0] and "compilation cache: hit" in lines[1], lines
    assert list((tmp_path / "cache" / "xla").iterdir())
    off = subprocess.run(cmd[:-1] + [str(tmp_path / "third")], env=env | {"JAXSENTI_NO_COMPILE_CACHE": "1"},
                         capture_output=True, text=True, timeout=300)
    assert "compilation cache: off" in off.stderr


def test_the_command_line_starts_without_the_heavy_libraries(tmp_path):
    # `jaxsenti --help` and usage errors must not wait for JAX, Flax, orbax, scikit-learn, jieba or torch
    # (seconds each); benchmarks/startup.py measures the time, this checks the cause.
    code = ("import sys; from jaxsenti.cli import build_parser; build_parser(); "
            "print(','.join(m for m in ('jax', 'flax', 'orbax.checkpoint', 'sklearn', 'jieba', 'torch', 'numpy', "
            "'matplotlib', 'tensorboardX') if m in sys.modules))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert p.returncode == 0 and p.stdout.strip() == "", p.stdout + p.stderr
    bad = subprocess.run([sys.executable, "-m", "jaxsenti", "train", "lstm", "--profile", "x"], capture_output=True,
                         text=True, timeout=60, cwd=tmp_path)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "START:N" in bad.stderr
