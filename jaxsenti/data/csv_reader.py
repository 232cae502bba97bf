"""Reading a CSV file with errors that name file, row, line and column: the layer under ``io.py``.

Fields of any length are read (the csv module's 131,072-character default limit is lifted while
reading); an unclosed quote is reported at the line where it opens (the csv module would otherwise
swallow the rest of the file into one field); undecodable bytes name the line and suggest an
``--encoding``; rows with the wrong number of fields are collected for the caller to report.
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


def _decode(path: Path, raw: bytes, encoding: str) -> str:
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise DataError(f"{path}: unknown encoding {encoding!r} (--encoding); e.g. utf-8, gb18030, utf-16") from None
    try:
        content = raw.decode(encoding)
    except UnicodeDecodeError as e:
        line, col = _line_col(raw[: e.start].decode(encoding, errors="replace"))
        name = codecs.lookup(encoding).name
        if raw[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) and not name.startswith("utf-16"):
            hint = "the file starts with a UTF-16 byte-order mark: pass --encoding utf-16"
        elif name in ("gb18030", "gbk", "gb2312"):
            hint = "pass --encoding utf-8 (or the encoding the file was saved in), or re-save it as UTF-8"
        else:
            hint = ("files saved by Excel or other programs in a Chinese locale are usually GBK/GB18030: "
                    "pass --encoding gb18030, or re-save the file as UTF-8")
        bad = raw[e.start : min(e.end, e.start + 4)]
        raise DataError(f"{path}: line {line}, character {col}: bytes {bad!r} are not valid {encoding} "
                        f"({e.reason}); {hint}") from None
    return content[1:] if content.startswith(BOM) else content  # a file-level BOM is standard, not reported


@dataclasses.dataclass
class CsvRow:
    row: int  # data-row number, 1 = first row after the header
    line: int  # first and last file line of the row (a quoted field may span lines)
    end_line: int
    fields: list[str]

    @property
    def where(self) -> str:
        lines = f"line {self.line}" if self.line == self.end_line else f"lines {self.line}-{self.end_line}"
        return f"row {self.row} ({lines})"


@dataclasses.dataclass
class CsvFile:
    path: Path
    header: list[str]
    rows: list[CsvRow]
    malformed: list[str]  # rows whose field count differs from the header's

    def column(self, name: str, flag: str) -> int:
        """Index of column ``name``; a clear error listing the columns that exist otherwise."""
        want = name.strip().strip(_HEADER_JUNK).strip()
        hits = [i for i, h in enumerate(self.header) if h == want]
        if len(hits) == 1:
            return hits[0]
        if hits:
            raise DataError(f"{self.path}: column {want!r} appears {len(hits)} times in the header "
                            f"(columns {', '.join(str(i + 1) for i in hits)}); rename the duplicates")
        near = [h for h in self.header if h.casefold() == want.casefold()]
        maybe = f" (did you mean {near[0]!r}?)" if near else ""
        raise DataError(f"{self.path}: column {want!r} not found{maybe}; columns are {self.header}. "
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
        where = f"row {row}, column " + (repr(header[field]) if field < len(header)
                                         else f"{field + 1} (the header has {len(header)})")
    if paired_later:
        what = (f"is not closed where the row ends; the CSV reader pairs it with a quote on line {last} "
                f"and would read lines {line}-{last} as one field")
    else:
        what = f"is never closed, so lines {line}-{last} (the rest of the file) would be read as one field"
    return DataError(f"{path}: {where}: the quote that opens at line {line}, character {col} {what}. "
                     f"Close it, or double each quote that is part of the text (\"\").")


def read_csv(path: str | os.PathLike, encoding: str) -> CsvFile:
    """Decode and split the file into rows that remember their lines; blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    content = _decode(path, path.read_bytes(), encoding)
    # newline="" keeps \r\n inside quoted fields and splits lines as the csv module expects;
    # str.splitlines would also split on \x1c, \u2028 and others that can occur inside reviews.
    lines = io.StringIO(content, newline="").readlines()
    header, rows, malformed = None, [], []
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
            if not fields:
                continue
            if header is None:
                header = [h.strip().strip(_HEADER_JUNK).strip() for h in fields]
                continue
            r = CsvRow(len(rows) + 1, first, reader.line_num, fields)
            if len(fields) != len(header):
                malformed.append(f"{r.where}: {len(fields)} fields, header has {len(header)}")
            rows.append(r)
    if header is None:
        raise DataError(f"{path}: file is empty (no header row)")
    return CsvFile(path, header, rows, malformed)


def listed(items: list[str]) -> str:
    more = f"; … (+{len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else ""
    return "; ".join(items[:MAX_LISTED]) + more


def raise_problems(path: Path, problems: list[tuple[str, str | None, list[str]]]) -> None:
    out = []
    for what, col, items in problems:
        if items:
            where = f" in column {col!r}" if col else ""
            out.append(f"{len(items)} row(s) with {what}{where}: {listed(items)}")
    if out:
        raise DataError(f"{path}: " + "\n  ".join(out))
