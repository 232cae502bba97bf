"""Checks every frozen config runs on itself (experiment, model, encoder, task): types, finite numbers, ranges.

A field's range is declared where the field is, ``hidden_dim: int = ranged(256, ge=1)``, and
:func:`check_fields` enforces it together with the type the annotation names, so a model config
validates its own sizes the same way an experiment config does, and ``--set model.hidden_dim=0`` or
a Hugging Face ``config.json`` with ``"hidden_size": "128"`` is one line naming the field. Kept free
of other project imports: model files import it.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any


class ConfigError(ValueError):
    """An experiment config that cannot be built or loaded; the message names the field or file.

    ``field`` is the offending field's dotted name when one field is at fault; :meth:`under` puts
    the name of the config it sits in in front (``hidden_dim`` → ``model.hidden_dim``).
    """

    def __init__(self, message: str, *, field: str | None = None, what: str | None = None):
        super().__init__(message)
        self.field, self.what = field, what

    @classmethod
    def of_field(cls, field: str, what: str) -> ConfigError:
        return cls(f"config field {field}: {what}", field=field, what=what)

    def under(self, prefix: str) -> ConfigError:
        if not (self.field and prefix) or self.field.startswith(prefix):  # the experiment configs' parts name themselves
            return self
        return ConfigError.of_field(prefix + self.field, self.what)


def require(ok: bool, field: str, what: str) -> None:
    if not ok:
        raise ConfigError.of_field(field, what)


def ranged(default, *, ge=None, gt=None, le=None, lt=None):
    """A dataclass field with a default and the bounds :func:`check_fields` enforces (None stays allowed)."""
    return dataclasses.field(default=default, metadata={"range": (ge, gt, le, lt)})


def _allowed(tp) -> tuple[type, ...] | None:
    """Runtime types a dataclass annotation admits (None: anything)."""
    if tp is Any or isinstance(tp, typing.TypeVar):
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        out = []
        for a in typing.get_args(tp):
            t = _allowed(a)
            if t is None:
                return None
            out += t
        return tuple(out)
    if tp is type(None):
        return (type(None),)
    if tp is float:
        return (float, int)
    return (origin or tp,) if isinstance(origin or tp, type) else None


def _range_text(ge, gt, le, lt) -> str:
    lo = f"[{ge}" if ge is not None else f"({gt}" if gt is not None else None
    hi = f"{le}]" if le is not None else f"{lt})" if lt is not None else None
    if lo and hi:
        return f"must be in {lo}, {hi}"
    if lo:
        return f"must be >= {ge}" if ge is not None else f"must be > {gt}"
    return f"must be <= {le}" if le is not None else f"must be < {lt}"


def check_fields(obj) -> None:
    """Each field of the dataclass ``obj`` has its annotated type (bools are not numbers), floats are finite,
    and declared ranges hold; the first violation raises :class:`ConfigError` naming the field."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        allowed = _allowed(hints[f.name])
        if allowed is not None and (not isinstance(v, allowed) or (isinstance(v, bool) and bool not in allowed)):
            names = " or ".join("None" if t is type(None) else t.__name__ for t in allowed)
            raise ConfigError.of_field(f.name, f"expected {names}, got {_short(v)} ({type(v).__name__})")
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError.of_field(f.name, f"must be a finite number, got {v}")
        bounds = f.metadata.get("range")
        if bounds is None or v is None or isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        ge, gt, le, lt = bounds
        if (ge is not None and v < ge) or (gt is not None and v <= gt) or (le is not None and v > le) or (lt is not None and v >= lt):
            raise ConfigError.of_field(f.name, f"{_range_text(*bounds)}, got {v}")


def _short(v, limit: int = 80) -> str:
    r = repr(v)
    return r if len(r) <= limit else f"{r[:limit]}… ({len(r)} characters)"


__all__ = ["ConfigError", "check_fields", "ranged", "require"]
