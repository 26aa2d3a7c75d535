"""A small image classifier as ONNX in fp32, fp16 (cast initializers, Cast at the edges) and int8 (U8U8 QDQ).

Everything is written with onnx.helper and numpy, so each byte follows from the fixed-seed weights; the
float64 numpy forward pass here is both the golden reference and the int8 calibration.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evalsuites.gen.common import OPSET, snap, uniform
from evalsuites.gen.qdq import QdqGraph

CHANNELS = (3, 32, 64, 128)
CLASSES = 10
SIZE = 64
INPUT, LOGITS, PROBS = "input", "logits", "probabilities"
Params = dict[str, np.ndarray]


def make_params(rs: np.random.RandomState) -> Params:
    """He-uniform conv weights and a Glorot-uniform classifier head, all float32."""
    p: Params = {}
    for k, (cin, cout) in enumerate(zip(CHANNELS[:-1], CHANNELS[1:], strict=True)):
        p[f"conv{k}.w"] = uniform(rs, (cout, cin, 3, 3), np.sqrt(6.0 / (cin * 9)))
        p[f"conv{k}.b"] = uniform(rs, (cout,), 0.05)
    p["fc.w"] = uniform(rs, (CLASSES, CHANNELS[-1]), np.sqrt(6.0 / (CHANNELS[-1] + CLASSES)) * 4)
    p["fc.b"] = uniform(rs, (CLASSES,), 0.05)
    return p


def _conv3x3(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    cols = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))  # N,C,H,W,3,3
    out = np.tensordot(cols, w.astype(np.float64), axes=([1, 4, 5], [1, 2, 3]))  # N,H,W,O
    return out.transpose(0, 3, 1, 2) + b.astype(np.float64)[None, :, None, None]


def features(x: np.ndarray, p: Params, chunk: int = 16) -> tuple[np.ndarray, dict[str, float]]:
    """float64 forward pass up to the pooled features, and the peak of every quantised activation (calibration)."""
    feats = []
    peaks = {"input": float(np.max(np.abs(x)))}
    for start in range(0, len(x), chunk):
        h = x[start:start + chunk].astype(np.float64)
        for k in range(len(CHANNELS) - 1):
            h = np.maximum(_conv3x3(h, p[f"conv{k}.w"], p[f"conv{k}.b"]), 0.0)
            peaks[f"relu{k}"] = max(peaks.get(f"relu{k}", 0.0), float(h.max()))
            n, c, hh, ww = h.shape
            h = h.reshape(n, c, hh // 2, 2, ww // 2, 2).max(axis=(3, 5))
        feats.append(h.mean(axis=(2, 3)))
    f = np.concatenate(feats)
    peaks["pool"] = float(f.max())
    return f, peaks


def center_head(p: Params, feats: np.ndarray) -> Params:
    """Set the head's bias so the logits measure each scene's deviation from the mean scene (snapped to 2**-12)."""
    out = dict(p)
    out["fc.b"] = snap(-(p["fc.w"].astype(np.float64) @ feats.mean(axis=0)), 12)
    return out


def head(feats: np.ndarray, p: Params) -> dict[str, np.ndarray]:
    """The classifier head in float64: logits and probabilities as float32 (the golden reference)."""
    z = feats @ p["fc.w"].astype(np.float64).T + p["fc.b"].astype(np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return {LOGITS: z.astype(np.float32), PROBS: (e / e.sum(axis=1, keepdims=True)).astype(np.float32)}


def convnet(p: Params, *, quantize: bool = False, peaks: dict[str, float] | None = None,
            scheme: str = "u8u8") -> Any:
    """The fp32 (or uint8 QDQ, see evalsuites.gen.qdq) ModelProto: input [N,3,64,64] -> logits [N,10],
    probabilities [N,10]."""
    from onnx import TensorProto, helper

    g = QdqGraph(quantize, peaks, scheme)
    x = g.q(INPUT, "input", signed=True)
    for k in range(len(CHANNELS) - 1):
        w, b = g.weights(f"conv{k}", p[f"conv{k}.w"], p[f"conv{k}.b"], INPUT if k == 0 else f"pool{k - 1}")
        h = g.node("Relu", [g.node("Conv", [x, w, b], f"conv{k}", kernel_shape=[3, 3], pads=[1, 1, 1, 1])],
                   f"relu{k}")
        h = g.q(h, f"relu{k}", signed=False)
        pooled = g.node("MaxPool", [h], f"pool{k}", kernel_shape=[2, 2], strides=[2, 2])
        if quantize:
            g.peaks[f"pool{k}"] = g.peaks[f"relu{k}"]  # max-pooling keeps the range of its input
        x = g.q(pooled, f"pool{k}", signed=False)
    gap = g.node("Flatten", [g.node("GlobalAveragePool", [x], "gap")], "features")
    x = g.q(gap, "pool", signed=False)
    w, b = g.weights("fc", p["fc.w"], p["fc.b"], "features")
    g.node("Gemm", [x, w, b], LOGITS, transB=1)
    g.node("Softmax", [LOGITS], PROBS, axis=1)
    graph = helper.make_graph(
        g.nodes, "convnet_int8" if quantize else "convnet_fp32",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", CHANNELS[0], SIZE, SIZE])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", CLASSES]) for n in (LOGITS, PROBS)], g.inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def to_fp16(model: Any) -> Any:
    """A copy whose float32 initializers are float16 and whose float32 inputs/outputs keep their names and type,
    with a Cast at each edge; every op in between then runs in float16."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    for k, t in enumerate(g.initializer):
        if t.data_type == TensorProto.FLOAT:
            g.initializer[k].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16), t.name))
    renames = {i.name: f"{i.name}.fp16" for i in g.input if i.type.tensor_type.elem_type == TensorProto.FLOAT}
    renames.update({o.name: f"{o.name}.fp16" for o in g.output if o.type.tensor_type.elem_type == TensorProto.FLOAT})
    for n in g.node:
        n.input[:] = [renames.get(i, i) for i in n.input]
        n.output[:] = [renames.get(o, o) for o in n.output]
    head = [helper.make_node("Cast", [i.name], [renames[i.name]], to=TensorProto.FLOAT16)
            for i in g.input if i.name in renames]
    tail = [helper.make_node("Cast", [renames[o.name]], [o.name], to=TensorProto.FLOAT)
            for o in g.output if o.name in renames]
    nodes = head + list(g.node) + tail
    del g.node[:]
    g.node.extend(nodes)
    del g.value_info[:]
    g.name = g.name.replace("fp32", "fp16")
    return m
