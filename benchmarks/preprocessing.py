"""Data preprocessing throughput (reviews/s) of the project's input pipeline, per dataset.

    python benchmarks/preprocessing.py [--datasets dianping,online_shopping] [--limit N] [--quick] [--json out.json]

Stages, each timed on its own (median of ``--repeats`` runs; the slow jieba stage on > 10k reviews once):

* ``load_validate``: ``load_reviews`` (read + decode + CSV parse + validation + de-duplication) of the whole file;
* ``cjk_filter``: ``cjk_only`` on every review;
* ``cjk_jieba``: ``segment_many(texts, use_disk_cache=False)`` = CJK filter + jieba; jieba's in-process memo
  cache is cleared before every run and its dictionary is loaded beforehand (``jieba_init_s``, reported apart);
* ``vocab_build``: ``Vocab.build`` on the segmented reviews; ``vocab_encode``: ``Vocab.encode(words, 256)`` per review;
* ``bert_tokenize``: ``WordPieceEncoder(tokenizer, 128).encode(texts)`` (the fast bert-base-chinese WordPiece tokenizer,
  batch call, truncation to 128, ``TOKENIZERS_PARALLELISM`` as set in the environment).

``--limit N`` keeps the first N reviews (after loading) for the stages after ``load_validate``.
"""

from __future__ import annotations

import time
from pathlib import Path

from common import (DATA_FILES, base_argparser, clear_segment_memo, data_path, finish, names_of, parse_args,
                    peak_rss_mib, script_main)
from harness import time_calls
from report import show


def _stage(n_items: int, timing: dict, **extra) -> dict:
    return timing | {"n_reviews": n_items, "reviews_per_s": n_items / timing["median_s"]} | extra


def bench_dataset(path: Path, text_col: str, label_col: str, *, limit: int | None = None, repeats: int = 3,
                  slow_repeats: int | None = None, tokenizer_dir: str | None = None, max_len_words: int = 256,
                  max_len_bert: int = 128) -> dict:
    from jaxsenti.data import Vocab, cjk_only, load_reviews, segment_many
    from jaxsenti.data.text import jieba_tokenizer

    out: dict = {"path": str(path), "file_mib": path.stat().st_size / 2**20}
    load = time_calls(lambda i: load_reviews(path, text_col, label_col), repeats=repeats, warmup=0, first_call=False)
    reviews = load_reviews(path, text_col, label_col)
    rows = reviews.report.rows_read
    out["rows_read"], out["rows_kept"] = rows, len(reviews)
    out["load_validate"] = _stage(rows, load, note="reviews/s counts rows read")

    texts = reviews.texts[:limit] if limit else reviews.texts
    n = len(texts)
    out["n_reviews"] = n
    out["mean_chars"] = sum(map(len, texts)) / max(n, 1)
    if slow_repeats is None:
        slow_repeats = 1 if n > 10_000 else repeats

    out["cjk_filter"] = _stage(n, time_calls(lambda i: [cjk_only(t) for t in texts], repeats=repeats, warmup=0,
                                             first_call=False))
    t0 = time.perf_counter()
    jieba_tokenizer()
    out["jieba_init_s"] = time.perf_counter() - t0
    box = {}

    def seg(i):
        box["words"] = segment_many(texts, use_disk_cache=False, progress=False)

    out["cjk_jieba"] = _stage(n, time_calls(seg, repeats=slow_repeats, warmup=0, first_call=False,
                                            before=clear_segment_memo))
    words = box["words"]
    n_words = sum(map(len, words))
    out["cjk_jieba"]["words_per_s"] = n_words / out["cjk_jieba"]["median_s"]
    out["n_words"] = n_words

    vb = time_calls(lambda i: box.__setitem__("vocab", Vocab.build(words)), repeats=repeats, warmup=0, first_call=False)
    vocab = box["vocab"]
    out["vocab_build"] = _stage(n, vb, vocab_size=len(vocab))
    out["vocab_encode"] = _stage(n, time_calls(lambda i: [vocab.encode(w, max_len_words) for w in words],
                                               repeats=repeats, warmup=0, first_call=False), max_len=max_len_words)
    out["vocab_encode"]["words_per_s"] = n_words / out["vocab_encode"]["median_s"]

    if tokenizer_dir:
        from jaxsenti.data.encoders import WordPieceEncoder
        from jaxsenti.models.hf_bert import load_tokenizer

        t0 = time.perf_counter()
        enc = WordPieceEncoder(load_tokenizer(tokenizer_dir), max_len_bert)
        out["bert_tokenizer_load_s"] = time.perf_counter() - t0
        enc.encode(texts[:8])  # warm-up
        bt = time_calls(lambda i: box.__setitem__("ids", enc.encode(texts)), repeats=slow_repeats, warmup=0,
                        first_call=False)
        n_tok = sum(len(x) for x in box["ids"])
        out["bert_tokenize"] = _stage(n, bt, max_len=max_len_bert, tokens_per_s=n_tok / bt["median_s"],
                                      tokenizer=str(tokenizer_dir))
    return out


def run(datasets: dict[str, tuple[Path, str, str]], *, limit: int | None = None, repeats: int = 3,
        tokenizer_dir: str | None = None) -> dict:
    t0 = time.perf_counter()
    res = {"benchmark": "preprocessing", "datasets": {}}
    for name, (path, tc, lc) in datasets.items():
        res["datasets"][name] = bench_dataset(Path(path), tc, lc, limit=limit, repeats=repeats, tokenizer_dir=tokenizer_dir)
    res |= {"peak_rss_mib": peak_rss_mib(), "wall_s": time.perf_counter() - t0}
    return res


def main(argv=None) -> int:
    ap = base_argparser(__doc__)
    ap.add_argument("--datasets", default="dianping,online_shopping", type=names_of(DATA_FILES))
    ap.add_argument("--limit", type=int, default=None, help="first N reviews per dataset after loading (quick: 20000)")
    ap.add_argument("--repeats", type=int, default=3, help="(quick: 2)")
    ap.add_argument("--tokenizer", default=None,
                    help="BERT tokenizer folder (default: $JAXSENTI_BERT_TOKENIZER_DIR, else the packaged one)")
    a = parse_args(ap, argv, quick=dict(repeats=2, limit=20000))
    from jaxsenti.data.encoders import default_tokenizer_dir

    datasets = {n: (data_path(n), *DATA_FILES[n][1:]) for n in a.datasets}
    res = run(datasets, limit=a.limit, repeats=a.repeats, tokenizer_dir=a.tokenizer or default_tokenizer_dir())
    return finish(res, a, argv, show("preprocessing"))


if __name__ == "__main__":
    script_main(main)
