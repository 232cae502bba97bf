"""Which files of an output folder jaxsenti wrote, and which folders it must never replace.

The rule, for every command that writes (``train``, ``pretrain``, ``study``, ``baselines``, ``eda``, ``export``,
``lr-find``, ``predict --out``, the scripts' ``--out``): **jaxsenti deletes or changes only files it wrote.**

* Every folder a run writes holds a manifest, ``.jaxsenti-files.json``: the files that run (and the runs that
  resumed it) wrote, relative to the folder. It is written when the run starts, at each epoch end and when
  the run ends (finished, failed or interrupted), so a killed run's folder is known to be jaxsenti's too.
* A folder is replaced (``--overwrite``, or a failed run's folder) only when every file in it, at any depth,
  is in its manifest. A folder without a manifest that holds any file is not jaxsenti's. Otherwise the command
  refuses and names the first few foreign files: nothing is deleted.
* Never replaced at all: the home folder, a filesystem root, a mount point, the current folder or one of
  its ancestors, a folder that holds (or is) an input of the same command.
* Symlinks: an ``--out`` that is a symlink is resolved and written through (the link is never replaced by a
  folder); a symlink inside a folder is a file like any other (foreign unless the run wrote it), never followed.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

MANIFEST_NAME = ".jaxsenti-files.json"
LOCK_NAME = ".jaxsenti.lock"  # held by the run writing the folder (jaxsenti.atomic.run_lock); never an output
_NOT_OUTPUTS = {MANIFEST_NAME, LOCK_NAME}
SHOWN = 5  # foreign files named in a refusal
# Files whose content must match the weights beside them: hashed when first recorded, checked when read
# (a vocab.json with two words swapped still parses, and the weights would be read against the wrong words).
HASHED = frozenset({"vocab.json"})


class NotJaxsentiError(FileExistsError):
    """The folder holds files jaxsenti did not write (or is a folder jaxsenti never replaces): nothing was deleted."""


def real_out(out: str | os.PathLike) -> Path:
    """``out`` with a symlink resolved: what is written is the folder (or file) the link names, never the link."""
    p = Path(out)
    return Path(os.path.realpath(p)) if p.is_symlink() else p


def listing(folder: str | os.PathLike) -> list[str]:
    """Every file and symlink under ``folder`` (relative POSIX paths, symlinks not followed), sorted; the manifest
    and the lock file are not outputs. Empty subfolders are not listed (they hold nothing to lose)."""
    folder = Path(folder)
    out = []
    for root, dirs, files in os.walk(folder):  # followlinks=False: a linked folder is one entry, never entered
        rel = Path(root).relative_to(folder)
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            path = (rel / name).as_posix()
            if name not in _NOT_OUTPUTS:  # a nested run's manifest or lock is jaxsenti's own bookkeeping
                out.append(path)
    return sorted(out)


def read_manifest(folder: str | os.PathLike) -> dict | None:
    """The folder's manifest, or None (none, unreadable, or not one of ours)."""
    try:
        m = json.loads((Path(folder) / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(m, dict) or not isinstance(m.get("files"), list) or not all(isinstance(f, str) for f in m["files"]):
        return None
    return m


def record(folder: str | os.PathLike, *, command: str | None = None, complete: bool | None = None) -> None:
    """Write the manifest: every file now in ``folder`` is this run's, except those that were there, not ours,
    when it started (kept as ``foreign``; see :func:`begin`). Best effort: a full disk must not hide the error
    that stopped the run."""
    from jaxsenti import atomic  # atomic uses this module; its writer is needed only here

    folder = Path(folder)
    old = read_manifest(folder) or {}
    foreign = set(old.get("foreign", []))
    files = [f for f in listing(folder) if f not in foreign]
    hashes = {f: h for f, h in (old.get("sha256") or {}).items() if f in files}  # the first hash stays: written once
    for f in files:
        if Path(f).name in HASHED and f not in hashes:
            with contextlib.suppress(OSError):
                hashes[f] = sha256_of(folder / f)
    manifest = {"written_by": "jaxsenti", "command": command or old.get("command") or atomic.command_line(),
                "complete": old.get("complete", False) if complete is None else complete,
                "files": files, "foreign": sorted(foreign), "sha256": hashes}
    with contextlib.suppress(OSError):
        atomic.write_json(folder / MANIFEST_NAME, manifest, indent=1)


def sha256_of(path: str | os.PathLike) -> str:
    """The project's one file hash (jaxsenti.data.download's), imported here on use: download imports atomic,
    which imports this module."""
    from jaxsenti.data.download import sha256_of as file_sha256

    return file_sha256(path)


def check_unchanged(path: str | os.PathLike, *, levels: int = 3) -> None:
    """Raise ``ValueError`` if ``path`` differs from the content recorded when jaxsenti wrote it (the manifest of
    its folder or of one of the ``levels`` folders above). A file no manifest hashed is not checked."""
    path = Path(path)
    folder = path.parent
    for _ in range(levels + 1):
        m = read_manifest(folder)
        if m is not None:
            rel = path.relative_to(folder).as_posix()
            want = (m.get("sha256") or {}).get(rel)
            if isinstance(want, str) and path.is_file() and sha256_of(path) != want:
                raise ValueError(f"{path} was changed after jaxsenti wrote it (its sha256 differs from the one in "
                                 f"{folder / MANIFEST_NAME}): the weights beside it would be read against the wrong "
                                 "words; restore the file, or train (or pretrain) again")
            return
        if folder.parent == folder:
            return
        folder = folder.parent


def begin(folder: str | os.PathLike, *, command: str | None = None) -> None:
    """A run starts writing ``folder`` in place: what is there and not ours stays foreign for good."""
    folder = Path(folder)
    old = read_manifest(folder) or {}
    mine = set(old.get("files", []))
    foreign = sorted(set(old.get("foreign", [])) | {f for f in listing(folder) if f not in mine})
    from jaxsenti import atomic

    with contextlib.suppress(OSError):
        atomic.write_json(folder / MANIFEST_NAME, {**old, "written_by": "jaxsenti", "complete": False,
                                                   "command": command or atomic.command_line(),
                                                   "files": sorted(mine), "foreign": foreign}, indent=1)


def note_progress(folder: str | os.PathLike) -> None:
    """Add what a running run wrote since the last record (epoch ends), if the folder is a run's."""
    if (Path(folder) / MANIFEST_NAME).is_file():
        record(folder)


def foreign_files(folder: str | os.PathLike) -> list[str]:
    """The files under ``folder`` jaxsenti did not write: not in its manifest, or all of them without one."""
    files = listing(folder) if Path(folder).is_dir() else []
    m = read_manifest(folder)
    if m is None:
        return files
    mine = set(m["files"]) - set(m.get("foreign", []))
    return [f for f in files if f not in mine]


def _shown(files: list[str]) -> str:
    more = f" and {len(files) - SHOWN} more" if len(files) > SHOWN else ""
    return ", ".join(files[:SHOWN]) + more


def _within(child: Path, parent: Path) -> bool:
    return child == parent or child.is_relative_to(parent)


def _abs(p: str | os.PathLike) -> Path:
    return Path(os.path.realpath(p))


def never_replaced(target: str | os.PathLike, inputs: Iterable[str | os.PathLike] = ()) -> str | None:
    """Why ``target`` is a folder jaxsenti never replaces or deletes, or None."""
    t = _abs(target)
    if t == Path(t.anchor):
        return f"{target} is a filesystem root"
    with contextlib.suppress(RuntimeError, KeyError):
        if t == _abs(Path.home()):
            return f"{target} is the home folder"
    if _within(_abs(Path.cwd()), t):
        return f"{target} is the current folder or holds it"
    if t.is_dir() and os.path.ismount(t):
        return f"{target} is a mount point"
    for p in inputs:
        if p and _within(_abs(p), t):
            return f"{target} holds {p}, an input of this command"
    return None


def check_replaceable(target: str | os.PathLike, inputs: Iterable[str | os.PathLike] = (), *, why: str = "--overwrite") -> None:
    """Raise :class:`NotJaxsentiError` unless ``target`` may be deleted and written anew: a folder this project
    wrote, holding only files it wrote, and none of those :func:`never_replaced` names."""
    target = Path(target)
    if (reason := never_replaced(target, inputs)) is not None:
        raise NotJaxsentiError(f"{reason}, which jaxsenti never replaces ({why}); nothing was deleted: choose another "
                               "output folder (an empty or new one)")
    if foreign := foreign_files(target):
        whose = ("it was not written by jaxsenti (no manifest)" if read_manifest(target) is None
                 else "it holds files jaxsenti did not write")
        raise NotJaxsentiError(f"{target} cannot be replaced ({why}): {whose}: {_shown(foreign)}; nothing was deleted: "
                               "move those files out, or choose another output folder")


def check_output_file(out: str | os.PathLike, *, inputs: Iterable[str | os.PathLike] = (),
                      model_folders: Iterable[str | os.PathLike] = (), ours=None, flag: str = "--out") -> Path:
    """``--out FILE`` of ``predict`` / ``lr-find`` (``flag`` names the option; the scripts' ``--json``, ``--md``):
    never an input, never inside a model folder, and an existing file only when ``ours(path)`` says jaxsenti
    wrote it. Returns the path to write (a symlink resolved)."""
    path = real_out(out)
    a = _abs(path)
    named = f"{flag} {out}".strip()
    for p in inputs:
        if p and a == _abs(p):
            raise NotJaxsentiError(f"{named} is the input file {p}: refusing to overwrite it; choose another {flag or 'file'}")
    for m in model_folders:
        if m and _within(a, _abs(m)):
            raise NotJaxsentiError(f"{named} is inside the model folder {m}: writing there could damage the model; "
                                   "choose a file outside it")
    if path.exists() and not path.is_dir() and ours is not None and not ours(path):
        raise NotJaxsentiError(f"{named} exists and is not a file jaxsenti wrote: refusing to overwrite it; "
                               f"choose another {flag or 'file'} (or move that file)")
    return path


__all__ = ["HASHED", "LOCK_NAME", "MANIFEST_NAME", "NotJaxsentiError", "begin", "check_output_file", "check_replaceable",
           "check_unchanged", "sha256_of",
           "foreign_files", "listing", "never_replaced", "note_progress", "read_manifest", "real_out", "record"]
