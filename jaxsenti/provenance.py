"""What produced a model folder: the command, the data (path, sha256, rows per split), versions, git commit.

``run.json`` in every folder ``jaxsenti train`` (or a study row) writes holds :func:`run_record`; the
data's sha256 in it is what ``--resume`` checks before anything else (resuming on other data would
otherwise be refused for a derived field such as the vocabulary size), and the encoder files'
sha256 is what :func:`check_encoder_files` compares when the folder is loaded again.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

from jaxsenti.data.download import sha256_of as file_sha256  # the one file hash (checksums, run.json)
from jaxsenti.machine import PACKAGES, package_version
from jaxsenti.xla_options import applied_flags

RUN_FILE = "run.json"


def command_line(argv: list[str] | None = None) -> str:
    """The command as the user typed it (``jaxsenti train ...``), quoted so it can be pasted back; ``argv``: the
    arguments after the program name (default: this process's)."""
    return shlex.join(["jaxsenti", *(sys.argv[1:] if argv is None else argv)])


def git_commit() -> dict | None:
    """The commit of the checkout the package runs from (and whether it had changes), None outside a checkout."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        run = lambda *a: subprocess.run(["git", *a], cwd=root, capture_output=True, text=True, timeout=10)  # noqa: E731
        head = run("rev-parse", "HEAD")
        if head.returncode:
            return None
        dirty = run("status", "--porcelain", "--untracked-files=no")
        return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return None


def encoder_files(folder: Path) -> dict[str, str]:
    """sha256 of each file of the model folder's encoder (``vocab.json``, ``tokenizer/*``)."""
    folder = Path(folder)
    files = [folder / "vocab.json"] + sorted((folder / "tokenizer").glob("*"))
    return {str(p.relative_to(folder)): file_sha256(p) for p in files if p.is_file()}


def run_record(*, command: str, data_path: str, split_rows: dict, reviews_kept: int) -> dict:
    """``run.json``'s content for a run started now (the caller adds ``encoder_files`` once they are written)."""
    path = Path(data_path)
    return {
        "command": command,
        "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cwd": os.getcwd(),
        "data": {"path": str(path.resolve()), "sha256": file_sha256(path), "reviews": reviews_kept, "rows": split_rows},
        "versions": {"jaxsenti": package_version("jaxsenti"), **{n: package_version(n) for n in PACKAGES}},
        "git": git_commit(),
        "python": sys.version.split()[0],
        "xla": applied_flags(),  # XLA_FLAGS in force, and which are jaxsenti's CPU defaults (jaxsenti/xla_options.py)
    }


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_run(folder: Path) -> dict | None:
    """A folder's run.json; None for older folders (which have none) or a damaged one (only the extra checks are lost)."""
    return read_json(Path(folder) / RUN_FILE)


def check_same_data(folder: Path, data_path: str) -> None:
    """``--resume``: the data file is the one the run in ``folder`` was trained on (by sha256)."""
    saved = (read_run(folder) or {}).get("data") or {}
    if not saved.get("sha256"):
        return
    sha = file_sha256(data_path)
    if sha != saved["sha256"]:
        raise ValueError(f"--resume: {folder} was trained on {saved.get('path')} (sha256 {saved['sha256'][:12]}…, "
                         f"{saved.get('reviews')} reviews), not on {data_path} (sha256 {sha[:12]}…); resume with the "
                         "same data, or train into a new folder (or --overwrite)")


def check_encoder_files(folder: Path) -> None:
    """The encoder files are those the run wrote (a vocab.json copied from another folder would change every score)."""
    saved = (read_run(folder) or {}).get("encoder_files")
    if not saved:
        return
    now = encoder_files(folder)
    changed = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    if changed:
        raise ValueError(f"{folder}: {', '.join(changed)} differ from what training wrote (sha256 in {RUN_FILE}): the "
                         "model would read other ids than it learned; put the folder's own files back, or train again")


__all__ = ["RUN_FILE", "check_encoder_files", "check_same_data", "command_line", "encoder_files", "file_sha256",
           "git_commit", "read_run", "run_record"]
