"""Grading: metric lookup by dotted path and accuracy rule, and the verdict over all criteria."""

from __future__ import annotations

from typing import Any

import pytest

from pilotlab.grading import evaluate, metric_value

METRICS: dict[str, Any] = {
    "latency_ms": {"p50": 2.0, "p90": 3.5, "p99": 9.0, "n": 300},
    "throughput_per_s": 400.0,
    "accuracy": {"name": "top1", "value": 0.95, "ci95": [0.92, 0.97], "n": 360, "k": 342},
    "energy": {"joules_per_inference": None, "source": "unavailable"},
}


@pytest.mark.parametrize(("path", "rule", "expected"), [
    ("latency_ms.p90", "point", 3.5),
    ("latency_ms.n", "point", 300.0),
    ("throughput_per_s", "point", 400.0),
    ("accuracy", "point", 0.95),
    ("accuracy", "ci95_lower", 0.92),
    ("accuracy", "ci95_upper", 0.97),
    ("latency_ms.p999", "point", None),
    ("latency_ms.p90.x", "point", None),
    ("nothing", "point", None),
    ("nothing.at.all", "point", None),
    ("energy.joules_per_inference", "point", None),
])
def test_metric_value(path: str, rule: str, expected: float | None) -> None:
    v = metric_value(METRICS, path, rule)
    assert v == expected
    if v is not None:
        assert isinstance(v, float)


@pytest.mark.parametrize("rule", ["point", "ci95_lower", "ci95_upper"])
def test_metric_value_missing_accuracy(rule: str) -> None:
    assert metric_value({"latency_ms": {"p50": 1.0}}, "accuracy", rule) is None
    assert metric_value({"accuracy": {}}, "accuracy", rule) is None


def crit(metric: str, op: str, threshold: float, rule: str | None = None) -> dict[str, Any]:
    c: dict[str, Any] = {"metric": metric, "op": op, "threshold": threshold, "description": f"{metric} {op}"}
    if rule is not None:
        c["rule"] = rule
    return c


@pytest.mark.parametrize(("op", "threshold", "verdict"), [
    ("<=", 3.5, "pass"), ("<=", 3.4, "fail"),
    ("<", 3.6, "pass"), ("<", 3.5, "fail"),
    (">=", 3.5, "pass"), (">=", 3.6, "fail"),
    (">", 3.4, "pass"), (">", 3.5, "fail"),
])
def test_each_operator_at_its_boundary(op: str, threshold: float, verdict: str) -> None:
    overall, results = evaluate(METRICS, [crit("latency_ms.p90", op, threshold)])
    assert overall == verdict
    assert results[0]["verdict"] == verdict
    assert results[0]["value"] == 3.5


def test_accuracy_rules_decide_differently() -> None:
    # point 0.95 >= 0.93 passes, but the lower bound 0.92 does not
    assert evaluate(METRICS, [crit("accuracy", ">=", 0.93)])[0] == "pass"
    assert evaluate(METRICS, [crit("accuracy", ">=", 0.93, "ci95_lower")])[0] == "fail"
    assert evaluate(METRICS, [crit("accuracy", ">=", 0.96, "ci95_upper")])[0] == "pass"
    assert evaluate(METRICS, [crit("accuracy", ">=", 0.96, "point")])[0] == "fail"


def test_verdict_is_pass_only_when_all_pass() -> None:
    good = [crit("latency_ms.p99", "<=", 10), crit("accuracy", ">=", 0.9, "ci95_lower"),
            crit("throughput_per_s", ">", 100)]
    verdict, results = evaluate(METRICS, good)
    assert verdict == "pass"
    assert [r["verdict"] for r in results] == ["pass"] * 3
    verdict, results = evaluate(METRICS, [*good, crit("latency_ms.p50", "<", 1)])
    assert verdict == "fail"
    assert [r["verdict"] for r in results] == ["pass", "pass", "pass", "fail"]


def test_missing_figure_fails_with_none_value() -> None:
    verdict, results = evaluate(METRICS, [crit("energy.joules_per_inference", "<=", 1e9)])
    assert verdict == "fail"
    assert results[0]["value"] is None and results[0]["verdict"] == "fail"
    verdict, _ = evaluate({}, [crit("accuracy", ">=", 0.0)])
    assert verdict == "fail"


def test_statement_fields() -> None:
    _, results = evaluate(METRICS, [crit("accuracy", ">=", 0.9, "ci95_lower"),
                                    {"metric": "latency_ms.p50", "op": "<=", "threshold": 5}])
    assert results[0] == {"metric": "accuracy", "op": ">=", "threshold": 0.9, "rule": "ci95_lower",
                          "value": 0.92, "verdict": "pass", "description": "accuracy >=", "id": "",
                          "required": True}
    assert results[1]["rule"] == "point" and results[1]["description"] == ""


def test_no_criteria_passes() -> None:
    assert evaluate(METRICS, []) == ("pass", [])


def test_only_required_criteria_decide_the_verdict() -> None:
    grade_only = {"metric": "latency_ms.p50", "op": "<=", "threshold": 0.0, "id": "adv", "required": False}
    verdict, results = evaluate(METRICS, [crit("accuracy", ">=", 0.5), grade_only])
    assert verdict == "pass" and results[1]["verdict"] == "fail" and results[1]["required"] is False
    verdict, _ = evaluate(METRICS, [crit("accuracy", ">=", 0.5), {**grade_only, "required": True}])
    assert verdict == "fail"


def test_an_invalid_measurement_never_passes() -> None:
    invalid = {**METRICS, "validity": {"valid": False, "reasons": ["settings: the device ran repeats=1 where the "
                                                                   "lab assigned 3"]}}
    verdict, results = evaluate(invalid, [crit("latency_ms.p99", "<=", 10)])
    assert verdict == "fail"
    assert results[0]["metric"] == "validity" and results[0]["required"] and results[0]["verdict"] == "fail"
    assert "repeats=1" in results[0]["value"] and results[1]["verdict"] == "pass"


def test_a_criterion_can_grade_the_repeats_spread() -> None:
    metrics = {**METRICS, "repeats": {"k": 3, "spread_p50": 0.23, "max_spread": 0.10, "stable": False}}
    assert metric_value(metrics, "repeats.spread_p50", "point") == 0.23
    assert evaluate(metrics, [crit("repeats.spread_p50", "<=", 0.10)])[0] == "fail"
    assert evaluate(metrics, [crit("repeats.spread_p50", "<=", 0.25)])[0] == "pass"
    assert evaluate(METRICS, [crit("repeats.spread_p50", "<=", 0.25)])[0] == "fail"  # one repeat: no figure
