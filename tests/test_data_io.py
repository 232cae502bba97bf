"""Loading and validation: every bad-input case names file, row and column, or is counted."""

import csv
import os

import pytest

from jaxsenti.data import DataError, load_reviews, resolve_dataset
from jaxsenti.data.io import load_table, without_chinese


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
    with pytest.raises(DataError, match=r"no Chinese characters \(U\+4E00–U\+9FFF\) in column 'comment': row 2; row 3"):
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


# --------------------------------------------------------------------------- long fields


def test_review_longer_than_csv_field_limit(write_csv):
    """The csv module refuses fields over 131,072 characters unless its limit is raised."""
    limit = csv.field_size_limit()
    p = write_csv("comment,sentiment\n" + "好" * 200_000 + ",1\n难吃,0\n")
    r = load_reviews(p)
    assert r.texts[0] == "好" * 5000 and r.report.truncated == [1]
    assert csv.field_size_limit() == limit  # the process-wide limit is restored


@pytest.mark.parametrize("bad", [0, -1])
def test_max_chars_must_be_positive(write_csv, bad):
    p = write_csv("comment,sentiment\n好吃,1\n")
    with pytest.raises(ValueError, match=r"max_chars \(--max-chars\) must be a positive"):
        load_reviews(p, max_chars=bad)
    with pytest.raises(ValueError, match="must be a positive"):
        load_table(p, "comment", max_chars=bad)


# --------------------------------------------------------------------------- quotes


def test_unclosed_quote_named_where_it_opens(write_csv):
    p = write_csv('comment,sentiment\n好吃,1\n"难吃,0\n不错,1\n一般,0\n')
    with pytest.raises(DataError) as e:
        load_reviews(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}: row 2, column 'comment': the quote that opens at line 3, character 1 is never closed")
    assert "lines 3-5" in msg and '("")' in msg


def test_unclosed_quote_paired_with_a_later_row(write_csv):
    # The stray quote on line 3 pairs with the opening quote on line 5: the csv module would
    # read lines 3-5 as one text and carry on as if nothing happened.
    p = write_csv('comment,sentiment\n好吃,1\n"难吃,0\n不错,1\n"很好",1\n一般,0\n')
    with pytest.raises(DataError, match=r"row 2, column 'comment': the quote that opens at line 3, character 1 "
                                        r"is not closed where the row ends.*quote on line 5.*lines 3-5"):
        load_reviews(p)


def test_unclosed_quote_in_second_column_and_in_header(write_csv):
    p = write_csv('comment,sentiment\n好吃,1\n难吃,"0\n不错,1\n')
    with pytest.raises(DataError, match=r"row 2, column 'sentiment': the quote that opens at line 3, character 4"):
        load_reviews(p)
    p = write_csv('"comment,sentiment\n好吃,1\n')
    with pytest.raises(DataError, match=r"header, column 1: the quote that opens at line 1"):
        load_reviews(p)


def test_unclosed_quote_in_prediction_input(write_csv):
    p = write_csv('id,comment\n1,好吃\n2,"难吃\n3,不错\n')
    with pytest.raises(DataError, match=r"row 2, column 'comment': the quote that opens at line 3, character 3"):
        load_table(p, "comment")


def test_valid_quoting_is_not_flagged(write_csv):
    """Multi-line fields (\n and \r\n), doubled quotes, quoted labels: no false alarm, lines stay right."""
    p = write_csv(b'comment,sentiment\r\n"\xe7\xac\xac\xe4\xb8\x80\r\n\xe7\xac\xac\xe4\xba\x8c",1\r\n'
                  + '"他说""好吃""\n真的",1\n"难吃,很贵","0"\n一般,\n'.encode("utf-8"))
    with pytest.raises(DataError, match=r"row 4 \(line 7\): ''"):  # rows after multi-line ones keep their line
        load_reviews(p)
    p = write_csv('comment,sentiment\n"第一\n第二",1\n"他说""好吃""\n真的",1\n"难吃,很贵","0"\n')
    r = load_reviews(p)
    assert r.texts == ["第一\n第二", '他说"好吃"\n真的', "难吃,很贵"] and list(r.labels) == [1, 1, 0]


def test_stray_character_after_quote_on_one_line_is_read_as_before(write_csv):
    p = write_csv('comment,sentiment\n"好"吃,1\n难吃,0\n')
    assert load_reviews(p).texts == ["好吃", "难吃"]
    p = write_csv('comment,sentiment\n"第一\n第二" ,1\n难吃,0\n')  # a space after a multi-line field
    r = load_reviews(p)
    assert r.texts == ["第一\n第二", "难吃"] and list(r.rows) == [1, 2]


def test_multiline_field_reports_lines(write_csv):
    p = write_csv('comment,sentiment\n"好\n吃",1,x\n难吃,0\n')
    with pytest.raises(DataError, match=r"malformed CSV: row 1 \(lines 2-3\): 3 fields, header has 2"):
        load_reviews(p)


# --------------------------------------------------------------------------- header and columns


def test_header_only(write_csv):
    with pytest.raises(DataError, match=r"no usable rows left after validation: the file has a header but no data rows"):
        load_reviews(write_csv("comment,sentiment\n\n"))


def test_header_with_bom_and_spaces_finds_columns(write_csv):
    p = write_csv("\ufeff comment\u200b , sentiment \n好吃,1\n".encode("utf-8"))
    assert load_reviews(p).texts == ["好吃"]
    assert load_table(p, "comment").header == ["comment", "sentiment"]


def test_missing_column_suggests_case(write_csv):
    p = write_csv("Comment,label\n好吃,1\n")
    with pytest.raises(DataError, match=r"column 'comment' not found \(did you mean 'Comment'\?\); "
                                        r"columns are \['Comment', 'label'\]. Choose the column with --text-column"):
        load_table(p, "comment")


def test_duplicate_column(write_csv):
    p = write_csv("comment,comment,sentiment\n好,吃,1\n")
    with pytest.raises(DataError, match=r"column 'comment' appears 2 times in the header \(columns 1, 2\)"):
        load_reviews(p)


# --------------------------------------------------------------------------- encodings

ROWS = "comment,sentiment\n这家的菜很好吃,1\n服务太差了,0\n"


@pytest.mark.parametrize("encoding, data", [
    ("utf-8", ROWS.encode("utf-8")),
    ("utf-8", b"\xef\xbb\xbf" + ROWS.encode("utf-8")),  # BOM stripped
    ("gb18030", ROWS.encode("gb18030")),
    ("gbk", ROWS.encode("gbk")),
    ("utf-16", ROWS.encode("utf-16")),  # with BOM
    ("utf-16", ROWS.replace("\n", "\r\n").encode("utf-16")),
])
def test_encodings(write_csv, encoding, data):
    p = write_csv(data)
    r = load_reviews(p, encoding=encoding)
    assert r.texts == ["这家的菜很好吃", "服务太差了"] and r.report.lines() == []
    t = load_table(p, "comment", encoding=encoding)
    assert t.header == ["comment", "sentiment"] and t.texts == r.texts


def test_not_utf8_names_line_and_suggests_gb18030(write_csv):
    p = write_csv("comment,sentiment\n好吃,1\n".encode("utf-8") + "难吃,0\n".encode("gb18030"))
    with pytest.raises(DataError, match=r"line 3, character 1: bytes .* are not valid utf-8.*--encoding gb18030"):
        load_reviews(p)
    with pytest.raises(DataError, match=r"line 3, character 1: .*--encoding gb18030"):
        load_table(p, "comment")


def test_utf16_read_as_utf8_suggests_utf16(write_csv):
    p = write_csv(ROWS.encode("utf-16"))
    with pytest.raises(DataError, match=r"line 1, character 1: .*UTF-16 byte-order mark: pass --encoding utf-16"):
        load_reviews(p)


def test_bad_bytes_in_utf16_name_their_line(write_csv):
    p = write_csv(ROWS.encode("utf-16") + b"\x00\xd8")  # a lone surrogate at the start of line 4
    with pytest.raises(DataError, match=r"line 4, character 1: bytes .* are not valid utf-16"):
        load_reviews(p, encoding="utf-16")


def test_unknown_encoding(write_csv):
    with pytest.raises(DataError, match=r"unknown encoding 'latin-9x' \(--encoding\)"):
        load_reviews(write_csv(ROWS), encoding="latin-9x")


# --------------------------------------------------------------------------- prediction input


def test_load_table_keeps_every_row_and_column(write_csv):
    p = write_csv('id,comment,shop\n1,这家的菜很好吃,甲\n2,  ,乙\n\n3,very good!,丙\n4,"好吃\n推荐",丁\n5,' + "好" * 30 + ",戊\n"
                  "6,这家的菜很好吃,甲\n7,abc" + "x" * 30 + ",己\n")
    t = load_table(p, "comment", max_chars=20)
    assert t.header == ["id", "comment", "shop"] and t.text_column == "comment" and len(t) == 8
    assert [r.row for r in t.rows] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert [r.line for r in t.rows] == [2, 3, 4, 5, 6, 8, 9, 10]  # blank line 4 is row 3, with empty fields
    assert [r.fields[0] for r in t.rows] == ["1", "2", "", "3", "4", "5", "6", "7"]
    assert t.rows[1].fields == ["2", "  ", "乙"] and t.rows[2].fields == ["", "", ""]  # fields as read, for the output
    assert t.texts[:5] == ["这家的菜很好吃", "", "", "very good!", "好吃\n推荐"] and t.texts[5] == "好" * 20
    assert t.notes == ["", "empty text", "empty text (blank line)", "no Chinese characters (U+4E00–U+9FFF)", "",
                       "truncated to 20 chars", "", "truncated to 20 chars; no Chinese characters (U+4E00–U+9FFF)"]
    warn = "\n".join(t.warnings())
    assert "1 row(s) with empty text (see the note column): rows 2" in warn
    assert "1 row(s) with empty text (blank line) (see the note column): rows 3" in warn
    assert "2 row(s) with no Chinese characters (U+4E00–U+9FFF) (see the note column): rows 4, 8" in warn
    assert "2 row(s) with truncated" in warn


def test_load_table_validation(write_csv):
    p = write_csv("id,comment\n1,好吃\n2,难吃,x\n")
    with pytest.raises(DataError, match=r"malformed CSV: row 2 \(line 3\): 3 fields, header has 2"):
        load_table(p, "comment")
    p = write_csv("id,text\n1,好吃\n")
    with pytest.raises(DataError, match=r"column 'comment' not found; columns are \['id', 'text'\]"):
        load_table(p, "comment")
    with pytest.raises(DataError, match="file not found"):
        load_table(p.parent / "missing.csv", "comment")
    assert len(load_table(write_csv("id,comment\n"), "comment")) == 0  # header only: an empty prediction


def test_output_header_never_duplicates(write_csv):
    t = load_table(write_csv("comment,label,note\n好吃,1,x\n"), "comment")
    assert t.output_header() == ["comment", "label", "note", "label_pred", "p_positive", "note_pred"]


def test_without_chinese():
    assert without_chinese(["好吃", "good", "", "123好", "！？"]) == [1, 2, 4]


# --------------------------------------------------------------------------- blank lines


def test_blank_lines_between_rows_are_empty_rows_counted_with_their_numbers(write_csv):
    p = write_csv("comment,sentiment\n好吃,1\n\n难吃,0\n   \n很好,1\n\n\n")  # the two trailing blank lines are not rows
    r = load_reviews(p)
    assert r.texts == ["好吃", "难吃", "很好"] and list(r.rows) == [1, 3, 5]  # numbered like a spreadsheet's rows
    assert r.report.rows_read == 5 and r.report.empty_dropped == [2, 4] and r.report.blank_lines == [2, 4]
    assert r.report.lines() == ["2 row(s) with empty text dropped: rows 2, 4 (all blank lines)"]
    with pytest.raises(DataError, match=r"empty text in column 'comment': row 2 \(line 3, blank\); row 4 \(line 5, blank\)"):
        load_reviews(p, strict=True)
    r = load_reviews(write_csv("comment,sentiment\n好吃,1\n,0\n\n难吃,0\n"))
    assert r.report.lines() == ["2 row(s) with empty text dropped: rows 2, 3 (1 of them blank lines: rows 3)"]


def test_blank_line_in_prediction_input_is_a_row(write_csv):
    t = load_table(write_csv("comment\n好吃\n\n难吃\n很好\n"), "comment")
    assert t.texts == ["好吃", "", "难吃", "很好"] and t.notes == ["", "empty text (blank line)", "", ""]
    assert [r.line for r in t.rows] == [2, 3, 4, 5]
    t = load_table(write_csv("\n\nid,comment\n1,好吃\n\n2,难吃\n\n"), "comment")  # leading/trailing blank lines: no rows
    assert [r.fields for r in t.rows] == [["1", "好吃"], ["", ""], ["2", "难吃"]] and [r.line for r in t.rows] == [4, 5, 6]


# --------------------------------------------------------------------------- not a CSV, or not this one


def test_a_folder_is_named_with_the_csv_files_in_it(tmp_path):
    (tmp_path / "b.csv").write_text("comment,sentiment\n", encoding="utf-8")
    (tmp_path / "a.txt").write_text("x", encoding="utf-8")
    (tmp_path / "notes.md").write_text("x", encoding="utf-8")
    with pytest.raises(DataError, match=r"is a folder, not a file; CSV/TXT files in it: a.txt, b.csv; name one of them"):
        load_reviews(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="is a folder, not a file; it holds no .csv or .txt file"):
        load_table(empty, "comment")


@pytest.mark.parametrize("content, message", [
    (b"PK\x03\x04\x14\x00rest of a workbook", r"is a ZIP archive \(an .xlsx/.docx/.zip file\?\), not a CSV"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1\x00\x00", r"is an old Office document \(an .xls file\?\)"),
    ("comment,sentiment\n好吃,1\n难\x00吃,0\n".encode(), r"line 3, character 2: a NUL character; NUL never occurs in text"),
    ("comment,sentiment\n好吃,1\n".encode("utf-16-le"), r"it looks like UTF-16 without a byte-order mark: pass --encoding utf-16-le"),
    ("comment,sentiment\n好吃,1\n".encode("utf-16-be"), r"it looks like UTF-16 without a byte-order mark: pass --encoding utf-16-be"),
])
def test_files_that_are_not_csv_text_are_named(write_csv, content, message):
    p = write_csv(content)
    with pytest.raises(DataError, match=message):
        load_reviews(p)


def test_a_device_is_not_read(tmp_path):
    if not os.path.exists("/dev/null"):
        pytest.skip("no /dev/null")
    with pytest.raises(DataError, match="/dev/null is not a regular file"):
        load_reviews("/dev/null")


def test_a_file_separated_by_semicolons_says_so(write_csv):
    with pytest.raises(DataError, match=r"column 'comment' not found \(the file seems separated by ';', not by commas"):
        load_reviews(write_csv("comment;sentiment\n好吃;1\n"))


# --------------------------------------------------------------------------- encodings that decode wrongly

BOTH = "comment,sentiment\n好吃,1\n很差,0\n"  # valid UTF-8 that gb18030 also decodes, into other characters


def test_utf8_read_as_gb18030_warns_in_the_report_and_in_errors(write_csv):
    p = write_csv(BOTH)
    assert BOTH.encode().decode("gb18030") != BOTH  # the premise: it decodes, garbled
    r = load_reviews(p, encoding="gb18030")
    warning = "also decodes as UTF-8, and reads differently as gb18030: if the Chinese looks garbled, drop --encoding"
    assert r.report.warnings == [r.report.lines()[0]] and warning in r.report.lines()[0]
    assert warning in load_table(p, "comment", encoding="gb18030").warnings()[0]
    assert load_reviews(p).report.lines() == [] and load_table(p, "comment").warnings() == []  # read as UTF-8: nothing
    assert load_reviews(write_csv(BOTH.encode("gb18030")), encoding="gb18030").report.warnings == []  # a real GBK file
    bom = write_csv(b"\xef\xbb\xbf" + BOTH.encode())  # the garbled BOM hides the column: the error carries the warning
    with pytest.raises(DataError, match=r"column 'comment' not found.*\(note: the file starts with a UTF-8 byte-order "
                                        r"mark, also decodes as UTF-8"):
        load_reviews(bom, encoding="gb18030")


def test_a_failed_decoding_of_a_utf8_file_says_it_is_utf8(write_csv):
    with pytest.raises(DataError, match=r"not valid gb18030 .*the file is valid UTF-8: drop --encoding"):
        load_reviews(write_csv("comment,sentiment\n好,1\n"), encoding="gb18030")


# --------------------------------------------------------------------------- what messages echo


def test_messages_echo_user_data_as_short_excerpts(write_csv):
    with pytest.raises(DataError) as e:
        load_reviews(write_csv("好" * 1_000_000))  # a one-line "CSV": its header is one huge column name
    assert len(str(e.value)) < 400 and "(+999,960 characters)" in str(e.value)
    with pytest.raises(DataError) as e:
        load_reviews(write_csv(",".join(f"c{i}" for i in range(100_000)) + "\n"))
    assert len(str(e.value)) < 400 and "… (+99,990 more)]" in str(e.value)
    with pytest.raises(DataError) as e:
        load_reviews(write_csv("comment,sentiment\n好吃," + "x" * 100_000 + "\n"))
    assert len(str(e.value)) < 400 and "'xxxxxxxxxxxxxxxxxxxx'… (+99,980 characters)" in str(e.value)


# --------------------------------------------------------------------------- what counts as Chinese


def test_cjk_extension_text_is_said_to_be_outside_the_kept_range(write_csv):
    p = write_csv("comment,sentiment\n㐀㐁㐂,1\n𠀀𠀁,0\nok,1\n好吃,1\n难吃,0\n")
    r = load_reviews(p)
    assert r.report.no_cjk_dropped == [1, 2, 3]
    assert ("3 row(s) with no Chinese characters (U+4E00–U+9FFF) dropped: rows 1, 2, 3 (the study keeps only these CJK "
            "Unified Ideographs; Extension A/B ones such as 㐀 𠀀 are removed too)") in r.report.lines()
    t = load_table(p, "comment")
    ext = "no Chinese characters (U+4E00–U+9FFF): CJK Extension ideographs are outside it"
    assert t.notes == [ext, ext, "no Chinese characters (U+4E00–U+9FFF)", "", ""]


@pytest.mark.parametrize("content, encoding, message", [
    ("comment,sentiment\n菜㐀好吃,1\n很差,0\n".encode("gb18030"), "gbk", r"the file is valid GB18030, which extends GBK .*: pass --encoding gb18030"),
    ("comment,sentiment\n好吃,1\n很差,0\n".encode("utf-16-be"), "utf-16", r"looks like utf-16-be without a byte-order mark .*: pass --encoding utf-16-be"),
    ("comment,sentiment\n好吃,1\n很差,0\n".encode("utf-16-le"), "gb18030", r"without a byte-order mark: pass --encoding utf-16-le"),
    (b"comment,sentiment\n\xff\xfe\xfd\xfc\x80\x81,1\n", "utf-8", r"not valid UTF-8, GB18030 or UTF-16 either"),
])
def test_a_wrong_encoding_names_the_one_the_file_decodes_as(write_csv, content, encoding, message):
    with pytest.raises(DataError, match=message):
        load_reviews(write_csv(content), encoding=encoding)
