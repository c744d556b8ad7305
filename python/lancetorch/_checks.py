"""Checks of the public API's arguments: a value of the wrong type is refused, never
converted. ``int("64")`` and ``int(2.5)`` would run a loader with 64 or 2 rows a batch when
the user wrote something else; these checks raise TypeError naming the parameter, the value
and its type instead. A bool is not a size or a count (``True`` is not ``1`` row), and a
size is not a flag (``shuffle=0`` is refused: write ``False``)."""

from __future__ import annotations

import datetime
import operator
from typing import Any

import numpy as np


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _refuse(name: str, value: Any, wanted: str) -> TypeError:
    return TypeError(f"{name}={_shown(value)} is {type(value).__name__}; {name} takes {wanted}")


def integer(name: str, value: Any, *, low: int | None = None, high: int | None = None) -> int:
    """``value`` as a Python int: an ``int`` or a NumPy integer (anything with
    ``__index__``), not a bool, a float or a string; ``low``/``high`` bound it (inclusive),
    else ValueError."""
    if isinstance(value, (bool, np.bool_)) or not hasattr(type(value), "__index__"):
        raise _refuse(name, value, "an integer")
    number = operator.index(value)
    if (low is not None and number < low) or (high is not None and number > high):
        if high is None:
            bounds = f"{low} or more"
        elif low is None:
            bounds = f"{high} or less"
        else:
            bounds = f"{low} to {high}"
        raise ValueError(f"{name}={number} must be {bounds}")
    return number


def optional_integer(
    name: str, value: Any, *, low: int | None = None, high: int | None = None
) -> int | None:
    """``None``, or ``value`` checked as :func:`integer` checks it."""
    return None if value is None else integer(name, value, low=low, high=high)


def flag(name: str, value: Any) -> bool:
    """``value`` as a bool: ``True`` or ``False`` (a NumPy bool too), nothing else."""
    if not isinstance(value, (bool, np.bool_)):
        raise _refuse(name, value, "True or False")
    return bool(value)


def number(name: str, value: Any) -> float:
    """``value`` as a float: an int or a float (NumPy's too), not a bool or a string."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise _refuse(name, value, "a number")
    return float(value)


def text(name: str, value: Any) -> str:
    """``value``, a str."""
    if not isinstance(value, str):
        raise _refuse(name, value, "a string")
    return value


def choice(name: str, value: Any, options: tuple[str, ...]) -> str:
    """``value``, one of ``options``: TypeError for a value that is not a string, ValueError
    for a string that is not one of them."""
    text(name, value)
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}, got {value!r}")
    return value


def names(name: str, value: Any) -> list[str]:
    """``value`` as a list of column names: a list or tuple of strings (a single string is
    refused: ``"ab"`` is not ``["a", "b"]``)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise _refuse(name, value, "a list of column names")
    for item in value:
        if not isinstance(item, str):
            raise TypeError(
                f"{name} holds {_shown(item)}, a {type(item).__name__}; column names are strings"
            )
    return list(value)


# The types a tensor is built as (torch's names; the Rust core's list).
DTYPES = (
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
)


def dtype_name(name: str, value: Any) -> str | None:
    """``None``, or the torch name of a tensor type given as a ``torch.dtype``, a NumPy dtype
    or a name (``"float32"``, ``"torch.float32"``): TypeError for another kind of value,
    ValueError for a type a tensor is not built as."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value
    elif type(value).__module__ == "torch" and type(value).__name__ == "dtype":
        text = str(value)
    elif isinstance(value, np.dtype):
        text = value.name
    else:
        raise _refuse(name, value, "a torch.dtype or its name, such as 'float32'")
    text = text.removeprefix("torch.")
    if text not in DTYPES:
        raise ValueError(
            f"{name}={value!r} is not a type a tensor is built as; use one of {DTYPES}"
        )
    return text


def interval(interval: Any) -> float | None:
    """``read_consistency_interval`` in seconds, checked: a ``timedelta`` of 0 or more (or
    ``None``)."""
    if interval is None:
        return None
    if not isinstance(interval, datetime.timedelta):
        raise TypeError(
            f"read_consistency_interval must be a datetime.timedelta (or None), got "
            f"{interval!r}: for example timedelta(seconds=5), or timedelta(0) to check for "
            "a newer version on every read"
        )
    seconds = interval.total_seconds()
    if seconds < 0:
        raise ValueError(
            f"read_consistency_interval={interval!r} must not be negative: timedelta(0) checks "
            "on every read, None never"
        )
    return seconds
