"""Tests of the shipped suites: each validates deep, rebuilds byte for byte, and its models meet its own criteria."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from evalsuites import Suite, builtin_suites_dir, discover_suites, load_suite, validate_suite
from evalsuites.conformance import measure_conformance
from evalsuites.gen import builders
from evalsuites.gen.common import toolchain_differences
from evalsuites.sources import file_sha256

SUITES = ("smoke", "terminal-vision", "robot-control", "accelerator-throughput")
NEW = SUITES[1:]
MAX_NEW_BYTES = 3 * 1024 * 1024
# 2.0.0: portable U8U8 int8 models with goldens from their exact integer reference (issue 10)
VERSIONS = {"smoke": "1.0.0", "terminal-vision": "2.0.0", "robot-control": "1.0.0", "accelerator-throughput": "2.0.0"}


def _npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _run(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Path]]:
    """Every suite's generated artifacts, built once into a temporary directory."""
    return {sid: b.build(tmp_path_factory.mktemp(sid)) for sid, b in builders().items()}


@pytest.mark.parametrize("suite_id", SUITES)
def test_shipped_suite_validates_deep_and_round_trips(suite_id: str) -> None:
    assert validate_suite(builtin_suites_dir() / suite_id, deep=True) == []
    suite = load_suite(builtin_suites_dir() / suite_id, deep=True)
    assert suite.id == suite_id and suite.version == VERSIONS[suite_id]
    again = Suite.from_json(suite.to_json(), root=suite.root)
    assert again == suite and again.digest == suite.digest and again.grading == suite.grading
    assert json.loads(suite.to_json())["digest"] == suite.digest


def test_discover_finds_every_shipped_suite() -> None:
    assert [s.id for s in discover_suites([builtin_suites_dir()], deep=True)] == sorted(SUITES)


@pytest.mark.parametrize("suite_id", SUITES)
def test_rebuild_is_byte_identical_to_the_committed_pins(suite_id: str, rebuilt: dict[str, dict[str, Path]],
                                                         tmp_path: Path) -> None:
    suite = load_suite(builtin_suites_dir() / suite_id)
    builder = builders()[suite_id]
    assert set(rebuilt[suite_id]) == set(builder.generated)
    for name, path in rebuilt[suite_id].items():
        pinned = suite.artifacts[name]
        assert pinned.source == f"path:{builder.generated[name]}"
        assert (file_sha256(path), path.stat().st_size) == (pinned.sha256, pinned.size), (
            f"{name}: rebuilt bytes differ from the pin; toolchain differences from built-with.json: "
            f"{toolchain_differences() or 'none'}")
    if suite_id != "smoke":  # smoke's double build is covered in test_build
        again = builder.build(tmp_path)
        assert all(again[n].read_bytes() == p.read_bytes() for n, p in rebuilt[suite_id].items())


def test_new_generated_artifacts_stay_small() -> None:
    total = sum(p.stat().st_size for sid in NEW for p in (builtin_suites_dir() / sid).rglob("*")
                if p.is_file() and p.name != "suite.toml")
    assert total < MAX_NEW_BYTES, total


@pytest.mark.parametrize("suite_id", NEW)
def test_generated_models_have_fixed_metadata(suite_id: str) -> None:
    for name, rel in builders()[suite_id].generated.items():
        if not rel.endswith(".onnx"):
            continue
        model = onnx.load(str(builtin_suites_dir() / suite_id / rel))
        assert (model.producer_name, model.ir_version, model.model_version) == ("pilotlab-evalsuites", 8, 1), name
        assert {o.domain: o.version for o in model.opset_import}.get("", 0) == 17, name
        assert model.domain == f"pilotlab.evalsuites.{suite_id}"


def _conformance_ok(suite: Suite, task_name: str, measured: dict[str, float]) -> None:
    for c in suite.criteria_for(task_name):
        if c.metric.startswith("conformance."):
            value = measured[c.metric]
            assert {"<=": value <= c.threshold, "<": value < c.threshold, ">=": value >= c.threshold,
                    ">": value > c.threshold}[c.op], (c.id, value)


def _golden_run(suite: Suite, task_name: str) -> dict[str, float]:
    task = suite.task(task_name)
    assert task.golden is not None and task.dataset is not None
    golden = _npz(suite.artifacts[task.golden].path)  # type: ignore[arg-type]
    data = _npz(suite.artifacts[task.dataset].path)  # type: ignore[arg-type]
    n = next(iter(golden.values())).shape[0]
    feeds = {k: v[:n] for k, v in data.items() if k != "labels"}
    return measure_conformance(_run(suite.artifacts[task.model].path, feeds), golden)  # type: ignore[arg-type]


@pytest.mark.parametrize("suite_id,tasks", [
    ("terminal-vision", ["digits-int8-single-stream"]),
    ("robot-control", ["policy-100hz"]),
    ("accelerator-throughput", ["convnet-fp32-offline", "convnet-fp16-offline", "convnet-int8-offline"]),
])
def test_models_meet_their_conformance_criteria_on_cpu(suite_id: str, tasks: list[str]) -> None:
    suite = load_suite(builtin_suites_dir() / suite_id)
    for name in tasks:
        measured = _golden_run(suite, name)
        _conformance_ok(suite, name, measured)
        assert measured["conformance.max_abs_err"] <= suite.task(name).conformance["max_abs_err"]  # type: ignore


def test_terminal_vision_digits_models_are_accurate() -> None:
    suite = load_suite(builtin_suites_dir() / "terminal-vision")
    data = _npz(suite.artifacts["digits-test"].path)  # type: ignore[arg-type]
    assert (data["input"].shape, data["labels"].shape) == ((360, 64), (360,))
    for model in ("digits-mlp-fp32", "digits-mlp-int8"):
        out = _run(suite.artifacts[model].path, {"input": data["input"]})  # type: ignore[arg-type]
        assert float(np.mean(out["label"] == data["labels"])) >= 0.95, model
    golden = _npz(suite.artifacts["digits-fp32-golden"].path)  # type: ignore[arg-type]
    fp32 = _run(suite.artifacts["digits-mlp-fp32"].path, {"input": data["input"]})  # type: ignore[arg-type]
    assert np.abs(fp32["probabilities"] - golden["probabilities"]).max() < 1e-5


def test_terminal_vision_ocr_models_are_the_pinned_ppocr_v4_files() -> None:
    suite = load_suite(builtin_suites_dir() / "terminal-vision", deep=True)
    det, rec = suite.artifacts["ppocr-det"], suite.artifacts["ppocr-rec"]
    assert det.source == "package:rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"
    assert rec.source == "package:rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx"
    assert (det.size, rec.size) == (4745517, 10857958)
    det_x = _npz(suite.artifacts["ocr-det-inputs"].path)["x"]  # type: ignore[arg-type]
    rec_x = _npz(suite.artifacts["ocr-rec-inputs"].path)["x"]  # type: ignore[arg-type]
    assert (det_x.shape, det_x.dtype, rec_x.shape, rec_x.dtype) == ((4, 3, 640, 640), np.float32,
                                                                     (8, 3, 48, 320), np.float32)
    (prob_map,) = _run(det.path, {"x": det_x[:1]}).values()  # type: ignore[arg-type]
    assert prob_map.shape == (1, 1, 640, 640) and 0.01 < float((prob_map > 0.3).mean()) < 0.5  # finds "text"
    (chars,) = _run(rec.path, {"x": rec_x}).values()  # type: ignore[arg-type]
    assert chars.shape == (8, 40, 6625) and int((chars.argmax(-1) != 0).sum()) > 0


def test_robot_control_loop_settings_and_shapes() -> None:
    suite = load_suite(builtin_suites_dir() / "robot-control", deep=True)
    rates = {t.name: (t.scenario, t.settings["rate_hz"], t.settings["deadline_ms"]) for t in suite.tasks}
    assert rates == {"policy-100hz": ("periodic", 100.0, 10.0), "policy-500hz": ("periodic", 500.0, 2.0)}
    obs = _npz(suite.artifacts["observations"].path)["obs"]  # type: ignore[arg-type]
    golden = _npz(suite.artifacts["policy-golden"].path)["actions"]  # type: ignore[arg-type]
    assert (obs.shape, obs.dtype, golden.shape) == ((512, 48), np.float32, (128, 12))
    assert np.array_equal(obs, np.round(obs * 2**16) / 2**16) and np.abs(golden).max() < 1.0


def test_accelerator_tasks_sweep_batches_on_cuda() -> None:
    suite = load_suite(builtin_suites_dir() / "accelerator-throughput", deep=True)
    for t in suite.tasks:
        assert (t.scenario, t.execution_provider, t.settings["batch_sizes"]) == (
            "offline", "CUDAExecutionProvider", [1, 4, 16, 64])
    x = _npz(suite.artifacts["scenes"].path)["input"]  # type: ignore[arg-type]
    for name in ("convnet-fp32", "convnet-fp16", "convnet-int8"):
        session = ort.InferenceSession(str(suite.artifacts[name].path), providers=["CPUExecutionProvider"])
        assert session.get_inputs()[0].shape == ["N", 3, 64, 64] and session.get_inputs()[0].type == "tensor(float)"
        for batch in (1, 4, 16, 64):
            logits, probs = session.run(None, {"input": x[:batch]})
            assert logits.shape == probs.shape == (batch, 10) and probs.dtype == np.float32
    ops = {n.op_type for n in onnx.load(str(suite.artifacts["convnet-int8"].path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "Gemm"} <= ops
    fp16 = onnx.load(str(suite.artifacts["convnet-fp16"].path))
    assert all(t.data_type == onnx.TensorProto.FLOAT16 for t in fp16.graph.initializer)


@pytest.mark.parametrize("suite_id", NEW)
def test_grading_levels_cover_every_criterion_in_order(suite_id: str) -> None:
    suite = load_suite(builtin_suites_dir() / suite_id)
    assert suite.grading is not None and "own" in suite.grading.scheme
    listed = [c for level in suite.grading.levels for c in level.criteria]
    assert sorted(listed) == sorted(c.id for c in suite.criteria) and len(suite.grading.levels) == 3
    names = [level.name for level in suite.grading.levels]
    assert [n.split()[-1] for n in names] == ["basic", "intermediate", "advanced"]
    ids = [c.id for c in suite.criteria]
    assert suite.grading.level_reached([]) is None
    assert suite.grading.level_reached(ids) == suite.grading.levels[-1]
    assert suite.grading.level_reached(suite.grading.levels[0].criteria) == suite.grading.levels[0]
    skipping = suite.grading.levels[0].criteria[1:] + suite.grading.levels[1].criteria
    assert suite.grading.level_reached(skipping) is None  # levels are cumulative
    assert suite.criterion(ids[0]) is suite.criteria[0]
