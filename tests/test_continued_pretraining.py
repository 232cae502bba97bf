"""Domain-adaptive pretraining (`pretrain --init-from`): a checkpoint's weights and vocabulary are kept, the new text's
words are added (and said), the result is a normal pretrained folder, and exact resume still holds."""

import json

import numpy as np
import pytest
from safetensors.numpy import load_file
from tests.test_pretrain import TINY_LM, TINY_MLM

from jaxsenti import config as config_lib
from jaxsenti.cli import main
from jaxsenti.data.lm_corpus import extend_vocab, lm_vocab
from jaxsenti.data.text import Vocab
from jaxsenti.pretrain import pretrain, pretrained_key

_DAIRY = ["酸奶口感细腻", "奶香浓郁", "牛奶喝起来有点淡", "包装很好", "早餐奶很方便", "孩子喜欢", "纯牛奶味道正",
          "回购", "保质期太短", "送货很快", "有股怪味", "价格实惠"]
NEW_TEXT = [f"{a}，{b}，{c}" for a in _DAIRY for b in _DAIRY for c in _DAIRY[:3] if len({a, b, c}) == 3]  # 300 texts


@pytest.fixture
def new_corpus(tmp_path):
    p = tmp_path / "dairy.csv"
    p.write_text("review\n" + "\n".join(NEW_TEXT) + "\n", encoding="utf-8")
    return p


def test_extend_vocab_keeps_every_index_and_appends_new_words_by_frequency():
    base = lm_vocab([["好", "吃"], ["好", "贵"]], min_freq=1)
    corpus = lm_vocab([["牛奶", "好"], ["牛奶", "酸奶"]], min_freq=1)
    merged, added = extend_vocab(base, corpus)
    assert merged.itos[: len(base)] == base.itos and added == ["牛奶", "酸奶"] and merged.itos[len(base):] == added
    with pytest.raises(ValueError, match="not a language-model vocabulary"):
        extend_vocab(Vocab(["<pad>", "<unk>", "词"]), corpus)


@pytest.fixture
def base_lm(tmp_path, corpus_txt):
    cfg = tmp_path / "tiny_lm.py"
    cfg.write_text(TINY_LM.replace("CORPUS", repr(str(corpus_txt))), encoding="utf-8")
    out = tmp_path / "base_lm"
    assert main(["pretrain", "lstm", "--config", str(cfg), "--out", str(out), "--quiet"]) == 0
    return cfg, out


def test_lstm_continues_from_its_checkpoint_with_the_vocabulary_kept_and_extended(base_lm, new_corpus, tmp_path, capsys):
    cfg, base = base_lm
    capsys.readouterr()
    out = tmp_path / "adapted"
    argv = ["pretrain", "lstm", "--config", str(cfg), "--init-from", str(base), "--corpus", str(new_corpus),
            "--out", str(out), "--quiet", "--set", "epochs=1"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    old = json.loads((base / "vocab.json").read_text(encoding="utf-8"))
    new = json.loads((out / "vocab.json").read_text(encoding="utf-8"))
    added = new[len(old):]
    assert new[: len(old)] == old and "牛奶" in added and all(w not in old for w in added)
    assert f"its vocabulary of {len(old):,} kept, {len(added):,} word(s) of this corpus added" in err
    info = json.loads((out / "pretraining.json").read_text(encoding="utf-8"))
    assert info["vocabulary"]["added"] == len(added) and info["init_from"] == str(base.resolve())
    assert np.load(out / "params.npz")["embed/embedding"].shape[0] == len(new)


def test_the_starting_model_is_the_checkpoint_with_new_rows_at_the_mean(base_lm, new_corpus):
    from jaxsenti.data.corpus import split_heldout
    from jaxsenti.models.lstm_transfer import flat_params
    from jaxsenti.pretrain import build_corpus
    from jaxsenti.tasks.language_model import LanguageModelTask

    cfg_path, base = base_lm
    cfg = config_lib.override(config_lib.load_config(cfg_path), "corpus.sources", ((str(new_corpus), None),))
    corpus = build_corpus(cfg.corpus, cfg.seed)
    prep = LanguageModelTask().prepare(cfg, corpus, *split_heldout(len(corpus), 0.1, 0), init=str(base))
    start, saved = flat_params(prep.model), dict(np.load(base / "params.npz"))
    old = saved["embed/embedding"].shape[0]
    for k, v in saved.items():  # every weight is the checkpoint's ...
        np.testing.assert_array_equal(start[k][:old] if k in ("embed/embedding", "out_bias") else start[k], v)
    added = start["embed/embedding"][old:]  # ... and the words it lacked start at the mean of its words' vectors
    assert len(added) == prep.vocab_report["added"] > 0
    np.testing.assert_allclose(added, np.broadcast_to(saved["embed/embedding"][3:].mean(0), added.shape), rtol=1e-6)


def test_continued_pretraining_resumes_exactly(base_lm, new_corpus, tmp_path):
    cfg_path, base = base_lm
    cfg = config_lib.apply_overrides(config_lib.load_config(cfg_path), ["epochs=2"])
    cfg = config_lib.override(cfg, "corpus.sources", ((str(new_corpus), None),))
    cfg = config_lib.override(cfg, "init_from", str(base))
    full = pretrain(cfg, tmp_path / "full", progress=False)
    assert pretrain(cfg, tmp_path / "resumed", progress=False, stop_after_steps=3).interrupted
    resumed = pretrain(cfg, tmp_path / "resumed", resume=True, progress=False)
    assert [h["train_loss"] for h in resumed.history] == pytest.approx([h["train_loss"] for h in full.history], rel=1e-6)
    a, b = np.load(tmp_path / "full" / "params.npz"), np.load(tmp_path / "resumed" / "params.npz")
    for k in a.files:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6)
    assert pretrained_key(cfg, None) != pretrained_key(config_lib.override(cfg, "init_from", None), None)


def test_bert_continues_from_the_shipped_checkpoint_keeping_unused_rows(new_corpus, tmp_path, capsys):
    cfg = tmp_path / "tiny_mlm.py"
    cfg.write_text(TINY_MLM.replace("CORPUS", repr(str(new_corpus))), encoding="utf-8")
    out = tmp_path / "adapted_bert"
    assert main(["pretrain", "bert", "--config", str(cfg), "--init-from", "bert_mlm_small", "--out", str(out),
                 "--quiet", "--set", "epochs=1"]) == 0
    assert "its vocabulary of 21,128 kept, 0 word(s) of this corpus added" in capsys.readouterr().err
    saved = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert (saved["hidden_size"], saved["num_hidden_layers"]) == (128, 2)  # the checkpoint's sizes, not the config's 32×1
    from jaxsenti.pretrain import packaged_pretrained_dir

    shipped = load_file(packaged_pretrained_dir("bert_mlm_small") / "model.safetensors")
    mine = load_file(out / "model.safetensors")
    key = "bert.embeddings.word_embeddings.weight"
    never = np.all(mine[key] == shipped[key].astype(np.float32), axis=1)  # rows the new text never used: unchanged
    assert 15000 < never.sum() < 21128


def test_init_from_names_what_it_cannot_use(tmp_path, new_corpus, capsys):
    assert main(["pretrain", "lstm", "--init-from", str(tmp_path / "nowhere"), "--corpus", str(new_corpus),
                 "--out", str(tmp_path / "x")]) == 2
    assert "nor a shipped checkpoint (bert_mlm_small, lstm_lm, or 'shipped')" in capsys.readouterr().err
    assert main(["pretrain", "lstm", "--init-from", "bert_mlm_small", "--corpus", str(new_corpus),
                 "--out", str(tmp_path / "y")]) == 2
    assert "a BERT checkpoint, not a pretrained LSTM language model" in capsys.readouterr().err


def _finetune(val_texts):
    from jaxsenti.pretrain import FinetuneTexts

    return FinetuneTexts("mine.csv training texts", ["训练文本一", "训练文本二"], {"val": val_texts, "test": []})


def test_the_study_adapts_the_shipped_checkpoint_only_when_it_read_none_of_the_held_out_texts():
    from jaxsenti.data.corpus import HOTEL
    from jaxsenti.study import _adapt_or_pretrain
    from tests.conftest import DATA_DIR

    import csv

    shopping = DATA_DIR / "online_shopping_10_cats.csv"
    if not shopping.is_file():
        pytest.skip(f"{shopping} not present")
    with open(shopping, encoding="utf-8-sig", newline="") as f:
        read = next(r["review"] for r in csv.DictReader(f) if r["cat"] != HOTEL and len(r["review"]) > 20)
    pcfg = config_lib.load_config("lstm_lm")
    adapted, why = _adapt_or_pretrain(pcfg, _finetune(["这家店的新品奶茶我从没见过"]), 60)
    assert adapted.init_from == "lstm_lm" and not adapted.corpus.shopping and adapted.corpus.finetune_train
    assert adapted.corpus.sources == () and "adapted to this data within 60 s" in why
    same, why = _adapt_or_pretrain(pcfg, _finetune([read]), 60)  # a review the shipped LM was pretrained on
    assert same == pcfg and "read 1 of this data's validation/test texts" in why and "from scratch" in why


def test_study_on_other_data_fine_tunes_from_the_adapted_shipped_lstm(tmp_path, tiny_csv, capsys):
    out = tmp_path / "study"
    argv = ["study", "--data", str(tiny_csv), "--models", "lstm_pretrained", "--neural-seeds", "1", "--no-eda",
            "--pretrain-budget", "20", "--out", str(out), "--quiet", "--split", "0.6/0.2/0.2"]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    pre = results["models"]["lstm_pretrained"]["pretraining"]
    assert pre["origin"].startswith("the shipped lstm_lm adapted now") and pre["info"]["init_from"].endswith("lstm_lm")
    corpus = pre["info"]["corpus"]
    assert corpus["texts"] <= 34 and all("online_shopping" not in s["name"] for s in corpus["sources"])
    assert "continuing the shipped checkpoint" in (out / "report.md").read_text(encoding="utf-8")
