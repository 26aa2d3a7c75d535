"""A small image classifier as ONNX in fp32, fp16 (cast initializers, Cast at the edges) and int8 (QDQ).

Everything is written with onnx.helper and numpy, so each byte follows from the fixed-seed weights; the
float64 numpy forward pass here is both the golden reference and the int8 calibration.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evalsuites.gen.common import OPSET, snap, uniform

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


def nice_scale(value: float) -> np.float32:
    """A quantisation scale >= value with a 4-bit mantissa, so float64 noise in `value` cannot change it."""
    e = int(np.floor(np.log2(value)))
    return np.float32(np.ceil(value / 2.0**e * 8.0) / 8.0 * 2.0**e)


class _Graph:
    """Accumulates nodes and initializers; q() inserts a QuantizeLinear/DequantizeLinear pair when quantising."""

    def __init__(self, quantize: bool, peaks: dict[str, float] | None) -> None:
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.quantize = quantize
        self.peaks = dict(peaks or {})
        self.scales: dict[str, np.float32] = {}

    def node(self, op: str, ins: list[str], out: str, **attrs: Any) -> str:
        from onnx import helper

        self.nodes.append(helper.make_node(op, ins, [out], **attrs))
        return out

    def init(self, name: str, array: np.ndarray | np.generic) -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def q(self, x: str, peak: str, signed: bool) -> str:
        if not self.quantize:
            return x
        scale = nice_scale(self.peaks[peak] / (127.0 if signed else 255.0))
        self.scales[x] = scale
        s, z = self.init(f"{x}.scale", scale), self.init(f"{x}.zp", np.int8(0) if signed else np.uint8(0))
        return self.node("DequantizeLinear", [self.node("QuantizeLinear", [x, s, z], f"{x}.q"), s, z], f"{x}.dq")

    def weights(self, name: str, w: np.ndarray, b: np.ndarray, x_scale_of: str) -> tuple[str, str]:
        """Weight and bias inputs: float initializers, or int8 per-output-channel weights and int32 biases."""
        if not self.quantize:
            return self.init(name + ".w", w), self.init(name + ".b", b)
        flat = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
        w_scale = (np.maximum(flat, np.float32(1e-8)) / np.float32(127.0)).astype(np.float32)
        shape = (-1,) + (1,) * (w.ndim - 1)
        w_q = np.clip(np.round(w.astype(np.float64) / w_scale.reshape(shape)), -127, 127).astype(np.int8)
        b_scale = (w_scale.astype(np.float64) * float(self.scales[x_scale_of])).astype(np.float32)
        b_q = np.round(b.astype(np.float64) / b_scale.astype(np.float64)).astype(np.int32)
        wq = self.node("DequantizeLinear", [self.init(name + ".w.q", w_q), self.init(name + ".w.scale", w_scale),
                                            self.init(name + ".w.zp", np.zeros(w.shape[0], np.int8))],
                       name + ".w", axis=0)
        bq = self.node("DequantizeLinear", [self.init(name + ".b.q", b_q), self.init(name + ".b.scale", b_scale),
                                            self.init(name + ".b.zp", np.zeros(b.shape[0], np.int32))],
                       name + ".b", axis=0)
        return wq, bq


def convnet(p: Params, *, quantize: bool = False, peaks: dict[str, float] | None = None) -> Any:
    """The fp32 (or int8 QDQ) ModelProto: input [N,3,64,64] -> logits [N,10], probabilities [N,10]."""
    from onnx import TensorProto, helper

    g = _Graph(quantize, peaks)
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
