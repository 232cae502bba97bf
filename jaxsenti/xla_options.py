"""XLA CPU options jaxsenti adopts by default, where ``benchmarks/xla_cpu_flags.py`` measured them to win.

``apply_defaults(os.environ)`` must run before jax is imported (XLA reads ``XLA_FLAGS`` once). It appends each
default flag to ``XLA_FLAGS`` unless the user set that flag already (theirs wins, whatever its value);
``JAXSENTI_XLA_DEFAULTS=0`` turns the defaults off. Only for CPU runs: GPU flags are left alone.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

# flag -> value. Empty until measured on a quiet machine (benchmarks/RESULTS.md, "XLA CPU options"): an option
# goes here only when it speeds up our steps and keeps the losses within the parity tolerance.
DEFAULT_CPU_FLAGS: dict[str, str] = {}
DISABLE = "JAXSENTI_XLA_DEFAULTS"


def _names(flags: str) -> set[str]:
    return {f.split("=", 1)[0] for f in flags.split() if f.startswith("--")}


def apply_defaults(environ: MutableMapping[str, str] = os.environ, defaults: dict[str, str] | None = None) -> list[str]:
    """Append the defaults the user has not set to ``environ["XLA_FLAGS"]``; returns the flags added."""
    defaults = DEFAULT_CPU_FLAGS if defaults is None else defaults
    if environ.get(DISABLE, "1").strip().lower() in ("0", "false", "no", "off"):
        return []
    if environ.get("JAX_PLATFORMS", "").split(",")[0] not in ("", "cpu"):
        return []  # a GPU/TPU run: these are CPU options
    current = environ.get("XLA_FLAGS", "")
    added = [f"{k}={v}" for k, v in defaults.items() if k not in _names(current)]
    if added:
        environ["XLA_FLAGS"] = " ".join(filter(None, [current, *added]))
    return added


def applied_flags(environ: MutableMapping[str, str] = os.environ, defaults: dict[str, str] | None = None) -> dict:
    """For a run's machine info: the XLA_FLAGS in force and which of them are jaxsenti's defaults."""
    defaults = DEFAULT_CPU_FLAGS if defaults is None else defaults
    current = environ.get("XLA_FLAGS", "")
    ours = [f for f in current.split() if f in {f"{k}={v}" for k, v in defaults.items()}]
    return {"xla_flags": current, "jaxsenti_defaults": ours,
            "defaults_disabled": environ.get(DISABLE, "1").strip().lower() in ("0", "false", "no", "off")}
