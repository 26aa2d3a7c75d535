"""Builds the models the sandbox tests run: real ONNX graphs that misbehave the way a faulty suite model does.

Each takes the smoke suite's input (`input`, float [N, 64]) and gives its `label` output (int64 [N]), so a task
can pair it with the digits dataset. Run `python tests/models/make_fault_models.py` to rebuild them (needs onnx).

- hang.onnx: a Loop of 2^62 iterations before the label: a model that never finishes.
- alloc40g.onnx: ConstantOfShape of 10^10 floats (40 GB) before the label: a model that allocates 40 GB.
- crash_standin.onnx: a plain ArgMax of the input, a well-behaved model with bytes of its own: the sandbox tests
  make its executor die by a signal (PILOTLAB_TEST_EXECUTOR_SIGNAL=SIGSEGV@<its sha256>), the reproducible
  stand-in for an onnxruntime crash.
- decoder_unknown_op.onnx: a KV-cache decoder of the generative scenario's interface (pilotlab.genai) whose logits
  come from MatMulNBits in a vendor domain no onnxruntime has: a model needing an operator the device's runtime lacks
  (as SmolLM2's com.microsoft MatMulNBits on a runtime built without contrib ops).
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


def decoder_unknown_op() -> None:
    f = TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, "s"]),
              helper.make_tensor_value_info("logits_to_keep", TensorProto.INT64, [1])]
    inputs += [helper.make_tensor_value_info(f"past_key_values.0.{k}", f, [1, 1, "p", 2]) for k in ("key", "value")]
    outputs = [helper.make_tensor_value_info("logits", f, [1, "k", 8])]
    outputs += [helper.make_tensor_value_info(f"present.0.{k}", f, [1, 1, "t", 2]) for k in ("key", "value")]
    nodes = [helper.make_node("Cast", ["input_ids"], ["x"], to=f),
             helper.make_node("MatMulNBits", ["x"], ["logits"], domain="com.example.npu", K=1, N=8, bits=4,
                              block_size=32),
             helper.make_node("Identity", ["past_key_values.0.key"], ["present.0.key"]),
             helper.make_node("Identity", ["past_key_values.0.value"], ["present.0.value"])]
    graph = helper.make_graph(nodes, "decoder_unknown_op", inputs, outputs)
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.example.npu", 1)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="pilotlab-tests")
    model.ir_version = 8
    (HERE / "decoder_unknown_op.onnx").write_bytes(model.SerializeToString())


if __name__ == "__main__":
    hang()
    alloc40g()
    crash_standin()
    decoder_unknown_op()
    for p in sorted(HERE.glob("*.onnx")):
        print(p.name, p.stat().st_size)
