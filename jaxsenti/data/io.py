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
  cannot be split without leaking a contradiction); texts with no CJK Unified Ideograph
  (U+4E00–U+9FFF; Extension A/B characters such as 㐀 𠀀 do not count) are dropped (the
  study's preprocessing keeps only those, so they would become empty). ``strict=True``
  turns empty and no-CJK texts into errors instead.
* blank lines: one between data rows is a row (numbered, so row numbers stay a spreadsheet's)
  with empty text, dropped and counted like any empty text, and listed as a blank line;
  blank lines after the last row are not rows.
* warnings (stderr, the report): a file read with another ``--encoding`` that also decodes
  as UTF-8 (probably garbled: see ``csv_reader.also_utf8``).

Encodings: ``utf-8`` (default; a BOM is stripped), ``gb18030``/``gbk`` (Chinese Excel exports),
``utf-16`` (with its BOM) or any codec Python knows. Fields of any length are read (the csv
module's 131,072-character default limit is lifted while reading).

:func:`load_table` reads a CSV to predict on: every row is kept, in order, with all its columns
and a per-row note, so the output can have exactly one row per input row.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxsenti.data.csv_reader import DEFAULT_MAX_CHARS, BOM, MAX_LISTED, CsvFile, DataError, check_max_chars, excerpt, raise_problems, read_csv
from jaxsenti.data.download import download
from jaxsenti.data.text import NO_CJK, cjk_only, no_cjk_note

DEFAULT_DATASET = "dianping.csv"


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
    blank_lines: list[int] = dataclasses.field(default_factory=list)  # rows among empty_dropped that are blank lines
    warnings: list[str] = dataclasses.field(default_factory=list)  # e.g. the file also decodes as UTF-8

    @property
    def rows_kept(self) -> int:
        dropped = len(self.empty_dropped) + len(self.duplicates_dropped) + len(self.conflicting_dropped) + len(self.no_cjk_dropped)
        return self.rows_read - dropped

    def lines(self) -> list[str]:
        """Human-readable notes: the file's warnings, then one per kind of handling that happened."""
        return self.warnings + self.handling()

    def handling(self) -> list[str]:
        out = []
        if self.bom_stripped:
            out.append(f"stripped {self.bom_stripped} UTF-8 byte-order mark(s) inside cells")
        for name, rows, what in (
            ("truncated", self.truncated, "review(s) longer than max_chars truncated"),
            ("empty", self.empty_dropped, "row(s) with empty text dropped"),
            ("duplicates", self.duplicates_dropped, "exact duplicate row(s) dropped (first copy kept)"),
            ("conflicting", self.conflicting_dropped, "row(s) whose text appears with both labels dropped"),
            ("no_cjk", self.no_cjk_dropped, f"row(s) with {NO_CJK} dropped"),
        ):
            if rows:
                out.append(f"{len(rows)} {what}: rows {_row_list(rows)}" + self._why(name))
        return out

    def _why(self, kind: str) -> str:
        if kind == "empty" and self.blank_lines:
            if len(self.blank_lines) == len(self.empty_dropped):
                return " (all blank lines)"
            return f" ({len(self.blank_lines)} of them blank lines: rows {_row_list(self.blank_lines)})"
        if kind == "no_cjk":
            return " (the study keeps only these CJK Unified Ideographs; Extension A/B ones such as 㐀 𠀀 are removed too)"
        return ""

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
    shown = ", ".join(str(r) for r in rows[:MAX_LISTED])
    return shown + (f" … (+{len(rows) - MAX_LISTED} more)" if len(rows) > MAX_LISTED else "")


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
    check_max_chars(max_chars)
    data = read_csv(path, encoding)
    with data.hints():
        return _validate(data, text_column, label_column, max_chars, strict)


def _validate(data: CsvFile, text_column: str, label_column: str, max_chars: int, strict: bool) -> Reviews:
    path = data.path
    ti = data.column(text_column, "--text-column")
    li = data.column(label_column, "--label-column")
    if not data.rows:
        raise DataError(f"{path}: no usable rows left after validation: the file has a header but no data rows")
    report = LoadReport(path=str(path), rows_read=len(data.rows), warnings=list(data.warnings))

    empty, bad_label = [], []
    texts, labels, rows = [], [], []
    for r in data.rows:
        if len(r.fields) != len(data.header):
            continue  # listed in data.malformed
        if r.blank:
            empty.append(r.where)
            report.empty_dropped.append(r.row)
            report.blank_lines.append(r.row)
            continue
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
            bad_label.append(f"{r.where}: {excerpt(label_raw, 20)}")
            continue
        if len(text) > max_chars:
            report.truncated.append(r.row)
            text = text[:max_chars]
        texts.append(text)
        labels.append(label)
        rows.append(r.row)

    no_cjk = [f"row {r}" for t, r in zip(texts, rows) if not cjk_only(t)] if strict else []
    raise_problems(path, [
        ("malformed CSV", None, data.malformed),
        ("empty text", text_column, empty if strict else []),
        (NO_CJK, text_column, no_cjk),
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
        raise DataError(f"{path}: no usable rows left after validation: " + "; ".join(report.handling()))
    t, y, r = zip(*keep)
    return Reviews(list(t), np.asarray(y, np.int32), np.asarray(r, np.int32), report)


def print_report(report: LoadReport, file=None) -> None:
    for line in report.lines():  # sys.stderr looked up now, not at import: it may have been replaced since
        print(f"[jaxsenti] {report.path}: {line}", file=file or sys.stderr)


# --------------------------------------------------------------------------- prediction input


def has_chinese(text: str) -> bool:
    """Whether ``text`` holds a CJK Unified Ideograph (U+4E00–U+9FFF), the characters the study's preprocessing keeps."""
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
    note: str  # "", "empty text" (+ " (blank line)"), text.no_cjk_note(), "truncated to N chars" (joined by "; ")


@dataclasses.dataclass
class Table:
    """A CSV to predict on, every data row kept in file order (a blank line between rows is a row with empty text)."""

    path: str
    header: list[str]  # every input column (names stripped of whitespace and BOMs)
    text_column: str
    rows: list[TableRow]
    file_warnings: list[str] = dataclasses.field(default_factory=list)  # e.g. the file also decodes as UTF-8

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
        return [f"{self.path}: {w}" for w in self.file_warnings] + [
            f"{self.path}: {len(rows)} row(s) with {k} (see the note column): rows {_row_list(rows)}"
            for k, rows in kinds.items()]


def load_table(
    path: str | os.PathLike,
    text_column: str,
    *,
    encoding: str = "utf-8",
    max_chars: int = DEFAULT_MAX_CHARS,
) -> Table:
    """Read a CSV to predict on, one :class:`TableRow` per data row, with the validation of training.

    Unlike :func:`load_reviews` nothing is dropped or deduplicated: empty texts (blank lines between
    rows too), texts without Chinese characters and truncated texts are kept and described in their
    row's ``note``.
    Undecodable bytes, unclosed quotes, rows with the wrong number of fields and a missing
    text column raise :class:`DataError` naming file, row, line and column.
    """
    check_max_chars(max_chars)
    data = read_csv(path, encoding)
    with data.hints():
        ti = data.column(text_column, "--text-column")
        raise_problems(data.path, [("malformed CSV", None, data.malformed)])
    rows = []
    for r in data.rows:
        text = r.fields[ti].replace(BOM, "").strip()
        notes = []
        if not text:
            notes.append("empty text (blank line)" if r.blank else "empty text")
        else:
            if len(text) > max_chars:
                text = text[:max_chars]
                notes.append(f"truncated to {max_chars} chars")
            if not has_chinese(text):
                notes.append(no_cjk_note(text))
        rows.append(TableRow(r.row, r.line, r.fields, text, "; ".join(notes)))
    return Table(str(data.path), data.header, data.header[ti], rows, list(data.warnings))
