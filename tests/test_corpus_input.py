"""Pretraining corpora read through the validated CSV reader: a user's own --corpus files, hostile ones included.

The reader's own cases are in test_data_io.py; here they are seen through ``load_corpus``/``build_corpus`` and
``jaxsenti pretrain --corpus``, with the corpus rules (no 酒店 row, counts per source that add up) kept.
"""

import json
from pathlib import Path

import pytest
from tests.conftest import DATA_DIR
from tests.test_pretrain import TINY_LM

from jaxsenti import config as config_lib
from jaxsenti.cli import build_parser, main
from jaxsenti.data import DataError
from jaxsenti.data.corpus import SourceReport, TextSource, load_corpus
from jaxsenti.pretrain import build_corpus

PHRASES = ["菜很好吃", "服务也很好", "环境不错", "味道很棒", "非常满意", "下次还来", "又贵又难吃", "上菜太慢"]


def _reviews(n: int) -> list[str]:
    """``n`` distinct Chinese reviews (distinct once digits are dropped: the dedup key keeps CJK only)."""
    return [f"{PHRASES[i % 8]}{PHRASES[i // 8 % 8]}{PHRASES[i // 64 % 8]}" for i in range(n)]


def _adds_up(rep: SourceReport) -> bool:
    return rep.rows_read == (sum(rep.filtered.values()) + rep.empty + rep.no_cjk + sum(rep.excluded.values())
                             + rep.matching_filtered + rep.duplicates + rep.kept)


def _csv(tmp_path, rows: list[str], name="corpus.csv", encoding="utf-8") -> Path:
    p = tmp_path / name
    p.write_bytes(("cat,label,review\n" + "".join(r + "\n" for r in rows)).encode(encoding))
    return p


# ---------------------------------------------------------------------------------------------- CSV corpora


def test_an_unclosed_quote_is_named_where_it_opens_not_read_as_one_text(tmp_path):
    rows = [f"书籍,1,{t}" for t in _reviews(300)]
    rows[5] = rows[5].replace(",1,", ',1,"')  # the csv module alone made this 300-row corpus 6 texts
    with pytest.raises(DataError, match=r"corpus.csv: row 6, column 'review': the quote that opens at line 7, "
                                        r"character 6 is never closed, so lines 7-301"):
        load_corpus([_csv(tmp_path, rows)])


def test_fields_of_any_length_are_read_whole(tmp_path):
    c = load_corpus([_csv(tmp_path, ["书籍,1,很好", "书籍,1," + "好" * 200_000])])
    assert sorted(map(len, c.texts)) == [2, 200_000]


def test_malformed_rows_and_missing_columns_name_rows_and_lines(tmp_path):
    with pytest.raises(DataError, match=r"1 row\(s\) with malformed CSV: row 2 \(line 3\): 4 fields, header has 3"):
        load_corpus([_csv(tmp_path, ["书籍,1,很好", "书籍,1,很好,多"])])
    with pytest.raises(DataError, match=r"column 'body' not found; columns are \['cat', 'label', 'review'\]. "
                                        r"Choose the column with --text-column after its --corpus"):
        load_corpus([TextSource(str(_csv(tmp_path, ["书籍,1,很好"])), text_column="body")])
    dup = tmp_path / "dup.csv"
    dup.write_text("review,label,review\n很好,1,好\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"column 'review' appears 2 times in the header"):
        load_corpus([dup])


def test_blank_lines_boms_and_every_kind_of_drop_are_counted_and_add_up(tmp_path):
    texts = _reviews(6)
    rows = ["书籍,1,\ufeff" + texts[0], "", f"书籍,1,{texts[1]}", "书籍,1,   ", "书籍,1,good!", "书籍,1,㐀㐁",
            f"酒店,1,{texts[2]}", f"\ufeff酒店,0,{texts[3]}", f" 酒店 ,0,{texts[4]}",  # a BOM or spaces never let a hotel row in
            f"水果,1,{texts[2]}", f"书籍,0,{texts[1]}！", f"衣服,1,{texts[5]}", "", ""]
    c = load_corpus([_csv(tmp_path, rows)], exclude_texts={"test": [texts[5]]})
    rep = c.sources[0]
    assert c.texts == [texts[0], texts[1]]
    assert (rep.rows_read, rep.filtered, rep.empty, rep.blank_lines, rep.no_cjk, rep.matching_filtered, rep.duplicates,
            rep.excluded, rep.bom_stripped, rep.kept) == (12, {"cat=酒店": 3}, 2, 1, 2, 1, 1, {"test": 1}, 1, 2)
    assert _adds_up(rep)
    assert rep.lines() == ["stripped 1 UTF-8 byte-order mark(s) inside texts", "3 row(s) skipped (cat=酒店: never read)",
                           "2 row(s) with empty text dropped (1 of them blank lines)",
                           "2 text(s) with no Chinese characters (U+4E00–U+9FFF) dropped",
                           "1 text(s) of the fine-tuning test split removed",
                           "1 text(s) equal to a skipped row's text removed",
                           "1 duplicate text(s) dropped (first copy kept)", "2 of 12 row(s) kept"]


def test_a_corpus_with_only_hotel_rows_or_nothing_usable_is_refused_saying_why(tmp_path):
    def corpus_of(path):
        return build_corpus(config_lib.CorpusConfig(sources=((str(path), None),), shopping=False, finetune_train=False))

    with pytest.raises(DataError, match=r"the pretraining corpus has no text left: \S*hotel.csv: 3 row\(s\) skipped "
                                        r"\(cat=酒店: never read\), 0 of 3 row\(s\) kept"):
        corpus_of(_csv(tmp_path, [f"酒店,1,{t}" for t in _reviews(3)], "hotel.csv"))
    with pytest.raises(DataError, match=r"no text left: \S*latin.csv: 2 text\(s\) with no Chinese characters \(U\+4E00–U\+9FFF\)"):
        corpus_of(_csv(tmp_path, ["书籍,1,good", "书籍,1,12345"], "latin.csv"))
    with pytest.raises(DataError, match=r"no text left: \S*header.csv: no data rows \(the file is empty or has a header only\)"):
        corpus_of(_csv(tmp_path, [], "header.csv"))
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=r"no text left: \S*empty.txt: no data rows"):
        corpus_of(empty)


@pytest.mark.parametrize("content, message", [
    (b"PK\x03\x04workbook", r"is a ZIP archive \(an .xlsx/.docx/.zip file\?\), not a CSV or text file"),
    ("review\n好\x00吃\n".encode(), r"line 2, character 2: a NUL character"),
    ("cat;label;review\n书籍;1;很好\n".encode(), r"no text column found \(looked for review, comment, text, content\) "
                                               r"\(the file seems separated by ';', not by commas"),
])
def test_files_that_are_not_comma_separated_text_are_named(tmp_path, content, message):
    p = tmp_path / "corpus.csv"
    p.write_bytes(content)
    with pytest.raises(DataError, match=message):
        load_corpus([p])


def test_a_folder_is_named_with_what_it_holds(tmp_path):
    (tmp_path / "reviews.csv").write_text("review\n很好\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"is a folder, not a file; CSV/TXT files in it: reviews.csv; name one of them"):
        load_corpus([tmp_path])


# ---------------------------------------------------------------------------------------------- encodings


def test_each_source_has_its_encoding_and_wrong_ones_are_named(tmp_path):
    gbk = _csv(tmp_path, ["书籍,1,这本书很好看"], "gbk.csv", encoding="gb18030")
    txt = tmp_path / "utf16.txt"
    txt.write_bytes("质量不错\n".encode("utf-16"))
    c = load_corpus([TextSource(str(gbk), encoding="gb18030"), TextSource(str(txt), encoding="utf-16")])
    assert c.texts == ["这本书很好看", "质量不错"]
    with pytest.raises(DataError, match=r"gbk.csv: line 2, character 1: bytes .* are not valid utf-8.*--encoding gb18030"):
        load_corpus([gbk])
    with pytest.raises(DataError, match=r"utf16.txt: line 1, character 1: .*UTF-16 byte-order mark: pass --encoding utf-16"):
        load_corpus([txt])
    with pytest.raises(DataError, match=r"unknown encoding 'klingon' \(--encoding\)"):
        load_corpus([TextSource(str(gbk), encoding="klingon")])


def test_a_utf8_corpus_read_as_gb18030_is_warned_about(tmp_path):
    both = _csv(tmp_path, ["书籍,1,好吃", "水果,0,很差"], "both.csv")  # valid UTF-8 that gb18030 decodes too, garbled
    rep = load_corpus([TextSource(str(both), encoding="gb18030")]).sources[0]
    assert rep.warnings and "also decodes as UTF-8, and reads differently as gb18030" in rep.lines()[0]
    assert load_corpus([both]).sources[0].warnings == []


# ---------------------------------------------------------------------------------------------- TXT corpora


def test_txt_lines_end_at_crlf_cr_or_lf_only(tmp_path):
    p = tmp_path / "corpus.txt"
    p.write_bytes("第一句很好\r\n第二句\u2028还是第二句\r第三句\n\n第四句\x1c也好\r\n\r\n".encode())
    c = load_corpus([p])
    assert c.texts == ["第一句很好", "第二句\u2028还是第二句", "第三句", "第四句\x1c也好"]  # \u2028, \x1c stay inside
    rep = c.sources[0]
    assert (rep.rows_read, rep.empty, rep.blank_lines, rep.kept) == (5, 1, 1, 4) and _adds_up(rep)


def test_undecodable_txt_names_its_line(tmp_path):
    p = tmp_path / "corpus.txt"
    p.write_bytes("很好\n".encode() + "坏".encode("gbk") + b"\n")
    with pytest.raises(DataError, match=r"corpus.txt: line 2, character 1: bytes .* are not valid utf-8.*gb18030"):
        load_corpus([p])


def test_a_txt_corpus_that_looks_like_a_csv_is_warned_about(tmp_path):
    p = tmp_path / "corpus.txt"
    p.write_text("cat,label,review\n书籍,1,很好\n", encoding="utf-8")
    rep = load_corpus([p]).sources[0]
    assert "first line looks like a CSV header ('cat,label,review'): to read it as CSV, give --text-column" in rep.warnings[0]
    assert load_corpus([TextSource(str(p), text_column="review")]).texts == ["很好"]


# ---------------------------------------------------------------------------------------------- the command line


def test_encoding_belongs_to_the_corpus_before_it_or_to_all_before_the_first():
    args = build_parser().parse_args(["pretrain", "lstm", "--encoding", "gbk", "--corpus", "a.csv", "--text-column", "t",
                                      "--corpus", "b.txt", "--encoding", "utf-16", "--corpus", "c.csv"])
    from jaxsenti.cli import _corpus_sources

    assert _corpus_sources(args) == (("a.csv", "t", "gbk"), ("b.txt", None, "utf-16"), ("c.csv", None, "gbk"))
    assert _corpus_sources(build_parser().parse_args(["pretrain", "lstm", "--corpus", "a.csv"])) == (("a.csv", None),)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["pretrain", "lstm", "--corpus", "a.csv", "--encoding", "gbk", "--encoding", "utf-8"])


def test_encoding_without_a_corpus_is_an_error(capsys):
    assert main(["pretrain", "lstm", "--encoding", "gb18030", "--out", "unused"]) == 2
    assert capsys.readouterr().err.strip() == ("jaxsenti: error: --encoding applies to --corpus files; the default corpus "
                                               "is read as the UTF-8 it is")


@pytest.fixture
def lm_config(tmp_path):
    p = tmp_path / "tiny_lm.py"
    p.write_text(TINY_LM.replace("CORPUS", repr(str(tmp_path / "unused.txt"))), encoding="utf-8")
    return p


def test_pretrain_corpus_errors_are_one_line(tmp_path, lm_config, capsys):
    rows = [f"书籍,1,{t}" for t in _reviews(50)]
    rows[3] = rows[3].replace(",1,", ',1,"')
    out = tmp_path / "out"
    assert main(["pretrain", "lstm", "--config", str(lm_config), "--corpus", str(_csv(tmp_path, rows)), "--out", str(out),
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("jaxsenti: error: ") and "line 5" in err and not out.exists()


def test_pretrain_reads_the_corpus_in_its_encoding_and_reports_the_counts(tmp_path, lm_config, capsys):
    texts = _reviews(120)
    body = "\n".join([texts[0], "\ufeff" + texts[1], *texts[2:60], "", *texts[60:], texts[5], "good", ""]) + "\n"
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(body.replace("\n", "\r\n").encode("utf-16"))
    out = tmp_path / "lm"
    assert main(["pretrain", "lstm", "--config", str(lm_config), "--corpus", str(corpus), "--encoding", "utf-16",
                 "--out", str(out), "--quiet", "--set", "epochs=1"]) == 0
    err = capsys.readouterr().err
    assert f"[jaxsenti] corpus {corpus}: 120 of 123 row(s) kept" in err
    info = json.loads((out / "pretraining.json").read_text(encoding="utf-8"))
    rep = info["corpus"]["sources"][0]
    assert (rep["rows_read"], rep["empty"], rep["blank_lines"], rep["duplicates"], rep["no_cjk"], rep["bom_stripped"],
            rep["kept"]) == (123, 1, 1, 1, 1, 1, 120)
    assert info["corpus"]["texts"] == 120 and rep["warnings"] == []
    saved = json.loads((out / "pretrain_config.json").read_text(encoding="utf-8"))
    assert saved["corpus"]["sources"] == [[str(corpus), None, "utf-16"]]


# ---------------------------------------------------------------------------------------------- the default corpus


def test_the_default_corpus_is_read_exactly_as_the_shipped_checkpoints_were_made(monkeypatch):
    """The validated reader reads online_shopping_10_cats.csv into the very texts (same sha256, same counts)."""
    if not (DATA_DIR / "online_shopping_10_cats.csv").exists() or not (DATA_DIR / "dianping.csv").exists():
        pytest.skip("shared data not present; set JAXSENTI_DATA_DIR")
    from jaxsenti.pretrain import packaged_pretrained_dir

    cfg = config_lib.load_config("lstm_lm")
    shipped = json.loads((packaged_pretrained_dir(cfg.name) / "pretraining.json").read_text(encoding="utf-8"))["corpus"]
    monkeypatch.setenv("JAXSENTI_DATA_DIR", str(DATA_DIR))
    corpus = build_corpus(cfg.corpus, cfg.seed)
    assert corpus.sha256 == shipped["sha256"] and len(corpus) == shipped["texts"]
    for now, then in zip(corpus.report()["sources"], shipped["sources"], strict=True):
        assert {k: now[k] for k in then} == then
        assert now["blank_lines"] == 0 and now["warnings"] == []
    assert corpus.sources[0].bom_stripped > 0  # the online-shopping file has BOMs inside cells: now counted


def test_a_corpus_too_small_for_a_language_model_says_so(tmp_path, capsys):
    # two texts after deduplication, one held out: no word of the other reaches min_freq; the message is about the corpus, not a derived
    # config field (vocab_size)
    corpus = _csv(tmp_path, ["书,1,这是一条很长的评论，东西很好用"] * 25 + ["书,1,物流太慢了，包装也破损"] * 25)
    argv = ["pretrain", "lstm", "--corpus", str(corpus), "--set", "epochs=1", "--out", str(tmp_path / "o"), "--quiet"]
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("[jaxsenti]")]
    assert len(err) == 1 and "too little text for a language model" in err[0] and "vocab_size" not in err[0], err
