"""run_eda on a tiny synthetic review set: files, images, JSON, log-ratio ranking, stopwords."""

from __future__ import annotations

import json
import math
from collections import Counter

import matplotlib.image as mpimg
import numpy as np
import pytest

from jaxsenti.data.io import LoadReport, Reviews
from jaxsenti.data.stopwords import STOPWORDS
from jaxsenti.eda import FIGURES, log_ratios, run_eda

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _synthetic():
    # 好评 only in positive reviews, 差评 only in negative ones; 菜 and 的/了 (stopwords) in both.
    pos = [["菜", "的", "好评", "推荐", "了"], ["好评", "的", "菜", "我"], ["好评", "环境", "的"],
           ["好评", "菜", "了"], ["好评", "推荐", "。"], ["好评", "的", "很"]]
    neg = [["菜", "的", "差评", "了"], ["差评", "不", "的"], ["差评", "难吃", "了", "！"],
           ["差评", "菜", "的"], ["差评", "不", "我"], ["差评", "难吃", "的"], ["差评", "了"]]
    words = pos + neg
    texts = ["".join(w) * (40 if i == 0 else 1) for i, w in enumerate(words)]  # one review > 128 chars
    labels = np.array([1] * len(pos) + [0] * len(neg), np.int32)
    rows = np.arange(1, len(words) + 1, dtype=np.int32)
    return Reviews(texts, labels, rows, LoadReport(path="x")), words


@pytest.fixture(scope="module")
def eda(tmp_path_factory):
    reviews, words = _synthetic()
    out = tmp_path_factory.mktemp("eda")
    summary = run_eda(reviews, words, out, top_k=5, min_count=3)
    return summary, out, reviews


def test_writes_all_files(eda):
    _, out, _ = eda
    for name in FIGURES:
        p = out / name
        assert p.read_bytes()[:8] == PNG_MAGIC, name
        img = mpimg.imread(p)
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100, name
    assert (out / "eda.md").is_file()
    md = (out / "eda.md").read_text(encoding="utf-8")
    for name in FIGURES:
        assert f"({name})" in md  # embedded with a relative link
    assert "好评" in md and "差评" in md


def test_json_matches_summary(eda):
    summary, out, reviews = eda
    data = json.loads((out / "eda.json").read_text(encoding="utf-8"))
    assert data["n_reviews"] == len(reviews) == 13
    assert data["label_counts"] == {"negative": 7, "positive": 6}
    assert data["log_ratio"]["positive"] == summary["log_ratio"]["positive"]
    for key in ("mean", "median", "p90", "max", "share_over_128"):
        assert key in data["length_stats"]["positive"]
    assert data["share_over_128"] == pytest.approx(1 / 13, abs=1e-4)
    assert data["length_stats"]["positive"]["share_over_128"] == pytest.approx(1 / 6, abs=1e-4)
    assert data["length_stats"]["negative"]["share_over_128"] == 0
    assert data["n_vocab"] == len({w for ws in _synthetic()[1] for w in ws})


def test_log_ratio_ranks_one_sided_words_first(eda):
    summary, _, _ = eda
    lr = summary["log_ratio"]
    assert lr["positive"][0]["word"] == "好评"
    assert lr["negative"][0]["word"] == "差评"
    assert lr["positive"][0]["log_ratio"] > 0 > lr["negative"][0]["log_ratio"]
    assert all(e["log_ratio"] > 0 for e in lr["positive"])
    assert all(e["log_ratio"] < 0 for e in lr["negative"])


def test_log_ratio_formula_and_min_count():
    pos, neg = Counter({"a": 4, "b": 1, "c": 2}), Counter({"a": 1, "c": 6})
    got = {w: (v, cp, cn) for w, v, cp, cn in log_ratios(pos, neg, alpha=1.0, min_count=3)}
    assert "b" not in got  # total count 1 < 3
    v = 3
    expected_a = math.log((4 + 1) / (7 + v)) - math.log((1 + 1) / (7 + v))
    assert got["a"][0] == pytest.approx(expected_a)
    assert got["c"][0] < 0 < got["a"][0]


def test_stopwords_and_punctuation_not_in_top_words(eda):
    summary, _, _ = eda
    for key, lst in summary["top_words"].items():
        ws = [w for w, _ in lst]
        assert ws, key
        assert not set(ws) & STOPWORDS, (key, ws)
        assert "。" not in ws and "！" not in ws
    assert summary["top_words"]["positive"][0] == ["好评", 6]
    assert summary["top_words"]["negative"][0] == ["差评", 7]
    # negations and degree words are deliberately kept
    assert "不" in [w for w, _ in summary["top_words"]["negative"]]


def test_stopword_list_keeps_sentiment_words():
    assert {"的", "了", "是", "我", "吧", "啊", "这"} <= STOPWORDS
    assert not {"不", "没", "没有", "很", "太", "非常", "但是", "好", "喜欢"} & STOPWORDS
    assert 100 <= len(STOPWORDS) <= 250


def test_words_length_mismatch_raises(tmp_path):
    reviews, words = _synthetic()
    with pytest.raises(ValueError, match="words"):
        run_eda(reviews, words[:-1], tmp_path)


def test_segments_when_words_none(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXSENTI_CACHE", str(tmp_path / "cache"))
    texts = ["味道非常好吃，下次还来", "服务太差了，再也不来", "环境不错，菜也好吃", "难吃，服务员态度很差"]
    reviews = Reviews(texts, np.array([1, 0, 1, 0], np.int32), np.arange(1, 5, dtype=np.int32), LoadReport(path="x"))
    s = run_eda(reviews, None, tmp_path / "out", min_count=1)
    assert s["n_tokens"] > len(texts)
    assert (tmp_path / "out" / "eda.json").is_file()
    assert "好吃" in [e["word"] for e in s["log_ratio"]["positive"]]
