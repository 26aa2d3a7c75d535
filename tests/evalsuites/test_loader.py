"""Tests for loading, validating, digesting and round-tripping suites, including a table of broken suites."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evalsuites import (
    Problem,
    Suite,
    SuiteError,
    builtin_suites_dir,
    discover_suites,
    load_suite,
    suite_digest,
    validate_suite,
)
from evalsuites.build import npz_bytes

SMOKE = builtin_suites_dir() / "smoke"
MODEL_FILE = "models/digits_logreg.onnx"
DATA_FILE = "data/digits_test.npz"


def test_smoke_suite_loads_with_expected_content() -> None:
    suite = load_suite(SMOKE, deep=True)
    assert (suite.id, suite.version, suite.title) == ("smoke", "1.0.0", "Smoke test")
    assert suite.device_classes == ("smart-terminal", "robot", "accelerator-board")
    model, data = suite.artifacts["digits-logreg"], suite.artifacts["digits-test"]
    assert (model.kind, model.classification, model.regions) == ("model", "public", ("*",))
    assert (data.kind, data.classification, data.regions) == ("dataset", "public", ("*",))
    assert model.path == SMOKE.resolve() / MODEL_FILE and model.path.stat().st_size == model.size
    assert data.source == "path:data/digits_test.npz" and re.fullmatch(r"[0-9a-f]{64}", data.sha256)
    (task,) = suite.tasks
    assert (task.model, task.dataset, task.scenario) == ("digits-logreg", "digits-test", "single-stream")
    assert task.settings == {"warmup_queries": 50, "min_query_count": 300, "min_duration_ms": 500}
    assert task.accuracy == {"metric": "top1", "output": "label"}
    assert task.execution_provider == "CPUExecutionProvider"
    acc, p99 = suite.criteria
    assert (acc.metric, acc.op, acc.threshold, acc.rule) == ("accuracy", ">=", 0.9, "ci95_lower")
    assert (p99.metric, p99.op, p99.threshold, p99.rule) == ("latency_ms.p99", "<=", 50.0, "point")
    assert suite.criteria_for(task.name) == suite.criteria and suite.task(task.name) is task
    assert validate_suite(SMOKE) == []
    assert load_suite(SMOKE / "suite.toml") == suite


def test_smoke_digest_is_stable_across_format_extensions() -> None:
    suite = load_suite(SMOKE)
    assert suite.digest == "sha256:fb1e23de8d15edc4b60a339f57ff80fb6b30b80df72a93f5ac4dc313b0a813a9"
    canonical = suite.canonical()
    assert "grading" not in canonical and all(set(t) == {"name", "model", "dataset", "scenario", "settings",
                                                          "accuracy", "execution_provider"}
                                              for t in canonical["tasks"])
    assert all("id" not in c for c in canonical["criteria"])


def test_digest_is_sha256_of_canonical_json() -> None:
    suite = load_suite(SMOKE)
    canonical = suite.canonical()
    blob = json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()
    assert suite.digest == "sha256:" + hashlib.sha256(blob).hexdigest() == suite_digest(suite)
    assert suite_digest(canonical) == suite.digest
    assert "digest" not in canonical and str(SMOKE) not in json.dumps(canonical)
    assert {a["sha256"] for a in canonical["artifacts"].values()} == {a.sha256 for a in suite.artifacts.values()}


def test_json_round_trip() -> None:
    suite = load_suite(SMOKE)
    again = Suite.from_json(suite.to_json(), root=suite.root)
    assert again == suite and hash(again) == hash(suite)
    detached = Suite.from_json(suite.to_json())
    assert detached.root is None and all(a.path is None for a in detached.artifacts.values())
    assert detached.digest == suite.digest and detached.canonical() == suite.canonical()
    assert json.loads(suite.to_json())["digest"] == suite.digest


def test_from_json_rejects_tampering_and_garbage() -> None:
    doc = json.loads(load_suite(SMOKE).to_json())
    doc["criteria"][0]["threshold"] = 0.5
    with pytest.raises(SuiteError) as err:
        Suite.from_json(json.dumps(doc))
    assert err.value.problems[0].field == "digest"
    doc = json.loads(load_suite(SMOKE).to_json())
    doc["tasks"][0]["scenario"] = "bogus"
    with pytest.raises(SuiteError) as err:
        Suite.from_json(json.dumps(doc))
    assert [p.field for p in err.value.problems] == ["tasks[0].scenario"]
    with pytest.raises(SuiteError):
        Suite.from_json("{not json")


@pytest.mark.parametrize(
    "old,new",
    [
        ('title = "Smoke test"', 'title = "Smoke test!"'),
        ("threshold = 0.90", "threshold = 0.91"),
        ("min_query_count = 300", "min_query_count = 301"),
        ('regions = ["*"]', 'regions = ["eu"]'),
        ('version = "1.0.0"', 'version = "1.0.1"'),
        ('"robot", ', ""),
    ],
)
def test_digest_changes_with_any_canonical_field(smoke_copy: Path, edit: Callable[..., str], old: str,
                                                 new: str) -> None:
    before = load_suite(smoke_copy).digest
    edit(smoke_copy, (old, new))
    assert load_suite(smoke_copy).digest != before


def test_digest_ignores_comments_layout_and_number_spelling(smoke_copy: Path, edit: Callable[..., str]) -> None:
    before = load_suite(smoke_copy).digest
    edit(smoke_copy, ("threshold = 50.0", "threshold = 50   # ms"), ("[suite]\n", "# a comment\n[suite]\n\n"),
         ('id = "smoke"\nversion = "1.0.0"', 'version = "1.0.0"\nid = "smoke"'))
    assert load_suite(smoke_copy).digest == before


def test_digest_changes_with_any_artifact_byte(smoke_copy: Path, repin: Callable[[Path, str, Path], None]) -> None:
    before = load_suite(smoke_copy)
    npz = smoke_copy / DATA_FILE
    with np.load(npz) as d:
        arrays = {"input": d["input"], "labels": d["labels"].copy()}
    arrays["labels"][0] = (arrays["labels"][0] + 1) % 10
    npz.write_bytes(npz_bytes(arrays))
    with pytest.raises(SuiteError, match="digits-test.sha256"):
        load_suite(smoke_copy)
    repin(smoke_copy, "digits-test", npz)
    after = load_suite(smoke_copy, deep=True)
    assert after.digest != before.digest
    assert after.artifacts["digits-logreg"] == before.artifacts["digits-logreg"]


def test_problem_and_error_rendering() -> None:
    p = Problem("tasks[0].scenario", 12, "unknown scenario 'foo'")
    assert str(p) == "suite.toml:12: tasks[0].scenario: unknown scenario 'foo'"
    assert str(Problem("syntax", None, "bad")) == "suite.toml: syntax: bad"
    err = SuiteError([p, Problem("a", 1, "x"), Problem("b", 2, "y")])
    assert str(err) == "suite.toml:12: tasks[0].scenario: unknown scenario 'foo' (and 2 more)"
    assert str(SuiteError([p], path=Path("/s/suite.toml"))) == "/s/suite.toml:12: tasks[0].scenario: unknown " \
                                                                "scenario 'foo'"


def test_missing_suite_file(tmp_path: Path) -> None:
    (problem,) = validate_suite(tmp_path)
    assert problem.field == "suite.toml" and "no suite.toml" in problem.message


def test_discover_sorts_and_names_the_bad_suite(tmp_path: Path, smoke_copy: Path, edit: Callable[..., str]) -> None:
    assert [s.id for s in discover_suites([builtin_suites_dir()])] == [
        "accelerator-throughput", "robot-control", "smoke", "terminal-genai", "terminal-vision"]
    root = smoke_copy.parent
    newer = root / "smoke-1.1"
    newer.mkdir()
    (newer / "suite.toml").write_text(
        (smoke_copy / "suite.toml").read_text().replace('version = "1.0.0"', 'version = "1.10.0"')
        .replace("path:", "package:evalsuites/smoke/"))
    (root / "not-a-suite").mkdir()
    found = discover_suites([root])
    assert [(s.id, s.version) for s in found] == [("smoke", "1.0.0"), ("smoke", "1.10.0")]
    dup = root / "zz-dup"
    dup.mkdir()
    (dup / "suite.toml").write_text((newer / "suite.toml").read_text())
    with pytest.raises(SuiteError, match="also defined in"):
        discover_suites([root])
    (dup / "suite.toml").write_text("[suite\n")
    with pytest.raises(SuiteError) as err:
        discover_suites([root])
    assert str(dup / "suite.toml") in str(err.value) and err.value.problems[0].field == "syntax"
    with pytest.raises(SuiteError, match="directory not found"):
        discover_suites([tmp_path / "absent"])


def test_loader_imports_no_build_or_inference_libraries() -> None:
    code = (
        "import sys, evalsuites; s = evalsuites.load_suite(evalsuites.builtin_suites_dir() / 'smoke');"
        "bad = [m for m in ('sklearn', 'skl2onnx', 'onnx', 'onnxruntime') if m in sys.modules];"
        "assert not bad, bad; print(s.digest)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == load_suite(SMOKE).digest


_TEXT = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40).filter(lambda t: t.strip())


def _toml_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(title=_TEXT, description=st.text(st.characters(exclude_categories=["Cs"]), max_size=60))
def test_any_title_round_trips(tmp_path: Path, title: str, description: str) -> None:
    text = (SMOKE / "suite.toml").read_text().replace("path:", "package:evalsuites/smoke/")
    text = text.replace('title = "Smoke test"', f"title = {_toml_string(title)}", 1)
    text = re.sub(r'(?m)^description = ".*"$', lambda _: f"description = {_toml_string(description)}", text,
                  count=1)
    (tmp_path / "suite.toml").write_text(text, encoding="utf-8")
    suite = load_suite(tmp_path)
    assert (suite.title, suite.description) == (title, description)
    again = Suite.from_json(suite.to_json())
    assert (again.title, again.description, again.digest) == (title, description, suite.digest)
