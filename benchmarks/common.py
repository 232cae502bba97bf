"""Helpers shared by the benchmark scripts: machine info, timing statistics, peak memory, JSON, markdown.

Nothing here imports JAX or torch at module level, so the helpers are cheap to import in tests and in
the ``run_all.py`` driver (which runs each benchmark in its own subprocess).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # `python benchmarks/x.py` from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

DATA_FILES = {
    # name: (file, text column, label column)
    "dianping": ("dianping.csv", "comment", "sentiment"),
    "online_shopping": ("online_shopping_10_cats.csv", "review", "label"),
}


# ----------------------------------------------------------------------------------------------
# Machine information
# ----------------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def total_ram_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 1024**2  # kB -> GiB
    except (OSError, ValueError, IndexError):
        pass
    return None


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # noqa: BLE001 - a missing package is simply not reported
        return None


def machine_info() -> dict:
    """CPU model, cores, RAM, load, library versions and the date. Does not import JAX/torch."""
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    return {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "ram_gib": total_ram_gib(),
        "load_average": load,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {name: _version(name) for name in
                     ("jax", "jaxlib", "flax", "optax", "torch", "numpy", "transformers", "tokenizers", "jieba")},
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "gpu": "none measured: CPU-only session (no GPU available)",
    }


# ----------------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between order statistics (numpy's default)."""
    if not values:
        raise ValueError("percentile of an empty sequence")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be in [0, 100], got {q}")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summarize_times(times: Sequence[float]) -> dict:
    """median/p50/p90/p99/mean/min/max of a list of durations in seconds (plus the raw list)."""
    times = [float(t) for t in times]
    return {
        "n": len(times),
        "median_s": statistics.median(times),
        "p50_s": percentile(times, 50),
        "p90_s": percentile(times, 90),
        "p99_s": percentile(times, 99),
        "mean_s": statistics.fmean(times),
        "min_s": min(times),
        "max_s": max(times),
        "times_s": times,
    }


def time_calls(fn: Callable[[int], object], *, repeats: int, warmup: int = 1, first_call: bool = True,
               clock: Callable[[], float] = time.perf_counter, before: Callable[[int], None] | None = None) -> dict:
    """Time ``fn(i)``: an optional separately recorded first call (compilation), ``warmup`` untimed calls,
    then ``repeats`` timed calls summarised by :func:`summarize_times`.

    ``fn`` must block until its result is ready (e.g. ``jax.block_until_ready``). ``before(i)`` runs
    untimed before every call (e.g. to clear a memo cache). ``clock`` is injectable for tests.
    """
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    i = 0
    out: dict = {}
    if first_call:
        if before:
            before(i)
        t0 = clock()
        fn(i)
        out["first_call_s"] = clock() - t0
        i += 1
    for _ in range(warmup):
        if before:
            before(i)
        fn(i)
        i += 1
    times = []
    for _ in range(repeats):
        if before:
            before(i)
        t0 = clock()
        fn(i)
        times.append(clock() - t0)
        i += 1
    out.update(summarize_times(times))
    return out


class Stopwatch:
    """``with Stopwatch() as sw: ...`` then ``sw.seconds``."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        self.clock, self.seconds = clock, float("nan")

    def __enter__(self):
        self._t0 = self.clock()
        return self

    def __exit__(self, *exc):
        self.seconds = self.clock() - self._t0
        return False


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (``ru_maxrss``, KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ----------------------------------------------------------------------------------------------
# JSON and subprocesses
# ----------------------------------------------------------------------------------------------


def _clean(obj):
    """JSON-safe copy: NaN/inf -> None, numpy scalars/arrays -> Python, Paths -> str."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy scalar or array
        return _clean(obj.tolist())
    return str(obj)


def finish(res: dict, args, argv, print_summary) -> int:
    """Common end of a benchmark script: add machine info and argv, print, write ``--json`` if asked."""
    res["machine"] = machine_info()
    res["argv"] = sys.argv[1:] if argv is None else list(argv)
    if print_summary is not None:
        print_summary(res)
    if args.json:
        write_json(args.json, res)
        print(f"wrote {args.json}")
    return 0


def write_json(path: str | os.PathLike, obj) -> Path:
    """Write ``obj`` as strict JSON (no NaN), creating parent folders, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_clean(obj), indent=2, ensure_ascii=False, allow_nan=False), encoding="utf-8")
    tmp.replace(path)
    return path


def read_json(path: str | os.PathLike):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def run_script(cmd: Sequence[str], json_path: str | os.PathLike, *, timeout: float | None = None,
               log: Callable[[str], None] | None = None) -> dict:
    """Run a benchmark script that writes ``json_path``; return its parsed JSON with the wall time, the stdout
    and ``peak_rss_mib``: the largest resident set of the process or any of its children (from ``wait4``).

    Raises ``RuntimeError`` with the output tail if the script fails, times out or writes no JSON.
    """
    import signal
    import tempfile

    json_path = Path(json_path)
    if json_path.exists():
        json_path.unlink()
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with tempfile.TemporaryFile("w+") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=env,
                                start_new_session=True)
        timer = None
        if timeout:
            import threading

            def _kill():  # the whole process group: the script's own workers too
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

            timer = threading.Timer(timeout, _kill)
            timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            if timer:
                timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        out.seek(0)
        stdout = out.read()
    if proc.returncode != 0 or not json_path.exists():
        why = f"killed after {timeout:.0f}s timeout" if timeout and wall >= timeout else f"rc={proc.returncode}"
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({why}):\n{stdout[-4000:]}")
    if log:
        log(stdout.rstrip())
    return {"wall_s": wall, "command": " ".join(map(str, cmd)), "result": read_json(json_path), "stdout": stdout,
            "peak_rss_mib": usage.ru_maxrss / 1024.0}


def data_path(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """Path of one of the two shared datasets ($JAXSENTI_DATA_DIR, else the usual resolution)."""
    from jaxsenti.data import resolve_dataset

    fname = DATA_FILES[name][0]
    base = data_dir or os.environ.get("JAXSENTI_DATA_DIR")
    if base and (Path(base) / fname).is_file():
        return Path(base) / fname
    return resolve_dataset(fname)


# ----------------------------------------------------------------------------------------------
# Markdown
# ----------------------------------------------------------------------------------------------


def fmt_num(x, digits: int = 3) -> str:
    """Compact human formatting: None -> '–', large numbers with thousands separators."""
    if x is None:
        return "–"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if not math.isfinite(x):
            return "–"
        ax = abs(x)
        if ax >= 1000:
            return f"{x:,.0f}"
        if ax >= 100:
            return f"{x:.1f}"
        if ax == 0:
            return "0"
        return f"{x:.{digits}g}"
    return str(x)


def md_table(headers: Sequence[str], rows: Iterable[Sequence]) -> list[str]:
    """A GitHub markdown table; cells formatted with :func:`fmt_num`, pipes escaped."""

    def cell(v) -> str:
        return (v if isinstance(v, str) else fmt_num(v)).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for r in rows:
        r = list(r)
        if len(r) != len(headers):
            raise ValueError(f"row has {len(r)} cells, header has {len(headers)}: {r}")
        lines.append("| " + " | ".join(cell(v) for v in r) + " |")
    return lines


def base_argparser(description: str):
    import argparse

    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats")
    return ap
