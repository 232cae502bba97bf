"""Train-step throughput: jaxsenti's Flax NNX LSTM vs an equivalent PyTorch model, same machine.

    python benchmarks/lstm_throughput.py [--batch 64 --seq 128 --steps 12 --rounds 2 --json out.json]
                                         [--dtype bfloat16]   # JAX bf16 compute vs torch CPU autocast

Both sides: Embedding(vocab, emb) -> 2-layer LSTM(hidden) -> last step -> Dropout -> Linear(1),
Adam(1e-3), sigmoid BCE, dropout 0.5 between LSTM layers and before the head, train mode.
The JAX side is the project's real ``create_train_state`` + ``train_step`` (``Classification`` objective)
jitted with the state donated (``jaxsenti.training.steps.jit_train_step``). Both see the same random
token batches; all rows are full length so the torch model (no packing) does the same work and "last
step" means the same.

Each framework runs in its own subprocess so that peak RSS (``ru_maxrss``) is separated, and the
two alternate over ``--rounds`` so both see the same background load; torch keeps its default
intra-op threads. No XLA flags are set. Reported in the layout of ``common.throughput_result``: the
first step (JAX: compile + first step), steady-state median step time, tokens/s, and the JAX/torch ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from common import (HERE, base_argparser, device_peak_mib, finish, machine_info, parse_args, peak_rss_mib,
                    run_script, show_throughput, throughput_result, time_calls, write_json)
from gemm_floor import flops, lstm_gemms

WORKER_ARGS = ("batch", "seq", "steps", "warmup", "vocab", "embed", "hidden", "layers", "dropout", "dtype")


def make_batches(n, batch, seq, vocab, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    return [{"tokens": rng.integers(1, vocab, size=(batch, seq), dtype=np.int32),
             "lengths": np.full((batch,), seq, np.int32),
             "labels": rng.integers(0, 2, size=(batch,), dtype=np.int32),
             "weights": np.ones((batch,), np.float32)} for _ in range(n)]


def run_jax(a) -> dict:
    import dataclasses

    import jax
    import optax
    from flax import nnx

    from jaxsenti.models.lstm import LSTMClassifier, LSTMConfig
    from jaxsenti.objectives import Classification
    from jaxsenti.training.steps import create_train_state, jit_train_step

    cfg = LSTMConfig(vocab_size=a.vocab, embed_dim=a.embed, hidden_dim=a.hidden, num_layers=a.layers, dropout=a.dropout,
                     dtype=a.dtype)
    state = create_train_state(LSTMClassifier(cfg, rngs=nnx.Rngs(0)), optax.adam(1e-3), Classification(), seed=0)
    batches = [jax.device_put(b) for b in make_batches(4, a.batch, a.seq, a.vocab)]
    m = None

    def step(i):
        nonlocal state, m
        state, m = jit_train_step(state, batches[i % len(batches)])
        jax.block_until_ready((state.params, m))

    t = time_calls(step, repeats=a.steps, warmup=a.warmup)  # the first call compiles
    return {"first_step_s": t["first_call_s"], "step_times_s": t["times_s"], "peak_rss_mib": peak_rss_mib(),
            "device_peak_mib": device_peak_mib(), "final_loss": float(m["loss_sum"] / m["count"]),
            "devices": machine_info(devices=True)["devices"], "config": dataclasses.asdict(cfg)}


def run_torch(a) -> dict:
    import torch
    from torch import nn

    torch.manual_seed(0)

    class TorchLSTM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(a.vocab, a.embed)
            self.lstm = nn.LSTM(a.embed, a.hidden, num_layers=a.layers, batch_first=True, dropout=a.dropout)
            self.drop = nn.Dropout(a.dropout)
            self.head = nn.Linear(a.hidden, 1)

        def forward(self, tokens):
            out, _ = self.lstm(self.embed(tokens))
            return self.head(self.drop(out[:, -1])).squeeze(-1)

    model = TorchLSTM().train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.BCEWithLogitsLoss()
    batches = [(torch.from_numpy(b["tokens"]).long(), torch.from_numpy(b["labels"]).float())
               for b in make_batches(4, a.batch, a.seq, a.vocab)]
    autocast = a.dtype != "float32"
    loss = None

    def step(i):  # eager on CPU: returns when the work is done
        nonlocal loss
        tokens, labels = batches[i % len(batches)]
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=getattr(torch, a.dtype), enabled=autocast):
            logits = model(tokens)
        loss = loss_fn(logits.float(), labels)
        loss.backward()
        opt.step()

    t = time_calls(step, repeats=a.steps, warmup=a.warmup)
    return {"first_step_s": t["first_call_s"], "step_times_s": t["times_s"], "peak_rss_mib": peak_rss_mib(),
            "final_loss": float(loss), "autocast": a.dtype if autocast else None,
            "threads": {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()}}


def measure(a) -> dict:
    """Both frameworks, one subprocess per framework and round, rounds alternating; merged per framework."""
    names = [fw for fw in ("jax", "torch") if a.only in (None, fw)]
    runs: dict[str, list[dict]] = {fw: [] for fw in names}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(a.rounds):
            for fw in names:
                out = Path(tmp) / f"{fw}.json"
                cmd = [sys.executable, HERE / "lstm_throughput.py", "--worker", fw, "--json", out]
                cmd += [x for k in WORKER_ARGS for x in (f"--{k}", getattr(a, k))]
                runs[fw].append(run_script(cmd, out)["result"])
    return {fw: rs[-1] | {"first_step_s": statistics.median(r["first_step_s"] for r in rs),
                         "step_times_s": [t for r in rs for t in r["step_times_s"]],
                         "round_medians_s": [statistics.median(r["step_times_s"]) for r in rs],
                         "peak_rss_mib": max(r["peak_rss_mib"] for r in rs)} for fw, rs in runs.items()}


def main(argv=None) -> int:
    ap = base_argparser(__doc__)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--steps", type=int, default=12, help="timed steps per framework and round, after warm-up (quick: 4)")
    ap.add_argument("--warmup", type=int, default=3, help="(quick: 1)")
    ap.add_argument("--rounds", type=int, default=2, help="alternate jax/torch subprocesses this many times (quick: 1)")
    ap.add_argument("--vocab", type=int, default=9524)
    ap.add_argument("--embed", type=int, default=400)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--dropout", type=float, default=0.5)
    ap.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                    help="compute dtype: JAX LSTMConfig.dtype; torch runs the forward under torch.autocast(cpu, dtype)")
    ap.add_argument("--only", choices=("jax", "torch"), default=None, help="run one framework only")
    ap.add_argument("--worker", choices=("jax", "torch"), default=None, help=argparse.SUPPRESS)
    a = parse_args(ap, argv, quick=dict(steps=4, warmup=1, rounds=1))
    if a.worker:
        write_json(a.json, run_jax(a) if a.worker == "jax" else run_torch(a))
        return 0
    fws = measure(a)
    res = throughput_result(
        fws, setup=f"emb {a.embed}, {a.layers}x{a.hidden}, B={a.batch}, T={a.seq}, {a.dtype}", batch=a.batch, seq=a.seq,
        flops=flops(*lstm_gemms(a.batch, a.seq, a.embed, a.hidden, a.layers)),
        note="every row full length (no padding), JAX and PyTorch each in their own subprocess, so the peak RSS is "
             "per framework.",
        args={k: v for k, v in vars(a).items() if k not in ("worker", "json")})
    return finish(res, a, argv, show_throughput, devices=fws.get("jax", {}).get("devices"))


if __name__ == "__main__":
    raise SystemExit(main())
