"""Broken suites for the format extensions: scenario settings, golden/conformance, criterion ids and grading."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest

from evalsuites import SuiteError, TaskSpec, builtin_suites_dir, load_suite, validate_suite
from evalsuites.build import npz_bytes
from evalsuites.conformance import measure_conformance
from evalsuites.model_fit import _golden_problems
from evalsuites.settings import allowed_settings, check_settings

ROBOT = builtin_suites_dir() / "robot-control"
PINS = tomllib.loads((ROBOT / "suite.toml").read_text(encoding="utf-8"))["artifacts"]
GOLDEN_FILE, MODEL_FILE = "data/policy_golden.npz", "models/locomotion_policy.onnx"
TASK0_SETTINGS = "[tasks.settings]\nrate_hz = 100.0\n"
CONFORMANCE = "[tasks.conformance]\nmax_abs_err = 1e-4\nmax_rel_err = 1e-3\n"
LEVEL0 = 'criteria = ["r1-conformance-abs", "r1-conformance-rel", "r1-100hz-misses", "r1-100hz-p99"]'
OFFLINE_TASK = '\n[[tasks]]\nname = "policy-offline"\nmodel = "policy-mlp"\nscenario = "offline"\n' \
               '[tasks.settings]\nbatch_sizes = [1, 8]\n'


def line_of(text: str, snippet: str, occurrence: int = 1) -> int:
    """1-based line number of the n-th line containing snippet."""
    hits = [i for i, line in enumerate(text.splitlines(), start=1) if snippet in line]
    assert len(hits) >= occurrence, f"{snippet!r} occurs {len(hits)} times"
    return hits[occurrence - 1]


# (id, text edits, every expected problem field, first field's line snippet, message fragment)
BROKEN = [
    ("unknown-setting", [(TASK0_SETTINGS, TASK0_SETTINGS + "batch_sizes = [1]\n")], ["tasks[0].settings.batch_sizes"],
     "batch_sizes", "unknown setting 'batch_sizes' for scenario 'periodic'; it accepts deadline_ms, "),
    ("setting-typo", [(TASK0_SETTINGS, TASK0_SETTINGS + "deadline = 3\n")], ["tasks[0].settings.deadline"],
     "deadline = 3", "unknown setting 'deadline'"),
    ("rate-zero", [("rate_hz = 100.0", "rate_hz = 0")], ["tasks[0].settings.rate_hz"], "rate_hz = 0",
     "must be a number > 0"),
    ("rate-missing", [("rate_hz = 100.0\n", "")], ["tasks[0].settings"], (TASK0_SETTINGS.split("\n")[0], 1),
     "periodic tasks need settings.rate_hz"),
    ("graph-optimization", [(TASK0_SETTINGS, TASK0_SETTINGS + 'graph_optimization = "max"\n')],
     ["tasks[0].settings.graph_optimization"], "graph_optimization", "one of disabled, basic, extended, all"),
    ("threads-type", [("intra_op_threads = 1", "intra_op_threads = 1.5")], ["tasks[0].settings.intra_op_threads",
                                                                          "tasks[1].settings.intra_op_threads"],
     "intra_op_threads = 1.5", "non-negative integer"),
    ("repeats-zero", [(TASK0_SETTINGS, TASK0_SETTINGS + "repeats = 0\n")], ["tasks[0].settings.repeats"],
     "repeats = 0", "integer >= 1"),
    ("conformance-without-golden", [('golden = "policy-golden"\n', "")], ["tasks[0].conformance"],
     "[tasks.conformance]", "conformance needs reference outputs"),
    ("golden-without-conformance", [(CONFORMANCE, "")], ["tasks[0].golden", "criteria[0].metric", "criteria[1].metric"],
     'golden = "policy-golden"', "only used by [tasks.conformance]"),
    ("conformance-without-dataset", [('dataset = "observations"\ngolden', "golden")], ["tasks[0].conformance"],
     "[tasks.conformance]", "needs the dataset the golden outputs were computed from"),
    ("golden-is-dataset", [('golden = "policy-golden"', 'golden = "observations"')], ["tasks[0].golden"],
     'golden = "observations"', "is a dataset, not a golden artifact"),
    ("golden-unknown", [('golden = "policy-golden"', 'golden = "gold"')], ["tasks[0].golden"], 'golden = "gold"',
     "unknown artifact 'gold'"),
    ("conformance-key", [(CONFORMANCE, CONFORMANCE + "max_err = 1\n")], ["tasks[0].conformance.max_err"],
     "max_err = 1", "unknown key 'max_err'"),
    ("conformance-no-abs", [("max_abs_err = 1e-4\n", "")], ["tasks[0].conformance.max_abs_err"],
     "[tasks.conformance]", "missing required field"),
    ("conformance-top1-range", [(CONFORMANCE, CONFORMANCE + "top1_agreement = 1.5\n")],
     ["tasks[0].conformance.top1_agreement"], "top1_agreement = 1.5", "outside 0..1"),
    ("tolerance-not-graded", [(CONFORMANCE, CONFORMANCE + "top1_agreement = 0.9\n")],
     ["tasks[0].conformance.top1_agreement"], "top1_agreement = 0.9", "no criterion grades this tolerance"),
    ("tolerance-graded-looser", [("threshold = 1e-4", "threshold = 1e-3")], ["tasks[0].conformance.max_abs_err"],
     "max_abs_err = 1e-4", 'metric = "conformance.max_abs_err", op = "<=", threshold = 0.0001'),
    ("conformance-metric-no-conformance", [('task = "policy-100hz"\nmetric = "conformance.max_rel_err"',
                                            'task = "policy-500hz"\nmetric = "conformance.max_rel_err"')],
     ["criteria[1].metric", "tasks[0].conformance.max_rel_err"], 'metric = "conformance.max_rel_err"',
     "task 'policy-500hz' measures no conformance"),
    ("metric-scenario", [('metric = "latency_ms.mean"', 'metric = "offline.best_throughput_per_s"')],
     ["criteria[10].metric"], "offline.best_throughput_per_s", 'needs a task with scenario = "offline"'),
    ("fraction-threshold", [("threshold = 0.001", "threshold = 1.5")], ["criteria[7].threshold"], "threshold = 1.5",
     "periodic.deadline_miss_rate is a fraction"),
    ("level-unknown-criterion", [(LEVEL0, LEVEL0.replace("r1-100hz-p99", "r1-100hz-p95"))],
     ["grading.levels[0].criteria"], "r1-100hz-p95", "unknown criterion id 'r1-100hz-p95'; criterion ids are "),
    ("level-duplicate-criterion", [(LEVEL0, LEVEL0.replace('"r1-100hz-p99"', '"r1-100hz-p99", "r1-100hz-p99"'))],
     ["grading.levels[0].criteria"], LEVEL0[:40], "lists a criterion twice"),
    ("criterion-in-no-level", [(LEVEL0, LEVEL0.replace(', "r1-100hz-p99"', ""))], ["criteria[3].id"],
     'id = "r1-100hz-p99"', "is in no grading level"),
    ("criterion-without-id", [('id = "r1-100hz-p99"\n', "")], ["criteria[3]", "grading.levels[0].criteria"],
     ("[[criteria]]", 4), "give this criterion an id"),
    ("duplicate-criterion-id", [('id = "r1-100hz-p99"', 'id = "r1-100hz-misses"')],
     ["criteria[3].id", "grading.levels[0].criteria"], ('id = "r1-100hz-misses"', 2), "duplicate criterion id"),
    ("bad-criterion-id", [('id = "r1-100hz-p99"', 'id = "r1 100hz"')], ["criteria[3].id", "grading.levels[0].criteria"],
     'id = "r1 100hz"', "must be letters, digits"),
    ("no-scheme", [('scheme = "PilotLab', 'schema = "PilotLab')], ["grading.schema", "grading.scheme"], "schema =",
     "unknown key 'schema'"),
    ("no-levels", [("[[grading.levels]]", "[[grading.level]]")], ["grading.level", "grading.levels"],
     "[[grading.level]]", "unknown key 'level'"),
    ("level-name-duplicate", [('name = "R-2 intermediate"', 'name = "R-1 basic"')], ["grading.levels[1].name"],
     ('name = "R-1 basic"', 2), "duplicate level name"),
    ("level-key", [('name = "R-3 advanced"', 'name = "R-3 advanced"\nrequires = []')],
     ["grading.levels[2].requires"], "requires = []", "unknown key 'requires'"),
    ("golden-classification", [('size = 6392\nclassification = "public"\n', "size = 6392\n")],
     ["artifacts.policy-golden.classification", "artifacts.policy-golden.regions"], "[artifacts.policy-golden]",
     "missing required field"),
]


@pytest.mark.parametrize("case", BROKEN, ids=[c[0] for c in BROKEN])
def test_broken_extension_reports_field_and_line(case: tuple, suite_copy: Callable[[str], Path],
                                                 edit: Callable[..., str]) -> None:
    _, edits, fields, snippet, fragment = case
    d = suite_copy("robot-control")
    text = edit(d, *edits)
    problems = validate_suite(d, deep=False)
    assert sorted(p.field for p in problems) == sorted(fields), [str(p) for p in problems]
    first = next(p for p in problems if p.field == fields[0])
    assert first.line == line_of(text, *(snippet if isinstance(snippet, tuple) else (snippet,))), str(first)
    assert fragment in first.message, first.message
    with pytest.raises(SuiteError) as err:
        load_suite(d)
    assert err.value.problems == problems


def _golden(d: Path, repin: Callable[[Path, str, Path], None], **arrays: np.ndarray) -> None:
    (d / GOLDEN_FILE).write_bytes(npz_bytes(arrays))
    repin(d, "policy-golden", d / GOLDEN_FILE)


DEEP = [
    ("trailing-shape", {"actions": np.zeros((128, 11), np.float32)}, "needs 12 on axis 1"),
    ("rank", {"actions": np.zeros((128,), np.float32)}, "rank differs"),
    ("not-an-output", {"act": np.zeros((128, 12), np.float32)}, "golden array 'act' is not an output of model"),
    ("integer", {"actions": np.zeros((128, 12), np.int64)}, "golden arrays are floating point"),
    ("too-many-rows", {"actions": np.zeros((600, 12), np.float32)}, "golden holds 600 samples but dataset"),
    ("empty", {}, "holds no arrays"),
]


@pytest.mark.parametrize("case", DEEP, ids=[c[0] for c in DEEP])
def test_deep_golden_problems(case: tuple, suite_copy: Callable[[str], Path],
                              repin: Callable[[Path, str, Path], None]) -> None:
    _, arrays, fragment = case
    d = suite_copy("robot-control")
    _golden(d, repin, **arrays)
    assert validate_suite(d, deep=False) == []
    problems = validate_suite(d, deep=True)
    assert [p.field for p in problems] == ["tasks[0].golden"], [str(p) for p in problems]
    assert fragment in problems[0].message
    assert problems[0].line == line_of((d / "suite.toml").read_text(), 'golden = "policy-golden"')


def test_deep_top1_needs_a_golden_array_of_rank_two() -> None:
    task = TaskSpec("t", "m", "d", "single-stream", {}, None, golden="g", conformance={"max_abs_err": 0.1})
    outputs = [SimpleNamespace(name="score", type="tensor(float)", shape=["N"])]
    golden = {"score": np.zeros(4, np.float32)}
    assert _golden_problems(0, task, outputs, golden, {"x": np.zeros((8, 3))}, top1=False) == []
    (problem,) = _golden_problems(0, task, outputs, golden, {"x": np.zeros((8, 3))}, top1=True)
    assert problem.field == "tasks[0].conformance" and "no golden array has rank >= 2" in problem.message
    outputs = [SimpleNamespace(name="score", type="tensor(int64)", shape=["N"])]
    (problem,) = _golden_problems(0, task, outputs, golden, None, top1=False)
    assert "compares floating-point outputs only" in problem.message


def test_deep_batch_sizes_need_a_dynamic_first_dimension(suite_copy: Callable[[str], Path], edit: Callable[..., str],
                                                         repin: Callable[[Path, str, Path], None]) -> None:
    d = suite_copy("robot-control")
    text = edit(d, ("\n# R-1 basic", OFFLINE_TASK + "\n# R-1 basic"))
    assert validate_suite(d, deep=True) == []  # the policy's batch dimension is dynamic
    model = onnx.load(str(d / MODEL_FILE))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    (d / MODEL_FILE).write_bytes(model.SerializeToString())
    repin(d, "policy-mlp", d / MODEL_FILE)
    problems = validate_suite(d, deep=True)
    assert [p.field for p in problems] == ["tasks[2].settings.batch_sizes"], [str(p) for p in problems]
    assert "batch size 8 needs a dynamic first dimension" in problems[0].message
    assert problems[0].line == line_of(text, "batch_sizes = [1, 8]")


def test_digest_changes_when_a_golden_byte_changes(suite_copy: Callable[[str], Path],
                                                   repin: Callable[[Path, str, Path], None]) -> None:
    d = suite_copy("robot-control")
    before = load_suite(d, deep=True)
    with np.load(d / GOLDEN_FILE) as z:
        actions = z["actions"].copy()
    actions[0, 0] = np.nextafter(actions[0, 0], np.float32(2))
    (d / GOLDEN_FILE).write_bytes(npz_bytes({"actions": actions}))
    with pytest.raises(SuiteError, match="policy-golden.sha256"):
        load_suite(d)
    repin(d, "policy-golden", d / GOLDEN_FILE)
    after = load_suite(d, deep=True)
    assert after.digest != before.digest and after.artifacts["policy-golden"].sha256 != PINS["policy-golden"]["sha256"]
    assert {n: a for n, a in after.artifacts.items() if n != "policy-golden"} == \
           {n: a for n, a in before.artifacts.items() if n != "policy-golden"}


@pytest.mark.parametrize("old,new", [
    ("max_abs_err = 1e-4", "max_abs_err = 2e-4"),
    ('id = "r1-100hz-p99"', 'id = "r1-100hz-p99x"'),
    ('name = "R-1 basic"', 'name = "R-1 entry"'),
    ("rate_hz = 500.0", "rate_hz = 400.0"),
])
def test_digest_covers_the_new_fields(suite_copy: Callable[[str], Path], edit: Callable[..., str], old: str,
                                      new: str) -> None:
    d = suite_copy("robot-control")
    before = load_suite(d).digest
    edit(d, (old, new), *([('"r1-100hz-p99"]', '"r1-100hz-p99x"]')] if "p99x" in new else []))
    assert load_suite(d).digest != before


def test_digest_ignores_number_spelling_of_new_fields(suite_copy: Callable[[str], Path],
                                                     edit: Callable[..., str]) -> None:
    d = suite_copy("robot-control")
    before = load_suite(d).digest
    edit(d, ("max_abs_err = 1e-4", "max_abs_err = 0.0001"), ("rate_hz = 100.0", "rate_hz = 100"),
         ("deadline_ms = 2.0", "deadline_ms = 2"))
    suite = load_suite(d)
    assert suite.digest == before and suite.tasks[0].settings["rate_hz"] == 100.0
    assert isinstance(suite.tasks[0].settings["rate_hz"], float)


def test_settings_vocabulary() -> None:
    assert set(allowed_settings("single-stream")) == {"warmup_queries", "min_query_count", "min_duration_ms",
                                                      "intra_op_threads", "inter_op_threads",
                                                      "graph_optimization", "repeats", "profile",
                                                      "profile_queries", "stability_max_spread", "timeout_s",
                                                      "memory_mb"}
    assert check_settings("single-stream", {"profile": 1})[0][0] == "profile"
    assert check_settings("single-stream", {"stability_max_spread": 1.5})[0][0] == "stability_max_spread"
    assert check_settings("single-stream", {"timeout_s": -1})[0][0] == "timeout_s"
    assert check_settings("single-stream", {"timeout_s": 60, "memory_mb": 2048, "stability_max_spread": 0.05}) == []
    assert check_settings("single-stream", {"profile": True, "profile_queries": 20}) == []
    assert set(allowed_settings("server")) - set(allowed_settings("single-stream")) == {
        "target_qps", "latency_bound_ms", "seed"}
    assert allowed_settings("bogus") == {}
    assert check_settings("offline", {"batch_sizes": [1, 8, 32]}) == []
    assert check_settings("offline", {"batch_sizes": [1, 1]})[0][0] == "batch_sizes"
    assert check_settings("offline", {"batch_sizes": [0]})[0][0] == "batch_sizes"
    assert check_settings("offline", {"batch_sizes": [True]})[0][0] == "batch_sizes"
    assert check_settings("multi-stream", {"samples_per_query": 0})[0][0] == "samples_per_query"
    assert check_settings("server", {"target_qps": 10, "seed": -1})[0][0] == "seed"
    assert check_settings("server", {"latency_bound_ms": 5})[0] == (
        None, "server tasks need settings.target_qps (a number > 0): mean rate of Poisson-distributed query "
              "arrivals, per second")
    assert check_settings("periodic", {"rate_hz": True})[0][0] == "rate_hz"
    assert check_settings("bogus", {"anything": 1}) == []  # the scenario itself is reported elsewhere


def test_server_bound_metric_needs_the_bound(suite_copy: Callable[[str], Path], edit: Callable[..., str]) -> None:
    d = suite_copy("robot-control")
    text = edit(d, ('scenario = "periodic"\n[tasks.settings]\nrate_hz = 500.0\ndeadline_ms = 2.0',
                    'scenario = "server"\n[tasks.settings]\ntarget_qps = 500.0'),
                ('id = "r2-500hz-misses"\ntask = "policy-500hz"\nmetric = "periodic.deadline_miss_rate"',
                 'id = "r2-500hz-misses"\ntask = "policy-500hz"\nmetric = "server.p99_within_bound"'))
    problems = validate_suite(d, deep=False)
    fields = sorted(p.field for p in problems)
    assert "criteria[6].metric" in fields, [str(p) for p in problems]
    bound = next(p for p in problems if p.field == "criteria[6].metric")
    assert "needs settings.latency_bound_ms" in bound.message
    assert bound.line == line_of(text, 'metric = "server.p99_within_bound"')
    edit(d, ("target_qps = 500.0", "target_qps = 500.0\nlatency_bound_ms = 2.0"))
    assert "criteria[6].metric" not in {p.field for p in validate_suite(d, deep=False)}


def test_a_criterion_may_grade_the_repeats_spread(smoke_copy: Path, edit: Callable[..., str]) -> None:
    text = edit(smoke_copy, ('metric = "latency_ms.p99"', 'metric = "repeats.spread_p50"'),
                ("threshold = 50.0", "threshold = 0.1"))
    assert validate_suite(smoke_copy, deep=False) == []  # three repeats by default
    text = edit(smoke_copy, ("min_duration_ms = 500", "min_duration_ms = 500\nrepeats = 1"))
    [problem] = validate_suite(smoke_copy, deep=False)
    assert problem.field == "criteria[1].metric" and "needs" in problem.message and "repeats = 1" in problem.message
    assert problem.line == line_of(text, 'metric = "repeats.spread_p50"')


def test_measure_conformance() -> None:
    g = {"p": np.array([[0.1, 0.9], [0.8, 0.2]], np.float32), "z": np.array([[2.0, -4.0], [1.0, 0.0]])}
    y = {"p": np.array([[0.2, 0.8], [0.7, 0.3], [5.0, 5.0]], np.float16), "z": np.array([[2.0, -4.5], [1.0, 2.0]])}
    m = measure_conformance(y, g)
    assert m["conformance.max_abs_err"] == pytest.approx(2.0)
    assert m["conformance.max_rel_err"] == pytest.approx(0.5)
    assert m["conformance.top1_agreement"] == 0.5
    assert "conformance.top1_agreement" not in measure_conformance({"a": np.ones(3)}, {"a": np.ones(3)})
    with pytest.raises(ValueError, match="no output 'p'"):
        measure_conformance({}, g)
    with pytest.raises(ValueError, match="shape"):
        measure_conformance({"p": np.ones((2, 3)), "z": g["z"]}, g)
