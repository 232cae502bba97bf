"""The LM's vocabulary and next-word batches (the corpus rules are the shared ones: test_mlm_data.py, test_pretrain.py)."""

from __future__ import annotations


import numpy as np
import pytest

from jaxsenti.data.lm_corpus import EOS, LMBatches, lm_vocab
from jaxsenti.data.text import PAD, UNK


def test_lm_vocab_is_capped_and_has_eos():
    docs = [["a", "b", "b", "c", "c", "c", "d"]]
    v = lm_vocab(docs, min_freq=1, max_size=5)
    assert v.itos == [PAD, UNK, EOS, "c", "b"]
    assert lm_vocab(docs, min_freq=2, max_size=None).itos == [PAD, UNK, EOS, "c", "b"]


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
