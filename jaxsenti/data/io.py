"""Loading review CSVs with validation that names file, row and column.

Policy (documented in the README, "Input validation"):

* errors (nothing is loaded): missing file, missing column, undecodable bytes,
  malformed CSV rows, labels outside {0, 1}. The message lists the offending rows
  (up to 10, then a count) by data-row number (1 = first row after the header),
  file line and column.
* counted handling (reported in ``LoadReport`` and printed by the CLI, never silent):
  a UTF-8 BOM at the start of the file or of a cell is stripped; reviews longer than
  ``max_chars`` are truncated; empty texts are dropped; exact duplicate (text, label)
  rows keep their first copy; texts seen with both labels are dropped entirely (they
  cannot be split without leaking a contradiction); texts with no CJK ideograph are
  dropped (the study's preprocessing keeps only CJK Unified Ideographs, so they would
  become empty). ``strict=True`` turns empty and no-CJK texts into errors instead.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import sys
from pathlib import Path

import numpy as np

from jaxsenti.data.text import cjk_only

BOM = "\ufeff"
_MAX_LISTED = 10
DEFAULT_DATASET = "dianping.csv"


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


def _parse_label(raw: str) -> int | None:
    s = raw.strip()
    try:
        v = float(s)
    except ValueError:
        return None
    return int(v) if v in (0.0, 1.0) else None


def load_reviews(
    path: str | os.PathLike,
    text_column: str = "comment",
    label_column: str = "sentiment",
    *,
    max_chars: int = 5000,
    encoding: str = "utf-8",
    strict: bool = False,
) -> Reviews:
    """Read and validate a CSV of reviews; see the module docstring for the policy."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    raw = path.read_bytes()
    try:
        content = raw.decode(encoding)
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(
            f"{path}: line {line}: bytes are not valid {encoding} ({e.reason}); "
            f"re-save the file as UTF-8 or pass --encoding (e.g. gb18030)"
        ) from None
    report = LoadReport(path=str(path))
    if content.startswith(BOM):
        content = content[1:]  # a file-level BOM is standard, not worth reporting
    reader = csv.reader(content.splitlines(keepends=True))
    header = next(reader, None)
    if not header:
        raise DataError(f"{path}: file is empty (no header row)")
    header = [h.strip().lstrip(BOM) for h in header]
    for col in (text_column, label_column):
        if col not in header:
            raise DataError(
                f"{path}: column {col!r} not found; columns are {header}. "
                f"Choose columns with --text-column/--label-column."
            )
    ti, li = header.index(text_column), header.index(label_column)

    empty, bad_label, malformed = [], [], []
    texts, labels, rows = [], [], []
    row = 0
    for fields in reader:
        if not fields:  # blank line
            continue
        row += 1
        if len(fields) != len(header):
            malformed.append(f"row {row} (line {reader.line_num}): {len(fields)} fields, header has {len(header)}")
            continue
        text, label_raw = fields[ti], fields[li]
        if BOM in text:
            report.bom_stripped += 1
            text = text.replace(BOM, "")
        text = text.strip()
        if not text:
            empty.append(f"row {row} (line {reader.line_num})")
            report.empty_dropped.append(row)
            continue
        label = _parse_label(label_raw)
        if label is None:
            bad_label.append(f"row {row} (line {reader.line_num}): {label_raw!r}")
            continue
        if len(text) > max_chars:
            report.truncated.append(row)
            text = text[:max_chars]
        texts.append(text)
        labels.append(label)
        rows.append(row)
    report.rows_read = row

    problems = []
    no_cjk = [f"row {r}" for t, r in zip(texts, rows) if not cjk_only(t)] if strict else []
    for what, col, items in (
        ("malformed CSV", None, malformed),
        ("empty text", text_column, empty if strict else []),
        ("no Chinese characters", text_column, no_cjk),
        ("label not in {0, 1}", label_column, bad_label),
    ):
        if items:
            where = f" in column {col!r}" if col else ""
            listed = "; ".join(items[:_MAX_LISTED]) + (f"; … (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else "")
            problems.append(f"{len(items)} row(s) with {what}{where}: {listed}")
    if problems:
        raise DataError(f"{path}: " + "\n  ".join(problems))

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
