"""What the benchmark scripts share: paths, data, the command line, JSON and subprocesses.

Timing and the train-step result layout are in ``harness.py``, markdown in ``report.py``. Nothing here imports
JAX or torch, so the driver (``run_all.py``, which runs each benchmark in its own subprocess) and the tests
import it cheaply.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # `python benchmarks/x.py` from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

from jaxsenti import atomic  # noqa: E402
from jaxsenti.cli import script_main  # noqa: E402, F401  (every script's __main__: user errors in one line)
from jaxsenti.machine import machine_info  # noqa: E402  (the project's one; light: no jax import)
from jaxsenti.training.tracking import parse_profile  # noqa: E402

DATA_FILES = {  # name: (file, text column, label column)
    "dianping": ("dianping.csv", "comment", "sentiment"),
    "online_shopping": ("online_shopping_10_cats.csv", "review", "label"),
}


def data_path(name: str) -> Path:
    """One of the two shared datasets, looked up as the package looks up any ($JAXSENTI_DATA_DIR, then data/)."""
    from jaxsenti.data import resolve_dataset

    return resolve_dataset(DATA_FILES[name][0])


def clear_segment_memo(_i=None) -> None:
    """Empty jieba's in-process memo, so that repeated texts are really segmented again (a ``before`` hook)."""
    from jaxsenti.data import text

    text._segment_cached.cache_clear()  # no public hook; fail loudly rather than time a warm memo


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (``ru_maxrss``, KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# --- command line ---


def base_argparser(description: str, *, quick: bool = True, smoke: bool = False,
                   profile: bool = False) -> argparse.ArgumentParser:
    """The options every benchmark spells the same: ``--json`` and, where asked, ``--quick``, ``--smoke`` and
    ``--profile START:N``."""
    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", default=None, help="write the results here")
    if quick:
        ap.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats")
    if smoke:
        ap.add_argument("--smoke", action="store_true", help="tiny shapes (tests)")
    if profile:
        ap.add_argument("--profile", type=profile_window, default=None, metavar="START:N",
                        help="trace JAX's timed steps START..START+N-1 with jax.profiler into <folder of --json, "
                             "else the current one>/profile")
    return ap


def profile_window(raw: str) -> tuple[int, int]:
    """An argparse ``type``: ``START:N`` -> (START, N), as the ``jaxsenti`` command's ``--profile``."""
    try:
        return parse_profile(raw)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def names_of(known) -> Callable[[str], list[str]]:
    """An argparse ``type``: comma-separated names, each one of ``known``."""

    def parse(raw: str) -> list[str]:
        names = [n for n in raw.split(",") if n]
        if unknown := sorted(set(names) - set(known)):
            raise argparse.ArgumentTypeError(f"unknown {', '.join(unknown)}; choose from {', '.join(known)}")
        return names

    return parse


def parse_args(ap: argparse.ArgumentParser, argv=None, *, quick: dict | None = None) -> argparse.Namespace:
    """Parse; with ``--quick``, ``quick`` replaces the defaults (options given explicitly still win)."""
    a = ap.parse_args(argv)
    if quick and getattr(a, "quick", False):
        ap.set_defaults(**quick)
        a = ap.parse_args(argv)
    return a


def finish(res: dict, args, argv=None, show: Callable[[dict], None] | None = None, *, devices=None) -> int:
    """Common end of a benchmark script: add the machine and argv, print, write ``--json``.

    The machine lists the devices jax sees where this process loaded jax; ``devices`` gives them where only a
    worker process did.
    """
    res["machine"] = machine_info() | ({"devices": devices} if devices else {})
    res["argv"] = sys.argv[1:] if argv is None else list(argv)
    if show is not None:
        show(res)
    if args.json:
        write_json(args.json, res)
        print(f"wrote {args.json}")
    return 0


# --- JSON ---


def write_json(path: str | os.PathLike, obj) -> Path:
    """Strict JSON, atomically (``jaxsenti.atomic``): nan/inf -> null, numpy -> Python, anything else -> str."""
    return atomic.write_json(path, json.loads(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))))


def read_json(path: str | os.PathLike):
    return json.loads(Path(path).read_text(encoding="utf-8"))


# --- subprocesses ---


def shown(path_or_cmd) -> str:
    """A path or command as a reader types it: this interpreter as ``python``, paths relative to the checkout."""
    words = path_or_cmd if isinstance(path_or_cmd, (list, tuple)) else [path_or_cmd]
    return " ".join("python" if str(w) == sys.executable else str(w).replace(str(ROOT) + os.sep, "") for w in words)


def run_command(cmd: Sequence[str], *, timeout: float | None = None, log: str | os.PathLike | None = None,
                env: dict | None = None) -> dict:
    """Run ``cmd`` in its own process group from the checkout (output to ``log``, else kept), killing the whole
    group after ``timeout`` s: ``command``, ``rc``, ``wall_s``, ``timed_out``, ``log_tail`` (``stdout`` when no
    log), ``peak_rss_mib`` (the largest resident set of the process or any of its children, from ``wait4``)."""
    env = dict(os.environ if env is None else env, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    with (open(log, "w+") if log else tempfile.TemporaryFile("w+")) as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(list(map(str, cmd)), stdout=out, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                                env=env, start_new_session=True)
        timer = threading.Timer(max(timeout, 0.1), _killpg, (proc.pid,)) if timeout is not None else None
        if timer:
            timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            if timer:
                timer.cancel()
        wall = time.perf_counter() - t0
        out.seek(0)
        text = out.read()
    rc = os.waitstatus_to_exitcode(status)
    r = {"command": shown(cmd), "rc": rc, "wall_s": wall, "timeout_s": timeout,
         "timed_out": rc == -signal.SIGKILL and timeout is not None and wall >= timeout, "log_tail": text[-3000:],
         "peak_rss_mib": usage.ru_maxrss / 1024.0}
    return r if log else r | {"stdout": text}


def _killpg(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # the group ended as the timer fired
        os.killpg(pid, signal.SIGKILL)


def run_script(cmd: Sequence[str], json_path: str | os.PathLike, *, timeout: float | None = None) -> dict:
    """:func:`run_command` for a script that writes ``json_path``: its parsed JSON as ``result``; raises
    ``RuntimeError`` with the output tail if the script fails, times out or writes no JSON."""
    json_path = Path(json_path)
    json_path.unlink(missing_ok=True)
    r = run_command(cmd, timeout=timeout)
    if r["rc"] != 0 or not json_path.exists():
        why = f"killed after {timeout:.0f}s timeout" if r["timed_out"] else f"rc={r['rc']}"
        raise RuntimeError(f"{shown(cmd)} failed ({why}):\n{r['stdout'][-4000:]}")
    return r | {"result": read_json(json_path)}
