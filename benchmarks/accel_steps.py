"""Train-step runners and timing for ``benchmarks/accelerator.py``: the same method for JAX and PyTorch, on any device.

Timing (METHOD.md's rules): the first step is timed on its own (JAX: after a separate ahead-of-time compile;
PyTorch: eager, with its lazy initialisation), then ``warmup`` untimed steps, then ``steps`` timed steps
issued in chunks of ``chunk`` back-to-back calls with ONE device sync at the end of each chunk: nothing
inside a chunk waits for the device or reads a value back, so the host keeps the queue full. Each chunk
gives one per-step time (chunk time / chunk); the reported step time is the median over chunks. Inputs
are random (never zeros) and rotate over a few batches.

Memory: PyTorch's ``max_memory_allocated`` minus what was allocated before the runner was built (so models
alive from earlier runners do not count); JAX's allocator cannot reset its peak, so JAX rows carry the
compiled step's own footprint (``memory_analysis``: arguments + outputs - aliased + temporaries) and the
process peak so far (``memory_stats()["peak_bytes_in_use"]``).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext

import numpy as np

MIB = 2**20


def chunked_times(
    step: Callable[[], object], sync: Callable[[], object], *, steps: int, chunk: int, warmup: int
) -> list[float]:
    """Per-step seconds, one value per chunk of ``chunk`` steps (see the module docstring); ``steps`` >= chunk."""
    chunk = max(1, min(chunk, steps))
    for _ in range(warmup):
        step()
    sync()
    times = []
    for _ in range(max(1, steps // chunk)):
        t = time.perf_counter()
        for _ in range(chunk):
            step()
        sync()  # the only host<->device wait: once per chunk
        times.append((time.perf_counter() - t) / chunk)
    return times


def summary(times: Sequence[float]) -> dict:
    xs = sorted(times)
    return {
        "median_step_s": statistics.median(xs),
        "min_step_s": xs[0],
        "max_step_s": xs[-1],
        "step_times_s": list(times),
    }


def jax_device_peak_mib() -> float | None:
    import jax

    stats = jax.local_devices()[0].memory_stats() or {}
    return stats["peak_bytes_in_use"] / MIB if "peak_bytes_in_use" in stats else None


def compiled_mib(compiled) -> float | None:
    """The compiled step's own device footprint from XLA's memory analysis (None where the backend gives none)."""
    try:
        m = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - not every backend implements it
        return None
    if m is None:
        return None
    total = m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes + m.temp_size_in_bytes
    return total / MIB


# ----------------------------------------------------------------------------------------------
# JAX: the project's real train step
# ----------------------------------------------------------------------------------------------


class JaxStep:
    """``create_train_state`` + ``jit_train_step`` (state donated), lowered and compiled ahead of time."""

    framework = "jax"

    def __init__(self, model, tx, objective, batches: Sequence[dict]):
        import jax

        from jaxsenti.training.steps import create_train_state, jit_train_step, trace_counts

        self.jax = jax
        traces = trace_counts().get("train_step", 0)
        self.n_params = sum(x.size for x in jax.tree.leaves(_params(model)))
        self.state = create_train_state(model, tx, objective, seed=0)
        self.batches = [jax.device_put({k: np.asarray(b[k]) for k in objective.batch_keys}) for b in batches]
        jax.block_until_ready(self.batches)
        t = time.perf_counter()
        self.compiled = jit_train_step.lower(self.state, self.batches[0]).compile()
        self.compile_s = time.perf_counter() - t
        self.traces = trace_counts().get("train_step", 0) - traces
        self.i, self.metrics = 0, None
        t = time.perf_counter()
        self.step()
        self.sync()
        self.first_step_s = time.perf_counter() - t

    def step(self):
        self.state, self.metrics = self.compiled(self.state, self.batches[self.i % len(self.batches)])
        self.i += 1

    def sync(self):
        self.jax.block_until_ready((self.state.params, self.metrics))

    def result(self, times) -> dict:
        m = self.metrics
        return {
            "compile_s": self.compile_s,
            "first_step_s": self.first_step_s,
            **summary(times),
            "final_loss": float(m["loss_sum"]) / max(float(m["count"]), 1.0),
            "n_params": int(self.n_params),
            "traces": self.traces,
            "compiled_mib": compiled_mib(self.compiled),
            "device_peak_mib": None,
            "process_peak_mib": jax_device_peak_mib(),
        }


def _params(model):
    from flax import nnx

    return nnx.state(model, nnx.Param)


# ----------------------------------------------------------------------------------------------
# PyTorch eager
# ----------------------------------------------------------------------------------------------


class TorchStep:
    """``loss_fn(model, batch)`` forward (under autocast when ``autocast`` names a dtype), backward, optimizer step."""

    framework = "torch"

    def __init__(
        self, build: Callable[[], tuple], loss_fn, batches: Sequence[dict], *, device: str, autocast: str | None = None
    ):
        import torch

        self.torch, self.device, self.loss_fn = torch, device, loss_fn
        self.cuda = device.startswith("cuda")
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self.allocated_before = torch.cuda.memory_allocated() if self.cuda else 0
        torch.manual_seed(0)
        self.model, self.opt = build()
        self.model.to(device).train()
        self.n_params = sum(p.numel() for p in self.model.parameters())
        self.batches = [{k: torch.from_numpy(np.asarray(v)).to(device) for k, v in b.items()} for b in batches]
        self.autocast = (
            torch.autocast(device.split(":")[0], dtype=getattr(torch, autocast)) if autocast else nullcontext()
        )
        self.i, self.loss = 0, None
        t = time.perf_counter()
        self.step()
        self.sync()
        self.first_step_s = time.perf_counter() - t

    def step(self):
        b = self.batches[self.i % len(self.batches)]
        self.i += 1
        self.opt.zero_grad(set_to_none=True)
        with self.autocast:
            loss = self.loss_fn(self.model, b)
        loss.float().backward()
        self.opt.step()
        self.loss = loss.detach()  # read after the timed steps, never inside them

    def sync(self):
        if self.cuda:
            self.torch.cuda.synchronize()

    def result(self, times) -> dict:
        peak = ((self.torch.cuda.max_memory_allocated() - self.allocated_before) / MIB) if self.cuda else None
        return {
            "compile_s": None,
            "first_step_s": self.first_step_s,
            **summary(times),
            "final_loss": float(self.loss),
            "n_params": int(self.n_params),
            "device_peak_mib": peak,
        }


def run(runner, *, steps: int, chunk: int, warmup: int) -> dict:
    """Warm up, time, and return the runner's result row (the loss must be finite)."""
    times = chunked_times(runner.step, runner.sync, steps=steps, chunk=chunk, warmup=warmup)
    row = runner.result(times)
    if not np.isfinite(row["final_loss"]):
        raise FloatingPointError(f"{runner.framework}: non-finite loss {row['final_loss']}")
    return row


# ----------------------------------------------------------------------------------------------
# Inputs (random, never zeros) and the PyTorch models
# ----------------------------------------------------------------------------------------------


def lstm_batches(n: int, batch: int, seq: int, vocab: int, seed: int = 0) -> list[dict]:
    """Full-length rows (the PyTorch model does not pack), random tokens and labels."""
    rng = np.random.default_rng(seed)
    return [
        {
            "tokens": rng.integers(1, vocab, size=(batch, seq), dtype=np.int32),
            "lengths": np.full((batch,), seq, np.int32),
            "labels": rng.integers(0, 2, size=(batch,), dtype=np.int32),
            "weights": np.ones((batch,), np.float32),
        }
        for _ in range(n)
    ]


def bert_batches(n: int, batch: int, seq: int, vocab: int, seed: int = 0) -> list[dict]:
    """Right-padded rows of random length in [T/2, T] (row 0 full), [CLS] first; labels 0/1."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        lengths = rng.integers(seq // 2, seq + 1, size=batch).astype(np.int32)
        lengths[0] = seq
        tokens = rng.integers(min(1000, vocab // 2), vocab, size=(batch, seq)).astype(np.int32)
        tokens[:, 0] = min(101, vocab - 1)
        tokens[np.arange(seq)[None] >= lengths[:, None]] = 0
        out.append(
            {
                "tokens": tokens,
                "lengths": lengths,
                "labels": rng.integers(0, 2, size=batch).astype(np.int32),
                "weights": np.ones(batch, np.float32),
            }
        )
    return out


def mlm_batches(n: int, batch: int, seq: int, vocab: int, predictions: int, mask_id: int, seed: int = 0) -> list[dict]:
    """BERT batches with ``predictions`` distinct masked positions per row (in [1, length)), targets the originals."""
    rng = np.random.default_rng(seed + 1)
    out = []
    for b in bert_batches(n, batch, seq, vocab, seed):
        tokens = b["tokens"].copy()
        positions = np.stack(
            [np.sort(rng.choice(np.arange(1, int(L)), predictions, replace=False)) for L in b["lengths"]]
        ).astype(np.int32)
        rows = np.arange(batch)[:, None]
        targets = tokens[rows, positions].copy()
        tokens[rows, positions] = mask_id
        out.append(
            {
                "tokens": tokens,
                "lengths": b["lengths"],
                "positions": positions,
                "targets": targets,
                "target_weights": np.ones((batch, predictions), np.float32),
                "weights": b["weights"],
            }
        )
    return out


def torch_lstm(vocab: int, embed: int, hidden: int, layers: int, dropout: float, lr: float = 1e-3):
    """Embedding -> nn.LSTM (cuDNN on a GPU) -> last step -> dropout -> Linear(1), Adam (lstm_throughput.py's model)."""
    import torch
    from torch import nn

    class TorchLSTM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(vocab, embed)
            self.lstm = nn.LSTM(embed, hidden, num_layers=layers, batch_first=True, dropout=dropout)
            self.drop = nn.Dropout(dropout)
            self.head = nn.Linear(hidden, 1)

        def forward(self, tokens):
            out, _ = self.lstm(self.embed(tokens))
            return self.head(self.drop(out[:, -1])).squeeze(-1)

    def build():
        model = TorchLSTM()
        return model, torch.optim.Adam(model.parameters(), lr=lr)

    def loss_fn(model, b):
        return nn.functional.binary_cross_entropy_with_logits(model(b["tokens"].long()).float(), b["labels"].float())

    return build, loss_fn


def hf_config(cfg, **extra):
    """transformers.BertConfig matching our BertConfig, SDPA attention."""
    import transformers

    return transformers.BertConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        intermediate_size=cfg.intermediate_size,
        max_position_embeddings=cfg.max_position_embeddings,
        hidden_dropout_prob=cfg.hidden_dropout_prob,
        attention_probs_dropout_prob=cfg.attention_probs_dropout_prob,
        attn_implementation="sdpa",
        **extra,
    )


def torch_bert_classifier(cfg, lr: float, wd: float):
    import torch
    import transformers

    def build():
        model = transformers.BertForSequenceClassification(hf_config(cfg, num_labels=1))
        return model, torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)

    def loss_fn(model, b):
        T = b["tokens"].shape[1]
        mask = (torch.arange(T, device=b["tokens"].device)[None] < b["lengths"][:, None]).long()
        logits = model(input_ids=b["tokens"].long(), attention_mask=mask).logits[:, 0]
        return torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), b["labels"].float())

    return build, loss_fn


def torch_bert_mlm(cfg, lr: float, wd: float):
    """transformers BertForMaskedLM: labels -100 except at the masked positions (it scores every position)."""
    import torch
    import transformers

    def build():
        model = transformers.BertForMaskedLM(hf_config(cfg))
        return model, torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)

    def loss_fn(model, b):
        tokens = b["tokens"].long()
        T = tokens.shape[1]
        mask = (torch.arange(T, device=tokens.device)[None] < b["lengths"][:, None]).long()
        labels = torch.full_like(tokens, -100)
        labels.scatter_(1, b["positions"].long(), b["targets"].long())
        return model(input_ids=tokens, attention_mask=mask, labels=labels).loss

    return build, loss_fn
