"""JAX's persistent compilation cache, on by default, and whether a compile was served from it.

Every ``train``, ``pretrain``, ``study``, ``lr-find`` and ``predict`` compiles the same few steps (one per length
bucket) again and again; with the cache under ``$JAXSENTI_CACHE/xla`` (``~/.cache/jaxsenti/xla``) a second
identical run loads them instead (``benchmarks/RESULTS.md`` measures the difference). ``JAXSENTI_NO_COMPILE_CACHE=1``
turns it off. Small programs are cached too (JAX's default skips compiles under a second, most of ours on a GPU).
:class:`CacheCounter` counts hits and misses from JAX's monitoring events, for the start-up and compile lines.
"""

from __future__ import annotations

import os
from pathlib import Path

HIT, MISS = "/jax/compilation_cache/cache_hits", "/jax/compilation_cache/cache_misses"


class CacheCounter:
    """Hits and misses of the persistent cache since this counter was registered (one per process)."""

    def __init__(self):
        self.hits = self.misses = 0

    def __call__(self, event: str, **kwargs) -> None:
        if event == HIT:
            self.hits += 1
        elif event == MISS:
            self.misses += 1

    def since(self, hits: int, misses: int) -> str:
        """What happened to the compiles after a (hits, misses) snapshot: 'hit', 'miss', 'off' or a mix."""
        h, m = self.hits - hits, self.misses - misses
        if not (h or m):
            return "not used"
        return "hit" if not m else "miss" if not h else f"{h} hit(s), {m} miss(es)"


_COUNTER: list[CacheCounter] = []  # the process's one counter, registered with JAX once


def counter() -> CacheCounter | None:
    return _COUNTER[0] if _COUNTER else None


def enable(folder: str | os.PathLike | None = None) -> Path | None:
    """Point JAX's persistent compilation cache at ``folder`` (default ``$JAXSENTI_CACHE/xla``) before anything
    compiles; None (and nothing set) when ``JAXSENTI_NO_COMPILE_CACHE`` is set. Idempotent."""
    if os.environ.get("JAXSENTI_NO_COMPILE_CACHE", "").strip() not in ("", "0"):
        return None
    import jax

    from jaxsenti.data.text import cache_dir

    path = Path(folder) if folder is not None else cache_dir() / "xla"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # a read-only cache folder costs recompiles, nothing else
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    if not _COUNTER:
        _COUNTER.append(CacheCounter())
        jax.monitoring.register_event_listener(_COUNTER[0])
    return path


__all__ = ["CacheCounter", "counter", "enable"]
