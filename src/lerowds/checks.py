"""Argument checks shared by every public constructor: each names the argument and shows the bad value.

``check_int("batch_size", batch_size, 1)`` refuses ``True`` (a ``bool`` is an ``int`` to Python, never a
count to us), floats (even ``10.0``), strings and values below ``low``, and returns a plain ``int``. The
error type defaults to ``ConfigError``; a resume state passes ``error=ResumeMismatchError``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection
from typing import TypeVar

import numpy as np

from lerowds.errors import ConfigError

T = TypeVar("T")

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*$")
_SIZE_WANTED = "bytes (an integer) or a size like '512MB' or '64KiB'"
_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def is_int(value: object) -> bool:
    """``value`` is a Python or NumPy integer and not a ``bool``."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_int(
    name: str, value: object, low: int = 0, high: int | None = None, *, error: type[Exception] = ConfigError
) -> int:
    """``value`` as an ``int``, or ``error`` naming ``name`` unless it is an integer (not a bool) in [low, high]."""
    if not is_int(value) or value < low or (high is not None and value > high):  # type: ignore[operator]
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise error(f"{name} must be an integer {bound}, got {value!r}{_type_note(value)}")
    return int(value)  # type: ignore[call-overload]


def check_float(
    name: str,
    value: object,
    low: float | None = None,
    *,
    above: float | None = None,
    error: type[Exception] = ConfigError,
) -> float:
    """``value`` as a finite ``float`` (an int is fine, a bool or string is not), ``>= low`` and ``> above``."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    number = float(value) if ok else math.nan  # type: ignore[arg-type]
    if (
        not math.isfinite(number)
        or (low is not None and number < low)
        or (above is not None and number <= above)
    ):
        bounds = [f">= {low:g}"] if low is not None else []
        bounds += [f"> {above:g}"] if above is not None else []
        wanted = " and ".join(["a finite number", *bounds])
        raise error(f"{name} must be {wanted}, got {value!r}{_type_note(value)}")
    return number


def check_bool(name: str, value: object, *, error: type[Exception] = ConfigError) -> bool:
    """``value`` as a ``bool``; anything but ``True``/``False`` (or NumPy's) is refused, ``1`` and ``"no"`` too."""
    if not isinstance(value, (bool, np.bool_)):
        raise error(f"{name} must be True or False, got {value!r}{_type_note(value)}")
    return bool(value)


def check_choice(name: str, value: T, choices: Collection[T], *, error: type[Exception] = ConfigError) -> T:
    """``value`` unless it is not one of ``choices`` (the message lists them)."""
    if isinstance(value, (bool, np.bool_)) or value not in choices:
        names = [repr(c) for c in choices]
        listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
        raise error(f"{name} must be {listed}, got {value!r}")
    return value


def check_size(name: str, value: object, *, error: type[Exception] = ConfigError) -> int:
    """Bytes (> 0) in an integer or a string like ``512MB``, ``64KiB``, ``1.5GB`` (SI powers of 10, ``*iB`` of 2)."""
    if is_int(value):
        size = int(value)  # type: ignore[call-overload]
    elif isinstance(value, str):
        m = _SIZE_RE.match(value)
        if not m or m.group(2).lower() not in _UNITS:
            raise error(f"bad {name} {value!r}: expected {_SIZE_WANTED}")
        size = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    else:
        note = _type_note(value)
        raise error(f"bad {name} {value!r}{note}: expected {_SIZE_WANTED}")
    if size <= 0:
        raise error(f"{name} must be > 0 bytes, got {value!r}")
    return size


def _type_note(value: object) -> str:
    """`` (a bool)`` where the repr alone would not say why ``value`` is wrong."""
    if isinstance(value, (bool, np.bool_, float, np.floating, str)):
        return f" (a {type(value).__name__})"
    return ""
