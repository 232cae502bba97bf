"""Tests for the LM pretraining corpus (hotel and held-out exclusion) and the next-word batches."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from jaxsenti.data.lm_corpus import (
    EOS,
    HOTEL,
    LMBatches,
    build_lm_corpus,
    default_lm_corpus,
    lm_vocab,
    read_shopping_reviews,
)
from jaxsenti.data.splits import stratified_split
from jaxsenti.data.text import PAD, UNK, cjk_only
from tests.conftest import DATA_DIR

SHOPPING = DATA_DIR / "online_shopping_10_cats.csv"


def test_read_shopping_reviews_drops_hotel_bom_duplicates_and_non_cjk(write_csv):
    path = write_csv("cat,label,review\n"
                     "书籍,1,\ufeff这本书很好\n"
                     f"{HOTEL},1,酒店房间很干净\n"
                     f"\ufeff{HOTEL},0,酒店早餐很差\n"  # a BOM inside the category cell must not hide a hotel row
                     "水果,0,苹果不新鲜\n"
                     "水果,0,苹果不新鲜\n"
                     "手机,1,ok 123\n")
    assert read_shopping_reviews(path) == ["这本书很好", "苹果不新鲜"]
    assert read_shopping_reviews(path, exclude_cats=("水果",)) == ["这本书很好"]  # hotel stays excluded


def test_read_shopping_reviews_errors(write_csv, tmp_path):
    with pytest.raises(FileNotFoundError):
        read_shopping_reviews(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="cat"):
        read_shopping_reviews(write_csv("label,review\n1,好\n"))


@pytest.mark.skipif(not SHOPPING.exists(), reason="online_shopping_10_cats.csv not present")
def test_real_file_has_no_hotel_text():
    with SHOPPING.open(encoding="utf-8-sig", newline="") as f:
        rows = [(r["cat"], r["review"].replace("\ufeff", "").strip()) for r in csv.DictReader(f)]
    hotel = {t for c, t in rows if c == HOTEL} - {t for c, t in rows if c != HOTEL}
    texts = read_shopping_reviews(SHOPPING)
    assert len(hotel) > 9000 and not hotel & set(texts)
    assert 52000 < len(texts) < 52800


PRETRAIN = ["手机很好用", "电池不耐用", "屏幕很清楚", "物流很快", "包装很差", "衣服质量不错", "洗发水很香",
            "水果很新鲜", "书的内容很好", "热水器安装很慢"]
FT_TRAIN = ["菜很好吃", "服务很差"]
FT_HELDOUT = ["环境不错！", "物流很快"]  # "物流很快" also appears in the pretraining texts


def test_build_lm_corpus_excludes_heldout_text_and_holds_out_a_seeded_slice():
    corpus = build_lm_corpus(PRETRAIN + ["环境，不错"], FT_TRAIN, FT_HELDOUT, val_size=2, seed=0, min_freq=1,
                             use_disk_cache=False)
    everything = corpus.train + corpus.val
    joined = {"".join(w) for w in everything}
    assert not joined & {cjk_only(t) for t in FT_HELDOUT}  # dropped, even with different punctuation
    assert corpus.stats["removed_heldout_duplicates"] == 2
    assert {"菜很好吃", "服务很差"} <= {"".join(w) for w in corpus.train}  # fine-tuning train text is kept in training
    assert len(corpus.val) == 2 and not {"".join(w) for w in corpus.val} & {"".join(w) for w in corpus.train}
    assert corpus.vocab.itos[:3] == [PAD, UNK, EOS]
    again = build_lm_corpus(PRETRAIN + ["环境，不错"], FT_TRAIN, FT_HELDOUT, val_size=2, seed=0, min_freq=1,
                            use_disk_cache=False)
    assert again.val == corpus.val and again.vocab == corpus.vocab
    other = build_lm_corpus(PRETRAIN, FT_TRAIN, FT_HELDOUT, val_size=2, seed=1, min_freq=1, use_disk_cache=False)
    assert other.val != corpus.val
    with pytest.raises(ValueError, match="validation/test"):
        build_lm_corpus(PRETRAIN, FT_TRAIN + ["物流很快。"], FT_HELDOUT, use_disk_cache=False)
    with pytest.raises(ValueError, match="val_size"):
        build_lm_corpus(PRETRAIN, FT_TRAIN, FT_HELDOUT, val_size=100, use_disk_cache=False)


def test_lm_vocab_is_capped_and_has_eos():
    docs = [["a", "b", "b", "c", "c", "c", "d"]]
    v = lm_vocab(docs, min_freq=1, max_size=5)
    assert v.itos == [PAD, UNK, EOS, "c", "b"]
    assert lm_vocab(docs, min_freq=2, max_size=None).itos == [PAD, UNK, EOS, "c", "b"]


@pytest.mark.skipif(not SHOPPING.exists(), reason="online_shopping_10_cats.csv not present")
def test_default_corpus_on_the_real_data(dianping):
    split = stratified_split(dianping.labels, (1600, 200, 200), seed=0)
    corpus = default_lm_corpus(dianping.texts, split, shopping_csv=SHOPPING, val_size=500, max_size=30000)
    heldout = {cjk_only(dianping.texts[i]) for i in np.concatenate([split.val, split.test])}
    assert not heldout & {"".join(w) for w in corpus.train + corpus.val}
    st = corpus.stats
    assert st["finetune_train_reviews"] >= 1590 and st["val_reviews"] == 500
    assert 20000 < st["vocab_size"] <= 30000  # min_freq 2 leaves ~26k words
    assert st["train_words"] > 1_200_000 and st["train_unk_rate"] < 0.03


def encode_docs(lengths, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(3, 50, size=n).astype(np.int32) for n in lengths]


def test_batches_hold_next_words_eos_and_cover_every_word_once():
    seqs = encode_docs([1, 3, 7, 12, 20, 5, 9, 2, 16])
    lb = LMBatches(seqs, eos_id=2, batch_size=4, buckets=(4, 8), seed=0)
    batches = list(lb.epoch(0))
    assert len(batches) == len(lb)
    pairs = []  # (input word, next word) per predicted position
    for b in batches:
        rows, t = b["tokens"].shape
        assert rows == 4 and t in (4, 8)
        assert b["tokens"].dtype == b["targets"].dtype == b["lengths"].dtype == np.int32
        assert b["target_weights"].dtype == b["weights"].dtype == np.float32
        valid = np.arange(t)[None, :] < b["lengths"][:, None]
        np.testing.assert_array_equal(b["target_weights"], valid.astype(np.float32))
        assert np.all(b["tokens"][~valid] == 0) and np.all(b["targets"][~valid] == 0)
        assert np.all(b["lengths"][b["weights"] == 0] == 0)  # filler rows are empty
        # within a row, each target is the next row input
        np.testing.assert_array_equal(b["targets"][:, :-1][valid[:, 1:]], b["tokens"][:, 1:][valid[:, 1:]])
        pairs += list(zip(b["tokens"][valid].tolist(), b["targets"][valid].tolist()))
    want = [(int(s[i]), int(s[i + 1]) if i + 1 < len(s) else 2) for s in seqs for i in range(len(s))]
    assert sorted(pairs) == sorted(want) and lb.num_targets == len(want) == sum(map(len, seqs))
    assert 0.0 < lb.padding_fraction() < 1.0


def test_batches_are_a_pure_function_of_seed_and_epoch():
    seqs = encode_docs(np.random.default_rng(1).integers(1, 30, size=60))
    a = LMBatches(seqs, eos_id=2, batch_size=8, buckets=(8, 16, 32), seed=3)
    b = LMBatches(seqs, eos_id=2, batch_size=8, buckets=(8, 16, 32), seed=3)

    def same(x, y):
        return len(x) == len(y) and all(all(np.array_equal(p[k], q[k]) for k in p) for p, q in zip(x, y))

    e1 = list(a.epoch(1))
    assert same(e1, list(b.epoch(1)))  # a fresh object gives the same batches
    assert same(e1[3:], list(a.epoch(1, start=3)))  # exact resume
    assert not same(e1, list(a.epoch(2)))
    assert not same(e1, list(LMBatches(seqs, eos_id=2, batch_size=8, buckets=(8, 16, 32), seed=4).epoch(1)))
    fixed = LMBatches(seqs, eos_id=2, batch_size=8, buckets=(8, 16, 32), shuffle=False)
    assert same(list(fixed.epoch(0)), list(fixed.epoch(5)))


def test_batches_reject_bad_buckets():
    with pytest.raises(ValueError, match="buckets"):
        LMBatches(encode_docs([3]), eos_id=2, buckets=(16, 8))
    with pytest.raises(ValueError, match="batch_size"):
        LMBatches(encode_docs([3]), eos_id=2, batch_size=0)
