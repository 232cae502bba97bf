"""Data-parallel training over a device mesh: 8 devices == 1 device, padding, checkpoints across meshes, determinism.

Each multi-device case runs in a subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=8``
(the flag only works before jax starts); this file is also the worker script those subprocesses run:
``python tests/test_distributed.py <scenario> '<json kwargs>'`` prints one ``RESULT {...}`` line.

Tolerances: 8 devices vs 1 device differ only by float32 summation order in the cross-device
reductions (loss sums, gradient all-reduce), so per-step losses and params agree to rtol 1e-5
(observed ~1e-7). Same seed and same device count agree bitwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BUCKETS = (8, 16)
RTOL = 1e-5


# ----------------------------------------------------------------------------------------------
# worker side (runs in the subprocess; jax is imported only here)
# ----------------------------------------------------------------------------------------------


def _data(n, seed):
    """The learnable toy task of tests/test_training_loop.py, imported here so jax starts in the worker."""
    from tests.test_training_loop import _data as toy_data

    return toy_data(n, seed)


def _state(dropout=0.1, accum=1, total=100):
    from flax import nnx

    from jaxsenti.config import OptimConfig
    from jaxsenti.models.lstm import LSTMClassifier, LSTMConfig
    from jaxsenti.objectives import Classification
    from jaxsenti.training import steps
    from jaxsenti.training.optim import make_optimizer

    model = LSTMClassifier(LSTMConfig(vocab_size=12, embed_dim=8, hidden_dim=8, num_layers=1, dropout=dropout), rngs=nnx.Rngs(0))
    return steps.create_train_state(model, make_optimizer(OptimConfig(name="adam", lr=1e-2), total), Classification(), seed=0,
                                    grad_accum_steps=accum)


def _params(state) -> list:
    import jax

    from jaxsenti.training.sharding import fetch

    return [fetch(x).tolist() for x in jax.tree.leaves(state.params)]


def _fit(out_dir, *, devices=None, fsdp_min_size=None, epochs=3, batch_size=12, **kw):
    import dataclasses

    from tests.test_training_loop import LOOP, _batches

    from jaxsenti.training.loop import fit
    from jaxsenti.training.sharding import Layout
    from jaxsenti.training.steps import shard_state

    state = _state()
    if fsdp_min_size is not None:
        state = shard_state(state, Layout.create(devices, fsdp=True, fsdp_min_size=fsdp_min_size))
    cfg = dataclasses.replace(LOOP, epochs=epochs, batch_size=batch_size, eval_batch_size=12, mesh_devices=devices)
    return fit(state, *_batches(cfg, _data(80, 0), _data(30, 1)), cfg, out_dir=Path(out_dir), progress=False, **kw)


def _history(res) -> list:
    return [{k: v for k, v in h.items() if k != "seconds"} for h in res.history]


def _trajectory(devices, accum=1, dropout=0.1, epochs=2, batch_size=12):
    """Per-step losses of the real loop pieces (shard_state, padded/sharded batches, jit_train_step)."""
    from jaxsenti.training.batching import iterate_batches
    from jaxsenti.training.loop import device_batch
    from jaxsenti.training.sharding import Layout, fetch
    from jaxsenti.training.steps import jit_train_step, shard_state, trace_counts

    state = shard_state(_state(dropout, accum), Layout.create(devices))
    before = trace_counts().get("train_step", 0)
    train = _data(80, 0)
    losses, counts, shapes = [], [], set()
    for epoch in range(epochs):
        count = 0.0
        for batch in iterate_batches(train.seqs, train.labels, batch_size, BUCKETS, shuffle=True, seed=0, epoch=epoch):
            dev = device_batch(state, batch, train=True)
            shapes.add(dev["tokens"].shape)
            state, m = jit_train_step(state, dev)
            m = fetch(m)
            losses.append(float(m["loss_sum"] / m["count"]))
            count += float(m["count"])
        counts.append(count)
    shardings = {str(x.sharding.spec) for x in __import__("jax").tree.leaves(state)}
    return {"losses": losses, "counts": counts, "shapes": sorted(shapes), "params": _params(state), "specs": sorted(shardings),
            "mesh": state.layout.num_devices, "compiles": trace_counts()["train_step"] - before}


def _scenario(name: str, kw: dict) -> dict:
    import jax

    from jaxsenti.training import steps
    from jaxsenti.training.batching import LabelledBatches
    from jaxsenti.training.loop import evaluate
    from jaxsenti.training.sharding import Layout

    if name == "multiprocess":  # one of several processes: the launcher sets JAXSENTI_COORDINATOR etc.
        from jaxsenti.training.sharding import maybe_initialize_distributed

        jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU cross-process collectives
        assert maybe_initialize_distributed()
        out = {"process": jax.process_index(), "processes": jax.process_count(), "local": jax.local_device_count()}
        return out | _scenario("fit", kw)
    out = {"device_count": jax.device_count()}
    if name == "trajectory":
        for key, args in kw["runs"].items():
            out[key] = _trajectory(**args)
    elif name == "evaluate":
        state = steps.shard_state(_state(), Layout.create(kw.get("devices")))
        val = _data(37, 2)
        metrics, logits = evaluate(state, LabelledBatches(val, 12, BUCKETS))  # 37 = 12 + 12 + 12 + 1; rows padded to 16 on 8 devices
        out |= {"metrics": metrics, "probs": (1 / (1 + np.exp(-logits))).tolist(), "labels": val.labels.tolist()}
        out["train"] = _trajectory(kw.get("devices"), epochs=1)
    elif name == "fits":  # several fits in one process, in order
        out["fits"] = [_scenario("fit", args) for args in kw["runs"]]
    elif name == "fit":
        res = _fit(kw.pop("out_dir"), **kw)
        out |= {"history": _history(res), "steps": res.steps, "interrupted": res.interrupted, "params": _params(res.state),
                "mesh": res.state.layout.num_devices,
                "param_specs": sorted({str(x.sharding.spec) for x in jax.tree.leaves(res.state.params)}),
                "best_specs": None if res.best_params is None else
                sorted({str(x.sharding.spec) for x in jax.tree.leaves(res.best_params)})}
    else:
        raise ValueError(name)
    return out


# ----------------------------------------------------------------------------------------------
# test side
# ----------------------------------------------------------------------------------------------


def run_worker(scenario: str, n_devices: int, timeout: float = 240, **kw) -> dict:
    """Run ``scenario`` in a fresh python with ``n_devices`` host-platform (CPU) devices."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    env["JAXSENTI_DISTRIBUTED"] = "0"
    if n_devices > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={n_devices}"
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), scenario, json.dumps(kw)], env=env,
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise AssertionError(f"worker {scenario} on {n_devices} devices failed (rc {proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    res = json.loads(lines[-1][len("RESULT "):])
    assert res["device_count"] == n_devices
    return res


def _close(a, b, rtol=RTOL, atol=1e-6):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=rtol, atol=atol)


def _close_params(a, b, rtol=RTOL, atol=1e-6):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        _close(x, y, rtol, atol)


def test_eight_devices_match_one_device():
    """Same global batch (12 real rows: padded to 16 on 8 devices) → same per-step losses and params."""
    runs = {"d8": {"devices": 8}, "d1mesh": {"devices": 1}, "d8_accum2_nodrop": {"devices": 8, "dropout": 0.0, "accum": 2}}
    eight = run_worker("trajectory", 8, runs=runs)
    one = run_worker("trajectory", 1, runs={"d1": {"devices": None}, "d1_nodrop": {"devices": None, "dropout": 0.0}})
    ref = one["d1"]
    assert ref["mesh"] == 1 and eight["d8"]["mesh"] == 8
    assert ref["shapes"] == [[12, 8], [12, 16]] and eight["d8"]["shapes"] == [[16, 8], [16, 16]]
    assert len(ref["losses"]) == len(eight["d8"]["losses"]) == 14  # 2 epochs x 7 batches
    # dropout masks do not depend on the sharding (a hash of the global element index): even with dropout they agree
    _close(eight["d8"]["losses"], ref["losses"])
    _close_params(eight["d8"]["params"], ref["params"])
    assert eight["d1mesh"]["losses"] == ref["losses"]  # a 1-device mesh inside the 8-device process: bitwise
    assert eight["d8"]["specs"] == ["P()"]  # state replicated
    assert all(r["compiles"] == len(BUCKETS) for r in [*eight.values(), *one.values()] if isinstance(r, dict))
    # gradient accumulation (2 strided microbatches of 8 rows, 1 per device) = the full batch, without dropout
    _close(eight["d8_accum2_nodrop"]["losses"], one["d1_nodrop"]["losses"])
    _close_params(eight["d8_accum2_nodrop"]["params"], one["d1_nodrop"]["params"])


def test_partial_batches_are_padded_and_masked_not_dropped():
    ev = run_worker("evaluate", 8, devices=8)
    assert ev["train"]["counts"] == [80.0]  # batches of 12 padded to 16: every training example weighs in once per epoch
    probs, labels = np.asarray(ev["probs"]), np.asarray(ev["labels"])
    assert probs.shape == (37,) and np.all((probs > 0) & (probs < 1))  # every example scored, filler rows dropped
    assert ev["metrics"]["accuracy"] == pytest.approx(float(np.mean((probs > 0.5) == labels)), abs=1e-6)


def test_checkpoints_move_between_eight_and_one_device(tmp_path):
    """Interrupt on one mesh, resume on the other (orbax restores onto the template's sharding): same result."""
    e = {"epochs": 2}
    ref, part1 = run_worker("fits", 1, runs=[{"out_dir": str(tmp_path / "ref")} | e,
                                             {"out_dir": str(tmp_path / "1to8"), "stop_after_steps": 9} | e])["fits"]
    part8, done8 = run_worker("fits", 8, runs=[
        {"out_dir": str(tmp_path / "8to1"), "stop_after_steps": 9} | e,  # mid-epoch 2
        # resumed on 8 devices with FSDP: params restored straight into sharded arrays
        {"out_dir": str(tmp_path / "1to8"), "resume": True, "devices": 8, "fsdp_min_size": 0} | e])["fits"]
    (done1,) = run_worker("fits", 1, runs=[{"out_dir": str(tmp_path / "8to1"), "resume": True} | e])["fits"]
    assert part1["interrupted"] and part8["interrupted"] and part1["steps"] == part8["steps"] == 9 and part8["mesh"] == 8
    assert done1["mesh"] == 1 and done8["mesh"] == 8 and "P(None, 'data')" in done8["param_specs"]
    assert done8["best_specs"] == done8["param_specs"]  # best params restored with the state's sharding
    for done in (done1, done8):
        assert done["steps"] == ref["steps"] == 14
        assert [h["epoch"] for h in done["history"]] == [1, 2]
        _close([h["train_loss"] for h in done["history"]], [h["train_loss"] for h in ref["history"]])
        _close([h["val_loss"] for h in done["history"]], [h["val_loss"] for h in ref["history"]])
        assert [h["val_accuracy"] for h in done["history"]] == [h["val_accuracy"] for h in ref["history"]]
        _close_params(done["params"], ref["params"])


def test_two_processes_match_one_device(tmp_path):
    """A real multi-process run on localhost: 2 processes x 4 CPU devices, jax.distributed + gloo collectives.

    Exercises what one process cannot: maybe_initialize_distributed, per-process batch slices
    (make_array_from_process_local_data), fetching replicated metrics, orbax writing one checkpoint
    from two processes (and restoring the best params from it).
    """
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.listen()
        try:  # the coordinator lives on loopback: without it both processes would wait until the timeout
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        except OSError as e:
            pytest.fail(f"loopback 127.0.0.1 is not usable here ({e}); jax.distributed needs it for this test")
    kw = {"out_dir": str(tmp_path / "mp"), "epochs": 2}
    procs = []
    for pid in range(2):
        env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
        env |= {"JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
                "JAXSENTI_COORDINATOR": f"127.0.0.1:{port}", "JAXSENTI_NUM_PROCESSES": "2", "JAXSENTI_PROCESS_ID": str(pid),
                "PYTHONPATH": os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])}
        env.pop("JAXSENTI_DISTRIBUTED", None)
        procs.append(subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "multiprocess", json.dumps(kw)],
                                      env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    try:
        for p in procs:
            stdout, stderr = p.communicate(timeout=240)
            lines = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")]
            assert p.returncode == 0 and lines, f"rc {p.returncode}\n{stdout[-3000:]}\n{stderr[-6000:]}"
            results.append(json.loads(lines[-1][len("RESULT "):]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    (ref,) = run_worker("fits", 1, runs=[{"out_dir": str(tmp_path / "ref"), "epochs": 2}])["fits"]
    assert [(r["process"], r["processes"], r["local"], r["mesh"]) for r in results] == [(0, 2, 4, 8), (1, 2, 4, 8)]
    assert results[0]["history"] == results[1]["history"] and results[0]["params"] == results[1]["params"]
    _close([h["train_loss"] for h in results[0]["history"]], [h["train_loss"] for h in ref["history"]])
    _close([h["val_loss"] for h in results[0]["history"]], [h["val_loss"] for h in ref["history"]])
    _close_params(results[0]["params"], ref["params"])
    assert (tmp_path / "mp" / "checkpoints" / "best").is_dir()


def test_same_seed_and_devices_is_bitwise_deterministic(tmp_path):
    a = run_worker("fit", 8, out_dir=str(tmp_path / "a"), epochs=2)
    b = run_worker("fit", 8, out_dir=str(tmp_path / "b"), epochs=2)
    assert a["history"] == b["history"]  # exact float equality, every metric of every epoch
    assert a["params"] == b["params"]


def test_distributed_env_detection(monkeypatch):
    from jaxsenti.training.sharding import distributed_requested

    assert not distributed_requested({})
    assert not distributed_requested({"SLURM_JOB_ID": "1", "SLURM_NTASKS": "1"})  # one task: plain single host
    assert distributed_requested({"SLURM_JOB_ID": "1", "SLURM_NTASKS": "4"})
    assert distributed_requested({"JAXSENTI_COORDINATOR": "10.0.0.1:1234"})
    assert distributed_requested({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234"})
    assert distributed_requested({"TPU_WORKER_HOSTNAMES": "a,b,c,d"})
    assert not distributed_requested({"TPU_WORKER_HOSTNAMES": "localhost"})
    assert distributed_requested({"JAXSENTI_DISTRIBUTED": "1"})
    assert not distributed_requested({"JAXSENTI_DISTRIBUTED": "0", "SLURM_JOB_ID": "1", "SLURM_NTASKS": "4"})


def test_layout_rules_in_process():
    """Padding arithmetic and the FSDP rule (shapes only), on whatever devices this process has."""
    import jax

    from jaxsenti.training.sharding import DATA_AXIS, Layout

    layout = Layout.create()
    n = jax.device_count()
    assert layout.padded_rows(12) == -(-12 // n) * n and layout.padded_rows(12, multiple=4) % (4 * n) == 0
    assert layout.local_rows(layout.padded_rows(12)) == slice(0, layout.padded_rows(12))
    fs = Layout(layout.mesh, fsdp=True, fsdp_min_size=0)
    assert fs.spec_for((3,)) == jax.sharding.PartitionSpec()
    if n == 1:
        assert fs.spec_for((16, 8)) == jax.sharding.PartitionSpec()
    else:
        assert fs.spec_for((8 * n, 4 * n)) == jax.sharding.PartitionSpec(DATA_AXIS)
        assert fs.spec_for((3, 4 * n)) == jax.sharding.PartitionSpec(None, DATA_AXIS)
    with pytest.raises(ValueError, match="mesh_devices"):
        Layout.create(n + 1)


if __name__ == "__main__":
    result = _scenario(sys.argv[1], json.loads(sys.argv[2]))
    print("RESULT " + json.dumps(result))
