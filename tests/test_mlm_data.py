"""MLM pretraining data: corpus rules (no hotel rows, no val/test text), tokenization cache, packing, masking."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from jaxsenti.data import DataError, load_reviews, stratified_split
from jaxsenti.data import corpus as pt
from jaxsenti.data.masking import BATCH_KEYS, MaskedLMBatches, default_max_predictions, pack
from jaxsenti.data.corpus import (
    TextSource,
    default_corpus,
    load_corpus,
    split_heldout,
    text_key,
    tokenize_corpus,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("JAXSENTI_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))
TOKENIZER_DIR = Path(os.environ.get("JAXSENTI_BERT_TOKENIZER_DIR",
                                    str(REPO_ROOT / "../shared/models/bert-base-chinese-tokenizer"))).resolve()
needs_tokenizer = pytest.mark.skipif(not (TOKENIZER_DIR / "vocab.txt").is_file(), reason="no bert-base-chinese tokenizer")
SHOPPING = DATA_DIR / "online_shopping_10_cats.csv"


@pytest.fixture(scope="module")
def tokenizer():
    if not (TOKENIZER_DIR / "vocab.txt").is_file():
        pytest.skip("no bert-base-chinese tokenizer")
    from jaxsenti.models.hf_bert import load_tokenizer

    return load_tokenizer(TOKENIZER_DIR)


# ---------------------------------------------------------------------------------------------- corpus


def test_load_corpus_rules(tmp_path):
    (tmp_path / "shop.csv").write_text(
        "\ufeffcat,label,review\n"
        "书籍,1,这本书很好看\n"
        "酒店,1,房间干净，早餐丰富\n"
        "酒店,0,隔音太差\n"
        "水果,0,隔音太差。\n"  # a hotel text filed under another category: still excluded
        "水果,1,   \n"
        "水果,1,good\n"
        "水果,1,苹果很甜！\n"
        "衣服,1,苹果很甜\n"  # same text as the line above once punctuation is ignored
        "衣服,0,测试集里的一句话\n", encoding="utf-8")
    (tmp_path / "more.txt").write_text("\ufeff质量不错\n\n验证集的评论！！\n", encoding="utf-8")
    c = load_corpus([tmp_path / "shop.csv", TextSource(str(tmp_path / "more.txt")), TextSource.from_texts("mem", ["质量不错", "新的文本"])],
                    exclude_texts={"val": ["验证集的评论"], "test": ["测试集里的一句话。"]})
    assert c.texts == ["这本书很好看", "苹果很甜！", "质量不错", "新的文本"]
    assert c.source.tolist() == [0, 0, 1, 2]
    shop, txt, mem = c.sources
    assert shop.filtered == {"cat=酒店": 2} and shop.matching_filtered == 1
    assert (shop.empty, shop.no_cjk, shop.duplicates, shop.excluded, shop.kept) == (1, 1, 1, {"val": 0, "test": 1}, 2)
    assert (txt.rows_read, txt.empty, txt.excluded["val"], txt.kept) == (3, 1, 1, 1)
    assert (mem.duplicates, mem.kept) == (1, 1)
    assert not any("酒店" in t or "干净" in t or "隔音" in t for t in c.texts)
    # the hash is a cache key: stable, and sensitive to the texts
    again = load_corpus([tmp_path / "shop.csv", TextSource(str(tmp_path / "more.txt"))], exclude_texts=["测试集里的一句话"])
    assert again.sha256 == load_corpus([tmp_path / "shop.csv", TextSource(str(tmp_path / "more.txt"))],
                                       exclude_texts=["测试集里的一句话"]).sha256 != c.sha256
    assert text_key("Ｇｏｏｄ，好吃！") == text_key("good 好吃") == "好吃"


def test_load_corpus_errors_name_file_row_and_column(tmp_path):
    with pytest.raises(DataError, match="nope.csv: file not found"):
        load_corpus([tmp_path / "nope.csv"])
    p = tmp_path / "bad.csv"
    p.write_text("cat,label,body\n书籍,1,好\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.csv: no text column found \(looked for review, comment, text, content\); "
                                        r"columns are \['cat', 'label', 'body'\]. Choose the column with --text-column"):
        load_corpus([p])
    p.write_text("cat,label,review\n书籍,1,好\n书籍,1,好,多\n书籍,1,好\n书籍,1\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.csv: 2 row\(s\) with malformed CSV: row 2 \(line 3\): 4 fields, header has 3; "
                                        r"row 4 \(line 5\): 2 fields"):
        load_corpus([p])
    p.write_bytes("review\nok\n坏\n".encode("gbk"))  # a GBK file: the gb18030 hint (GB18030 extends GBK)
    with pytest.raises(DataError, match=r"bad.csv: line 3, character 1: bytes .* are not valid utf-8.*--encoding gb18030"):
        load_corpus([p])


@pytest.fixture(scope="module")
def dianping_split():
    p = DATA_DIR / "dianping.csv"
    if not p.exists() or not SHOPPING.exists():
        pytest.skip("shared data not present; set JAXSENTI_DATA_DIR")
    r = load_reviews(p)
    sp = stratified_split(r.labels, (1620, 180, 200), seed=0)
    return {k: [r.texts[i] for i in getattr(sp, k)] for k in ("train", "val", "test")}


def test_default_corpus_excludes_hotel_and_heldout_text(dianping_split, tmp_path):
    d = dianping_split
    leak = [d["test"][0], d["test"][1] + "！！", d["val"][0]]  # a test text with extra punctuation is still that text
    c = default_corpus(SHOPPING, train_texts=d["train"] + leak, val_texts=d["val"], test_texts=d["test"])
    shop, ft = c.sources
    assert shop.rows_read == 62774 and shop.filtered == {"cat=酒店": 10000}
    assert ft.excluded == {"val": 1, "test": 2} and ft.kept == 1620
    keys = {text_key(t) for t in c.texts}
    assert len(keys) == len(c.texts)  # deduplicated
    hotel = load_corpus([TextSource(str(SHOPPING), text_column="review", drop_rows=(("cat", ("书籍", "平板", "水果", "洗发水", "衣服", "计算机", "手机", "蒙牛", "热水器")),))])
    assert len(hotel) > 9000 and not keys & {text_key(t) for t in hotel.texts}
    assert not keys & {text_key(t) for t in d["val"] + d["test"]}
    assert len(c) == shop.kept + ft.kept and c.report()["sha256"] == c.sha256
    # without a cat column the hotel rows could not be told apart: refuse
    (tmp_path / "nocat.csv").write_text("label,review\n1,很好\n", encoding="utf-8")
    with pytest.raises(DataError, match="no 'cat' column"):
        default_corpus(tmp_path / "nocat.csv", val_texts=[], test_texts=[])


def test_split_heldout():
    tr, ho = split_heldout(1000, 0.02, seed=3)
    assert len(ho) == 20 and len(tr) == 980 and not set(tr) & set(ho) and set(tr) | set(ho) == set(range(1000))
    assert (split_heldout(1000, 0.02, seed=3)[1] == ho).all() and not (split_heldout(1000, 0.02, seed=4)[1] == ho).all()
    with pytest.raises(ValueError):
        split_heldout(1, 0.5)


# ------------------------------------------------------------------------------------ tokens and packing


@needs_tokenizer
def test_tokenize_marks_jieba_word_starts_and_caches(tokenizer, monkeypatch):
    texts = ["性价比高，推荐购买华为手机", "好吃！"]
    tc = tokenize_corpus(texts, tokenizer)
    first = tc.ids[tc.offsets[0]:tc.offsets[1]]
    assert tokenizer.convert_ids_to_tokens(first.tolist()) == list("性价比高，推荐购买华为手机")
    # 性价比 | 高 | ， | 推荐 | 购买 | 华为 | 手机
    assert tc.word_start[:13].astype(int).tolist() == [1, 0, 0, 1, 1, 1, 0, 1, 0, 1, 0, 1, 0]
    assert tc.offsets.tolist() == [0, 13, 16] and tc.vocab.mask_id == 103
    assert {100, 101, 102, 103, 0} <= set(tc.vocab.special_ids) and tc.vocab.replacement_ids.min() > 105
    monkeypatch.setattr(pt, "_tokenize", lambda *a: pytest.fail("cache was not used"))
    cached = tokenize_corpus(texts, tokenizer)
    assert (cached.ids == tc.ids).all() and (cached.word_start == tc.word_start).all()


@pytest.fixture(scope="module")
def dianping_tokens(tokenizer, dianping_split):
    return tokenize_corpus(dianping_split["train"], tokenizer, use_disk_cache=False)


def test_pack_layout(dianping_tokens):
    tc, T = dianping_tokens, 64
    p = pack(tc, T, seed=1)
    v = tc.vocab
    assert p.tokens.shape[1] == T and (p.tokens[:, 0] == v.cls_id).all()
    assert (p.lengths[:-1] == T).all() and 1 < p.lengths[-1] <= T
    assert (p.tokens[-1, p.lengths[-1]:] == v.pad_id).all() and (p.tokens[:-1] != v.pad_id).all()
    assert (p.tokens == v.sep_id).sum() == len(tc)
    # the stream, [CLS]s removed and split at [SEP], is exactly the reviews in the packing order
    stream = np.concatenate([row[1:n] for row, n in zip(p.tokens, p.lengths)])
    order = np.random.default_rng([1, 11]).permutation(len(tc))
    want = np.concatenate([np.append(tc.ids[tc.offsets[i]:tc.offsets[i + 1]], v.sep_id) for i in order])
    np.testing.assert_array_equal(stream, want)
    assert np.diff(tc.offsets).max() > T  # some reviews are longer than a sequence, so they were split
    with pytest.raises(ValueError):
        pack(tc, 2)


# ------------------------------------------------------------------------------------------- masking


@pytest.fixture(scope="module")
def batches(dianping_tokens):
    return MaskedLMBatches(pack(dianping_tokens, 64, seed=0), batch_size=32, seed=5)


def _word_ids(packed):
    """Word id of every token ([CLS]/[SEP]/[PAD]/[UNK] each a word of their own)."""
    special = np.isin(packed.tokens, packed.vocab.special_ids)
    starts = packed.word_start | special | np.roll(special, 1, axis=1)
    return np.cumsum(starts.ravel()).reshape(starts.shape)


def test_masking_statistics(batches):
    p, m = batches.packed, batches.masks(0)
    P = batches.max_predictions
    assert P == default_max_predictions(64) == 9
    v, w = p.vocab, m["target_weights"] > 0
    rows = np.nonzero(w)[0]
    pos = m["positions"][w]
    orig = p.tokens[rows, pos]
    assert not np.isin(orig, v.special_ids).any()  # [CLS] [SEP] [PAD] [UNK] never chosen
    np.testing.assert_array_equal(m["targets"][w], orig)
    cand = ~np.isin(p.tokens, v.special_ids) & (np.arange(64)[None] < p.lengths[:, None])
    assert abs(w.sum() / cand.sum() - 0.15) < 0.005
    assert w.sum(1).max() <= P and (w[:, :-1] >= w[:, 1:]).all()  # filled slots first, never more than P
    # positions strictly increase within a row (unique)
    pos_grid = np.where(w, m["positions"], 10**6)
    assert (np.diff(pos_grid, axis=1)[w[:, 1:]] > 0).all()
    # 80 % [MASK] / 10 % random token / 10 % unchanged
    inp = m["tokens"][rows, pos]
    frac_mask, frac_same = np.mean(inp == v.mask_id), np.mean(inp == orig)
    frac_rand = 1 - frac_mask - frac_same
    assert abs(frac_mask - 0.8) < 0.02 and abs(frac_same - 0.1) < 0.015 and abs(frac_rand - 0.1) < 0.015
    assert np.isin(inp[(inp != v.mask_id) & (inp != orig)], v.replacement_ids).all()
    # everything not chosen is untouched
    untouched = np.ones(p.tokens.shape, bool)
    untouched[rows, pos] = False
    np.testing.assert_array_equal(m["tokens"][untouched], p.tokens[untouched])
    # whole words: a word is either entirely chosen or not at all
    wid = _word_ids(p)
    chosen = np.zeros(p.tokens.shape, bool)
    chosen[rows, pos] = True
    per_word = np.bincount(wid.ravel(), weights=chosen.ravel())
    size = np.bincount(wid.ravel())
    touched = per_word > 0
    assert (per_word[touched] == size[touched]).all()
    assert (size[touched] > 1).sum() > 100  # multi-token words were masked, so this checked something


def test_masks_are_a_function_of_seed_and_epoch(batches, dianping_tokens):
    a, b = batches.masks(3), batches.masks(3)
    other = MaskedLMBatches(batches.packed, batch_size=7, seed=5)  # batch size does not change the masks
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
        np.testing.assert_array_equal(a[k], other.masks(3)[k])
    assert not np.array_equal(a["positions"], batches.masks(4)["positions"])
    assert not np.array_equal(a["positions"], MaskedLMBatches(batches.packed, 32, seed=6).masks(3)["positions"])


def test_batches_fixed_shapes_filler_rows_and_resume(batches):
    N, B, T, P = len(batches.packed), 32, 64, batches.max_predictions
    assert len(batches) == -(-N // B) and N % B  # the last batch needs filler rows
    got = list(batches.epoch(2))
    assert len(got) == len(batches)
    for batch in got:
        assert set(batch) == set(BATCH_KEYS)
        assert batch["tokens"].shape == (B, T) and batch["positions"].shape == (B, P)
        assert batch["tokens"].dtype == batch["positions"].dtype == batch["targets"].dtype == np.int32
        assert batch["target_weights"].dtype == batch["weights"].dtype == np.float32
    last = got[-1]
    filler = last["weights"] == 0
    assert filler.sum() == len(batches) * B - N
    assert all((last[k][filler] == 0).all() for k in BATCH_KEYS)
    # every sequence exactly once per epoch: the [CLS]-free first tokens of all real rows cover the corpus
    real = np.concatenate([b["lengths"][b["weights"] > 0] for b in got])
    assert len(real) == N and real.sum() == batches.packed.lengths.sum()
    # resuming mid-epoch gives the very same batches
    resumed = list(batches.epoch(2, start=5))
    assert len(resumed) == len(got) - 5
    for x, y in zip(resumed, got[5:]):
        for k in BATCH_KEYS:
            np.testing.assert_array_equal(x[k], y[k])
    with pytest.raises(ValueError, match="start must be in"):
        batches.epoch(2, start=len(batches) + 1)  # raised at the call, not at the first next()
    ordered = next(MaskedLMBatches(batches.packed, B, seed=5, shuffle=False).epoch(2))
    np.testing.assert_array_equal(ordered["tokens"], batches.masks(2)["tokens"][:B])
