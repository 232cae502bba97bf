"""The study's qualitative analyses: the mixed sentence read prefix by prefix, and a t-SNE of LSTM word vectors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import numpy as np
from sklearn.manifold import TSNE

from jaxsenti.data import Vocab, cjk_only
from jaxsenti.plotting import new_figure, save_figure

MIXED_SENTENCE = "这家的环境不差，但是菜不怎么好吃。"
TSNE_WORDS = ("好吃", "好", "难吃", "极慢", "吃", "菜", "不错", "差", "服务", "环境", "贵", "便宜", "推荐", "失望", "满意", "味道")


def prefixes(sentence: str) -> list[str]:
    """Growing prefixes, one per character that survives the CJK filter (punctuation adds nothing)."""
    out = []
    for i in range(1, len(sentence) + 1):
        if cjk_only(sentence[i - 1]):
            out.append(sentence[:i])
    return out


def plot_prefix_probabilities(curves: Mapping[str, Sequence[float]], prefix_list: Sequence[str], path, title: str | None = None):
    """P(positive) as the sentence grows, one line per model."""
    fig, ax = new_figure(figsize=(9, 4.8))
    x = np.arange(len(prefix_list))
    for name, ps in curves.items():
        ax.plot(x, ps, marker="o", label=name)
    ax.axhline(0.5, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xticks(x, [p[-1] for p in prefix_list])
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("sentence so far (last character shown)")
    ax.set_ylabel("P(positive)")
    ax.set_title(title or f"「{MIXED_SENTENCE}」 read character by character")
    ax.legend(loc="best", fontsize="small")
    return save_figure(fig, path)


def embedding_tsne(embeddings: np.ndarray, vocab: Vocab, highlight: Sequence[str] = TSNE_WORDS, *, top_n: int = 300,
                   seed: int = 0) -> dict:
    """2-D t-SNE of the ``top_n`` most frequent words plus ``highlight`` (those found in the vocabulary).

    t-SNE needs more points than the dozen words of interest to form a meaningful neighbourhood
    structure, so frequent words give it context; the words of interest are labelled in the plot.
    """
    ids = list(range(2, min(len(vocab), top_n + 2)))  # skip <pad>, <unk>; vocab is sorted by frequency
    found = [w for w in highlight if w in vocab.stoi]
    ids += [vocab.stoi[w] for w in found if vocab.stoi[w] not in ids]
    X = np.asarray(embeddings)[ids]
    perplexity = float(min(30, max(2, (len(ids) - 1) // 3)))
    Y = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(X)
    return {"words": [vocab.itos[i] for i in ids], "xy": Y.tolist(), "highlight": found,
            "missing": [w for w in highlight if w not in vocab.stoi]}


def plot_tsne(res: dict, path, title: str = "t-SNE of LSTM word embeddings"):
    fig, ax = new_figure(figsize=(8, 7))
    xy = np.asarray(res["xy"])
    hl = set(res["highlight"])
    mask = np.array([w in hl for w in res["words"]])
    ax.scatter(xy[~mask, 0], xy[~mask, 1], s=8, color="lightgrey", label="300 most frequent words")
    ax.scatter(xy[mask, 0], xy[mask, 1], s=30, color="tab:red", label="words of interest")
    for (x, y), w in zip(xy[mask], np.asarray(res["words"])[mask]):
        ax.annotate(w, (x, y), xytext=(3, 3), textcoords="offset points", fontsize=11)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
    ax.legend(loc="best", fontsize="small")
    return save_figure(fig, path)


def word_vectors(predictor) -> tuple[np.ndarray, Vocab]:
    """The word-embedding matrix and vocabulary of a trained model that embeds jieba words (a ``Predictor``)."""
    vocab = getattr(predictor.encoder, "vocab", None)
    if vocab is None:
        raise ValueError(f"{predictor.folder} holds a {predictor.model_name} model, which has no word vocabulary")
    for path, leaf in jax.tree_util.tree_leaves_with_path(predictor.params):
        if "embed" in jax.tree_util.keystr(path).lower() and np.ndim(leaf) == 2 and leaf.shape[0] == len(vocab):
            return np.asarray(leaf), vocab
    raise KeyError(f"no [vocab, dim] embedding matrix in the parameters of {predictor.folder}")
