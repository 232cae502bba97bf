"""Exploratory data analysis of a review set: label balance, lengths, top words, log-ratio words.

``run_eda`` writes into ``out_dir``::

    label_distribution.png   reviews per label
    length_distribution.png  review length (characters) per label, with the 128 cut-off marked
    top_words_all.png        most frequent words (stopwords removed), all / positive / negative
    top_words_positive.png
    top_words_negative.png
    log_ratio_words.png      words most typical of positive vs negative reviews
    eda.json                 every number behind the figures
    eda.md                   a readable summary embedding the figures

Run it from the command line with ``python -m jaxsenti.eda --data PATH --out DIR``.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxsenti.atomic import write_json, write_text
from jaxsenti.data.io import Reviews, load_reviews, print_report, resolve_dataset
from jaxsenti.data.stopwords import STOPWORDS
from jaxsenti.data.text import segment_many
from jaxsenti.plotting import new_figure, plot_bar_words, plot_diverging_words, save_figure, setup_matplotlib

LABEL_NAMES = {0: "negative", 1: "positive"}
LABEL_COLORS = {0: "tab:red", 1: "tab:green"}
BERT_MAX_LEN = 128
# A token is counted only if it holds at least one CJK ideograph, letter or digit: this drops
# punctuation/whitespace tokens when callers pass their own segmentation.
_WORDLIKE = re.compile(r"[\u4e00-\u9fff0-9A-Za-z]")

LOG_RATIO_FORMULA = (
    "log_ratio(w) = log((c_pos(w) + α) / (N_pos + α·V)) − log((c_neg(w) + α) / (N_neg + α·V))"
)

FIGURES = (
    "label_distribution.png",
    "length_distribution.png",
    "top_words_all.png",
    "top_words_positive.png",
    "top_words_negative.png",
    "log_ratio_words.png",
)


def _keep(word: str) -> bool:
    return word not in STOPWORDS and bool(_WORDLIKE.search(word))


def _length_stats(lengths: np.ndarray, max_len: int) -> dict:
    if lengths.size == 0:
        return {"n": 0, "mean": None, "median": None, "p90": None, "min": None, "max": None, f"share_over_{max_len}": None}
    return {
        "n": int(lengths.size),
        "mean": round(float(lengths.mean()), 2),
        "median": float(np.median(lengths)),
        "p90": round(float(np.percentile(lengths, 90)), 2),
        "min": int(lengths.min()),
        "max": int(lengths.max()),
        f"share_over_{max_len}": round(float((lengths > max_len).mean()), 4),
    }


def log_ratios(
    pos_counts: Counter, neg_counts: Counter, *, alpha: float = 1.0, min_count: int = 5
) -> list[tuple[str, float, int, int]]:
    """Smoothed log-ratio of each word's relative frequency in positive vs negative reviews.

    ``log((c_pos + α) / (N_pos + α·V)) − log((c_neg + α) / (N_neg + α·V))`` where ``c_pos``/``c_neg``
    are the word's token counts in positive/negative reviews, ``N_pos``/``N_neg`` the total
    token counts of each class and ``V`` the vocabulary size (distinct words of both classes),
    all after stopword removal. Add-α smoothing keeps words seen in one class only finite and
    ranks frequent one-sided words above rare ones; words with ``c_pos + c_neg < min_count`` are
    left out. Returns ``(word, log_ratio, c_pos, c_neg)`` sorted by log-ratio, most positive first
    (ties: more frequent first, then alphabetical).
    """
    vocab = set(pos_counts) | set(neg_counts)
    v = len(vocab)
    n_pos, n_neg = sum(pos_counts.values()), sum(neg_counts.values())
    den_pos, den_neg = math.log(n_pos + alpha * v), math.log(n_neg + alpha * v)
    out = []
    for w in vocab:
        cp, cn = pos_counts.get(w, 0), neg_counts.get(w, 0)
        if cp + cn < min_count:
            continue
        lr = (math.log(cp + alpha) - den_pos) - (math.log(cn + alpha) - den_neg)
        out.append((w, lr, cp, cn))
    out.sort(key=lambda t: (-t[1], -(t[2] + t[3]), t[0]))
    return out


def _md_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _plot_labels(counts: dict[int, int], path: Path) -> None:
    fig, ax = new_figure((5.0, 3.8))
    labels = sorted(counts)
    names = [f"{LABEL_NAMES.get(k, k)} ({k})" for k in labels]
    vals = [counts[k] for k in labels]
    bars = ax.bar(names, vals, color=[LABEL_COLORS.get(k, "tab:gray") for k in labels])
    total = sum(vals) or 1
    ax.bar_label(bars, labels=[f"{v}\n({v / total:.1%})" for v in vals], padding=2)
    ax.set_ylim(0, max(vals + [1]) * 1.2)
    ax.set_ylabel("reviews")
    ax.set_title(f"Label distribution (n = {sum(vals)})")
    ax.spines[["top", "right"]].set_visible(False)
    save_figure(fig, path)


def _plot_lengths(lengths: np.ndarray, labels: np.ndarray, max_len: int, path: Path) -> None:
    fig, ax = new_figure((7.5, 4.2))
    # Long tail: bin up to the 99th percentile (at least past the cut-off) and say how many are beyond.
    upper = max(float(np.percentile(lengths, 99)), max_len * 1.25) if lengths.size else max_len * 2
    bins = np.linspace(0, upper, 50)
    for k in sorted(set(labels.tolist())):
        sel = lengths[labels == k]
        share = (sel > max_len).mean() if sel.size else 0.0
        ax.hist(np.minimum(sel, upper), bins=bins, alpha=0.5, color=LABEL_COLORS.get(k, "tab:gray"),
                label=f"{LABEL_NAMES.get(k, k)} (n={sel.size}, {share:.1%} > {max_len})")
    share_all = float((lengths > max_len).mean()) if lengths.size else 0.0
    ax.axvline(max_len, color="black", ls="--", lw=1.2)
    ax.text(max_len, 0.97, f"  {max_len} chars (BERT max length)\n  {share_all:.1%} of reviews are longer",
            transform=ax.get_xaxis_transform(), va="top", ha="left", fontsize=9)
    n_over = int((lengths > upper).sum())
    ax.set_xlabel(f"review length (characters; last bin holds the {n_over} reviews > {upper:.0f})")
    ax.set_ylabel("reviews")
    ax.set_title("Review length by label")
    ax.legend(loc="center right")
    ax.spines[["top", "right"]].set_visible(False)
    save_figure(fig, path)


def run_eda(
    reviews: Reviews,
    words: list[list[str]] | None,
    out_dir: str | os.PathLike,
    *,
    top_k: int = 20,
    min_count: int = 5,
    alpha: float = 1.0,
    max_len: int = BERT_MAX_LEN,
    dataset_name: str | None = None,
) -> dict:
    """Write the EDA figures, ``eda.json`` and ``eda.md`` to ``out_dir``; return the summary dict.

    ``words[i]`` are the segmented words of ``reviews.texts[i]`` (``segment_many`` is called when
    ``words`` is None). Word statistics use token counts after removing
    :data:`jaxsenti.data.stopwords.STOPWORDS` and tokens with no ideograph/letter/digit.

    Log-ratio (``log_ratio_words.png``, summary ``log_ratio``), with smoothing ``alpha`` (α = 1)::

        log((c_pos(w) + α) / (N_pos + α·V)) − log((c_neg(w) + α) / (N_neg + α·V))

    over words with ``c_pos + c_neg >= min_count``; ``N_*`` are class token totals and ``V`` the
    vocabulary size (see :func:`log_ratios`). Lengths are in characters of the loaded text
    (``max_len`` = 128 is where the BERT model truncates; for Chinese BERT one character ≈ one token).
    """
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    texts = list(reviews.texts)
    labels = np.asarray(reviews.labels).astype(int)
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    if words is None:
        words = segment_many(texts)
    if len(words) != len(texts):
        raise ValueError(f"words has {len(words)} entries but there are {len(texts)} reviews")

    font = setup_matplotlib()

    # --- labels and lengths
    label_counts = {k: int((labels == k).sum()) for k in sorted(set(labels.tolist()) | {0, 1})}
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    length_stats = {"all": _length_stats(lengths, max_len)}
    for k in sorted(label_counts):
        length_stats[LABEL_NAMES.get(k, str(k))] = _length_stats(lengths[labels == k], max_len)
    share_over = length_stats["all"][f"share_over_{max_len}"]

    # --- words
    raw_vocab: set[str] = set()
    by_label: dict[int, Counter] = {k: Counter() for k in label_counts}
    n_tokens = 0
    for ws, y in zip(words, labels.tolist()):
        raw_vocab.update(ws)
        n_tokens += len(ws)
        by_label[y].update(w for w in ws if _keep(w))
    pos, neg = by_label.get(1, Counter()), by_label.get(0, Counter())
    total = pos + neg
    top = {
        "all": total.most_common(top_k),
        "positive": pos.most_common(top_k),
        "negative": neg.most_common(top_k),
    }
    ratios = log_ratios(pos, neg, alpha=alpha, min_count=min_count)
    top_pos = [r for r in ratios if r[1] > 0][:top_k]
    top_neg = [r for r in reversed(ratios) if r[1] < 0][:top_k]

    # --- figures
    _plot_labels(label_counts, out / "label_distribution.png")
    _plot_lengths(lengths, labels, max_len, out / "length_distribution.png")
    for key, color in (("all", "tab:blue"), ("positive", "tab:green"), ("negative", "tab:red")):
        ws_, cs_ = zip(*top[key]) if top[key] else ((), ())
        plot_bar_words(list(ws_), [int(c) for c in cs_], out / f"top_words_{key}.png",
                       f"Top {top_k} words — {key} reviews (stopwords removed)", color)
    plot_diverging_words(
        [w for w, *_ in top_pos], [lr for _, lr, *_ in top_pos],
        [w for w, *_ in top_neg], [lr for _, lr, *_ in top_neg],
        out / "log_ratio_words.png",
        f"Words most typical of each class: smoothed log-ratio (α={alpha:g}, total count ≥ {min_count})",
        xlabel="log-ratio  (> 0: positive, < 0: negative)",
        pos_label=f"most positive {len(top_pos)}", neg_label=f"most negative {len(top_neg)}",
    )

    def lr_rows(rows):
        return [{"word": w, "log_ratio": round(lr, 4), "count_pos": cp, "count_neg": cn} for w, lr, cp, cn in rows]

    summary = {
        "dataset": dataset_name or getattr(getattr(reviews, "report", None), "path", None),
        "n_reviews": len(texts),
        "label_counts": {LABEL_NAMES.get(k, str(k)): v for k, v in label_counts.items()},
        "label_share": {LABEL_NAMES.get(k, str(k)): round(v / max(len(texts), 1), 4) for k, v in label_counts.items()},
        "length_unit": "characters",
        "max_len": max_len,
        "length_stats": length_stats,
        f"share_over_{max_len}": share_over,
        "n_tokens": n_tokens,
        "n_vocab": len(raw_vocab),
        "n_vocab_without_stopwords": len(total),
        "top_k": top_k,
        "top_words": {k: [[w, int(c)] for w, c in v] for k, v in top.items()},
        "log_ratio": {
            "formula": LOG_RATIO_FORMULA,
            "alpha": alpha,
            "min_count": min_count,
            "V": len(total),
            "N_pos": sum(pos.values()),
            "N_neg": sum(neg.values()),
            "n_words_ranked": len(ratios),
            "positive": lr_rows(top_pos),
            "negative": lr_rows(top_neg),
        },
        "font": font,
        "figures": list(FIGURES),
    }
    write_json(out / "eda.json", summary)
    write_text(out / "eda.md", _markdown(summary))
    summary["seconds"] = round(time.perf_counter() - t0, 2)  # returned only: eda.json stays byte-reproducible
    return summary


def _markdown(s: dict) -> str:
    ml = s["max_len"]
    ls = s["length_stats"]
    lines = [
        f"# EDA: {s['dataset'] or 'reviews'}",
        "",
        f"{s['n_reviews']} reviews, {s['n_tokens']} jieba tokens, vocabulary {s['n_vocab']} words "
        f"({s['n_vocab_without_stopwords']} after removing stopwords).",
        "",
        "## Labels",
        "",
        _md_table(["label", "reviews", "share"],
                  [[k, v, f"{s['label_share'][k]:.1%}"] for k, v in s["label_counts"].items()]),
        "",
        "![label distribution](label_distribution.png)",
        "",
        "## Review length (characters)",
        "",
        f"**{s[f'share_over_{ml}']:.1%}** of reviews are longer than {ml} characters, "
        f"where the BERT model truncates (one Chinese character ≈ one BERT token).",
        "",
        _md_table(["", "n", "mean", "median", "p90", "max", f"> {ml} chars"],
                  [[k, v["n"], v["mean"], v["median"], v["p90"], v["max"],
                    "" if v[f"share_over_{ml}"] is None else f"{v[f'share_over_{ml}']:.1%}"]
                   for k, v in ls.items()]),
        "",
        "![length distribution](length_distribution.png)",
        "",
        f"## Top {s['top_k']} words",
        "",
        "Token counts after jieba segmentation, with stopwords (`jaxsenti/data/stopwords.py`: pronouns, "
        "particles, prepositions, conjunctions) removed. Negations and degree adverbs (不, 没, 很, 太 …) "
        "are deliberately kept.",
        "",
    ]
    tw = s["top_words"]
    n = max((len(v) for v in tw.values()), default=0)
    rows = []
    for i in range(n):
        row = [i + 1]
        for k in ("all", "positive", "negative"):
            row.append(f"{tw[k][i][0]} ({tw[k][i][1]})" if i < len(tw[k]) else "")
        rows.append(row)
    lines += [
        _md_table(["#", "all", "positive", "negative"], rows),
        "",
        "![top words, all](top_words_all.png) ![top words, positive](top_words_positive.png) "
        "![top words, negative](top_words_negative.png)",
        "",
        "## Log-ratio: words most typical of each class",
        "",
        f"`{s['log_ratio']['formula']}` with α = {s['log_ratio']['alpha']:g}, c = token count of the word "
        f"in positive/negative reviews, N_pos = {s['log_ratio']['N_pos']}, N_neg = {s['log_ratio']['N_neg']} "
        f"class token totals, V = {s['log_ratio']['V']} distinct words (stopwords removed); only words with "
        f"c_pos + c_neg ≥ {s['log_ratio']['min_count']} are ranked ({s['log_ratio']['n_words_ranked']} words). "
        "A log-ratio of 1 means the word is e≈2.7 times more frequent (relatively) in positive reviews.",
        "",
    ]
    lp, ln = s["log_ratio"]["positive"], s["log_ratio"]["negative"]
    rows = []
    for i in range(max(len(lp), len(ln))):
        row = [i + 1]
        for lst in (lp, ln):
            if i < len(lst):
                e = lst[i]
                row += [e["word"], f"{e['log_ratio']:+.2f}", f"{e['count_pos']}/{e['count_neg']}"]
            else:
                row += ["", "", ""]
        rows.append(row)
    lines += [
        _md_table(["#", "positive word", "log-ratio", "pos/neg count", "negative word", "log-ratio", "pos/neg count"], rows),
        "",
        "![log-ratio words](log_ratio_words.png)",
        "",
    ]
    if not s.get("font"):
        lines += ["> Note: no CJK font was found when plotting; Chinese labels in the figures show as boxes. "
                  "Install one (`apt-get install fonts-wqy-microhei`) or set `JAXSENTI_CJK_FONT`.", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m jaxsenti.eda", description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="CSV file (default: $JAXSENTI_DATA_DIR/dianping.csv or data/)")
    p.add_argument("--text-column", default="comment")
    p.add_argument("--label-column", default="sentiment")
    p.add_argument("--out", default="results/eda")
    p.add_argument("--top-k", type=int, default=20)
    p.add_argument("--min-count", type=int, default=5)
    a = p.parse_args(argv)
    path = resolve_dataset(a.data)
    reviews = load_reviews(path, a.text_column, a.label_column)
    print_report(reviews.report)
    s = run_eda(reviews, None, a.out, top_k=a.top_k, min_count=a.min_count, dataset_name=path.name)
    print(f"wrote {len(FIGURES)} figures, eda.json and eda.md to {a.out} in {s['seconds']} s; "
          f"{s['share_over_' + str(s['max_len'])]:.1%} of reviews > {s['max_len']} chars")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
