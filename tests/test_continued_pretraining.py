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


def _read_by_the_shipped_lm(n: int) -> list[str]:
    """``n`` reviews the shipped lstm_lm was pretrained on (online shopping, not 酒店), by its corpus_keys.npy."""
    import csv

    from jaxsenti.data.corpus import HOTEL
    from jaxsenti.pretrain import packaged_pretrained_dir, read_mask
    from tests.conftest import DATA_DIR

    shopping = DATA_DIR / "online_shopping_10_cats.csv"
    if not shopping.is_file():
        pytest.skip(f"{shopping} not present")
    with open(shopping, encoding="utf-8-sig", newline="") as f:
        rows = [r["review"] for r in csv.DictReader(f) if r["cat"] != HOTEL and len(r["review"]) > 20][:200]
    read = [t for t, m in zip(rows, read_mask(packaged_pretrained_dir("lstm_lm"), rows)) if m]
    assert len(read) >= n
    return read[:n]


def test_the_study_keeps_the_shipped_checkpoint_unless_it_read_more_than_a_tenth_of_the_held_out_texts():
    from jaxsenti.study import MATERIAL_OVERLAP, StudyOptions, _adapt_or_pretrain

    assert MATERIAL_OVERLAP == 0.10
    pcfg = config_lib.load_config("lstm_lm")
    opts = StudyOptions(pretrain_budget_s=60)
    unseen = [f"这家店的新品{a}{b}奶茶我从没见过" for a in "甲乙丙丁戊" for b in "子丑寅卯"][:19]  # distinct CJK keys
    adapted, why, overlap = _adapt_or_pretrain(pcfg, _finetune(unseen[:1]), opts)
    assert adapted.init_from == "lstm_lm" and not adapted.corpus.shopping and adapted.corpus.finetune_train
    assert adapted.corpus.sources == () and "continued within 60 s" in why and overlap["read"] == 0
    read = _read_by_the_shipped_lm(3)
    # 1 of 20 held-out texts read (5%): the checkpoint is kept, the text will be left out of the row's splits
    kept, why, overlap = _adapt_or_pretrain(pcfg, _finetune([read[0], *unseen]), opts)
    assert kept.init_from == "lstm_lm" and overlap == {"checkpoint": "lstm_lm", "read": 1, "of": 20, "threshold": 0.1,
                                                       "action": "kept, texts it read left out"}
    assert "it read 1 of the 20 validation/test texts (5.0%, at most 10%): kept" in why
    # 3 of 20 (15%): material, pretrained from scratch, and said
    scratch, why, overlap = _adapt_or_pretrain(pcfg, _finetune([*read, *unseen[:17]]), opts)
    assert scratch == pcfg and overlap["action"] == "pretrained from scratch"
    assert "read 3 of this data's 20 validation/test texts (15%, more than the 10%" in why and "from scratch" in why
    # the user's corpus goes with either: continued on it, or added to the from-scratch corpus
    mine = StudyOptions(pretrain_budget_s=60, corpus=(("mine.csv", None),))
    assert _adapt_or_pretrain(pcfg, _finetune(unseen), mine)[0].corpus.sources == (("mine.csv", None),)
    assert _adapt_or_pretrain(pcfg, _finetune([*read, *unseen[:17]]), mine)[0].corpus.sources == (
        *pcfg.corpus.sources, ("mine.csv", None))


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


def test_study_continues_the_shipped_lstm_on_the_users_corpus_and_leaves_out_what_it_read(tmp_path, tiny_csv,
                                                                                          new_corpus, capsys):
    import csv

    from jaxsenti.data import load_reviews, stratified_split

    read = _read_by_the_shipped_lm(1)[0]
    reviews = load_reviews(tiny_csv, "comment", "sentiment")
    first_test = int(stratified_split(reviews.labels, (0.6, 0.2, 0.2), seed=0).test[0])
    with open(tiny_csv, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    rows[1 + first_test][0] = read  # a review the shipped LM read, in seed 0's test split (same label, same split)
    data = tmp_path / "mine.csv"
    with open(data, "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)
    out = tmp_path / "study"
    argv = ["study", "--data", str(data), "--models", "lstm_pretrained", "--neural-seeds", "1", "--no-eda",
            "--pretrain-budget", "20", "--out", str(out), "--quiet", "--split", "0.6/0.2/0.2", "--corpus", str(new_corpus)]
    assert main(argv) == 0
    res = json.loads((out / "results.json").read_text(encoding="utf-8"))["models"]["lstm_pretrained"]
    sources = {s["name"].rsplit("/", 1)[-1]: s for s in res["pretraining"]["info"]["corpus"]["sources"]}
    assert sources["dairy.csv"]["kept"] == len(set(NEW_TEXT)) and res["pretraining"]["info"]["init_from"].endswith("lstm_lm")
    assert all("online_shopping" not in name for name in sources)  # continued on the user's text, not the base corpus
    assert res["pretraining"]["overlap"]["read"] == 1 and res["pretraining"]["overlap"]["action"].startswith("kept")
    n_test = len(stratified_split(reviews.labels, (0.6, 0.2, 0.2), seed=0).test)
    assert res["decontaminated"] == [{"seed": 0, "val": 0, "test": 1, "test_left": n_test - 1, "test_full": n_test}]
    assert res["runs"][0]["confusion_matrix"] and sum(map(sum, res["runs"][0]["confusion_matrix"])) == n_test - 1
    report = (out / "report.md").read_text(encoding="utf-8")
    assert f"dairy.csv: {len(set(NEW_TEXT))}" in report and f"test {n_test} → {n_test - 1}.0 texts" in report
    assert "(test −1.0)" in report
    # --corpus without a row that reads it, and a corpus that is not there: exit 2, one line
    assert main([*argv[:4], "lstm", *argv[5:]]) == 2
    assert "--corpus is read by the <model>_pretrained rows" in capsys.readouterr().err
    assert main([*argv[:-1], str(tmp_path / "nope.csv"), "--overwrite"]) == 2
    assert "nope.csv" in capsys.readouterr().err


def test_a_study_pretraining_killed_midway_resumes_from_its_cache_checkpoint(tmp_path, corpus_txt, capsys):
    import dataclasses

    from jaxsenti.data.text import cache_dir
    from jaxsenti.pretrain import FinetuneTexts, find_or_pretrain

    cfg_file = tmp_path / "tiny_lm.py"
    cfg_file.write_text(TINY_LM.replace("CORPUS", repr(str(corpus_txt))), encoding="utf-8")
    cfg = config_lib.load_config(str(cfg_file), config_lib.PretrainConfig)
    finetune = FinetuneTexts("mine.csv training texts", ["训练文本一"], {"val": ["验证"], "test": ["测试"]})
    cached = cache_dir() / "pretrained" / f"{cfg.name}-{pretrained_key(cfg, finetune)}"
    budgeted = dataclasses.replace(cfg, time_budget_s=600.0, snapshot_epochs=())
    assert pretrain(budgeted, cached, finetune=finetune, progress=False, stop_after_steps=3).interrupted
    folder, info, origin = find_or_pretrain(cfg, finetune, time_budget_s=600.0, progress=False)
    assert folder == cached and "resuming the unfinished pretraining" in capsys.readouterr().err
    whole = pretrain(budgeted, tmp_path / "whole", finetune=finetune, progress=False)
    assert info["steps"] == whole.info["steps"] and info["final"]["val_loss"] == pytest.approx(whole.info["final"]["val_loss"], rel=1e-6)
