"""Scenario settings: the [tasks.settings] keys each load scenario accepts, their types, and their checks."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

# The settings table is the shared core's (pilotlab.tasks): one definition of every key, its kind and its default
# for the validator, labd and the agent.
from pilotlab.tasks import (  # noqa: E402
    COMMON_SETTINGS,
    GRAPH_OPTIMIZATIONS,
    KINDS,
    REQUIRED_SETTINGS,
    SCENARIO_SETTINGS,
    Setting,
    allowed_settings,
)

__all__ = ["COMMON_SETTINGS", "GRAPH_OPTIMIZATIONS", "REQUIRED_SETTINGS", "SCENARIO_SETTINGS", "Setting",
           "allowed_settings", "check_settings", "is_finite_number", "normalize_settings"]
_KINDS = KINDS


def _is_int(v: Any) -> bool:
    return type(v) is int


def is_finite_number(v: Any) -> bool:
    """An int or float (not a bool) that a float can hold: TOML and JSON integers may be far larger."""
    if type(v) not in (int, float):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def _value_problem(setting: Setting, v: Any) -> str | None:
    kind = setting.kind
    if kind == "count" and not (_is_int(v) and v >= 0):
        return f"must be {_KINDS[kind]}, got {v!r}"
    if kind == "positive_int" and not (_is_int(v) and v >= 1):
        return f"must be {_KINDS[kind]}, got {v!r}"
    if kind == "positive" and not (is_finite_number(v) and v > 0):
        return f"must be {_KINDS[kind]}, got {v!r}"
    if kind == "fraction" and not (is_finite_number(v) and 0 <= v <= 1):
        return f"must be {_KINDS[kind]}, got {v!r}"
    if kind == "bool" and type(v) is not bool:
        return f"must be {_KINDS[kind]}, got {v!r}"
    if kind == "choice" and v not in setting.choices:
        return f"must be {_KINDS[kind]} {', '.join(setting.choices)}; got {v!r}"
    if kind == "positive_int_list":
        ok = isinstance(v, list) and bool(v) and all(_is_int(x) and x >= 1 for x in v)
        if not ok or len(set(v)) != len(v):
            return f"must be {_KINDS[kind]}, got {v!r}"
    return None


def normalize_settings(scenario: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The settings with every "number > 0" value as a float, so `100` and `100.0` digest alike."""
    allowed = allowed_settings(scenario)
    return {k: float(v) if k in allowed and allowed[k].kind in ("positive", "fraction") and is_finite_number(v) else v
            for k, v in settings.items()}


def check_settings(scenario: str, settings: Mapping[str, Any]) -> list[tuple[str | None, str]]:
    """Problems with a task's settings as (key or None for the table, message); [] when they are fine.

    Values must be strings, finite numbers, booleans or arrays of those; for a known scenario every key must
    be one it accepts, with a value of the right kind, and its required keys must be present.
    """
    out: list[tuple[str | None, str]] = []
    allowed = allowed_settings(scenario)
    for key, val in settings.items():
        items = val if isinstance(val, list) else [val]
        if not all(isinstance(x, (str, int, float, bool)) for x in items):
            out.append((key, "must be a string, number, boolean or array of those"))
        elif any(isinstance(x, float) and not math.isfinite(x) for x in items):
            out.append((key, "must be a finite number"))
        elif key in COMMON_SETTINGS and (msg := _value_problem(COMMON_SETTINGS[key], val)) is not None:
            out.append((key, msg))
        elif not allowed:
            continue
        elif key not in allowed:
            out.append((key, f"unknown setting {key!r} for scenario {scenario!r}; "
                             f"it accepts {', '.join(sorted(allowed))}"))
        elif (msg := _value_problem(allowed[key], val)) is not None:
            out.append((key, msg))
    for key in REQUIRED_SETTINGS.get(scenario, ()):
        if key not in settings:
            kind = _KINDS[allowed[key].kind]
            out.append((None, f"{scenario} tasks need settings.{key} ({kind}): {allowed[key].meaning}"))
    return out
