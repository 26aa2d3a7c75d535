"""Portable int8 models and their reference: QDQ graph building, and an exact evaluator with tolerance bounds.

Why U8U8. onnxruntime's x86 U8S8 kernels on CPUs without VNNI multiply with VPMADDUBSW, which saturates the
16-bit sum of two u8 x s8 products; a model with full-range int8 weights then loses up to 3.5 logits on such a CPU
(bench/results/int8_portability.md). Measured on the accelerator convnet: int8 weights agree with the exact result
on 53% of scenes on AVX2; reduce_range (7-bit weights) is exact there but agrees with fp32 on only 92%; uint8
weights with zero point 128 (U8U8) use 16-bit multiplies on every instruction set, are exact everywhere, and keep
the 8-bit precision (98%). So every quantised tensor here is uint8: activations with zero point 0 (after ReLU) or
128 (signed inputs), weights per output channel with zero point 128.

Why an own evaluator. A suite's int8 golden outputs must follow from the operators' defined semantics, not from the
build machine's kernels. `evaluate` computes QuantizeLinear/DequantizeLinear and the float ops between them exactly
(float64), and propagates intervals that bound what any correct kernel may produce:

- an int8 kernel accumulates integer products exactly and requantises with a float32 (or fixed-point) multiply, so
  QuantizeLinear may round a value within a few float32 steps (ROUNDING_ULPS) of a half-way point either way, ties
  included: the interval keeps both integers, and the following layers carry the difference (monotone ops apply to
  both ends; linear ops split weights into positive and negative parts; softmax takes each output's worst case);
- a float result (the last Gemm's logits, softmax) may carry the error of float32 arithmetic in any order: for a
  dot product of n terms, gamma_n = n u / (1 - n u) (u = 2**-24) times the sum of |x w| (Higham, Accuracy and
  Stability of Numerical Algorithms, 3.1).

A kernel that emulates QDQ in float32 (dequantise, float convolution, quantise) is not covered: its rounding points
move by gamma_n of the accumulated magnitude, far more than an integer kernel's, and it is not an int8 kernel.

The golden array is the exact value; the tolerance of max_abs_err is the largest distance from it to an interval
end (plus the float32 rounding of the output itself); top1_agreement's is the share of samples whose arg-max
cannot change within the intervals.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

U32 = 2.0**-24
ROUNDING_ULPS = 8  # scale products, requantisation multiply, casts: a generous bound of float32 steps per value
W_ZERO_POINT = 128  # uint8 weights, symmetric around 128, 127 levels each side
SIGNED_ZERO_POINT = 128  # uint8 activations of signed tensors


def nice_scale(value: float) -> np.float32:
    """A quantisation scale >= value with a 4-bit mantissa, so float64 noise in `value` cannot change it."""
    e = int(np.floor(np.log2(value)))
    return np.float32(np.ceil(value / 2.0**e * 8.0) / 8.0 * 2.0**e)


SCHEMES = {
    # name: (weight levels each side of zero, weights uint8 with zero point 128?, per output channel?)
    "u8u8": (127, True, True),            # what the suites ship
    "s8": (127, False, True),             # int8 weights: U8S8 on x86, saturates without VNNI
    "s8-per-tensor": (127, False, False),
    "s7": (63, False, True),              # reduce_range: 7-bit int8 weights
}


class QdqGraph:
    """Accumulates ONNX nodes and initializers; with quantize=True, q() inserts a QuantizeLinear /
    DequantizeLinear pair and weights() gives quantised weights and int32 biases, by `scheme` (SCHEMES; the suites
    ship u8u8, the others exist for bench/int8_portability.py)."""

    def __init__(self, quantize: bool, peaks: Mapping[str, float] | None, scheme: str = "u8u8") -> None:
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.quantize = quantize
        self.peaks = dict(peaks or {})
        self.scales: dict[str, np.float32] = {}
        self.levels, self.unsigned, self.per_channel = SCHEMES[scheme]

    def node(self, op: str, ins: list[str], out: str, **attrs: Any) -> str:
        from onnx import helper

        self.nodes.append(helper.make_node(op, ins, [out], **attrs))
        return out

    def init(self, name: str, array: np.ndarray | np.generic) -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def q(self, x: str, peak: str, signed: bool) -> str:
        """x through QuantizeLinear/DequantizeLinear (uint8; for a tensor that can be negative, zero point 128, or
        int8 with zero point 0 in the int8-weight schemes)."""
        if not self.quantize:
            return x
        scale = nice_scale(self.peaks[peak] / (127.0 if signed else 255.0))
        self.scales[x] = scale
        zp = (np.uint8(SIGNED_ZERO_POINT) if self.unsigned else np.int8(0)) if signed else np.uint8(0)
        s, z = self.init(f"{x}.scale", scale), self.init(f"{x}.zp", zp)
        return self.node("DequantizeLinear", [self.node("QuantizeLinear", [x, s, z], f"{x}.q"), s, z], f"{x}.dq")

    def weights(self, name: str, w: np.ndarray, b: np.ndarray, x_scale_of: str, axis: int = 0) -> tuple[str, str]:
        """Weight and bias inputs: float initializers, or weights quantised per output channel (`axis`; u8u8:
        uint8 with zero point 128, scale = peak / 127) and int32 biases at scale x_scale * w_scale."""
        if not self.quantize:
            return self.init(name + ".w", w), self.init(name + ".b", b)
        wd = np.moveaxis(w.astype(np.float64), axis, 0)
        peak = np.abs(wd.reshape(wd.shape[0], -1)).max(axis=1)
        if not self.per_channel:
            peak = np.full_like(peak, peak.max())
        w_scale = (np.maximum(peak, 1e-8) / self.levels).astype(np.float32)
        shape = [1] * w.ndim
        shape[axis] = -1
        levels = np.clip(np.round(w.astype(np.float64) / w_scale.astype(np.float64).reshape(shape)),
                         -self.levels, self.levels)
        channels = w.shape[axis]
        if self.unsigned:
            w_q, w_zp = (levels + W_ZERO_POINT).astype(np.uint8), np.full(channels, W_ZERO_POINT, np.uint8)
        else:
            w_q, w_zp = levels.astype(np.int8), np.zeros(channels, np.int8)
        b_scale = (w_scale.astype(np.float64) * float(self.scales[x_scale_of])).astype(np.float32)
        b_q = np.round(b.astype(np.float64) / b_scale.astype(np.float64)).astype(np.int32)
        wq = self.node("DequantizeLinear", [self.init(name + ".w.q", w_q), self.init(name + ".w.scale", w_scale),
                                            self.init(name + ".w.zp", w_zp)],
                       name + ".w", axis=axis)
        bq = self.node("DequantizeLinear", [self.init(name + ".b.q", b_q), self.init(name + ".b.scale", b_scale),
                                            self.init(name + ".b.zp", np.zeros(channels, np.int32))],
                       name + ".b", axis=0)
        return wq, bq


# ---------------------------------------------------------------- the exact evaluator with bounds


@dataclass
class Iv:
    """A tensor's exact value and an interval [lo, hi] around it that every correct kernel stays in."""

    mid: np.ndarray
    lo: np.ndarray
    hi: np.ndarray

    @staticmethod
    def exact(a: np.ndarray) -> Iv:
        return Iv(a, a, a)

    def map(self, f: Any) -> Iv:
        """A monotone non-decreasing op applied to every part."""
        return Iv(f(self.mid), f(self.lo), f(self.hi))


def _round_half_even(x: np.ndarray) -> np.ndarray:
    return np.round(x)  # numpy rounds half to even, as QuantizeLinear defines


def _bcast(param: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    if param.ndim == 0 or ndim <= 1:
        return param
    shape = [1] * ndim
    shape[axis if axis >= 0 else ndim + axis] = -1
    return param.reshape(shape)


def _quantize(x: Iv, scale: np.ndarray, zp: np.ndarray, axis: int) -> Iv:
    """QuantizeLinear: exact rounding of the exact value; the interval admits either integer when the value lies
    within ROUNDING_ULPS float32 steps of a half-way point (an integer kernel accumulates exactly and rounds once
    after a float32 or fixed-point requantisation multiply; ties may round either way)."""
    s = _bcast(scale.astype(np.float64), x.mid.ndim, axis)
    z = _bcast(zp.astype(np.float64), x.mid.ndim, axis)
    info = np.iinfo(zp.dtype)

    def q(v: np.ndarray) -> np.ndarray:
        return np.asarray(np.clip(_round_half_even(v) + z, info.min, info.max))

    err = np.abs(x.mid / s) * ROUNDING_ULPS * U32
    return Iv(q(x.mid / s), q(x.lo / s - err), q(x.hi / s + err))


def _dequantize(x: Iv, scale: np.ndarray, zp: np.ndarray, axis: int) -> Iv:
    s = _bcast(scale.astype(np.float64), x.mid.ndim, axis)
    z = _bcast(zp.astype(np.float64), x.mid.ndim, axis)
    return x.map(lambda v: (v - z) * s)


def _conv(x: np.ndarray, w: np.ndarray, pads: list[int]) -> np.ndarray:
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    cols = np.lib.stride_tricks.sliding_window_view(xp, w.shape[2:], axis=(2, 3))  # N,C,H,W,kh,kw
    return np.tensordot(cols, w, axes=([1, 4, 5], [1, 2, 3])).transpose(0, 3, 1, 2)


def _linear(x: Iv, w: np.ndarray, b: np.ndarray | None, apply: Any, n_terms: int) -> tuple[Iv, np.ndarray]:
    """y = apply(x, w) + b over the interval, and the float32 accumulation error bound of y's computation."""
    centre, radius = (x.lo + x.hi) / 2, (x.hi - x.lo) / 2
    aw = np.abs(w)
    mid, c, r = apply(x.mid, w), apply(centre, w), apply(radius, aw)
    mag = apply(np.abs(x.mid) + radius, aw)
    bias = 0.0 if b is None else b
    gamma = n_terms * U32 / (1 - n_terms * U32)
    slack = gamma * (mag + np.abs(bias))
    return Iv(mid + bias, c - r + bias, c + r + bias), slack


def _softmax(x: Iv, axis: int) -> Iv:
    """Softmax over intervals: each output's low end with its own input low and every other high, and the reverse;
    then widened by float32 evaluation (exp, a sum of n terms, a division: (n + 8) u relative)."""
    def sm(v: np.ndarray) -> np.ndarray:
        e = np.exp(v - v.max(axis=axis, keepdims=True))
        return np.asarray(e / e.sum(axis=axis, keepdims=True))

    top = np.maximum(x.hi.max(axis=axis, keepdims=True), x.lo.max(axis=axis, keepdims=True))
    elo, ehi = np.exp(x.lo - top), np.exp(x.hi - top)
    slo, shi = elo.sum(axis=axis, keepdims=True), ehi.sum(axis=axis, keepdims=True)
    lo = elo / (elo + (shi - ehi))  # own value low, every other value high
    hi = ehi / (ehi + (slo - elo))
    rel = (x.mid.shape[axis] + 8) * U32
    mid = sm(x.mid)
    return Iv(mid, np.minimum(lo, mid) * (1 - rel), np.minimum(np.maximum(hi, mid) * (1 + rel), 1.0))


def evaluate(model: Any, feeds: Mapping[str, np.ndarray]) -> dict[str, Iv]:
    """Every graph output of a (QDQ or float) model as its exact value and correct-kernel interval.

    Supports the ops the built-in suites' generated models use; anything else is a BuildError naming the op.
    """
    from onnx import helper, numpy_helper

    from evalsuites.gen.common import BuildError

    env: dict[str, Iv] = {t.name: Iv.exact(numpy_helper.to_array(t)) for t in model.graph.initializer}
    env.update({k: Iv.exact(np.asarray(v, dtype=np.float64)) for k, v in feeds.items()})
    slack: dict[str, np.ndarray] = {}  # float32 accumulation error bound of a float tensor, before quantisation
    for n in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        ins = [env[i] for i in n.input]
        op, out = n.op_type, n.output[0]
        if op == "QuantizeLinear":
            y = _quantize(ins[0], ins[1].mid, ins[2].mid, int(attrs.get("axis", 1)))
        elif op == "DequantizeLinear":
            zp = ins[2].mid if len(ins) > 2 else np.zeros_like(ins[1].mid, dtype=np.int64)
            y = _dequantize(ins[0], ins[1].mid, zp, int(attrs.get("axis", 1)))
        elif op == "Conv":
            w = ins[1].mid.astype(np.float64)
            b = ins[2].mid.astype(np.float64)[None, :, None, None] if len(ins) > 2 else None
            pads = list(attrs.get("pads", [0, 0, 0, 0]))
            y, slack[out] = _linear(ins[0], w, b, lambda v, ww, p=pads: _conv(v, ww, p), int(np.prod(w.shape[1:])))
        elif op in ("Gemm", "MatMul"):
            w = ins[1].mid.astype(np.float64)
            w = w.T if attrs.get("transB", 0) else w
            b = ins[2].mid.astype(np.float64) if len(ins) > 2 else None
            y, slack[out] = _linear(ins[0], w, b, lambda v, ww: v @ ww, w.shape[0])
        elif op == "Add":
            y = Iv(ins[0].mid + ins[1].mid, ins[0].lo + ins[1].lo, ins[0].hi + ins[1].hi)
            slack[out] = slack.get(n.input[0], 0.0) + slack.get(n.input[1], 0.0) + U32 * np.abs(y.mid)
        elif op == "Relu":
            y = ins[0].map(lambda v: np.maximum(v, 0.0))
            if n.input[0] in slack:
                slack[out] = slack[n.input[0]]
        elif op == "MaxPool":
            k = list(attrs["kernel_shape"])
            if list(attrs.get("strides", k)) != k or attrs.get("pads"):
                raise BuildError("the reference evaluator's MaxPool supports non-overlapping windows only")
            y = ins[0].map(lambda v, k=k: v.reshape(v.shape[0], v.shape[1], v.shape[2] // k[0], k[0],
                                                    v.shape[3] // k[1], k[1]).max(axis=(3, 5)))
        elif op == "GlobalAveragePool":
            y = ins[0].map(lambda v: v.mean(axis=(2, 3), keepdims=True))
            count = ins[0].mid.shape[2] * ins[0].mid.shape[3]
            slack[out] = count * U32 * np.abs(y.mid) * 2
        elif op == "Flatten":
            y = ins[0].map(lambda v: v.reshape(v.shape[0], -1))
            if n.input[0] in slack:
                slack[out] = slack[n.input[0]].reshape(y.mid.shape)
        elif op == "Softmax":  # its input may carry float32 accumulation error: widen by it first
            s_in = slack.get(n.input[0], 0.0)
            y = _softmax(Iv(ins[0].mid, ins[0].lo - s_in, ins[0].hi + s_in), int(attrs.get("axis", -1)))
        elif op == "ArgMax":
            y = Iv.exact(np.argmax(ins[0].mid, axis=int(attrs.get("axis", 0))))
        else:
            raise BuildError(f"the reference evaluator does not implement {op} (node {n.name or out})")
        env[out] = y
    outs = {}
    for o in model.graph.output:
        v = env[o.name]
        s = slack.get(o.name)
        if s is not None:  # a float output computed by float32 arithmetic
            v = Iv(v.mid, v.lo - s, v.hi + s)
        outs[o.name] = v
    return outs


@dataclass(frozen=True)
class Tolerance:
    """What a correct kernel may differ by, derived from the reference intervals of the golden arrays."""

    max_abs_err: float
    max_rel_err: float
    top1_agreement: float


def tolerance(bounds: Mapping[str, Iv], golden: Mapping[str, np.ndarray]) -> Tolerance:
    """The conformance tolerances that every output inside its interval meets against the golden arrays."""
    abs_err, rel_err, agreement = 0.0, 0.0, 1.0
    for name, g_raw in golden.items():
        g = np.asarray(g_raw, dtype=np.float64)
        iv = bounds[name]
        # output values are float32: one more rounding of the interval's ends
        lo = iv.lo - np.abs(iv.lo) * U32
        hi = iv.hi + np.abs(iv.hi) * U32
        err = float(np.max(np.maximum(hi - g, g - lo)))
        abs_err = max(abs_err, err)
        rel_err = max(rel_err, err / float(np.max(np.abs(g))))
        if g.ndim >= 2:
            top = np.argmax(g, axis=-1)
            top_lo = np.take_along_axis(lo, top[..., None], axis=-1)
            others_hi = hi.copy()
            np.put_along_axis(others_hi, top[..., None], -np.inf, axis=-1)
            decided = (top_lo > others_hi.max(axis=-1, keepdims=True))[..., 0]
            agreement = min(agreement, float(np.mean(decided.reshape(len(g), -1).all(axis=1))))
    return Tolerance(abs_err, rel_err, agreement)

