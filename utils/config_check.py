"""Checking a raw mapping against a config dataclass, field by field: types, bounds, choices.

A mistake is one ``ConfigError`` naming the source, the dotted key and what was expected.
Numbers must be finite, whether they come from a file or a ``--set`` override. A message
quotes a bad value by a short excerpt (``utils.yaml_file.excerpt``), never in full.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from typing import Any

from utils.errors import ConfigError
from utils.yaml_file import excerpt

_FLOAT_LITERAL = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _describe(hint: Any) -> str:
    names = {
        int: "an integer",
        float: "a number",
        bool: "true or false",
        str: "a string",
    }
    args = typing.get_args(hint)
    if args:
        return " or ".join("null" if a is type(None) else names[a] for a in args)
    return names[hint]


def _check_type(value: Any, hint: Any, where: str) -> Any:
    allowed = typing.get_args(hint) or (hint,)
    if value is None and type(None) in allowed:
        return None
    for kind in allowed:
        if kind is bool and isinstance(value, bool):
            return value
        if kind is str and isinstance(value, str):
            return value
        if kind in (int, float) and _is_number(value, kind):
            return _checked_number(value, kind, where)
    raise ConfigError(f"{where}: expected {_describe(hint)}, got {excerpt(value)}")


def _is_number(value: Any, kind: type) -> bool:
    """Whether ``value`` can be a ``kind``: an int for an int; an int, a float or a float
    literal such as 1e-4 for a float (YAML 1.1 reads an exponent without a dot as a string)."""
    if isinstance(value, bool):
        return False
    if kind is int:
        return isinstance(value, int)
    return isinstance(value, (int, float)) or (
        isinstance(value, str) and _FLOAT_LITERAL.fullmatch(value) is not None
    )


def _checked_number(value: Any, kind: type, where: str) -> int | float:
    """``value`` as a ``kind``, refused unless it is finite: ``1e999`` reads as infinity and a
    huge integer overflows a float, so neither may reach a schedule or a saved config. Integers
    must fit in 64 bits, as torch's do."""
    if kind is int:
        if not -(2**63) <= value < 2**63:
            raise ConfigError(
                f"{where}: expected an integer of at most 64 bits, got {excerpt(value)}"
            )
        return value
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ConfigError(f"{where}: expected a finite number, got {excerpt(value)}")
    return number


def _check_bounds(value: Any, meta: typing.Mapping[str, Any], where: str) -> None:
    if value is None:
        return
    if "choices" in meta and value not in meta["choices"]:
        raise ConfigError(f"{where}: expected one of {list(meta['choices'])}, got {excerpt(value)}")
    low, high = meta.get("low"), meta.get("high")
    low_open, high_open = meta.get("low_open", False), meta.get("high_open", False)
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        if low is not None and high is not None:
            span = f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        elif low is not None:
            span = f"{'>' if low_open else '>='} {low}"
        else:
            span = f"{'<' if high_open else '<='} {high}"
        raise ConfigError(f"{where}: expected a value {span}, got {excerpt(value)}")


def build_checked(cls: type, raw: Any, source: str, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys, bad types and values."""
    if not isinstance(raw, dict):
        where = prefix.rstrip(".") or "top level"
        raise ConfigError(f"{source}: {where}: expected a mapping of keys, got {excerpt(raw)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for name, value in raw.items():
        # keys read from YAML can be anything: quote the odd ones so a message stays one line
        key = prefix + (name if isinstance(name, str) and name.isidentifier() else excerpt(name))
        if name not in fields:
            raise ConfigError(f"{source}: {key}: unknown key; expected one of {sorted(fields)}")
        if dataclasses.is_dataclass(hints[name]):
            values[name] = build_checked(hints[name], value, source, key + ".")
        else:
            values[name] = _check_type(value, hints[name], f"{source}: {key}")
            _check_bounds(values[name], fields[name].metadata, f"{source}: {key}")
    return cls(**values)
