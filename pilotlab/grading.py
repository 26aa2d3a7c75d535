"""Grading: a suite's criteria applied to computed metrics, each with its decision rule and statement."""

from __future__ import annotations

import operator
from typing import Any

_OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}


def metric_value(metrics: dict[str, Any], path: str, rule: str) -> float | None:
    """The figure a criterion decides on: a dotted path, or an accuracy interval bound."""
    if path == "accuracy":
        acc = metrics.get("accuracy")
        if not acc:
            return None
        # Conformity decisions use the exact (Clopper-Pearson) bound when present: it never overstates.
        bounds = acc.get("ci95_exact") or acc["ci95"]
        if rule == "ci95_lower":
            return float(bounds[0])
        if rule == "ci95_upper":
            return float(bounds[1])
        return float(acc["value"])
    if path.startswith("energy.") and not str((metrics.get("energy") or {}).get("source", "")).startswith("measured:"):
        return None  # estimates never count toward a criterion; an unmeasured figure fails it
    node: Any = metrics
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return None if node is None else float(node)


def evaluate(metrics: dict[str, Any], criteria: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """Verdict ("pass"/"fail") and one conformity statement per criterion; a missing figure fails, and so does
    a measurement that broke a validity rule (it is reported, never silently passed)."""
    results: list[dict[str, Any]] = []
    validity = metrics.get("validity")
    if validity is not None and not validity.get("valid", True):
        results.append({"metric": "validity", "op": "==", "threshold": "valid", "rule": "loadgen-style rules",
                        "value": "; ".join(validity.get("reasons", [])), "verdict": "fail",
                        "description": "The measurement met its minimum query count, duration and audits",
                        "id": "validity", "required": True})
    for c in criteria:
        value = metric_value(metrics, c["metric"], c.get("rule", "point"))
        ok = value is not None and _OPS[c["op"]](value, float(c["threshold"]))
        results.append({
            "metric": c["metric"], "op": c["op"], "threshold": c["threshold"], "rule": c.get("rule", "point"),
            "value": value, "verdict": "pass" if ok else "fail", "description": c.get("description", ""),
            "id": c.get("id", ""), "required": c.get("required", True),
        })
    verdict = "pass" if all(r["verdict"] == "pass" for r in results if r["required"]) else "fail"
    return verdict, results
