"""Inference latency of the project's real prediction path: ``jaxsenti.pipeline.Predictor(folder).predict(texts)``.

    python benchmarks/inference_latency.py [--models lstm,bert] [--quick] [--json out.json]

Each model folder is written as training writes it, with random parameters (latency does not depend on their
values): ``configs/lstm_dianping.py`` and ``configs/bert_small_random.py``. Timed on real dianping reviews, jieba's
memo cleared before every call, jieba and the tokenizer loaded beforehand (``first_call_s`` = compile + one run):

* ``single``: ``predict([text])``, a different review each call, every bucket compiled before timing;
* ``batch``: ``predict(texts)`` on the same 256 reviews (one jitted call per length bucket, each padded to the
  smallest of ``Predictor.BATCH_SIZES`` that holds it);
* ``model_only``: the jitted forward alone on a padded ``[B, 128]`` batch (B = 1 and 256), a fresh ``jax.jit``
  of ``Predictor._predict``'s body so that ``compile_s`` is a real compile, not a cache hit;
* ``encode``: the encoder alone (jieba + vocab, or WordPiece) on the 256 reviews.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from pathlib import Path

from common import (base_argparser, clear_segment_memo, data_path, finish, names_of, parse_args, peak_rss_mib,
                    script_main)
from harness import time_calls
from report import show

CONFIGS = {"lstm": "lstm_dianping", "bert": "bert_small_random"}  # packaged experiment configs


def write_random_model_folder(kind: str, folder: Path, vocab_texts, *, tiny: bool = False, seed: int = 0):
    """A Predictor-loadable model folder for ``kind`` with random parameters; returns the completed config."""
    import jax
    from flax import nnx

    from jaxsenti import config as config_lib
    from jaxsenti import registry
    from jaxsenti.pipeline import make_model
    from jaxsenti.training.checkpoints import Checkpoints

    cfg = config_lib.load_config(CONFIGS[kind])
    if tiny:  # for tests: same code path, toy sizes
        small = {"lstm": dict(embed_dim=16, hidden_dim=16, num_layers=1),
                 "bert": dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)}[kind]
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, **small))
    folder.mkdir(parents=True, exist_ok=True)
    encoder = registry.spec_for(cfg.model).encoder.fit(cfg.encoder, list(vocab_texts), None, cfg.max_len, cfg.pretrained)
    model, cfg = make_model(cfg, encoder, seed)
    encoder.save(folder)
    config_lib.dump(cfg, folder / "config.json")
    _, params = nnx.split(model, nnx.Param)
    ckpt = Checkpoints(folder / "checkpoints")
    try:
        ckpt.save_best(params)
    finally:
        ckpt.close()
    jax.block_until_ready(params)
    return cfg


def bench_model(kind: str, texts: list[str], *, single_repeats: int = 50, batch_repeats: int = 8,
                batch_size: int = 256, model_only_repeats: int = 20, batch_warmup: int = 1, tiny: bool = False,
                workdir: Path | None = None) -> dict:
    import jax
    import numpy as np
    from flax import nnx

    from jaxsenti.data.text import jieba_tokenizer
    from jaxsenti.pipeline import Predictor
    from jaxsenti.training.batching import bucket_for

    workdir = Path(workdir or tempfile.mkdtemp(prefix="jaxsenti-latency-"))
    folder = workdir / f"{kind}_random"
    t0 = time.perf_counter()
    cfg = write_random_model_folder(kind, folder, texts, tiny=tiny)
    write_folder_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    pred = Predictor(folder)
    predictor_load_s = time.perf_counter() - t0
    jieba_tokenizer()  # load jieba's dictionary outside the timed first call
    pred.encoder.encode(["预热"])  # and the tokenizer
    n_params = int(sum(x.size for x in jax.tree.leaves(pred.params)))

    # single review: different review each call; compile every bucket at batch 1 before timing
    lengths = [len(s) for s in pred.encoder.encode(texts)]
    buckets = pred.buckets
    by_bucket = {}
    for t, n in zip(texts, lengths):
        by_bucket.setdefault(bucket_for(n, buckets), t)
    single_first = {str(b): time_calls(lambda i, t=by_bucket[b]: pred.predict([t]), repeats=1, warmup=0,
                                       first_call=False, before=clear_segment_memo)["median_s"]
                    for b in sorted(by_bucket)}
    pool = texts[: max(single_repeats, 1)]
    single = time_calls(lambda i: pred.predict([pool[i % len(pool)]]), repeats=single_repeats, warmup=1,
                        first_call=False, before=clear_segment_memo)
    single |= {"first_call_s": single_first[str(min(by_bucket))], "first_call_by_bucket_s": single_first,
               "mean_review_chars": float(np.mean([len(t) for t in pool]))}

    # batch of 256: same reviews each call
    batch_texts = texts[:batch_size]
    batch_buckets = sorted({bucket_for(n, buckets) for n in lengths[:batch_size]})
    batch = time_calls(lambda i: pred.predict(batch_texts), repeats=batch_repeats, warmup=batch_warmup,
                       before=clear_segment_memo)
    batch |= {"batch_size": len(batch_texts), "buckets_used": batch_buckets, "jitted_calls_per_predict": len(batch_buckets),
              "reviews_per_s": len(batch_texts) / batch["median_s"]}

    encode = time_calls(lambda i: pred.encoder.encode(batch_texts), repeats=max(3, batch_repeats), warmup=1,
                        first_call=False, before=clear_segment_memo)
    encode["reviews_per_s"] = len(batch_texts) / encode["median_s"]

    # model-only forward at fixed shapes
    model_only = {}
    # Same body as Predictor._predict but a fresh jit, so that its compilation is not already in jax's caches
    # from the predict calls above (lower().compile() of an already used shape is served from an in-memory cache).
    graphdef = pred.graphdef
    forward = jax.jit(lambda p, t, n: nnx.merge(graphdef, p)(t, n, deterministic=True))
    T = min(128, max(buckets))
    rng = np.random.default_rng(0)
    vocab_n = pred.cfg.model.vocab_size
    for B in (1, batch_size):
        tokens = jax.device_put(rng.integers(1, vocab_n, size=(B, T), dtype=np.int32))
        lens = jax.device_put(np.full((B,), T, np.int32))
        t0 = time.perf_counter()
        forward.lower(pred.params, tokens, lens).compile()
        compile_s = time.perf_counter() - t0
        r = time_calls(lambda i, t=tokens, n=lens: jax.block_until_ready(forward(pred.params, t, n)),
                       repeats=model_only_repeats if B == 1 else max(3, model_only_repeats // 3), warmup=1)
        r |= {"compile_s": compile_s, "batch": B, "seq": T, "seq_per_s": B / r["median_s"],
              "tokens_per_s": B * T / r["median_s"]}
        model_only[f"b{B}"] = r

    return {"model": kind, "config_file": f"configs/{CONFIGS[kind]}.py", "model_config": dataclasses.asdict(cfg.model),
            "max_len": cfg.max_len, "buckets": list(buckets), "n_params": n_params,
            "weights": "random init (seed 0), untrained: latency does not depend on weight values", "tiny": tiny,
            "write_folder_s": write_folder_s, "predictor_load_s": predictor_load_s, "single": single, "batch": batch,
            "encode_batch": encode, "model_only": model_only}


def run(models=("lstm", "bert"), *, texts=None, **kw) -> dict:
    """Every model's latencies (``kw``: :func:`bench_model`'s options) on ``texts``, else dianping's reviews."""
    from jaxsenti.data import load_reviews

    name = "given" if texts else "dianping"
    texts = texts or load_reviews(data_path(name), "comment", "sentiment").texts
    t0 = time.perf_counter()
    out = {"benchmark": "inference_latency", "data": name, "n_texts": len(texts), "models": {}}
    for kind in models:
        out["models"][kind] = bench_model(kind, list(texts), **kw)
    out |= {"peak_rss_mib": peak_rss_mib(), "wall_s": time.perf_counter() - t0}
    return out


def main(argv=None) -> int:
    ap = base_argparser(__doc__)
    ap.add_argument("--models", default="lstm,bert", type=names_of(CONFIGS), help="comma-separated: lstm, bert")
    ap.add_argument("--single-repeats", type=int, default=50, help="timed single-review calls (quick: 10)")
    ap.add_argument("--batch-repeats", type=int, default=8, help="timed 256-review calls (quick: 2)")
    ap.add_argument("--batch-warmup", type=int, default=1, help="untimed 256-review calls after the first (quick: 0)")
    ap.add_argument("--model-only-repeats", type=int, default=20, help="timed forward-only calls at batch 1, a third "
                    "as many at the batch size (quick: 6)")
    ap.add_argument("--batch-size", type=int, default=256)
    a = parse_args(ap, argv, quick=dict(single_repeats=10, batch_repeats=2, batch_warmup=0, model_only_repeats=6))
    res = run(a.models, single_repeats=a.single_repeats, batch_repeats=a.batch_repeats, batch_size=a.batch_size,
              model_only_repeats=a.model_only_repeats, batch_warmup=a.batch_warmup)
    return finish(res, a, argv, show("latency"))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    script_main(main)
