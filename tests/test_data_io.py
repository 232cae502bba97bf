"""Loading and validation: every bad-input case names file, row and column, or is counted."""

import pytest

from jaxsenti.data import DataError, load_reviews, resolve_dataset


def test_dianping_loads_whole(dianping):
    assert len(dianping) == 2000
    assert dianping.labels.sum() == 1000
    assert dianping.report.lines() == []


def test_online_shopping_bom_and_empty_row_are_counted():
    from tests.conftest import DATA_DIR

    p = DATA_DIR / "online_shopping_10_cats.csv"
    if not p.exists():
        pytest.skip("online_shopping_10_cats.csv not present")
    r = load_reviews(p, "review", "label")
    assert r.report.bom_stripped >= 1  # the first review (and a few others) start with a BOM inside the cell
    assert r.report.empty_dropped == [36426]
    assert not any(t.startswith("\ufeff") for t in r.texts)
    assert r.report.rows_read == 62774
    assert len(r) == r.report.rows_kept


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.csv: file not found"):
        load_reviews(tmp_path / "nope.csv")


def test_missing_column_lists_available(write_csv):
    p = write_csv("text,label\n好吃,1\n")
    with pytest.raises(DataError, match=r"column 'comment' not found; columns are \['text', 'label'\]"):
        load_reviews(p)


def test_bad_labels_name_rows_and_column(write_csv):
    p = write_csv("comment,sentiment\n好吃,1\n难吃,2\n一般,pos\n不错,1.0\n")
    with pytest.raises(DataError) as e:
        load_reviews(p)
    msg = str(e.value)
    assert str(p) in msg and "column 'sentiment'" in msg
    assert "row 2 (line 3): '2'" in msg and "row 3 (line 4): 'pos'" in msg
    assert "row 4" not in msg  # 1.0 is a valid label


def test_empty_text_counted_or_strict_error(write_csv):
    p = write_csv("comment,sentiment\n好吃,1\n  ,0\n难吃,0\n")
    r = load_reviews(p)
    assert r.texts == ["好吃", "难吃"] and r.report.empty_dropped == [2]
    assert "1 row(s) with empty text dropped: rows 2" in r.report.lines()[0]
    with pytest.raises(DataError, match=r"empty text in column 'comment': row 2 \(line 3\)"):
        load_reviews(p, strict=True)


def test_no_cjk_text_counted_or_strict_error(write_csv):
    p = write_csv("comment,sentiment\n好吃,1\n12345,0\nvery good!,1\n难吃,0\n")
    r = load_reviews(p)
    assert r.report.no_cjk_dropped == [2, 3] and len(r) == 2
    with pytest.raises(DataError, match=r"no Chinese characters in column 'comment': row 2; row 3"):
        load_reviews(p, strict=True)


def test_duplicates_and_conflicts(write_csv):
    p = write_csv("comment,sentiment\n好吃,1\n好吃,1\n一般,1\n一般,0\n难吃,0\n")
    r = load_reviews(p)
    assert r.texts == ["好吃", "难吃"]
    assert r.report.duplicates_dropped == [2]
    assert r.report.conflicting_dropped == [3, 4]
    assert r.report.rows_kept == 2 and r.report.rows_read == 5
    assert list(r.rows) == [1, 5]  # original row numbers are kept for tracing


def test_file_bom_is_transparent(write_csv):
    p = write_csv("\ufeffcomment,sentiment\n好吃,1\n".encode("utf-8"))
    r = load_reviews(p)
    assert r.texts == ["好吃"] and r.report.bom_stripped == 0


def test_long_reviews_truncated_and_counted(write_csv):
    p = write_csv("comment,sentiment\n" + "好" * 50 + ",1\n难吃,0\n")
    r = load_reviews(p, max_chars=10)
    assert r.texts[0] == "好" * 10 and r.report.truncated == [1]


def test_not_utf8_names_line(write_csv):
    p = write_csv("comment,sentiment\n好吃,1\n".encode("utf-8") + "难吃,0\n".encode("gb18030"))
    with pytest.raises(DataError, match=r"line 3: bytes are not valid utf-8.*gb18030"):
        load_reviews(p)


def test_malformed_row(write_csv):
    p = write_csv('comment,sentiment\n好吃,1\n难吃,0,extra\n')
    with pytest.raises(DataError, match=r"malformed CSV: row 2 \(line 3\): 3 fields, header has 2"):
        load_reviews(p)


def test_quoted_multiline_text(write_csv):
    p = write_csv('comment,sentiment\n"第一行\n第二行",1\n难吃,0\n')
    r = load_reviews(p)
    assert r.texts[0] == "第一行\n第二行" and list(r.rows) == [1, 2]


def test_empty_file(write_csv):
    with pytest.raises(DataError, match="file is empty"):
        load_reviews(write_csv(""))


def test_resolve_dataset_uses_env(monkeypatch, tmp_path):
    (tmp_path / "dianping.csv").write_text("comment,sentiment\n好,1\n", encoding="utf-8")
    monkeypatch.setenv("JAXSENTI_DATA_DIR", str(tmp_path))
    assert resolve_dataset() == tmp_path / "dianping.csv"
    monkeypatch.setenv("JAXSENTI_DATA_DIR", str(tmp_path / "missing"))
    monkeypatch.setenv("JAXSENTI_NO_DOWNLOAD", "1")
    monkeypatch.chdir(tmp_path / "..")
    with pytest.raises(DataError, match="jaxsenti download"):
        resolve_dataset()
