"""What machine a result came from: CPU, cores, memory, load, library versions, accelerators."""

from __future__ import annotations

import datetime as dt
import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version

PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "torch", "numpy", "transformers", "tokenizers", "jieba",
            "scikit-learn")


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


def package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def machine_info(*, devices: bool | None = None) -> dict:
    """CPU model, cores, RAM, load average, versions and the date; ``devices`` adds jax's device list.

    ``devices=None`` lists them only when jax is already imported, so callers that want to stay
    light (the benchmark driver) do not pay for importing it.
    """
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    info = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "ram_gib": total_ram_gib(),
        "load_average": load,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {name: package_version(name) for name in PACKAGES},
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }
    if devices or (devices is None and "jax" in sys.modules):
        import jax  # heavy: only when asked for, or already loaded

        info["devices"] = [f"{d.platform}: {d.device_kind}" for d in jax.devices()]
    return info
