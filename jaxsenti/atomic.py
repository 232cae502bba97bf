"""Crash-safe writes: a reader sees the old content or the new content, never half of either.

Files are written to a temporary sibling (same folder, hence same filesystem), fsynced and moved
into place with ``os.replace``, which is atomic on POSIX and Windows. Folders are staged the same
way and swapped with two renames; :func:`recover_dir` finishes or undoes a swap that a crash cut
in half, and :func:`staged_dir` / :func:`replace_dir` call it before they start.

Leftovers are always named after their target, so a person can tell what they are:
``.NAME.tmp-TOKEN`` (a folder or file being written) and ``.NAME.old-TOKEN`` (the previous folder,
kept until the new one is in place). ``TOKEN`` is ``<pid>-<random hex>``; a leftover whose process
is gone is removed by the next :func:`recover_dir` on the same target.

A run's output folder (:func:`output_folder`) is held by one run at a time (:func:`run_lock`), and a run
written in place that fails keeps what it saved and says why in ``failed.json``; the next run into that
folder replaces it without ``--overwrite`` when it holds nothing else. Which folders may be replaced at all,
and which files a run wrote, is :mod:`jaxsenti.ownership`'s rule: nothing jaxsenti did not write is deleted.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import math
import os
import secrets
import shlex
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from jaxsenti import ownership
from jaxsenti.ownership import LOCK_NAME, NotJaxsentiError

try:
    import fcntl
except ImportError:  # Windows: runs are not locked there
    fcntl = None

FAILED_NAME = "failed.json"  # why the run written in this folder failed; removed when a run in it finishes


class OutputExistsError(FileExistsError):
    """The output folder already holds a run and the user did not ask to replace it."""


class CommitError(OSError):
    """A finished run could not be moved into its output folder (the message says where it is)."""


class FolderInUseError(OSError):
    """Another jaxsenti run holds the output folder (the message names it and its pid)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run whose files are in ``folder`` (written in place, so ``--resume`` can continue it,
    or staged and since removed); ``step`` is its last complete checkpoint when known."""

    def __init__(self, folder: Path, step: int | None = None):
        super().__init__(f"interrupted in {folder}" + ("" if step is None else f" (last checkpoint: step {step})"))
        self.folder, self.step = Path(folder), step


class DiskFullError(OSError):
    """No space was left on the device; the message says where (the partial write is removed)."""


def disk_full(e: BaseException) -> bool:
    """Whether ``e`` (or an exception it was raised from) is the device running out of space.

    orbax/tensorstore report it as a ``ValueError`` whose text carries the errno, so the text counts too.
    """
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return True
        if "No space left on device" in str(e) or f"os_error_code='{errno.ENOSPC}'" in str(e):
            return True
        e = e.__cause__ or e.__context__
    return False


def command_line() -> str:
    """This process's command line as a shell would take it (``jaxsenti train ...``)."""
    return shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else ""


def _token() -> str:
    return f"{os.getpid()}-{secrets.token_hex(4)}"


def _sibling(target: Path, kind: str, token: str, suffix: str = "") -> Path:
    return target.parent / f".{target.name}.{kind}-{token}{suffix}"


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable; some platforms cannot open folders, where this is a no-op."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- files


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp sibling, fsync, ``os.replace``); return the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)  # a plain open: the umask decides the mode (mkstemp would force 0600)
    return Path(path)


def write_text(path: str | os.PathLike, text: str, *, encoding: str = "utf-8") -> Path:
    """Atomic :meth:`Path.write_text` (no newline translation: what you pass is what is written)."""
    return write_bytes(path, text.encode(encoding))


def write_safetensors(path: str | os.PathLike, tensors: dict, *, metadata: dict | None = None) -> Path:
    """Atomic ``safetensors.numpy.save_file``, with the mode every other file gets (the umask's; safetensors
    itself creates its files 0600)."""
    from safetensors.numpy import save_file

    umask = os.umask(0)
    os.umask(umask)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
        os.chmod(tmp, 0o666 & ~umask)
    return Path(path)


def _finite(obj):
    """``obj`` with every nan/inf float replaced by None: Python's json writes them as NaN/Infinity, which no
    JSON parser but Python's accepts."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def dumps(obj, *, indent: int | None = None, default=None) -> str:
    """JSON text that is valid JSON: non-finite numbers become null (UTF-8 text kept readable)."""
    return json.dumps(_finite(obj), indent=indent, ensure_ascii=False, default=default, allow_nan=False)


def write_json(path: str | os.PathLike, obj, *, indent: int | None = 2, default=None) -> Path:
    """Atomic JSON dump (UTF-8, non-ASCII kept readable, trailing newline, nan/inf as null)."""
    return write_text(path, dumps(obj, indent=indent, default=default) + "\n")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write (e.g. ``fig.savefig(tmp)``); on success it replaces ``path``.

    The temporary name keeps ``path``'s suffix so that writers which pick a format from the
    extension (matplotlib) do the right thing. On an exception the temporary file is removed and
    ``path`` is left as it was.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder: give a file name to write (e.g. {path / ('out' + (path.suffix or '.csv'))})")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise
        raise OSError(f"cannot write {path}: cannot create {e.filename or path.parent} ({e.strerror or e})") from None
    tmp = _sibling(path, "tmp", _token(), path.suffix)
    try:
        yield tmp
        if not tmp.is_file():
            raise FileNotFoundError(f"nothing was written to the temporary file {tmp} for {path}")
        with open(tmp, "rb+") as f:  # the writer may not have synced it
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):  # absent (ENOENT), or a read-only folder (EROFS): nothing to remove
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            raise DiskFullError(f"the disk is full: no space left to write {path} (what it held before is kept); "
                                "free some space and run again") from None
        if isinstance(e, OSError) and e.errno in (errno.EROFS, errno.EACCES, errno.EPERM) and e.filename == str(tmp):
            # the user named path, not our temporary sibling
            raise OSError(f"cannot write {path} ({e.strerror}); choose another file or folder") from None
        raise
    _fsync_dir(path.parent)


# --------------------------------------------------------------------------- folders


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists but is someone else's, or we cannot tell: leave its files alone
    return True


def _leftovers(target: Path, kind: str) -> list[tuple[Path, str]]:
    """``(path, token)`` of this target's ``kind`` leftovers whose writing process is gone."""
    prefix = f".{target.name}.{kind}-"
    out = []
    if not target.parent.is_dir():
        return out
    for p in sorted(target.parent.iterdir()):
        if not p.name.startswith(prefix):
            continue
        token = p.name[len(prefix):]
        pid = token.split("-", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            out.append((p, token))
    return out


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def recover_dir(target: str | os.PathLike) -> list[str]:
    """Repair what a crash during :func:`staged_dir` / :func:`replace_dir` left; return what was done.

    * target missing, ``.old-T`` and ``.tmp-T`` present: the crash fell between the two renames
      and the new folder was complete, so the swap is finished (``.tmp-T`` becomes target);
    * target missing, only ``.old-T``: the old folder is put back;
    * any other leftover of a finished process (an unfinished stage, an old folder whose
      deletion was cut short) is deleted.

    Leftovers of a process that is still running are never touched.
    """
    target = Path(target)
    done = []
    if not target.exists():
        for old, token in _leftovers(target, "old"):
            tmp = _sibling(target, "tmp", token)
            src = tmp if tmp.is_dir() else old
            os.rename(src, target)
            done.append(f"restored {target} from {src.name}")
            break
    for kind in ("old", "tmp"):
        for p, _ in _leftovers(target, kind):
            _remove(p)
            done.append(f"removed leftover {p.name}")
    if done:
        _fsync_dir(target.parent)
    return done


def _swap_in(staged: Path, target: Path, token: str) -> None:
    """Move the complete folder ``staged`` to ``target``; the old target is kept aside until then."""
    if not (target.exists() or target.is_symlink()):
        os.rename(staged, target)
        _fsync_dir(target.parent)
        return
    old = _sibling(target, "old", token)
    os.rename(target, old)
    if ownership.read_manifest(old) is not None and (foreign := ownership.foreign_files(old)):
        os.rename(old, target)  # a file appeared since the check: the folder is not replaced after all
        raise NotJaxsentiError(f"{target} cannot be replaced: files jaxsenti did not write appeared in it "
                               f"({', '.join(foreign[:5])}); nothing was deleted")
    try:
        os.rename(staged, target)
    except BaseException:
        with contextlib.suppress(OSError):  # put the old folder back; recover_dir does it otherwise
            os.rename(old, target)
        raise
    _fsync_dir(target.parent)
    _remove(old)  # a crash here leaves a named .old-… that recover_dir deletes


def holds_files(folder: Path) -> bool:
    """Whether ``folder`` holds a file or symlink, at any depth, besides a run's lock file and manifest (empty
    subfolders do not count)."""
    return folder.is_dir() and bool(ownership.listing(folder))


def _remove_if_empty(folder: Path) -> bool:
    """Remove ``folder`` if it holds no file (see :func:`holds_files`); whether it is gone."""
    if holds_files(folder) or (folder / LOCK_NAME).exists() or folder.is_symlink() or os.path.ismount(folder):
        return not folder.exists()
    shutil.rmtree(folder, ignore_errors=True)
    return not folder.exists()


def _check_target(target: Path, overwrite: bool, can_resume: bool) -> None:
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"{target} exists and is not a folder; choose another output folder")
    if not overwrite and holds_files(target):
        also = " (or --resume to continue the run in it)" if can_resume else ""
        raise OutputExistsError(
            f"output folder {target} already exists and is not empty; pass --overwrite to replace it{also}, "
            f"or choose another output folder"
        )


@contextlib.contextmanager
def staged_dir(out_dir: str | os.PathLike, *, overwrite: bool, can_resume: bool = False,
               inputs: tuple = ()) -> Iterator[Path]:
    """Yield a temporary sibling folder to write a run's outputs into; on success it becomes ``out_dir``.

    If ``out_dir`` exists and is not empty and ``overwrite`` is False, :class:`OutputExistsError`
    tells the user to pass ``--overwrite`` (and ``--resume`` when ``can_resume``). A folder that is not
    wholly jaxsenti's, or one it never replaces (:func:`jaxsenti.ownership.check_replaceable`; ``inputs``: the
    command's input files and folders), is refused even then. On success the staged folder's manifest is
    written, the old ``out_dir`` (if any) renamed aside, the staged folder renamed in, and the old one
    deleted. On an exception the staged folder is deleted and ``out_dir`` is untouched. A crash at
    any point leaves the complete old or the complete new folder at ``out_dir`` (or, between the
    two renames, both under their ``.NAME.old-…`` / ``.NAME.tmp-…`` names, which the next call
    resolves via :func:`recover_dir`). A symlinked ``out_dir`` is written through; an empty mount point is
    written in place (it cannot be renamed).
    """
    target = ownership.real_out(out_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_dir(target)
    _check_target(target, overwrite, can_resume)
    if holds_files(target):
        ownership.check_replaceable(target, inputs)
    elif target.is_dir() and (os.path.ismount(target) or Path.cwd().resolve().is_relative_to(target.resolve())):
        with _in_place(target) as folder:  # an empty folder that cannot be renamed: written where it is
            yield folder
        return
    token = _token()
    staged = _sibling(target, "tmp", token)
    staged.mkdir()
    try:
        yield staged
        ownership.record(staged, complete=True)
    except BaseException as e:
        _remove(staged)
        if isinstance(e, DiskFullError):  # it names a folder that is gone now
            msg = str(e).replace(str(staged.absolute()), str(target)).replace(str(staged), str(target))
            raise DiskFullError(f"{msg} ({target} is as it was before this run)") from None
        raise
    # The run is finished from here on: if it cannot be moved into place it is kept, never deleted.
    try:
        _check_target(target, overwrite, can_resume)  # something may have been written there meanwhile
        if holds_files(target):
            ownership.check_replaceable(target, inputs)
        _swap_in(staged, target, token)
    except OSError as e:
        kept = target.parent / f"{target.name}.new-{token}"
        with contextlib.suppress(OSError):
            os.rename(staged, kept)
        where = f"; this run's outputs were kept in {kept}" if kept.is_dir() else ""
        if isinstance(e, (OutputExistsError, NotJaxsentiError)):
            raise type(e)(f"{e}{where}") from None
        raise CommitError(f"could not move the finished outputs into {target}: {e}{where}") from e


@contextlib.contextmanager
def _in_place(target: Path) -> Iterator[Path]:
    """An empty folder that cannot be renamed (a mount point, the current folder) written in place: on failure, what the run wrote
    there is removed again (only that: the folder held no file before)."""
    before = set(os.listdir(target))
    try:
        yield target
        ownership.record(target, complete=True)
    except BaseException:
        for name in set(os.listdir(target)) - before - {LOCK_NAME}:
            _remove(target / name)
        raise


def failed_run(folder: str | os.PathLike, finished: str) -> str | None:
    """Why the run in ``folder`` failed (from its ``failed.json``), or None if it did not fail or has finished since
    (it holds ``finished``, the file a finished run writes)."""
    folder = Path(folder)
    if not (folder / FAILED_NAME).is_file() or (folder / finished).exists():
        return None
    try:
        return str(json.loads((folder / FAILED_NAME).read_text(encoding="utf-8"))["reason"])
    except (OSError, ValueError, KeyError, TypeError):
        return f"unknown ({FAILED_NAME} is unreadable)"


def _record_failure(folder: Path, e: BaseException) -> None:
    """Write ``failed.json``; best effort, since the failure may be the disk itself."""
    reason = " ".join(str(e).split()) or type(e).__name__
    info = {"reason": reason[:2000], "error": type(e).__name__,
            "time_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": command_line(), "pid": os.getpid()}
    with contextlib.suppress(OSError):
        write_json(folder / FAILED_NAME, info)


@contextlib.contextmanager
def output_folder(out_dir: str | os.PathLike, *, overwrite: bool = False, resume: bool = False,
                  can_resume: bool = False, finished: str | None = None, inputs: tuple = ()) -> Iterator[Path]:
    """Where a command writes its outputs, so that no folder ever mixes two runs.

    A missing or empty folder, or one being resumed, is written in place (a killed run leaves
    only its own files, and ``--resume`` can continue it); its manifest (:mod:`jaxsenti.ownership`) lists
    what the run wrote. A folder holding another run is refused unless ``overwrite``; then the new run is
    staged beside it (:func:`staged_dir`) and replaces it only once it has finished, so the old outputs stay
    usable until then, and only if it holds nothing but jaxsenti's files.

    ``finished`` names the file a finished run writes (e.g. ``metrics.json``). With it, a run written in
    place that raises keeps what it saved and leaves ``failed.json`` (the error, the UTC time, the
    command line); a later run into that folder replaces it as with ``overwrite`` (said on stderr) when the
    folder holds nothing but that run's files, and a resumed run that finishes removes ``failed.json``. A
    folder this call created and the run left empty is removed. A symlinked ``out_dir`` is written through.
    """
    target = ownership.real_out(out_dir)
    recover_dir(target)
    _check_target(target, True, can_resume)  # a file in the way is an error either way
    if finished and not resume and not overwrite and (reason := failed_run(target, finished)) is not None:
        if foreign := ownership.foreign_files(target):
            raise NotJaxsentiError(f"{target} holds a failed run (failed: {reason}) and files it did not write "
                                   f"({', '.join(foreign[:5])}{' …' if len(foreign) > 5 else ''}): nothing was deleted; "
                                   "move those files out to replace the failed run, or choose another output folder")
        print(f"[jaxsenti] replacing the failed run in {target} (failed: {reason})", file=sys.stderr)
        overwrite = True
    if resume or not holds_files(target):
        created = not target.exists()
        target.mkdir(parents=True, exist_ok=True)
        ownership.begin(target)
        try:
            yield target
        except BaseException as e:
            if not holds_files(target):
                with contextlib.suppress(FileNotFoundError):
                    (target / ownership.MANIFEST_NAME).unlink()
                if created:
                    _remove_if_empty(target)
                raise
            ownership.record(target, complete=False)
            if isinstance(e, KeyboardInterrupt):  # kept for --resume, not recorded as failed
                raise Interrupted(target, getattr(e, "step", None)) from None
            if finished and isinstance(e, Exception):
                _record_failure(target, e)
                ownership.record(target, complete=False)
            raise
        if finished:
            with contextlib.suppress(FileNotFoundError):
                (target / FAILED_NAME).unlink()
        ownership.record(target, complete=True)
        return
    with staged_dir(target, overwrite=overwrite, can_resume=can_resume, inputs=inputs) as staged:
        yield staged


def _read_pid(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        return f"pid {int(os.pread(fd, 32, 0).decode().strip())}"
    return "pid unknown"


def _lock(path: Path, folder: Path) -> int | None:
    """An open descriptor holding an exclusive flock on ``path``; :class:`FolderInUseError` if another run holds it."""
    for _ in range(100):  # each retry means the previous holder just removed the file: take the new one
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise FolderInUseError(f"{folder} is in use by another jaxsenti run ({holder}); wait for it or choose "
                                   "another --out") from None
        except OSError as e:  # a filesystem without flock (some network mounts): run unlocked rather than not at all
            os.close(fd)
            print(f"[jaxsenti] cannot lock {folder} ({e.strerror}); nothing stops another run from writing there",
                  file=sys.stderr)
            return None
        try:
            same = os.path.samestat(os.stat(path), os.fstat(fd))
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return fd
        os.close(fd)
    raise FolderInUseError(f"{folder}: could not lock {path.name}; another jaxsenti run keeps replacing it")


_HELD: set[str] = set()  # the lock files this process holds (a second flock on them from here would block)


def holder(folder: str | os.PathLike) -> str | None:
    """``pid N`` of the live run (of another process) that holds ``folder``, or None."""
    path = Path(os.path.realpath(folder)) / LOCK_NAME
    if fcntl is None or str(path) in _HELD or not path.is_file():
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_pid(fd)
    except OSError:
        return None
    finally:
        os.close(fd)  # also releases the shared lock just taken
    return None


def check_not_held(target: str | os.PathLike) -> None:
    """Refuse ``target`` when it, or a folder above it, is held by a live run of another process
    (:class:`FolderInUseError`, naming the folder and the pid)."""
    t = Path(os.path.realpath(target))
    for p in (t, *t.parents):
        if (who := holder(p)) is None:
            continue
        where = f"{target} is" if p == t else f"{target} is inside {p}, which is"
        raise FolderInUseError(f"{where} in use by another jaxsenti run ({who}); wait for it or choose another --out")


@contextlib.contextmanager
def run_lock(out_dir: str | os.PathLike, *, enabled: bool = True) -> Iterator[None]:
    """Hold ``out_dir`` for one run (train, pretrain, study; fresh, resumed, in place or staged beside it).

    Another run that would write, replace or resume the folder fails at once with
    :class:`FolderInUseError` naming the pid of the holder. The lock is an exclusive ``flock`` on
    ``out_dir/.jaxsenti.lock``, which the kernel releases when the process dies, so a killed run never
    blocks the next one; the file is removed when the run ends. Folders this call creates are removed
    again if the run leaves nothing in them. ``enabled=False`` (a multi-host run's other processes) and
    platforms without ``fcntl`` take no lock.
    """
    target = ownership.real_out(out_dir)
    if not enabled or fcntl is None:
        yield
        return
    check_not_held(target)
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"{target} exists and is not a folder; choose another output folder")
    created = [p for p in (target, *target.parents) if not p.exists()]
    path = target / LOCK_NAME
    try:
        target.mkdir(parents=True, exist_ok=True)
        path = target.resolve() / LOCK_NAME  # a symlinked --out: the folder it names, which a staged run may replace
        fd = _lock(path, target)
        if fd is not None:
            _HELD.add(str(path))
    except FolderInUseError:
        raise
    except OSError as e:  # read-only, no permission, disk full: say where, not the lock file's name
        for p in created:
            with contextlib.suppress(OSError):
                p.rmdir()
        if e.errno == errno.ENOSPC:
            raise DiskFullError(f"the disk is full: no space left to create {target}; free some space and run again") from None
        where = f": {e.filename}" if e.filename and Path(e.filename) != target else ""  # e.g. a folder named like the lock
        raise OSError(f"cannot write into {target} ({e.strerror or e}{where}); choose another --out") from None
    try:
        yield
    finally:
        _HELD.discard(str(path))
        if fd is not None:
            with contextlib.suppress(OSError):  # only our own file: a finished staged run swapped the folder under it
                if os.path.samestat(os.stat(path), os.fstat(fd)):
                    os.unlink(path)
            os.close(fd)
        for p in created:  # the deepest first; stops at the first folder something was written into
            if not _remove_if_empty(p):
                break


def replace_dir(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Atomically make the complete folder ``src`` become ``dst`` (e.g. ``checkpoints/best``).

    The previous ``dst`` survives until ``src`` is in place. ``src`` is moved, not copied, when it
    is on the same filesystem; otherwise it is first copied into a staging sibling of ``dst``.
    """
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise NotADirectoryError(f"{src} is not a folder")
    dst.parent.mkdir(parents=True, exist_ok=True)
    recover_dir(dst)
    token = _token()
    staged = _sibling(dst, "tmp", token)
    try:
        os.rename(src, staged)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        try:  # another filesystem: copy next to dst first, so the swap itself is still two renames
            shutil.copytree(src, staged, symlinks=True)
        except BaseException:
            _remove(staged)
            raise
        shutil.rmtree(src)
    try:
        _swap_in(staged, dst, token)
    except BaseException:
        with contextlib.suppress(OSError):  # hand the new folder back rather than lose it
            os.rename(staged, src)
        raise
    return dst


__all__ = [
    "FAILED_NAME", "LOCK_NAME", "CommitError", "check_not_held", "holder", "DiskFullError", "FolderInUseError", "Interrupted", "OutputExistsError",
    "atomic_path", "write_safetensors", "command_line", "disk_full", "failed_run", "output_folder", "recover_dir", "replace_dir", "run_lock",
    "staged_dir", "write_bytes", "write_json", "write_text",
]
