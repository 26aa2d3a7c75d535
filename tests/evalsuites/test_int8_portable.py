"""The int8 reference models are portable: goldens follow from the operators' semantics, tolerances from the
correct-kernel intervals (evalsuites.gen.qdq), and the suites declare at least those tolerances. Nothing here
depends on the CPU these tests run on, except the last test, which asserts that this CPU's onnxruntime stays
inside the intervals, as every correct int8 kernel must."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from evalsuites import builtin_suites_dir, load_suite
from evalsuites.gen import qdq
from evalsuites.gen.common import run_ort
from evalsuites.schema import Suite

INT8_TASKS = [("terminal-vision", "digits-int8-single-stream"), ("accelerator-throughput", "convnet-int8-offline")]


def _npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _task_inputs(suite: Suite, task_name: str) -> tuple[bytes, dict[str, np.ndarray], dict[str, np.ndarray]]:
    task = suite.task(task_name)
    model = suite.artifacts[task.model].path.read_bytes()  # type: ignore[union-attr]
    golden = _npz(suite.artifacts[task.golden].path)  # type: ignore[arg-type,index]
    data = _npz(suite.artifacts[task.dataset].path)  # type: ignore[arg-type,index]
    n = next(iter(golden.values())).shape[0]
    return model, {k: v[:n] for k, v in data.items() if k != "labels"}, golden


@pytest.fixture(scope="module")
def derived() -> dict[tuple[str, str], tuple[qdq.Tolerance, dict[str, np.ndarray], dict[str, qdq.Iv]]]:
    out = {}
    for suite_id, task_name in INT8_TASKS:
        suite = load_suite(builtin_suites_dir() / suite_id)
        model, feeds, golden = _task_inputs(suite, task_name)
        bounds = qdq.evaluate(onnx.load_from_string(model), feeds)
        out[(suite_id, task_name)] = (qdq.tolerance(bounds, golden), golden, bounds)
    return out


@pytest.mark.parametrize("suite_id,task_name", INT8_TASKS)
def test_int8_models_are_u8u8(suite_id: str, task_name: str) -> None:
    """Every quantised tensor is uint8: no U8S8 product that a non-VNNI x86 kernel could saturate."""
    suite = load_suite(builtin_suites_dir() / suite_id)
    model = onnx.load(str(suite.artifacts[suite.task(task_name).model].path))
    inits = {t.name: t for t in model.graph.initializer}
    q_types = set()
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2:
            zp = inits.get(node.input[2])
            if zp is not None and zp.data_type != onnx.TensorProto.INT32:  # biases stay int32
                q_types.add(onnx.TensorProto.DataType.Name(zp.data_type))
    assert q_types == {"UINT8"}


@pytest.mark.parametrize("suite_id,task_name", INT8_TASKS)
def test_golden_is_the_exact_reference(suite_id: str, task_name: str, derived) -> None:  # type: ignore[no-untyped-def]
    _, golden, bounds = derived[(suite_id, task_name)]
    for name, g in golden.items():
        assert g.dtype == np.float32
        assert np.array_equal(g, bounds[name].mid.astype(np.float32)), name


@pytest.mark.parametrize("suite_id,task_name", INT8_TASKS)
def test_declared_tolerances_cover_every_correct_kernel(suite_id: str, task_name: str, derived) -> None:  # type: ignore[no-untyped-def]
    """The suite declares (and grades) tolerances no tighter than the derived ones, and not looser than needed."""
    tol = derived[(suite_id, task_name)][0]
    suite = load_suite(builtin_suites_dir() / suite_id)
    declared = suite.task(task_name).conformance
    assert declared is not None
    assert tol.max_abs_err <= declared["max_abs_err"] <= 1.1 * tol.max_abs_err + 1e-12
    assert tol.max_rel_err <= declared["max_rel_err"] <= 1.1 * tol.max_rel_err + 1e-12
    assert tol.top1_agreement - 0.01 <= declared["top1_agreement"] <= tol.top1_agreement
    for c in suite.criteria_for(task_name):
        if c.metric.startswith("conformance."):
            assert c.threshold == declared[c.metric.split(".", 1)[1]], c.id


def test_full_range_int8_weights_would_saturate_on_avx2() -> None:
    """Why uint8 weights: with int8 weights, this model's products summed in pairs overflow int16 (VPMADDUBSW on
    x86 without VNNI saturates them), while the correct-kernel tolerance stays far below the error that causes."""
    suite = load_suite(builtin_suites_dir() / "terminal-vision")
    model, feeds, golden = _task_inputs(suite, "digits-int8-single-stream")
    bounds = qdq.evaluate(onnx.load_from_string(model), feeds)
    tol = qdq.tolerance(bounds, golden)
    # The same layer-1 products, as full-range int8 weights would give them, summed in pairs with saturation.
    m = onnx.load_from_string(model)
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in m.graph.initializer}
    w = inits["fc1.w.q"].astype(np.int64) - 128  # -127..127
    x = np.clip(np.round(feeds["input"] / inits["input.scale"]), 0, 255).astype(np.int64)
    prods = x[:, :, None] * w[None, :, :]
    pairs = np.clip(prods[:, 0::2] + prods[:, 1::2], -32768, 32767).sum(axis=1)
    exact = prods.sum(axis=1)
    assert np.any(pairs != exact)  # saturation does happen for these inputs and weights
    assert tol.max_abs_err < 1e-3


@pytest.mark.parametrize("suite_id,task_name", INT8_TASKS)
def test_this_cpus_onnxruntime_is_a_correct_int8_kernel(suite_id: str, task_name: str, derived) -> None:  # type: ignore[no-untyped-def]
    tol, golden, bounds = derived[(suite_id, task_name)]
    suite = load_suite(builtin_suites_dir() / suite_id)
    model, feeds, _ = _task_inputs(suite, task_name)
    got = run_ort(model, feeds, per_sample=True)
    for name in golden:
        lo, hi = bounds[name].lo, bounds[name].hi
        assert np.all(got[name] >= lo - np.abs(lo) * 2**-23) and np.all(got[name] <= hi + np.abs(hi) * 2**-23), name
