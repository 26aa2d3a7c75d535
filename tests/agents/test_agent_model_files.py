"""The agent refuses ONNX models whose external data lies outside their artifact set, read without onnx."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agents.model_files import ExternalDataRefused, check_confined, external_data

try:  # the build extra; the agent's own venv (oldest onnxruntime) has no onnx, and runs the wire-level tests only
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors, set_external_data, uses_external_data
except ImportError:
    onnx = None  # type: ignore[assignment]

needs_onnx = pytest.mark.skipif(onnx is None, reason="onnx (the build extra) is not installed")

ESCAPES = ["../secret.bin", "/etc/passwd", "a/../../b", "C:\\x", "", "..\\w.bin", "\\\\server\\share\\w.bin",
           "C:x.bin", "sub/...", "w.bin\0"]


# Protobuf wire format by hand, so the refusals are also tested where onnx is not installed.
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _wire_tensor(name: str, location: str | None, raw: bytes = b"") -> bytes:
    out = _field(8, name.encode()) + (_field(9, raw) if raw else b"")
    if location is not None:
        out += _field(13, _field(1, b"location") + _field(2, location.encode())) + _varint(14 << 3) + _varint(1)
    return out


def _wire_model(tmp_path: Path, *tensors: bytes) -> Path:
    graph = b"".join(_field(5, t) for t in tensors)
    p = tmp_path / "wire.onnx"
    p.write_bytes(_varint(1 << 3) + _varint(8) + _field(7, graph))  # ir_version 8, graph
    return p


@pytest.mark.parametrize("location", ESCAPES)
def test_wire_escapes_are_refused_naming_tensor_and_location(tmp_path: Path, location: str) -> None:
    p = _wire_model(tmp_path, _wire_tensor("ok", "weights.bin"), _wire_tensor("w", location))
    assert external_data(p) == [("ok", "weights.bin"), ("w", location)]
    with pytest.raises(ExternalDataRefused) as err:
        check_confined(p)
    message = str(err.value)
    assert isinstance(err.value, ValueError) and "\n" not in message
    assert f"model tensor 'w' keeps its data at {location!r}" in message and "artifact set" in message


def test_wire_allowed_set_and_external_without_location(tmp_path: Path) -> None:
    p = _wire_model(tmp_path, _wire_tensor("a", "weights.bin"), _wire_tensor("b", "./sub/more.bin"),
                    _wire_tensor("c", "weights.bin"), _wire_tensor("inline", None, raw=b"\0" * 16))
    assert check_confined(p) == ["weights.bin", "./sub/more.bin"]
    assert check_confined(p, allowed={"weights.bin", "sub/more.bin"}) == ["weights.bin", "./sub/more.bin"]
    with pytest.raises(ExternalDataRefused, match=r"'b' keeps its data at '\./sub/more\.bin', not a file of"):
        check_confined(p, allowed=["weights.bin"])
    # data_location EXTERNAL with no location entry at all counts as an empty location
    bare = _field(8, b"bare") + _varint(14 << 3) + _varint(1)
    with pytest.raises(ExternalDataRefused, match="'bare' keeps its data at '', an empty location"):
        check_confined(_wire_model(tmp_path, bare))


def test_wire_large_inline_data_and_deep_nesting(tmp_path: Path) -> None:
    p = _wire_model(tmp_path, _wire_tensor("big", None, raw=bytes(64 << 20)), _wire_tensor("w", "w.bin"))
    assert external_data(p) == [("w", "w.bin")]
    # graph -> node -> attribute g -> graph ... 3000 deep: no recursion limit to hit
    graph = _field(5, _wire_tensor("deep", "../x"))
    for _ in range(3000):
        graph = _field(1, _field(5, _field(6, graph)))
    p.write_bytes(_field(7, graph))
    assert external_data(p) == [("deep", "../x")]


@pytest.mark.parametrize("data", [b"\x3a\xff", b"\x3a\x05\x2a", b"\xff" * 12, b"\x00\x01", b"\x3b\x01", b"\x3d\x01"])
def test_wire_invalid_protobuf(tmp_path: Path, data: bytes) -> None:
    p = tmp_path / "bad.onnx"
    p.write_bytes(data)
    with pytest.raises(ValueError, match="the model file is not a valid ONNX protobuf: ") as err:
        external_data(p)
    assert not isinstance(err.value, ExternalDataRefused)


def test_empty_file_has_no_external_data(tmp_path: Path) -> None:
    p = tmp_path / "empty.onnx"
    p.write_bytes(b"")
    assert external_data(p) == [] and check_confined(p) == []


# Real models built with onnx.
def _chain_model(n: int = 3) -> Any:
    nodes, inits, prev = [], [], "X"
    for i in range(n):
        inits.append(numpy_helper.from_array(np.arange(4, dtype=np.float32) + i, f"W{i}"))
        nodes.append(helper.make_node("Add" if i % 2 == 0 else "Mul", [prev, f"W{i}"], [f"Y{i}"]))
        prev = f"Y{i}"
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _if_model() -> Any:
    def branch(name: str, value: float) -> Any:
        const = helper.make_node("Constant", [], [f"{name}_out"], value=numpy_helper.from_array(
            np.full(4, value, dtype=np.float32), f"{name}_c"))
        return helper.make_graph([const], name, [], [helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT,
                                                                                     [4])])
    node = helper.make_node("If", ["C"], ["Y"], then_branch=branch("then", 7.0), else_branch=branch("else", -1.0))
    graph = helper.make_graph([node], "if", [helper.make_tensor_value_info("C", TensorProto.BOOL, [])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [4])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _save_external(model: Any, p: Path) -> Path:
    onnx.save_model(model, str(p), save_as_external_data=True, all_tensors_to_one_file=True, location="weights.bin",
                    size_threshold=0, convert_attribute=True)
    return p


def _tensors(model: Any) -> Iterator[Any]:
    """Every TensorProto of the model, sparse ones included (onnx's own walker leaves those out)."""
    def graph(g: Any) -> Iterator[Any]:
        yield from g.initializer
        for s in g.sparse_initializer:
            yield from (s.values, s.indices)
        for n in g.node:
            yield from node(n)

    def node(n: Any) -> Iterator[Any]:
        for a in n.attribute:
            yield from ([a.t] if a.HasField("t") else [])
            yield from a.tensors
            for s in [a.sparse_tensor] * a.HasField("sparse_tensor") + list(a.sparse_tensors):
                yield from (s.values, s.indices)
            for g in [a.g] * a.HasField("g") + list(a.graphs):
                yield from graph(g)

    yield from graph(model.graph)
    for f in model.functions:
        for n in f.node:
            yield from node(n)


def _relocate(p: Path, tensor: str, location: str) -> None:
    model = onnx.load(str(p), load_external_data=False)
    entries = [e for t in _tensors(model) if t.name == tensor for e in t.external_data if e.key == "location"]
    assert entries, tensor
    for e in entries:
        e.value = location
    p.write_bytes(model.SerializeToString())


def _onnx_view(p: Path) -> list[tuple[str, str]]:
    model = onnx.load(str(p), load_external_data=False)
    return sorted((t.name, ExternalDataInfo(t).location) for t in _get_all_tensors(model) if uses_external_data(t))


@needs_onnx
def test_good_external_model_matches_onnx_and_runs_in_onnxruntime(tmp_path: Path) -> None:
    import onnxruntime as ort

    p = _save_external(_chain_model(5), tmp_path / "model.onnx")
    assert (tmp_path / "weights.bin").is_file()
    assert external_data(p) == [(f"W{i}", "weights.bin") for i in range(5)]
    assert sorted(external_data(p)) == _onnx_view(p)
    assert check_confined(p) == ["weights.bin"] == check_confined(p, allowed={"weights.bin", "model.onnx"})
    session = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
    x = np.ones(4, dtype=np.float32)
    expected = x.copy()
    for i in range(5):
        w = np.arange(4, dtype=np.float32) + i
        expected = expected + w if i % 2 == 0 else expected * w
    np.testing.assert_allclose(session.run(None, {"X": x})[0], expected)


@needs_onnx
def test_model_without_external_data(tmp_path: Path) -> None:
    p = tmp_path / "inline.onnx"
    onnx.save_model(_chain_model(), str(p))
    assert external_data(p) == [] == _onnx_view(p)
    assert check_confined(p) == []


@needs_onnx
@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "a/../../b", "C:\\x", ""])
def test_tampered_locations_are_refused(tmp_path: Path, location: str) -> None:
    p = _save_external(_chain_model(), tmp_path / "model.onnx")
    _relocate(p, "W1", location)
    assert _onnx_view(p) == sorted([("W0", "weights.bin"), ("W1", location), ("W2", "weights.bin")])
    assert sorted(external_data(p)) == _onnx_view(p)
    with pytest.raises(ExternalDataRefused) as err:
        check_confined(p)
    assert f"model tensor 'W1' keeps its data at {location!r}" in str(err.value)


@needs_onnx
def test_location_outside_the_allowed_set(tmp_path: Path) -> None:
    p = _save_external(_chain_model(), tmp_path / "model.onnx")
    _relocate(p, "W2", "other.bin")
    assert check_confined(p) == ["weights.bin", "other.bin"]
    with pytest.raises(ExternalDataRefused, match=r"'W2' keeps its data at 'other\.bin', not a file of the model's"):
        check_confined(p, allowed={"weights.bin"})


@needs_onnx
def test_constant_in_an_if_subgraph(tmp_path: Path) -> None:
    import onnxruntime as ort

    p = _save_external(_if_model(), tmp_path / "if.onnx")
    assert sorted(external_data(p)) == _onnx_view(p) == [("else_c", "weights.bin"), ("then_c", "weights.bin")]
    out = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"C": np.array(True)})[0]
    np.testing.assert_allclose(out, np.full(4, 7.0, dtype=np.float32))
    _relocate(p, "then_c", "../../etc/shadow")
    with pytest.raises(ExternalDataRefused, match="'then_c' keeps its data at '../../etc/shadow'"):
        check_confined(p)


@needs_onnx
def test_sparse_initializer_and_function_constant(tmp_path: Path) -> None:
    model = _chain_model(1)
    values = numpy_helper.from_array(np.ones(2, dtype=np.float32), "sp")
    indices = numpy_helper.from_array(np.array([0, 3], dtype=np.int64), "sp_idx")
    model.graph.sparse_initializer.append(helper.make_sparse_tensor(values, indices, [4]))
    const = helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(np.zeros(2, np.float32), "fk"))
    model.functions.append(helper.make_function("local", "F", [], ["k"], [const], [helper.make_opsetid("", 17)]))
    p = tmp_path / "model.onnx"
    p.write_bytes(model.SerializeToString())
    assert external_data(p) == []
    for t in _tensors(model):  # onnx's converter skips sparse tensors: mark every tensor external by hand
        set_external_data(t, location=f"{t.name}.bin")
        t.ClearField("raw_data")
        t.data_location = TensorProto.EXTERNAL
    p.write_bytes(model.SerializeToString())
    assert external_data(p) == [("W0", "W0.bin"), ("sp", "sp.bin"), ("sp_idx", "sp_idx.bin"), ("fk", "fk.bin")]
    assert {n for n, _ in external_data(p)} - {n for n, _ in _onnx_view(p)} == {"sp", "sp_idx"}
    _relocate(p, "sp_idx", "/etc/passwd")
    with pytest.raises(ExternalDataRefused, match="'sp_idx' keeps its data at '/etc/passwd', an absolute path"):
        check_confined(p)
    _relocate(p, "sp_idx", "sp_idx.bin")
    _relocate(p, "fk", "../fk.bin")
    with pytest.raises(ExternalDataRefused, match=r"'fk' keeps its data at '\.\./fk\.bin'"):
        check_confined(p)


@needs_onnx
def test_every_truncation_is_invalid_or_a_clean_prefix(tmp_path: Path) -> None:
    good = _save_external(_if_model(), tmp_path / "if.onnx").read_bytes()
    cut = tmp_path / "cut.onnx"
    invalid = 0
    for n in range(len(good)):
        cut.write_bytes(good[:n])
        try:
            external_data(cut)
        except ValueError as err:
            assert not isinstance(err, ExternalDataRefused)
            assert str(err).startswith("the model file is not a valid ONNX protobuf: ")
            invalid += 1
    assert invalid > len(good) // 2
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match="not a valid ONNX protobuf"):
        check_confined(cut)
