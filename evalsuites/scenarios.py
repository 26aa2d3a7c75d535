"""Scenario settings: the [tasks.settings] keys each load scenario accepts, their types, and their checks."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

GRAPH_OPTIMIZATIONS = ("disabled", "basic", "extended", "all")

# Value kinds: what a setting's value must be, and how a problem message says so.
_KINDS = {
    "count": "a non-negative integer",
    "positive_int": "an integer >= 1",
    "positive": "a number > 0",
    "choice": "one of",
    "positive_int_list": "a non-empty array of distinct integers >= 1",
}


@dataclass(frozen=True)
class Setting:
    """One accepted settings key: its value kind and what the agent does with it."""

    kind: str
    meaning: str
    choices: tuple[str, ...] = ()


COMMON_SETTINGS: dict[str, Setting] = {
    "warmup_queries": Setting("count", "untimed queries run before measuring"),
    "min_query_count": Setting("count", "measure at least this many queries (per batch size, for offline)"),
    "min_duration_ms": Setting("count", "and for at least this long (per batch size, for offline)"),
    "intra_op_threads": Setting("count", "onnxruntime intra-op threads; 0 = onnxruntime's default"),
    "inter_op_threads": Setting("count", "onnxruntime inter-op threads; 0 = onnxruntime's default"),
    "graph_optimization": Setting("choice", "onnxruntime graph optimization level (default all)", GRAPH_OPTIMIZATIONS),
    "repeats": Setting("positive_int", "times the whole measurement is repeated (default 1)"),
}

SCENARIO_SETTINGS: dict[str, dict[str, Setting]] = {
    "single-stream": {},
    "offline": {"batch_sizes": Setting("positive_int_list", "batch sizes swept in order (default [1])")},
    "multi-stream": {"samples_per_query": Setting("positive_int", "samples sent together in one query")},
    "server": {
        "target_qps": Setting("positive", "mean rate of Poisson-distributed query arrivals, per second"),
        "latency_bound_ms": Setting("positive", "the latency a query must meet; server.p99_within_bound uses it"),
        "seed": Setting("count", "seed of the arrival schedule, so runs are repeatable (default 0)"),
    },
    "periodic": {
        "rate_hz": Setting("positive", "release rate of the periodic loop"),
        "deadline_ms": Setting("positive", "completion deadline after each release (default one period)"),
    },
}

REQUIRED_SETTINGS: dict[str, tuple[str, ...]] = {"server": ("target_qps",), "periodic": ("rate_hz",)}


def allowed_settings(scenario: str) -> dict[str, Setting]:
    """Every settings key a task of this scenario accepts (the common ones included); {} for unknown scenarios."""
    if scenario not in SCENARIO_SETTINGS:
        return {}
    return {**COMMON_SETTINGS, **SCENARIO_SETTINGS[scenario]}


def _is_int(v: Any) -> bool:
    return type(v) is int


def _is_number(v: Any) -> bool:
    return type(v) in (int, float) and math.isfinite(v)


def _value_problem(setting: Setting, v: Any) -> str | None:
    kind = setting.kind
    if kind == "count" and not (_is_int(v) and v >= 0):
        return f"must be {_KINDS[kind]}, got {v!r}"
    if kind == "positive_int" and not (_is_int(v) and v >= 1):
        return f"must be {_KINDS[kind]}, got {v!r}"
    if kind == "positive" and not (_is_number(v) and v > 0):
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
    return {k: float(v) if k in allowed and allowed[k].kind == "positive" and _is_number(v) else v
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
