"""Builds the models the sandbox tests run: real ONNX graphs that misbehave the way a faulty suite model does.

Each takes the smoke suite's input (`input`, float [N, 64]) and gives its `label` output (int64 [N]), so a task
can pair it with the digits dataset. Run `python tests/models/make_fault_models.py` to rebuild them (needs onnx).

- hang.onnx: a Loop of 2^62 iterations before the label: a model that never finishes.
- alloc40g.onnx: ConstantOfShape of 10^10 floats (40 GB) before the label: a model that allocates 40 GB.
- crash_standin.onnx: a plain ArgMax of the input, a well-behaved model with bytes of its own: the sandbox tests
  make its executor die by a signal (PILOTLAB_TEST_EXECUTOR_SIGNAL=SIGSEGV@<its sha256>), the reproducible
  stand-in for an onnxruntime crash.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper

HERE = Path(__file__).parent


def _io() -> tuple[onnx.ValueInfoProto, onnx.ValueInfoProto]:
    return (helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 64]),
            helper.make_tensor_value_info("label", TensorProto.INT64, [None]))


def _save(graph: onnx.GraphProto, name: str) -> None:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="pilotlab-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    (HERE / name).write_bytes(model.SerializeToString())


def hang() -> None:
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Identity", ["v_in"], ["v_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [None, 64])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [None, 64])])
    x, y = _io()
    nodes = [
        helper.make_node("Constant", [], ["M"], value=helper.make_tensor("m", TensorProto.INT64, [], [1 << 62])),
        helper.make_node("Constant", [], ["C"], value=helper.make_tensor("c", TensorProto.BOOL, [], [True])),
        helper.make_node("Loop", ["M", "C", "input"], ["v"], body=body),
        helper.make_node("ArgMax", ["v"], ["label"], axis=1, keepdims=0),
    ]
    _save(helper.make_graph(nodes, "hang", [x], [y]), "hang.onnx")


def alloc40g() -> None:
    x, y = _io()
    nodes = [
        helper.make_node("Constant", [], ["shape"],
                         value=helper.make_tensor("s", TensorProto.INT64, [1], [10_000_000_000])),
        helper.make_node("ConstantOfShape", ["shape"], ["big"],
                         value=helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])),
        helper.make_node("ReduceSum", ["big"], ["total"], keepdims=1),
        helper.make_node("Add", ["input", "total"], ["shifted"]),
        helper.make_node("ArgMax", ["shifted"], ["label"], axis=1, keepdims=0),
    ]
    _save(helper.make_graph(nodes, "alloc40g", [x], [y]), "alloc40g.onnx")


def crash_standin() -> None:
    x, y = _io()
    _save(helper.make_graph([helper.make_node("ArgMax", ["input"], ["label"], axis=1, keepdims=0)],
                            "crash_standin", [x], [y]), "crash_standin.onnx")


if __name__ == "__main__":
    hang()
    alloc40g()
    crash_standin()
    for p in sorted(HERE.glob("*.onnx")):
        print(p.name, p.stat().st_size)
