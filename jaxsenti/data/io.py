"""Loading review CSVs with validation that names file, row, line and column.

Policy (documented in the README, "Input validation"):

* errors (nothing is loaded): missing file, missing column, undecodable bytes (the message names
  the line and suggests ``--encoding gb18030``), malformed CSV rows, an unclosed quote (named by
  the line where it opens: the csv module would otherwise swallow the rest of the file into one
  field), labels outside {0, 1}, a header without data rows. The message lists the offending
  rows (up to 10, then a count) by data-row number (1 = first row after the header), file line
  and column.
* counted handling (reported in ``LoadReport`` and printed by the CLI, never silent):
  a UTF-8 BOM at the start of the file or of a cell is stripped; reviews longer than
  ``max_chars`` are truncated; empty texts are dropped; exact duplicate (text, label)
  rows keep their first copy; texts seen with both labels are dropped entirely (they
  cannot be split without leaking a contradiction); texts with no CJK ideograph are
  dropped (the study's preprocessing keeps only CJK Unified Ideographs, so they would
  become empty). ``strict=True`` turns empty and no-CJK texts into errors instead.

Encodings: ``utf-8`` (default; a BOM is stripped), ``gb18030``/``gbk`` (Chinese Excel exports),
``utf-16`` (with its BOM) or any codec Python knows. Fields of any length are read (the csv
module's 131,072-character default limit is lifted while reading).

:func:`load_table` reads a CSV to predict on: every row is kept, in order, with all its columns
and a per-row note, so the output can have exactly one row per input row.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import dataclasses
import io
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from jaxsenti.data.text import cjk_only

BOM = "\ufeff"
_MAX_LISTED = 10
DEFAULT_DATASET = "dianping.csv"
DEFAULT_MAX_CHARS = 5000
# Invisible characters that spreadsheet tools leave around header names.
_HEADER_JUNK = "\ufeff\u200b\u200c\u200d\u2060"


class DataError(ValueError):
    """Bad input data; the message names the file, rows and column at fault."""


@dataclasses.dataclass
class LoadReport:
    """What loading did to the file, row by row, so nothing is dropped silently."""

    path: str
    rows_read: int = 0
    bom_stripped: int = 0
    truncated: list[int] = dataclasses.field(default_factory=list)
    empty_dropped: list[int] = dataclasses.field(default_factory=list)
    duplicates_dropped: list[int] = dataclasses.field(default_factory=list)
    conflicting_dropped: list[int] = dataclasses.field(default_factory=list)
    no_cjk_dropped: list[int] = dataclasses.field(default_factory=list)

    @property
    def rows_kept(self) -> int:
        dropped = len(self.empty_dropped) + len(self.duplicates_dropped) + len(self.conflicting_dropped) + len(self.no_cjk_dropped)
        return self.rows_read - dropped

    def lines(self) -> list[str]:
        """Human-readable notes, one per kind of handling that happened."""
        out = []
        if self.bom_stripped:
            out.append(f"stripped {self.bom_stripped} UTF-8 byte-order mark(s) inside cells")
        for name, rows, what in (
            ("truncated", self.truncated, "review(s) longer than max_chars truncated"),
            ("empty", self.empty_dropped, "row(s) with empty text dropped"),
            ("duplicates", self.duplicates_dropped, "exact duplicate row(s) dropped (first copy kept)"),
            ("conflicting", self.conflicting_dropped, "row(s) whose text appears with both labels dropped"),
            ("no_cjk", self.no_cjk_dropped, "row(s) with no Chinese characters dropped"),
        ):
            if rows:
                out.append(f"{len(rows)} {what}: rows {_row_list(rows)}")
        return out

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["rows_kept"] = self.rows_kept
        return d


@dataclasses.dataclass
class Reviews:
    """Validated reviews: ``texts[i]`` has label ``labels[i]`` and came from data row ``rows[i]``."""

    texts: list[str]
    labels: np.ndarray
    rows: np.ndarray
    report: LoadReport

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, idx) -> "Reviews":
        idx = np.asarray(idx)
        return Reviews([self.texts[i] for i in idx], self.labels[idx], self.rows[idx], self.report)


def _row_list(rows: list[int]) -> str:
    shown = ", ".join(str(r) for r in rows[:_MAX_LISTED])
    return shown + (f" … (+{len(rows) - _MAX_LISTED} more)" if len(rows) > _MAX_LISTED else "")


def resolve_dataset(path: str | os.PathLike | None = None) -> Path:
    """Find a dataset: an explicit path, else ``$JAXSENTI_DATA_DIR/dianping.csv``, else ``data/``.

    The default dataset is downloaded (sha256-checked) when it is nowhere to be found, unless
    ``JAXSENTI_NO_DOWNLOAD=1``.
    """
    if path is not None:
        p = Path(path)
        if p.exists() or p.is_absolute() or p.parent != Path("."):
            return p
        name = p.name
    else:
        name = DEFAULT_DATASET
    candidates = []
    if env := os.environ.get("JAXSENTI_DATA_DIR"):
        candidates.append(Path(env) / name)
    candidates.append(Path("data") / name)
    for c in candidates:
        if c.exists():
            return c
    if name == DEFAULT_DATASET and os.environ.get("JAXSENTI_NO_DOWNLOAD") != "1":
        from jaxsenti.data.download import download

        try:  # first run on a fresh machine: fetch the study's dataset, checksum-verified
            print(f"[jaxsenti] {name} not found locally; downloading it into data/", file=sys.stderr)
            return download("dianping", "data")
        except Exception as e:  # noqa: BLE001 - fall through to the explanatory error below
            print(f"[jaxsenti] download failed: {e}", file=sys.stderr)
    tried = ", ".join(str(c) for c in candidates)
    raise DataError(
        f"dataset {name!r} not found (looked in {tried}). Set JAXSENTI_DATA_DIR, pass --data PATH, "
        f"or run `jaxsenti download` to fetch it with a checksum check."
    )


# --------------------------------------------------------------------------- reading the CSV


def _check_max_chars(max_chars: int) -> None:
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
class _Row:
    row: int  # data-row number, 1 = first row after the header
    line: int  # first and last file line of the row (a quoted field may span lines)
    end_line: int
    fields: list[str]

    @property
    def where(self) -> str:
        lines = f"line {self.line}" if self.line == self.end_line else f"lines {self.line}-{self.end_line}"
        return f"row {self.row} ({lines})"


@dataclasses.dataclass
class _Csv:
    path: Path
    header: list[str]
    rows: list[_Row]
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


def _read_csv(path: str | os.PathLike, encoding: str) -> _Csv:
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
            r = _Row(len(rows) + 1, first, reader.line_num, fields)
            if len(fields) != len(header):
                malformed.append(f"{r.where}: {len(fields)} fields, header has {len(header)}")
            rows.append(r)
    if header is None:
        raise DataError(f"{path}: file is empty (no header row)")
    return _Csv(path, header, rows, malformed)


def _listed(items: list[str]) -> str:
    more = f"; … (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
    return "; ".join(items[:_MAX_LISTED]) + more


def _raise_problems(path: Path, problems: list[tuple[str, str | None, list[str]]]) -> None:
    out = []
    for what, col, items in problems:
        if items:
            where = f" in column {col!r}" if col else ""
            out.append(f"{len(items)} row(s) with {what}{where}: {_listed(items)}")
    if out:
        raise DataError(f"{path}: " + "\n  ".join(out))


def _parse_label(raw: str) -> int | None:
    s = raw.strip()
    try:
        v = float(s)
    except ValueError:
        return None
    return int(v) if v in (0.0, 1.0) else None


# --------------------------------------------------------------------------- training data


def load_reviews(
    path: str | os.PathLike,
    text_column: str = "comment",
    label_column: str = "sentiment",
    *,
    max_chars: int = DEFAULT_MAX_CHARS,
    encoding: str = "utf-8",
    strict: bool = False,
) -> Reviews:
    """Read and validate a CSV of labelled reviews; see the module docstring for the policy."""
    _check_max_chars(max_chars)
    data = _read_csv(path, encoding)
    path = data.path
    ti = data.column(text_column, "--text-column")
    li = data.column(label_column, "--label-column")
    if not data.rows:
        raise DataError(f"{path}: no usable rows left after validation: the file has a header but no data rows")
    report = LoadReport(path=str(path), rows_read=len(data.rows))

    empty, bad_label = [], []
    texts, labels, rows = [], [], []
    for r in data.rows:
        if len(r.fields) != len(data.header):
            continue  # listed in data.malformed
        text, label_raw = r.fields[ti], r.fields[li]
        if BOM in text:
            report.bom_stripped += 1
            text = text.replace(BOM, "")
        text = text.strip()
        if not text:
            empty.append(r.where)
            report.empty_dropped.append(r.row)
            continue
        label = _parse_label(label_raw)
        if label is None:
            bad_label.append(f"{r.where}: {label_raw!r}")
            continue
        if len(text) > max_chars:
            report.truncated.append(r.row)
            text = text[:max_chars]
        texts.append(text)
        labels.append(label)
        rows.append(r.row)

    no_cjk = [f"row {r}" for t, r in zip(texts, rows) if not cjk_only(t)] if strict else []
    _raise_problems(path, [
        ("malformed CSV", None, data.malformed),
        ("empty text", text_column, empty if strict else []),
        ("no Chinese characters", text_column, no_cjk),
        ("label not in {0, 1}", label_column, bad_label),
    ])

    # Duplicates and contradictions, judged on the text as the models see it.
    seen_label: dict[str, set[int]] = {}
    for t, y in zip(texts, labels):
        seen_label.setdefault(t, set()).add(y)
    keep, seen = [], set()
    for t, y, r in zip(texts, labels, rows):
        if len(seen_label[t]) > 1:
            report.conflicting_dropped.append(r)
        elif t in seen:
            report.duplicates_dropped.append(r)
        elif not cjk_only(t):
            report.no_cjk_dropped.append(r)
        else:
            seen.add(t)
            keep.append((t, y, r))
    if not keep:
        raise DataError(f"{path}: no usable rows left after validation: " + "; ".join(report.lines()))
    t, y, r = zip(*keep)
    return Reviews(list(t), np.asarray(y, np.int32), np.asarray(r, np.int32), report)


def print_report(report: LoadReport, file=sys.stderr) -> None:
    for line in report.lines():
        print(f"[jaxsenti] {report.path}: {line}", file=file)


# --------------------------------------------------------------------------- prediction input


def has_chinese(text: str) -> bool:
    """Whether ``text`` holds a CJK ideograph, the only characters the models read."""
    return bool(cjk_only(text))


def without_chinese(texts: Sequence[str]) -> list[int]:
    """Indices of the texts with no Chinese character (the models see them as empty)."""
    return [i for i, t in enumerate(texts) if not has_chinese(t)]


@dataclasses.dataclass
class TableRow:
    """One input row: its place in the file, every field as read, the text to predict on, a note."""

    row: int  # data-row number, 1 = first row after the header
    line: int  # file line where the row starts
    fields: list[str]
    text: str  # BOM-free, stripped, truncated to max_chars; "" when empty
    note: str  # "", "empty text", "no Chinese characters", "truncated to N chars" (joined by "; ")


@dataclasses.dataclass
class Table:
    """A CSV to predict on, every data row kept in file order (blank lines are not rows)."""

    path: str
    header: list[str]  # every input column (names stripped of whitespace and BOMs)
    text_column: str
    rows: list[TableRow]

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def texts(self) -> list[str]:
        return [r.text for r in self.rows]

    @property
    def notes(self) -> list[str]:
        return [r.note for r in self.rows]

    def output_header(self, added: Sequence[str] = ("label", "p_positive", "note")) -> list[str]:
        """The input columns then ``added``, each renamed ``NAME_pred`` (…) if the input already has it."""
        out = list(self.header)
        for name in added:
            while name in out:
                name += "_pred"
            out.append(name)
        return out

    def warnings(self) -> list[str]:
        """One line per kind of note, listing the rows, for stderr."""
        kinds: dict[str, list[int]] = {}
        for r in self.rows:
            for part in filter(None, r.note.split("; ")):
                kinds.setdefault("truncated" if part.startswith("truncated") else part, []).append(r.row)
        return [f"{self.path}: {len(rows)} row(s) with {k} (see the note column): rows {_row_list(rows)}"
                for k, rows in kinds.items()]


def load_table(
    path: str | os.PathLike,
    text_column: str,
    *,
    encoding: str = "utf-8",
    max_chars: int = DEFAULT_MAX_CHARS,
) -> Table:
    """Read a CSV to predict on, one :class:`TableRow` per data row, with the validation of training.

    Unlike :func:`load_reviews` nothing is dropped or deduplicated: empty texts, texts without
    Chinese characters and truncated texts are kept and described in their row's ``note``.
    Undecodable bytes, unclosed quotes, rows with the wrong number of fields and a missing
    text column raise :class:`DataError` naming file, row, line and column.
    """
    _check_max_chars(max_chars)
    data = _read_csv(path, encoding)
    ti = data.column(text_column, "--text-column")
    _raise_problems(data.path, [("malformed CSV", None, data.malformed)])
    rows = []
    for r in data.rows:
        text = r.fields[ti].replace(BOM, "").strip()
        notes = []
        if not text:
            notes.append("empty text")
        else:
            if len(text) > max_chars:
                text = text[:max_chars]
                notes.append(f"truncated to {max_chars} chars")
            if not has_chinese(text):
                notes.append("no Chinese characters")
        rows.append(TableRow(r.row, r.line, r.fields, text, "; ".join(notes)))
    return Table(str(data.path), data.header, data.header[ti], rows)
