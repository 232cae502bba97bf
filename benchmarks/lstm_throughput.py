"""Train-step throughput: jaxsenti's Flax NNX LSTM vs an equivalent PyTorch model, same machine.

    python benchmarks/lstm_throughput.py [--batch 64 --seq 128 --steps 12 --rounds 2 --json out.json]
                                         [--dtype bfloat16]   # JAX bf16 compute vs torch CPU autocast

Both sides: Embedding(vocab, emb) -> 2-layer LSTM(hidden) -> last step -> Dropout -> Linear(1),
Adam(1e-3), sigmoid BCE, dropout 0.5 between LSTM layers and before the head, train mode.
The JAX side is the project's real ``create_train_state`` + ``train_step`` jitted with the state
donated (``jaxsenti.training.steps.jit_train_step``). Both see the same token batches; all rows are
full length so the torch model (no packing) does the same work and "last step" means the same.

Each framework runs in its own subprocess so that peak RSS (``ru_maxrss``) is separated, and the
two alternate over ``--rounds`` so both see the same background load; torch keeps its default
intra-op threads. No XLA flags are set. Reported: JAX compile time (first call), steady-state median
step time and tokens/s, and the JAX/torch tokens/s ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import cpu_model  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def make_batches(n, batch, seq, vocab, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        out.append(
            {
                "tokens": rng.integers(1, vocab, size=(batch, seq), dtype=np.int32),
                "lengths": np.full((batch,), seq, np.int32),
                "labels": rng.integers(0, 2, size=(batch,), dtype=np.int32),
                "weights": np.ones((batch,), np.float32),
            }
        )
    return out


def peak_rss_mib() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kb / 1024.0


def run_jax(a) -> dict:
    sys.path.insert(0, ROOT)
    import jax
    import flax
    import optax
    from flax import nnx

    from jaxsenti.models.lstm import LSTMClassifier, LSTMConfig
    from jaxsenti.training.steps import create_train_state, jit_train_step

    cfg_kw = dict(vocab_size=a.vocab, embed_dim=a.embed, hidden_dim=a.hidden, num_layers=a.layers, dropout=a.dropout,
                  dtype=a.dtype)
    if a.unroll:
        cfg_kw["unroll"] = a.unroll
    cfg = LSTMConfig(**cfg_kw)
    model = LSTMClassifier(cfg, rngs=nnx.Rngs(0))
    state = create_train_state(model, optax.adam(1e-3), seed=0)
    del model
    n_batches = 4
    batches = [jax.device_put(b) for b in make_batches(n_batches, a.batch, a.seq, a.vocab)]

    t0 = time.perf_counter()
    state, m = jit_train_step(state, batches[0])
    jax.block_until_ready(m)
    first_call = time.perf_counter() - t0

    for i in range(a.warmup):
        state, m = jit_train_step(state, batches[i % n_batches])
    jax.block_until_ready((state, m))

    times = []
    for i in range(a.steps):
        t0 = time.perf_counter()
        state, m = jit_train_step(state, batches[i % n_batches])
        jax.block_until_ready((state.params, m))
        times.append(time.perf_counter() - t0)
    loss = float(m["loss_sum"] / m["count"])

    mem = None
    try:
        stats = jax.devices()[0].memory_stats()
        if stats:
            mem = stats.get("peak_bytes_in_use")
    except Exception:
        pass
    return {
        "framework": "jax",
        "versions": {"jax": jax.__version__, "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else None,
                     "flax": flax.__version__, "optax": optax.__version__},
        "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "device": str(jax.devices()[0]),
        "compile_plus_first_step_s": first_call,
        "step_times_s": times,
        "final_loss": loss,
        "peak_rss_mib": peak_rss_mib(),
        "jax_peak_bytes_in_use": mem,
    }


def run_torch(a) -> dict:
    import numpy as np
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
    n_batches = 4
    batches = [
        (torch.from_numpy(b["tokens"]).long(), torch.from_numpy(b["labels"]).float())
        for b in make_batches(n_batches, a.batch, a.seq, a.vocab)
    ]

    autocast = a.dtype != "float32"

    def step(tokens, labels):
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=getattr(torch, a.dtype), enabled=autocast):
            logits = model(tokens)
        loss = loss_fn(logits.float(), labels)
        loss.backward()
        opt.step()
        return loss

    t0 = time.perf_counter()
    step(*batches[0])
    first_call = time.perf_counter() - t0
    for i in range(a.warmup):
        step(*batches[i % n_batches])
    times = []
    for i in range(a.steps):
        t0 = time.perf_counter()
        loss = step(*batches[i % n_batches])
        times.append(time.perf_counter() - t0)
    return {
        "framework": "torch",
        "versions": {"torch": torch.__version__, "numpy": np.__version__},
        "autocast": a.dtype if autocast else None,
        "threads": {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()},
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
        "compile_plus_first_step_s": first_call,
        "step_times_s": times,
        "final_loss": float(loss),
        "peak_rss_mib": peak_rss_mib(),
    }


def worker_cmd(a, which):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", which]
    for k in ("batch", "seq", "steps", "warmup", "vocab", "embed", "hidden", "layers", "dropout", "unroll", "dtype"):
        cmd += [f"--{k}", str(getattr(a, k))]
    return cmd


def summarise(res, tokens_per_step):
    med = statistics.median(res["step_times_s"])
    res["median_step_s"] = med
    res["tokens_per_s"] = tokens_per_step / med
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--steps", type=int, default=12, help="timed steps per framework and round (after warm-up)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2, help="alternate jax/torch subprocesses this many times")
    p.add_argument("--vocab", type=int, default=9524)
    p.add_argument("--embed", type=int, default=400)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                   help="compute dtype: JAX LSTMConfig.dtype; torch runs the forward under torch.autocast(cpu, dtype)")
    p.add_argument("--unroll", type=int, default=0, help="override LSTMConfig.unroll (0 = config default)")
    p.add_argument("--only", choices=("jax", "torch"), default=None, help="run one framework only")
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--worker", choices=("jax", "torch"), default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)

    if a.worker:
        res = run_jax(a) if a.worker == "jax" else run_torch(a)
        print("RESULT " + json.dumps(res))
        return 0

    tokens_per_step = a.batch * a.seq
    results = {}
    # Alternate the two frameworks over rounds so that both see the same background load.
    for rnd in range(a.rounds):
        for which in ("jax", "torch"):
            if a.only and which != a.only:
                continue
            proc = subprocess.run(worker_cmd(a, which), capture_output=True, text=True)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                sys.stderr.write(proc.stdout + proc.stderr)
                raise SystemExit(f"{which} worker failed (rc={proc.returncode})")
            res = json.loads(lines[-1][len("RESULT "):])
            if which not in results:
                res["rounds"] = [res.pop("step_times_s")]
                res["compile_plus_first_step_s"] = [res["compile_plus_first_step_s"]]
                results[which] = res
            else:
                prev = results[which]
                prev["rounds"].append(res["step_times_s"])
                prev["compile_plus_first_step_s"].append(res["compile_plus_first_step_s"])
                prev["peak_rss_mib"] = max(prev["peak_rss_mib"], res["peak_rss_mib"])
    for res in results.values():
        res["step_times_s"] = [t for r in res["rounds"] for t in r]
        res["round_medians_s"] = [statistics.median(r) for r in res["rounds"]]
        res["compile_plus_first_step_s"] = statistics.median(res["compile_plus_first_step_s"])
        summarise(res, tokens_per_step)

    print(f"LSTM train step  B={a.batch} T={a.seq} vocab={a.vocab} emb={a.embed} hidden={a.hidden} "
          f"layers={a.layers} dropout={a.dropout} dtype={a.dtype}  ({cpu_model()}, {os.cpu_count()} CPUs)")
    print(f"{'framework':<10}{'median step ms':>16}{'tokens/s':>12}{'first call s':>14}{'peak RSS MiB':>14}")
    for name, r in results.items():
        print(f"{name:<10}{r['median_step_s'] * 1e3:>16.1f}{r['tokens_per_s']:>12.0f}"
              f"{r['compile_plus_first_step_s']:>14.2f}{r['peak_rss_mib']:>14.0f}")
    ratio = None
    if "jax" in results and "torch" in results:
        ratio = results["jax"]["tokens_per_s"] / results["torch"]["tokens_per_s"]
        print(f"JAX/torch tokens/s ratio: {ratio:.2f}x")
    if "jax" in results:
        print(f"JAX compile + first step: {results['jax']['compile_plus_first_step_s']:.2f} s "
              f"(steady step {results['jax']['median_step_s']:.3f} s)")

    if a.json:
        out = {
            "args": {k: v for k, v in vars(a).items() if k not in ("worker", "json")},
            "cpu_model": cpu_model(),
            "cpu_count": os.cpu_count(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "tokens_per_step": tokens_per_step,
            "jax_over_torch_tokens_per_s": ratio,
            "results": results,
        }
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
