"""Pretrain the LSTM language model on the default corpus, then fine-tune the classifier from it vs from scratch.

Standalone (only models/, objectives/, data/ and training/steps+batching, not the epoch loop):

1. the study's dianping split (1600/200/200, seed 0); LM corpus = non-hotel online-shopping reviews
   + the dianping training split (``default_lm_corpus``), 2 % of the shopping reviews held out;
2. LM training with ``NextWordLM(num_sampled)`` for ``--lm-minutes`` (whole epochs are not required;
   the held-out perplexity uses the full softmax), saved with ``save_lm``;
3. ``--finetune-epochs`` of classifier training on dianping from a fresh init and from
   ``load_pretrained_lstm``, for each ``--seeds``; the best validation-loss epoch's test accuracy is reported.

    python benchmarks/lm_pretrain.py --lm-minutes 10 --finetune-epochs 8 --out /tmp/lm
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _evaluate(step, state, batches) -> dict:
    tot = None
    for b in batches:
        sums, _ = step(state, {k: b[k] for k in state.objective.batch_keys})
        tot = sums if tot is None else {k: tot[k] + sums[k] for k in tot}
    return state.objective.summarise({k: float(v) for k, v in tot.items()})


def pretrain(args, corpus):
    import jax
    import optax
    from flax import nnx

    from jaxsenti.data.lm_corpus import EOS, LMBatches
    from jaxsenti.models.lstm_lm import LSTMLanguageModel, LSTMLMConfig
    from jaxsenti.models.lstm_transfer import save_lm
    from jaxsenti.objectives.language_model import NextWordLM
    from jaxsenti.training.steps import create_train_state, eval_step, train_step

    vocab = corpus.vocab
    eos = vocab.stoi[EOS]
    train = LMBatches(corpus.encode(corpus.train), eos_id=eos, batch_size=args.batch, seed=0)
    val = LMBatches(corpus.encode(corpus.val), eos_id=eos, batch_size=args.batch, shuffle=False)
    print(f"LM corpus: {json.dumps(corpus.stats, ensure_ascii=False)}")
    print(f"LM batches/epoch {len(train)}, predicted words/epoch {train.num_targets}, "
          f"padding {train.padding_fraction():.1%}", flush=True)
    cfg = LSTMLMConfig(vocab_size=len(vocab), dropout=args.lm_dropout, embed_dropout=args.lm_embed_dropout)
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(args.lm_lr))
    state = create_train_state(LSTMLanguageModel(cfg, rngs=nnx.Rngs(0)), tx, NextWordLM(args.num_sampled))
    step, evaluate = jax.jit(train_step, donate_argnums=0), jax.jit(eval_step)
    before = _evaluate(evaluate, state, val.epoch(0))
    print(f"LM val before: {before}", flush=True)
    t0, words, steps, epoch, done = time.perf_counter(), 0, 0, 0, False
    sampled_loss = []
    while not done:
        for b in train.epoch(epoch):
            state, m = step(state, b)
            words += int(b["target_weights"].sum())
            steps += 1
            if steps % 100 == 0:
                sampled_loss.append(float(m["loss_sum"] / m["count"]))
                el = time.perf_counter() - t0
                print(f"  step {steps} epoch {epoch} {words / el:.0f} words/s, sampled loss {sampled_loss[-1]:.3f}",
                      flush=True)
            if time.perf_counter() - t0 > args.lm_minutes * 60:
                done = True
                break
        epoch += 1
    jax.block_until_ready(state.params)
    train_s = time.perf_counter() - t0
    after = _evaluate(evaluate, state, val.epoch(0))
    res = {"lm_steps": steps, "lm_words": words, "lm_epochs": words / train.num_targets, "lm_train_s": train_s,
           "lm_words_per_s": words / train_s, "lm_val_before": before, "lm_val_after": after,
           "corpus": corpus.stats, "num_sampled": args.num_sampled}
    print(f"LM val after {steps} steps ({res['lm_epochs']:.2f} epochs, {train_s:.0f} s, "
          f"{res['lm_words_per_s']:.0f} words/s): {after}", flush=True)
    folder = save_lm(Path(args.out) / "lm", state.model(), vocab, info=res)
    return folder, res


def finetune(args, folder, reviews, split, words):
    import jax
    import numpy as np
    import optax
    from flax import nnx

    from jaxsenti.data.text import Vocab
    from jaxsenti.models.lstm import LSTMClassifier, LSTMConfig
    from jaxsenti.models.lstm_transfer import load_pretrained_lstm
    from jaxsenti.objectives import Classification
    from jaxsenti.training.batching import iterate_batches
    from jaxsenti.training.steps import create_train_state, eval_step, train_step

    vocab = Vocab.build([words[i] for i in split.train])
    enc = {name: ([vocab.encode(words[i], 256) for i in idx], reviews.labels[idx])
           for name, idx in (("train", split.train), ("val", split.val), ("test", split.test))}
    cfg = LSTMConfig(vocab_size=len(vocab))
    buckets = (32, 64, 128, 256)
    step, evaluate = jax.jit(train_step, donate_argnums=0), jax.jit(eval_step)
    keys = Classification().batch_keys
    out = {}
    for seed in args.seeds:
        for init in ("scratch", "pretrained"):
            if init == "scratch":
                model, report = LSTMClassifier(cfg, rngs=nnx.Rngs(seed)), None
            else:
                model, report = load_pretrained_lstm(folder, vocab, cfg, nnx.Rngs(seed))
            state = create_train_state(model, optax.chain(optax.clip_by_global_norm(1.0), optax.adam(args.ft_lr)),
                                       Classification(), seed=seed)
            hist = []
            for epoch in range(args.finetune_epochs):
                for b in iterate_batches(*enc["train"], 64, buckets, shuffle=True, seed=seed, epoch=epoch):
                    state, _ = step(state, {k: b[k] for k in keys})
                ev = {p: _evaluate(evaluate, state, iterate_batches(*enc[p], 128, buckets)) for p in ("val", "test")}
                hist.append(ev)
                print(f"  seed {seed} {init:>10} epoch {epoch}: val {ev['val']} test {ev['test']}", flush=True)
            best = min(range(len(hist)), key=lambda e: hist[e]["val"]["loss"])
            out[f"{init}/seed{seed}"] = {"best_epoch": best, "val": hist[best]["val"], "test": hist[best]["test"],
                                         "transfer": report.to_dict() if report else None}
            print(f"{init} seed {seed}: best epoch {best} val_acc {hist[best]['val']['accuracy']:.3f} "
                  f"test_acc {hist[best]['test']['accuracy']:.3f}"
                  + (f" (copied {report.copied}, fresh {report.fresh})" if report else ""), flush=True)
    for init in ("scratch", "pretrained"):
        accs = [v["test"]["accuracy"] for k, v in out.items() if k.startswith(init)]
        print(f"{init}: mean test accuracy {float(np.mean(accs)):.4f} over seeds {list(args.seeds)}")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--lm-minutes", type=float, default=10.0)
    p.add_argument("--lm-lr", type=float, default=2e-3)
    p.add_argument("--lm-dropout", type=float, default=0.2)
    p.add_argument("--lm-embed-dropout", type=float, default=0.1)
    p.add_argument("--num-sampled", type=int, default=1024)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--finetune-epochs", type=int, default=8)
    p.add_argument("--ft-lr", type=float, default=1e-3)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--skip-pretrain", action="store_true", help="reuse OUT/lm")
    args = p.parse_args(argv)

    from jaxsenti.data import load_reviews, segment_many, stratified_split
    from jaxsenti.data.io import resolve_dataset
    from jaxsenti.data.lm_corpus import default_lm_corpus

    reviews = load_reviews(resolve_dataset())
    split = stratified_split(reviews.labels, (1600, 200, 200), seed=0)
    words = segment_many(reviews.texts)
    res = {"argv": sys.argv[1:] if argv is None else argv}
    folder = Path(args.out) / "lm"
    if not args.skip_pretrain:
        corpus = default_lm_corpus(reviews.texts, split, val_size=0.02, seed=0, min_freq=2, max_size=30000)
        folder, res["pretrain"] = pretrain(args, corpus)
    if args.finetune_epochs:
        res["finetune"] = finetune(args, folder, reviews, split, words)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "results.json").write_text(json.dumps(res, indent=2, ensure_ascii=False, default=float),
                                                 encoding="utf-8")
    print(f"wrote {Path(args.out) / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
