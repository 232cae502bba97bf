"""Reading a CSV file with errors that name file, row, line and column: the layer under ``io.py``.

Fields of any length are read (the csv module's 131,072-character default limit is lifted while
reading); an unclosed quote is reported at the line where it opens (the csv module would otherwise
swallow the rest of the file into one field); undecodable bytes name the line and suggest an
``--encoding``; rows with the wrong number of fields are collected for the caller to report.

A blank line between data rows is a row whose fields are all empty (``CsvRow.blank``): in a one-column
file it is an empty review, and numbering rows this way keeps them equal to a spreadsheet's rows (minus
the header). Blank lines after the last data row are not rows. A file that also decodes as UTF-8 when
another encoding was asked for gets a warning (``CsvFile.warnings``): a UTF-8 file read as gb18030
decodes without error into garbled text. Whatever a message echoes of the data (header names, field
values) is cut to a short excerpt that says how much was cut.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import dataclasses
import io
import os
import sys
from collections.abc import Iterator
from pathlib import Path

BOM = "\ufeff"
MAX_LISTED = 10
DEFAULT_MAX_CHARS = 5000  # longer texts are truncated (and said) unless --max-chars says otherwise
MAX_ECHO = 40  # characters of user data a message quotes
# Invisible characters that spreadsheet tools leave around header names.
_HEADER_JUNK = "\ufeff\u200b\u200c\u200d\u2060"


class DataError(ValueError):
    """Bad input data; the message names the file, rows and column at fault."""


def check_max_chars(max_chars: int) -> None:
    if not isinstance(max_chars, int) or isinstance(max_chars, bool) or max_chars <= 0:
        raise ValueError(f"max_chars (--max-chars) must be a positive number of characters, got {max_chars!r}")


@contextlib.contextmanager
def _no_field_limit() -> Iterator[None]:
    """Lift the csv module's per-field limit (131,072 characters) while reading, then restore it."""
    old = csv.field_size_limit()
    limit = sys.maxsize
    while True:  # the limit is a C long: 32 bits on Windows, so halve until it fits
        try:
            csv.field_size_limit(limit)
            break
        except OverflowError:
            limit //= 2
    try:
        yield
    finally:
        csv.field_size_limit(old)


def _line_col(text: str) -> tuple[int, int]:
    """1-based (line, character) just after ``text``; \\r\\n, \\r and \\n each end a line, as in the reader."""
    line = text.count("\n") + text.count("\r") - text.count("\r\n") + 1
    last = max(text.rfind("\n"), text.rfind("\r"))
    return line, len(text) - last


def excerpt(text: str, limit: int = MAX_ECHO) -> str:
    """``repr`` of ``text`` cut to ``limit`` characters, saying how many were cut (a message never echoes megabytes)."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}… (+{len(text) - limit:,} characters)"


def names(items: list[str]) -> str:
    """A list of column names for a message: at most MAX_LISTED, each an excerpt."""
    shown = ", ".join(excerpt(h) for h in items[:MAX_LISTED])
    more = f", … (+{len(items) - MAX_LISTED:,} more)" if len(items) > MAX_LISTED else ""
    return f"[{shown}{more}]"


# Files that are not text at all, by their first bytes: a clear message instead of a decoding error.
_SIGNATURES = (
    (b"PK\x03\x04", "a ZIP archive (an .xlsx/.docx/.zip file?)"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Office document (an .xls file?)"),
    (b"\x1f\x8b", "gzip-compressed"),
    (b"%PDF", "a PDF document"),
)


def read_bytes(path: str | os.PathLike) -> bytes:
    """The file's bytes; a folder, a missing file, an unreadable one or a spreadsheet is an error saying which."""
    path = Path(path)
    if path.is_dir():
        found = sorted(p.name for p in path.iterdir() if p.suffix.lower() in (".csv", ".txt", ".tsv"))
        more = f", … (+{len(found) - MAX_LISTED} more)" if len(found) > MAX_LISTED else ""
        has = f"CSV/TXT files in it: {', '.join(found[:MAX_LISTED])}{more}; name one of them" if found else \
            "it holds no .csv or .txt file"
        raise DataError(f"{path} is a folder, not a file; {has}")
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if not path.is_file():
        raise DataError(f"{path} is not a regular file (a device or a pipe?); save the data to a file and name that")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror or e})") from None
    for magic, what in _SIGNATURES:
        if raw.startswith(magic):
            raise DataError(f"{path} is {what}, not a CSV or text file; export it as CSV (UTF-8) first")
    return raw


def _utf16_guess(raw: bytes) -> str | None:
    """utf-16-le/-be when the file looks like UTF-16 without a byte-order mark: its ASCII characters (commas,
    line breaks, digits) leave a NUL byte at odd (LE) or even (BE) offsets, and almost nowhere else."""
    sample = raw[:65536]
    odd, even = sample[1::2].count(0), sample[0::2].count(0)
    if odd + even >= 4 and odd > 10 * even:
        return "utf-16-le"
    if odd + even >= 4 and even > 10 * odd:
        return "utf-16-be"
    return None


def _is_utf8(name: str) -> bool:
    return name in ("utf-8", "utf-8-sig")


def also_utf8(raw: bytes, encoding: str, content: str) -> str | None:
    """A warning when ``encoding`` (not UTF-8) was asked for but the non-ASCII bytes also decode as UTF-8, differently.

    Only a warning: a UTF-8 file read as gb18030 often decodes without error into garbled text, but a short
    GBK file can be valid UTF-8 too (the famous 联通), and then the encoding asked for is right.
    """
    if _is_utf8(codecs.lookup(encoding).name) or raw.isascii():
        return None
    try:
        as_utf8 = raw.decode("utf-8").removeprefix(BOM)
    except UnicodeDecodeError:
        return None
    if as_utf8 == content:
        return None
    bom = " starts with a UTF-8 byte-order mark," if raw.startswith(codecs.BOM_UTF8) else ""
    return (f"{bom} also decodes as UTF-8, and reads differently as {encoding}: if the Chinese looks garbled, "
            f"drop --encoding (UTF-8 is the default)").lstrip()


def _decode(path: Path, raw: bytes, encoding: str) -> str:
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise DataError(f"{path}: unknown encoding {excerpt(encoding)} (--encoding); e.g. utf-8, gb18030, utf-16") from None
    try:
        content = raw.decode(encoding)
    except UnicodeDecodeError as e:
        line, col = _line_col(raw[: e.start].decode(encoding, errors="replace"))
        name = codecs.lookup(encoding).name
        if raw[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) and not name.startswith("utf-16"):
            hint = "the file starts with a UTF-16 byte-order mark: pass --encoding utf-16"
        elif (utf16 := _utf16_guess(raw)) and name != utf16 and _decodes(raw, utf16):
            hint = f"it looks like UTF-16 without a byte-order mark: pass --encoding {utf16}"
        elif not _is_utf8(name) and _decodes(raw, "utf-8"):
            hint = "the file is valid UTF-8: drop --encoding (UTF-8 is the default)"
        elif name in ("gbk", "gb2312") and _decodes(raw, "gb18030"):
            hint = f"the file is valid GB18030, which extends {name.upper()} with characters it uses: pass --encoding gb18030"
        elif name != "gb18030" and _decodes(raw, "gb18030"):
            hint = ("files saved by Excel or other programs in a Chinese locale are usually GBK/GB18030: "
                    "pass --encoding gb18030, or re-save the file as UTF-8")
        else:
            hint = ("it is not valid UTF-8, GB18030 or UTF-16 either: pass the encoding it was saved in "
                    "(--encoding), or re-save it as UTF-8")
        bad = raw[e.start : min(e.end, e.start + 4)]
        raise DataError(f"{path}: line {line}, character {col}: bytes {bad!r} are not valid {encoding} "
                        f"({e.reason}); {hint}") from None
    name = codecs.lookup(encoding).name
    if (name.startswith("utf-16") and raw[:2] not in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
            and (guess := _utf16_guess(raw)) and guess != name and (name, guess) != ("utf-16", "utf-16-le")):
        # bytes in the other order decode too, into CJK-looking nonsense: only where the NUL bytes sit tells
        raise DataError(f"{path}: read as {encoding}, but it looks like {guess} without a byte-order mark (its NUL "
                        f"bytes sit where that order puts them): pass --encoding {guess}")
    if (nul := content.find("\0")) >= 0:  # the csv module would keep it inside a field, unnoticed
        line, col = _line_col(content[:nul])
        utf16 = _utf16_guess(raw)
        hint = (f"it looks like UTF-16 without a byte-order mark: pass --encoding {utf16}" if utf16 else
                "NUL never occurs in text: the file is binary or damaged")
        raise DataError(f"{path}: line {line}, character {col}: a NUL character; {hint}")
    return content[1:] if content.startswith(BOM) else content  # a file-level BOM is standard, not reported


def _decodes(raw: bytes, encoding: str) -> bool:
    try:
        raw.decode(encoding)
    except UnicodeDecodeError:
        return False
    return True


def read_text(path: str | os.PathLike, encoding: str) -> tuple[str, list[str]]:
    """The file decoded (a leading BOM dropped) and its warnings, with the checks and messages of :func:`read_csv`."""
    path = Path(path)
    raw = read_bytes(path)
    content = _decode(path, raw, encoding)
    return content, [w for w in [also_utf8(raw, encoding, content)] if w]


@dataclasses.dataclass
class CsvRow:
    row: int  # data-row number, 1 = first row after the header (blank lines between rows count)
    line: int  # first and last file line of the row (a quoted field may span lines)
    end_line: int
    fields: list[str]
    blank: bool = False  # a blank line: every field empty

    @property
    def where(self) -> str:
        lines = f"line {self.line}" if self.line == self.end_line else f"lines {self.line}-{self.end_line}"
        return f"row {self.row} ({lines}{', blank' if self.blank else ''})"


@dataclasses.dataclass
class CsvFile:
    path: Path
    header: list[str]
    rows: list[CsvRow]
    malformed: list[str]  # rows whose field count differs from the header's
    warnings: list[str] = dataclasses.field(default_factory=list)  # for stderr and the load report

    @contextlib.contextmanager
    def hints(self) -> Iterator[None]:
        """A DataError raised while using the file carries its warnings: garbled text often causes the error."""
        try:
            yield
        except DataError as e:
            if not self.warnings:
                raise
            raise DataError(f"{e} (note: the file {'; '.join(self.warnings)})") from None

    def separator_hint(self) -> str:
        """Why a column may be missing: a one-column header holding ';', a tab or '|' (a file not separated by commas)."""
        if len(self.header) == 1 and (sep := next((c for c in ";\t|" if c in self.header[0]), None)):
            return f" (the file seems separated by {sep!r}, not by commas: save it as comma-separated CSV)"
        return ""

    def column(self, name: str, flag: str) -> int:
        """Index of column ``name``; a clear error listing the columns that exist otherwise."""
        want = name.strip().strip(_HEADER_JUNK).strip()
        hits = [i for i, h in enumerate(self.header) if h == want]
        if len(hits) == 1:
            return hits[0]
        if hits:
            raise DataError(f"{self.path}: column {excerpt(want)} appears {len(hits)} times in the header "
                            f"(columns {', '.join(str(i + 1) for i in hits)}); rename the duplicates")
        near = [h for h in self.header if h.casefold() == want.casefold()]
        maybe = f" (did you mean {excerpt(near[0])}?)" if near else self.separator_hint()
        raise DataError(f"{self.path}: column {excerpt(want)} not found{maybe}; columns are {names(self.header)}. "
                        f"Choose the column with {flag}.")


def _open_quote(text: str) -> tuple[int, int, bool] | None:
    """Where one CSV record's raw ``text`` leaves a quote open: (offset, field index, paired later).

    Follows the csv module's rules: a quote opens a field only at the field's start, ``""``
    inside quotes is a literal quote. A quote is left open when the text ends inside it
    (``paired later`` False), or when the quote that closes it is followed by something other
    than a delimiter or a line break, spaces aside (True: the mark of a quote paired with one of
    a later row).
    """
    field, at_start, in_quotes, opened = 0, True, False, (0, 0)
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if in_quotes:
            if c == '"':
                if text[i + 1 : i + 2] == '"':
                    i += 2
                    continue
                in_quotes = False
                j = i + 1
                while text[j : j + 1] in (" ", "\t"):  # `"text" ,` is sloppy, not a swallowed row
                    j += 1
                if text[j : j + 1] not in ("", ",", "\r", "\n"):
                    return (*opened, True)
        elif c == '"' and at_start:
            in_quotes, opened = True, (i, field)
        elif c == ",":
            field += 1
        at_start = c == "," and not in_quotes
        i += 1
    return (*opened, False) if in_quotes else None


def _quote_error(path: Path, header: list[str] | None, row: int, lines: list[str], first: int,
                 offset: int, field: int, paired_later: bool) -> DataError:
    line, col = _line_col("".join(lines)[:offset])
    line += first - 1
    last = first + len(lines) - 1
    if header is None:
        where = f"header, column {field + 1}"
    else:
        where = f"row {row}, column " + (excerpt(header[field]) if field < len(header)
                                         else f"{field + 1} (the header has {len(header)})")
    if paired_later:
        what = (f"is not closed where the row ends; the CSV reader pairs it with a quote on line {last} "
                f"and would read lines {line}-{last} as one field")
    else:
        what = f"is never closed, so lines {line}-{last} (the rest of the file) would be read as one field"
    return DataError(f"{path}: {where}: the quote that opens at line {line}, character {col} {what}. "
                     f"Close it, or double each quote that is part of the text (\"\").")


def read_csv(path: str | os.PathLike, encoding: str) -> CsvFile:
    """Decode and split the file into rows that remember their lines (blank lines: see the module docstring)."""
    path = Path(path)
    content, warnings = read_text(path, encoding)
    # newline="" keeps \r\n inside quoted fields and splits lines as the csv module expects;
    # str.splitlines would also split on \x1c, \u2028 and others that can occur inside reviews.
    lines = io.StringIO(content, newline="").readlines()
    header, rows, malformed, blanks = None, [], [], []
    with _no_field_limit():
        # strict=True makes the reader stop at an unbalanced quote instead of reading on silently.
        reader = csv.reader(lines, strict=True)
        while True:
            first = reader.line_num + 1
            try:
                fields = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                span = lines[first - 1 : reader.line_num]
                opened = _open_quote("".join(span))
                if opened and (not opened[2] or _line_col("".join(span)[: opened[0]])[0] < len(span)):
                    raise _quote_error(path, header, len(rows) + 1, span, first, *opened) from None
                # A stray character after a quote closed on the same line ("ab"c) cannot swallow
                # other rows: read it leniently, as the csv module always did (the text keeps it).
                try:
                    fields = next(csv.reader(span))
                except (csv.Error, StopIteration):
                    raise DataError(f"{path}: lines {first}-{reader.line_num}: not valid CSV ({e})") from None
            if reader.line_num == first and not lines[first - 1].strip():
                if header is not None:  # a row only if a data row follows (trailing blank lines are not rows)
                    blanks.append(first)
                continue
            if header is None:
                header = [h.strip().strip(_HEADER_JUNK).strip() for h in fields]
                continue
            for line in blanks:
                rows.append(CsvRow(len(rows) + 1, line, line, [""] * len(header), blank=True))
            blanks.clear()
            r = CsvRow(len(rows) + 1, first, reader.line_num, fields)
            if len(fields) != len(header):
                malformed.append(f"{r.where}: {len(fields)} fields, header has {len(header)}")
            rows.append(r)
    if header is None:
        raise DataError(f"{path}: file is empty (no header row)")
    return CsvFile(path, header, rows, malformed, warnings)


def listed(items: list[str]) -> str:
    more = f"; … (+{len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else ""
    return "; ".join(items[:MAX_LISTED]) + more


def raise_problems(path: Path, problems: list[tuple[str, str | None, list[str]]]) -> None:
    out = []
    for what, col, items in problems:
        if items:
            where = f" in column {col!r}" if col else ""
            out.append(f"{len(items)} row(s) with {what}{where}: {listed(items)}")
    if out:  # one line: the CLI prints one line per error
        raise DataError(f"{path}: " + " | ".join(out))
