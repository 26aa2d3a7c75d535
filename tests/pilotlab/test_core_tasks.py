"""The typed task contract: requested settings per scenario, one effective() step, TaskSpec round trips."""

from __future__ import annotations

import json

import pytest

from pilotlab.tasks import (
    COMMON_SETTINGS,
    SCENARIOS,
    ArtifactRef,
    Criterion,
    OfflineSettings,
    PeriodicSettings,
    TaskSpec,
    allowed_settings,
    effective,
    requested,
)


def test_requested_settings_are_typed_per_scenario_and_keep_only_what_was_asked() -> None:
    s = requested("offline", {"batch_sizes": [16, 1, 4], "min_query_count": 10})
    assert isinstance(s, OfflineSettings) and s.scenario == "offline"
    assert s.batch_sizes == (16, 1, 4) and s.to_dict() == {"batch_sizes": [16, 1, 4], "min_query_count": 10}
    assert isinstance(requested("periodic", {"rate_hz": 100}), PeriodicSettings)
    assert requested("periodic", {"rate_hz": 100}).rate_hz == 100.0
    with pytest.raises(ValueError, match="unknown setting 'batch_sizes' for scenario 'single-stream'"):
        requested("single-stream", {"batch_sizes": [1]})
    with pytest.raises(ValueError, match="unknown scenario"):
        requested("bogus", {})


def test_effective_fills_every_default_once() -> None:
    for scenario in SCENARIOS:
        req = {"server": {"target_qps": 10}, "periodic": {"rate_hz": 200}}.get(scenario, {})
        e = effective(requested(scenario, req))
        for key, setting in allowed_settings(scenario).items():
            if setting.default is not None:
                want = setting.default
                assert getattr(e, key) == want, (scenario, key)
    assert effective(requested("periodic", {"rate_hz": 200})).deadline_ms == 5.0  # one period
    assert effective(requested("periodic", {"rate_hz": 200, "deadline_ms": 2})).deadline_ms == 2.0
    e = effective(requested("offline", {"batch_sizes": [8, 1, 8], "repeats": 3, "min_query_count": 2_000_000}))
    assert e.batch_sizes == (1, 8) and e.repeats == 3 and e.max_query_count == 2_000_000
    assert COMMON_SETTINGS["warmup_queries"].default == e.warmup_queries == 50


def test_effective_settings_are_json() -> None:
    e = effective(requested("server", {"target_qps": 250, "latency_bound_ms": 15, "seed": 3}))
    doc = json.loads(json.dumps(e.to_dict()))
    assert doc["target_qps"] == 250.0 and doc["seed"] == 3 and doc["batch_sizes"] == [1]


def test_task_spec_round_trips_and_names_its_data() -> None:
    model = ArtifactRef("m", "model", "ab" * 32, 10)
    data = ArtifactRef("d", "dataset", "cd" * 32, 20, "sensitive", ("eu-west",))
    spec = TaskSpec(name="t", scenario="single-stream", model=model, dataset=data,
                    settings=requested("single-stream", {"warmup_queries": 5}), accuracy={"metric": "top1"},
                    conformance={"max_abs_err": 0.1},
                    criteria=(Criterion("t", "accuracy", ">=", 0.9, rule="ci95_lower", id="c1"),))
    assert TaskSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
    assert spec.data_refs() == [("dataset", data)]
