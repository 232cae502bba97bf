"""CJK filter, jieba segmentation with its disk cache, vocabulary."""

from jaxsenti.data import PAD, UNK, Vocab, cjk_only, segment, segment_many
from jaxsenti.data.text import cache_dir


def test_cjk_only_keeps_ideographs():
    assert cjk_only("菜很好吃！Good 123，服务也好。") == "菜很好吃服务也好"


def test_segment_words():
    words = segment("这家的环境不差，但是菜不怎么好吃。")
    assert "".join(words) == "这家的环境不差但是菜不怎么好吃"
    assert "环境" in words and "但是" in words


def test_segment_many_disk_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("JAXSENTI_CACHE", str(tmp_path))
    texts = ["菜很好吃", "服务太差了"]
    first = segment_many(texts)
    files = list(cache_dir().glob("segments-*.json"))
    assert len(files) == 1
    files[0].write_text('[["缓存"], ["命中"]]', encoding="utf-8")  # prove the second call reads the cache
    assert segment_many(texts) == [["缓存"], ["命中"]]
    assert segment_many(texts, use_disk_cache=False) == first


def test_vocab_build_encode_roundtrip(tmp_path):
    v = Vocab.build([["好", "吃"], ["好", "贵"], ["好"]], min_freq=2)
    assert v.itos == [PAD, UNK, "好"]
    assert v.encode(["好", "吃", "好"]).tolist() == [2, 1, 2]
    assert v.encode(["好"] * 10, max_len=3).tolist() == [2, 2, 2]
    v.save(tmp_path / "v.json")
    assert Vocab.load(tmp_path / "v.json") == v


def test_vocab_deterministic_ties():
    a = Vocab.build([["乙", "甲"]])
    b = Vocab.build([["甲", "乙"]])
    assert a == b


def test_dianping_vocab_size_near_study(dianping):
    v = Vocab.build(segment_many(dianping.texts))
    assert 9000 < len(v) < 10500  # the study reports ~9.5k jieba words
