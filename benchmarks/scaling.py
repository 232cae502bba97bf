"""Scaling of LSTM training on CPU: train-step throughput vs batch size, and epoch time vs dataset size.

    python benchmarks/scaling.py [--part batch,dataset] [--quick] [--json out.json] [--plots DIR]

* ``batch``: ``harness.py``'s ``lstm`` case once per batch size (the study's LSTM: vocab 9524,
  embedding 400, 2 x LSTM(256), T = 128, full-length rows), each framework in its own subprocess, so peak RSS
  is per batch size too. PyTorch is measured as well unless ``--no-torch`` (``--quick`` implies it).
* ``dataset``: one epoch of LSTM training through the project's own path (jieba words -> ``Vocab`` ->
  ``LabelledBatches`` with length buckets -> ``jit_train_step``) on 2000 dianping reviews and on random
  subsets (seed 0) of online_shopping: 20000 and all 62695 (``--quick``: 2000 and 10000). The model is a
  moderate one so that the 62k epoch stays affordable on 2 cores: embedding 128, 1 x LSTM(128), max_len 128,
  buckets 32/64/128, batch 64, the study's optimizer (Adam 1e-3, clip 5), vocabulary words with >= 2
  occurrences capped at 30000, embedding table always 30000 rows (same parameter shapes at every size, so
  the step compiles once: ``compile_s`` is the real compile for the first size and ~0 after it).
  Reported per size: preprocessing time (CJK filter + jieba, no disk cache; vocab build + encode), compile
  time (one step per bucket shape, before the epoch), epoch time, reviews/s and real tokens/s.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

from common import (base_argparser, clear_segment_memo, data_path, finish, names_of, parse_args, peak_rss_mib,
                    script_main)

# --- batch-size scaling (the harness's lstm case, a worker process per framework) ---

ROW_KEYS = ("median_step_s", "tokens_per_s", "seq_per_s", "first_step_s", "peak_rss_mib")


def batch_scaling(batches=(16, 32, 64, 128), *, seq: int = 128, steps: int = 6, warmup: int = 2, torch: bool = True,
                  log=print) -> dict:
    from harness import measure, spec_for

    rows = []
    for b in batches:
        res = measure(spec_for("lstm", batch=b, seq=seq, steps=steps, warmup=warmup, rounds=1,
                               frameworks=("jax", "torch") if torch else ("jax",),
                               peak_flops=1.0), isolate=True)  # no MFU here, so no matmul: the parent stays light
        fws = {fw: {k: x.get(k) for k in ROW_KEYS} for fw, x in res["frameworks"].items()}
        rows.append({"batch": b, "seq": seq, "tokens_per_step": res["tokens_per_step"],
                     "jax_over_torch": res["jax_over_torch"], "frameworks": fws})
        log(f"  B={b:<4} " + "  ".join(f"{fw} {x['tokens_per_s']:>8.0f} tok/s" for fw, x in fws.items())
            + (f"  ratio {res['jax_over_torch']:.2f}x" if res["jax_over_torch"] else ""))
    return {"model": "study LSTM: vocab 9524, emb 400, 2 x LSTM(256), dropout 0.5, Adam", "seq": seq,
            "steps": steps, "warmup": warmup, "torch": torch, "rows": rows}


# --- dataset-size scaling (in process) ---

MODERATE = dict(embed_dim=128, hidden_dim=128, num_layers=1, dropout=0.5, pooling="last")


def load_size(n: int, seed: int = 0) -> tuple[str, list[str], object]:
    """n <= 2000: dianping's first n reviews; otherwise a random subset of online_shopping (all of it if n is larger)."""
    import numpy as np

    from jaxsenti.data import load_reviews

    if n <= 2000:
        r = load_reviews(data_path("dianping"), "comment", "sentiment")
        return "dianping", r.texts[:n], r.labels[:n]
    r = load_reviews(data_path("online_shopping"), "review", "label")
    if n >= len(r):
        return "online_shopping", r.texts, r.labels
    idx = np.sort(np.random.default_rng(seed).choice(len(r), n, replace=False))
    return "online_shopping", [r.texts[i] for i in idx], r.labels[idx]


@functools.cache
def study_optimizer():
    """The study's optimizer, built once: the train state holds it as a static field, so the same object lets
    jit reuse the compiled steps across sizes."""
    from jaxsenti import config as config_lib
    from jaxsenti.training.optim import make_optimizer

    study = config_lib.load_config("lstm_dianping")
    if study.optim.schedule != "constant":
        raise ValueError("the dataset-scaling benchmark assumes a constant learning rate")
    return make_optimizer(study.optim, 1)


def epoch_benchmark(texts, labels, *, model_kw=None, batch_size: int = 64, max_len: int = 128,
                    buckets=(32, 64, 128), min_freq: int = 2, vocab_cap: int = 30000, seed: int = 0) -> dict:
    import jax
    import numpy as np
    from flax import nnx

    from jaxsenti import registry
    from jaxsenti.data import Vocab, segment_many
    from jaxsenti.data.text import jieba_tokenizer
    from jaxsenti.objectives import Classification
    from jaxsenti.training.batching import Encoded, LabelledBatches, bucket_for, pad_batch
    from jaxsenti.training.loop import device_batch
    from jaxsenti.training.steps import create_train_state, jit_train_step

    jieba_tokenizer()
    clear_segment_memo()
    t0 = time.perf_counter()
    words = segment_many(list(texts), use_disk_cache=False, progress=False)
    seg_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    vocab = Vocab.build(words, min_freq=min_freq, max_size=vocab_cap)
    seqs = [vocab.encode(w, max_len) for w in words]
    encode_s = time.perf_counter() - t0
    labels = np.asarray(labels, np.int32)

    # The embedding always has vocab_cap rows (ids beyond the real vocabulary are never used), so that every
    # size trains the same parameter shapes: the jitted step compiles once, for the first size only.
    spec = registry.get("lstm")
    model = spec.module(spec.config(vocab_size=vocab_cap, **(model_kw or MODERATE)), rngs=nnx.Rngs(params=seed))
    batches = LabelledBatches(Encoded(seqs, labels), batch_size, tuple(buckets), shuffle=True, seed=seed)
    state = create_train_state(model, study_optimizer(), Classification(), seed=seed)
    del model

    used = sorted({bucket_for(len(s), buckets) for s in seqs})
    t0 = time.perf_counter()
    for b in used:  # compile every bucket shape before the timed epoch
        batch = pad_batch(seqs[:batch_size], labels[:batch_size], batch_size, b)
        state, m = jit_train_step(state, device_batch(state, batch))
    jax.block_until_ready(state.params)
    compile_s = time.perf_counter() - t0

    sums = None
    t0 = time.perf_counter()
    for batch in batches.epoch(0):
        state, m = jit_train_step(state, device_batch(state, batch))
        sums = m if sums is None else jax.tree.map(lambda a, b: a + b, sums, m)
    jax.block_until_ready((state.params, sums))
    epoch_s = time.perf_counter() - t0
    sums = {k: float(v) for k, v in jax.device_get(sums).items()}
    n = len(seqs)
    real_tokens = int(sum(len(s) for s in seqs))
    return {
        "n_reviews": n, "vocab_size": len(vocab), "embedding_rows": vocab_cap, "n_steps": len(batches), "buckets_used": used,
        "segment_s": seg_s, "vocab_encode_s": encode_s, "preprocess_s": seg_s + encode_s,
        "compile_s": compile_s, "epoch_s": epoch_s, "train_reviews_per_s": n / epoch_s,
        "real_tokens_per_s": real_tokens / epoch_s, "mean_tokens": real_tokens / n,
        "epoch_train_loss": sums["loss_sum"] / max(sums["count"], 1.0),
        "epoch_train_accuracy": sums["correct"] / max(sums["count"], 1.0),
    }


def dataset_scaling(sizes=(2000, 20000, 62695), *, log=print, **kw) -> dict:
    rows = []
    for n in sizes:
        name, texts, labels = load_size(n)
        r = epoch_benchmark(texts, labels, **kw)
        rows.append({"requested": n, "data": name, **r})
        log(f"  n={r['n_reviews']:<6} ({name}) preprocess {r['preprocess_s']:.1f}s  compile {r['compile_s']:.1f}s  "
            f"epoch {r['epoch_s']:.1f}s  ({r['train_reviews_per_s']:.0f} reviews/s, {r['n_steps']} steps)")
    model_kw = kw.get("model_kw") or MODERATE
    return {"model": {**model_kw, "batch_size": kw.get("batch_size", 64), "max_len": kw.get("max_len", 128),
                      "buckets": list(kw.get("buckets", (32, 64, 128))), "min_freq": kw.get("min_freq", 2),
                      "vocab_cap": kw.get("vocab_cap", 30000),
                      "optimizer": "adam 1e-3, clip_norm 5 (configs/lstm_dianping.py)"},
            "rows": rows}


# --- plots ---


def _panels(panels):
    """A figure of two panels side by side, each (x label, y label, title, [(xs, ys, style, label)])."""
    from jaxsenti.plotting import new_figure

    fig, axes = new_figure((10, 4), ncols=2)
    for ax, (xlabel, ylabel, title, lines) in zip(axes, panels):
        for xs, ys, style, label in lines:
            ax.plot(xs, ys, style, label=label)
        ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    return fig, axes


def plot_batch(res: dict, path) -> Path:
    """Train-step tokens/s and step time against the batch size, one line per framework."""
    from jaxsenti.plotting import save_figure

    lines = {"tokens_per_s": [], "median_step_s": []}
    for fw, style in (("jax", "o-"), ("torch", "s--")):
        pts = [(r["batch"], r["frameworks"][fw]) for r in res["rows"] if fw in r["frameworks"]]
        for k, scale in (("tokens_per_s", 1), ("median_step_s", 1e3)):
            lines[k] += [([b for b, _ in pts], [v[k] * scale for _, v in pts], style, fw)] if pts else []
    fig, axes = _panels([
        ("batch size", "tokens / s (train step)", f"LSTM train throughput vs batch size (T={res.get('seq')}, CPU)",
         lines["tokens_per_s"]),
        ("batch size", "median step time (ms)", "step time vs batch size", lines["median_step_s"])])
    bs = [r["batch"] for r in res["rows"]]
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks(bs, [str(b) for b in bs])
    return save_figure(fig, path)


def plot_dataset(res: dict, path) -> Path:
    """Epoch, preprocessing and compile time, and training reviews/s, against the number of reviews."""
    from jaxsenti.plotting import save_figure

    rows = res["rows"]
    n = [r["n_reviews"] for r in rows]
    times = [(n, [r[k] for r in rows], style, label) for k, style, label in (
        ("epoch_s", "o-", "one training epoch"), ("preprocess_s", "s--", "jieba + vocab encode"),
        ("compile_s", "^:", "compile (all buckets)"))]
    fig, (ax1, ax2) = _panels([
        ("reviews", "seconds", "LSTM (moderate config) time vs dataset size", times),
        ("reviews", "reviews / s", "training throughput", [(n, [r["train_reviews_per_s"] for r in rows], "o-",
                                                              "training reviews/s")])])
    ax1.set(xscale="log", yscale="log")
    ax2.set(xscale="log", ylim=(0, None))
    return save_figure(fig, path)


def main(argv=None) -> int:
    ap = base_argparser(__doc__)
    ap.add_argument("--part", default="batch,dataset", type=names_of(("batch", "dataset")),
                    help="comma-separated: batch, dataset")
    ap.add_argument("--batches", default="16,32,64,128", help="batch sizes (quick: 16,32,64)")
    ap.add_argument("--sizes", default="2000,20000,62695", help="dataset sizes (quick: 2000,10000)")
    ap.add_argument("--steps", type=int, default=6, help="timed steps per batch size (quick: 3)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per batch size (quick: 1)")
    ap.add_argument("--no-torch", action="store_true", help="batch scaling: JAX only (quick: on)")
    ap.add_argument("--plots", default=None, help="write scaling_batch.png / scaling_dataset.png into this folder")
    a = parse_args(ap, argv, quick=dict(batches="16,32,64", sizes="2000,10000", steps=3, warmup=1, no_torch=True))
    res = {"benchmark": "scaling"}
    t0 = time.perf_counter()
    if "batch" in a.part:
        print("batch-size scaling (harness.py lstm per batch size):", flush=True)
        res["batch"] = batch_scaling([int(x) for x in a.batches.split(",")], steps=a.steps, warmup=a.warmup,
                                     torch=not a.no_torch)
    if "dataset" in a.part:
        print("dataset-size scaling (one epoch, moderate LSTM):", flush=True)
        res["dataset"] = dataset_scaling([int(x) for x in a.sizes.split(",")])
    res |= {"peak_rss_mib": peak_rss_mib(), "wall_s": time.perf_counter() - t0}
    for part, plot in (("batch", plot_batch), ("dataset", plot_dataset)) if a.plots else ():
        if part in res:
            print("wrote", plot(res[part], Path(a.plots) / f"scaling_{part}.png"))
    return finish(res, a, argv)


if __name__ == "__main__":
    script_main(main)
