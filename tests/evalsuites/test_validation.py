"""The table of broken suites: each mistake a standards author can make yields its own Problem, field and line."""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from evalsuites import SuiteError, builtin_suites_dir, load_suite, validate_suite
from evalsuites.build import npz_bytes

SMOKE = builtin_suites_dir() / "smoke"
PINS = tomllib.loads((SMOKE / "suite.toml").read_text(encoding="utf-8"))["artifacts"]
MODEL_SIZE = f"size = {PINS['digits-logreg']['size']}"
MODEL_FILE = "models/digits_logreg.onnx"
DATA_FILE = "data/digits_test.npz"
TASK = 'name = "digits-single-stream"'
ACCURACY_BLOCK = '[tasks.accuracy]\nmetric = "top1"\noutput = "label"\n'


def line_of(text: str, snippet: str, occurrence: int = 1) -> int:
    """1-based line number of the n-th line containing snippet."""
    hits = [i for i, line in enumerate(text.splitlines(), start=1) if snippet in line]
    assert len(hits) >= occurrence, f"{snippet!r} occurs {len(hits)} times"
    return hits[occurrence - 1]


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


# (id, text edits, file action, every expected problem field, first field's line snippet, message fragment)
BROKEN = [
    ("syntax", [('title = "Smoke test"', 'title = "Smoke test')], None, ["syntax"], 'title = "Smoke', "syntax"),
    ("no-id", [('id = "smoke"\n', "")], None, ["suite.id"], "[suite]", "missing required"),
    ("semver", [('version = "1.0.0"', 'version = "1.0"')], None, ["suite.version"], "version =", "MAJOR.MINOR"),
    ("no-title", [('title = "Smoke test"\n', "")], None, ["suite.title"], "[suite]", "missing"),
    ("no-classes", [("device_classes = [", "#")], None, ["suite.device_classes"], "[suite]", "missing"),
    ("device-class", [('"robot"', '"robo"')], None, ["suite.device_classes"], "device_classes", "'robo'"),
    ("scenario", [('scenario = "single-stream"', 'scenario = "foo"')], None, ["tasks[0].scenario"],
     'scenario = "foo"', "unknown scenario 'foo'; use one of single-stream, offline"),
    ("no-scenario", [('scenario = "single-stream"\n', "")], None, ["tasks[0].scenario"], "[[tasks]]", "missing"),
    ("no-task-name", [(TASK + "\n", "")], None, ["tasks[0].name", "criteria[0].task", "criteria[1].task"],
     "[[tasks]]", "missing"),
    ("no-task-model", [('model = "digits-logreg"\n', "")], None, ["tasks[0].model"], "[[tasks]]", "missing"),
    ("unknown-model", [('model = "digits-logreg"', 'model = "nope"')], None, ["tasks[0].model"], 'model = "nope"',
     "unknown artifact 'nope'"),
    ("model-is-dataset", [('model = "digits-logreg"', 'model = "digits-test"')], None, ["tasks[0].model"],
     'model = "digits-test"', "is a dataset, not a model"),
    ("dataset-is-model", [('dataset = "digits-test"', 'dataset = "digits-logreg"')], None, ["tasks[0].dataset"],
     'dataset = "digits-logreg"', "is a model, not a dataset"),
    ("accuracy-no-dataset", [('dataset = "digits-test"\n', "")], None, ["tasks[0].accuracy"], "[tasks.accuracy]",
     "needs a labelled dataset"),
    ("accuracy-metric", [('metric = "top1"', 'metric = "top5"')], None, ["tasks[0].accuracy.metric"],
     'metric = "top5"', "unknown accuracy metric"),
    ("bad-setting", [("warmup_queries = 50", "warmup_queries = -1")], None, ["tasks[0].settings.warmup_queries"],
     "warmup_queries", "non-negative integer"),
    ("duplicate-task", [(ACCURACY_BLOCK, ACCURACY_BLOCK + "\n[[tasks]]\n" + TASK + '\nmodel = "digits-logreg"\n'
                         'scenario = "offline"\n')], None, ["tasks[1].name"], (TASK, 2), "duplicate task name"),
    ("criterion-task", [('task = "digits-single-stream"', 'task = "other"')], None,
     ["criteria[0].task", "criteria[1].task"],
     'task = "other"', "unknown task 'other'"),
    ("criterion-metric", [('metric = "latency_ms.p99"', 'metric = "latency_ms.p95"')], None, ["criteria[1].metric"],
     "latency_ms.p95", "unknown metric"),
    ("criterion-op", [('op = "<="', 'op = "=<"')], None, ["criteria[1].op"], 'op = "=<"', "unknown op"),
    ("criterion-rule", [('rule = "ci95_lower"', 'rule = "ci99"')], None, ["criteria[0].rule"], "ci99", "unknown rule"),
    ("ci-on-latency", [('rule = "point"', 'rule = "ci95_upper"')], None, ["criteria[1].rule"], "ci95_upper",
     "accuracy only"),
    ("threshold-type", [("threshold = 50.0", 'threshold = "fast"')], None, ["criteria[1].threshold"], '"fast"',
     "finite number"),
    ("accuracy-above-one", [("threshold = 0.90", "threshold = 90")], None, ["criteria[0].threshold"], "= 90",
     "outside 0..1"),
    ("accuracy-not-measured", [(ACCURACY_BLOCK, "")], None, ["criteria[0].metric"], 'metric = "accuracy"',
     "measures no accuracy"),
    ("criterion-typo", [("[[criteria]]", "[[criterion]]")], None, ["criterion", "criteria"], "[[criterion]]",
     "unknown key 'criterion'"),
    ("no-kind", [('kind = "model"\n', "")], None, ["artifacts.digits-logreg.kind"], "[artifacts.digits-logreg]",
     "missing"),
    ("kind", [('kind = "model"', 'kind = "weights"')], None, ["artifacts.digits-logreg.kind"], '"weights"',
     "unknown artifact kind"),
    ("no-sha", [(f'sha256 = "{PINS["digits-test"]["sha256"]}"\n', "")], None, ["artifacts.digits-test.sha256"],
     "[artifacts.digits-test]", "missing"),
    ("sha-format", [(PINS["digits-test"]["sha256"], "ABC")], None, ["artifacts.digits-test.sha256"], '"ABC"',
     "64 lowercase hex"),
    ("no-size", [(MODEL_SIZE + "\n", "")], None, ["artifacts.digits-logreg.size"], "[artifacts.digits-logreg]",
     "missing"),
    ("no-source", [(f'source = "path:{DATA_FILE}"\n', "")], None, ["artifacts.digits-test.source"],
     "[artifacts.digits-test]", "missing"),
    ("classification", [('classification = "public"', 'classification = "secret"')], None,
     ["artifacts.digits-test.classification"], '"secret"', "unknown classification 'secret'"),
    ("model-classification", [('kind = "model"', 'kind = "model"\nclassification = "sensitive"')], None,
     ["artifacts.digits-logreg.classification"], '"sensitive"', "model classification"),
    ("regions-required", [('classification = "public"\nregions = ["*"]', 'classification = "personal"')], None,
     ["artifacts.digits-test.regions"], "[artifacts.digits-test]", "must list allowed regions"),
    ("regions-star", [('regions = ["*"]', 'regions = ["*", "eu"]')], None, ["artifacts.digits-test.regions"],
     "regions =", "stand alone"),
    ("regions-typo", [('regions = ["*"]', 'regoins = ["*"]')], None, ["artifacts.digits-test.regoins"], "regoins",
     "unknown key 'regoins'"),
    ("path-escape", [(f"path:{MODEL_FILE}", "path:../elsewhere.onnx")], None, ["artifacts.digits-logreg.source"],
     "elsewhere", "stay inside"),
    ("scheme", [(f"path:{MODEL_FILE}", "s3://bucket/x.onnx")], None, ["artifacts.digits-logreg.source"], "s3://",
     "unknown source"),
    ("http", [(f"path:{MODEL_FILE}", "url:http://example.org/x.onnx")], None, ["artifacts.digits-logreg.source"],
     "url:http", "https"),
    ("package-missing", [(f"path:{MODEL_FILE}", "package:no_such_pkg_pilotlab/x.onnx")], None,
     ["artifacts.digits-logreg.source"], "no_such_pkg", "not installed; install it"),
    ("file-missing", [], lambda d: (d / MODEL_FILE).unlink(), ["artifacts.digits-logreg.source"],
     f"path:{MODEL_FILE}", "file not found"),
    ("size-mismatch", [(MODEL_SIZE, MODEL_SIZE + "1")], None, ["artifacts.digits-logreg.size"], MODEL_SIZE + "1",
     "suite pins"),
    ("sha-mismatch", [], lambda d: _flip_byte(d / DATA_FILE), ["artifacts.digits-test.sha256"],
     PINS["digits-test"]["sha256"], "rebuild with python -m evalsuites.build or fix the pin"),
]


@pytest.mark.parametrize("case", BROKEN, ids=[c[0] for c in BROKEN])
def test_broken_suite_reports_field_and_line(case: tuple, smoke_copy: Path, edit: Callable[..., str]) -> None:
    _, edits, action, fields, snippet, fragment = case
    text = edit(smoke_copy, *edits) if edits else (smoke_copy / "suite.toml").read_text()
    if action is not None:
        action(smoke_copy)
    problems = validate_suite(smoke_copy, deep=False)
    assert sorted(p.field for p in problems) == sorted(fields), [str(p) for p in problems]
    first = next(p for p in problems if p.field == fields[0])
    assert first.line == line_of(text, *(snippet if isinstance(snippet, tuple) else (snippet,)))
    assert fragment in first.message
    with pytest.raises(SuiteError) as err:
        load_suite(smoke_copy)
    assert err.value.problems == problems
    assert str(smoke_copy / "suite.toml") in str(err.value)


def test_sha_mismatch_message_names_both_digests(smoke_copy: Path) -> None:
    _flip_byte(smoke_copy / DATA_FILE)
    (problem,) = validate_suite(smoke_copy, deep=False)
    actual = hashlib.sha256((smoke_copy / DATA_FILE).read_bytes()).hexdigest()
    pinned = PINS["digits-test"]["sha256"]
    assert problem.message == (f"file digest is {actual}, suite pins {pinned}; "
                               "rebuild with python -m evalsuites.build or fix the pin")


def test_package_source_resolves_to_the_installed_package(smoke_copy: Path, edit: Callable[..., str]) -> None:
    edit(smoke_copy, (f"path:{MODEL_FILE}", f"package:evalsuites/smoke/{MODEL_FILE}"))
    suite = load_suite(smoke_copy, deep=True)
    assert suite.artifacts["digits-logreg"].path == builtin_suites_dir() / "smoke" / MODEL_FILE


def test_url_source_has_no_local_path(smoke_copy: Path, edit: Callable[..., str]) -> None:
    edit(smoke_copy, (f"path:{MODEL_FILE}", "url:https://models.example.org/digits_logreg.onnx"))
    suite = load_suite(smoke_copy, deep=True)
    assert suite.artifacts["digits-logreg"].path is None


def _write_npz(d: Path, **arrays: np.ndarray) -> Path:
    (d / DATA_FILE).write_bytes(npz_bytes(arrays))
    return d / DATA_FILE


def _dataset(**changes: np.ndarray | None) -> dict[str, np.ndarray]:
    with np.load(SMOKE / DATA_FILE) as d:
        arrays = {"input": d["input"], "labels": d["labels"]}
    arrays.update(changes)
    return {k: v for k, v in arrays.items() if v is not None}


DEEP = [
    ("model-garbage", lambda d: (d / MODEL_FILE).write_bytes(b"not an onnx model"), "digits-logreg",
     "artifacts.digits-logreg.source", "does not load in onnxruntime"),
    ("dataset-not-zip", lambda d: (d / DATA_FILE).write_bytes(b"nope"), "digits-test",
     "artifacts.digits-test.source", "not a readable .npz"),
    ("trailing-shape", lambda d: _write_npz(d, **_dataset(input=np.zeros((360, 63), np.float32))), "digits-test",
     "tasks[0].dataset", "needs 64 on axis 1"),
    ("rank", lambda d: _write_npz(d, **_dataset(input=np.zeros((360, 8, 8), np.float32))), "digits-test",
     "tasks[0].dataset", "rank differs"),
    ("dtype", lambda d: _write_npz(d, **_dataset(input=np.zeros((360, 64), np.float64))), "digits-test",
     "tasks[0].dataset", "is float64"),
    ("input-name", lambda d: _write_npz(d, **_dataset(input=None, x=np.zeros((360, 64), np.float32))),
     "digits-test", "tasks[0].dataset", "no array 'input'"),
    ("no-labels", lambda d: _write_npz(d, **_dataset(labels=None)), "digits-test", "tasks[0].dataset",
     "no 'labels' array"),
    ("label-count", lambda d: _write_npz(d, **_dataset(labels=np.zeros(10, np.int64))), "digits-test",
     "tasks[0].dataset", "'labels' has 10 entries"),
]


@pytest.mark.parametrize("case", DEEP, ids=[c[0] for c in DEEP])
def test_deep_problems(case: tuple, smoke_copy: Path, repin: Callable[[Path, str, Path], None]) -> None:
    _, action, artifact, field, fragment = case
    action(smoke_copy)
    repin(smoke_copy, artifact, smoke_copy / (MODEL_FILE if artifact == "digits-logreg" else DATA_FILE))
    assert validate_suite(smoke_copy, deep=False) == []
    problems = validate_suite(smoke_copy, deep=True)
    assert [p.field for p in problems] == [field], [str(p) for p in problems]
    assert fragment in problems[0].message
    text = (smoke_copy / "suite.toml").read_text()
    expected = "source =" if field.endswith(".source") else "dataset ="
    occurrence = 2 if field.endswith(".source") and artifact == "digits-test" else 1
    assert problems[0].line == line_of(text, expected, occurrence)


def test_deep_checks_accuracy_output(smoke_copy: Path, edit: Callable[..., str]) -> None:
    text = edit(smoke_copy, ('output = "label"', 'output = "labels"'))
    assert validate_suite(smoke_copy, deep=False) == []
    (problem,) = validate_suite(smoke_copy, deep=True)
    assert problem.field == "tasks[0].accuracy.output" and "label, probabilities" in problem.message
    assert problem.line == line_of(text, 'output = "labels"')
