"""SmolLM2 as an ONNX decoder with a KV cache, built node by node from the GGUF weights (gguf, numpy, onnx; no torch).

Two variants of one graph:
  fp32  standard ONNX ops only (opset 17): every weight dequantized to float32 (about 540 MB).
  q4    the same graph with each projection a com.microsoft MatMulNBits that holds the GGUF's 4-bit blocks exactly
        (about 95 MB). MatMulNBits computes x . (d * (q - zp)) with integer zero points; Q4_1 is d * q + m, so each
        projection is MatMulNBits(zp = 0) plus a correction: (x summed over each block of 32) . m. The tied
        embedding/output matrix is Q8_0 (d * q, q in -127..127): it is split exactly into two 4-bit halves,
        q = 16 * (hi - 8) + lo, i.e. two MatMulNBits for the output projection, and gathered and unpacked with
        standard ops for the input embedding.

Interface (batch 1): inputs `input_ids` int64 [1, S], `logits_to_keep` int64 [1] (how many last positions get
logits: 1 to generate, S to score), `past_key_values.{i}.key|value` float32 [1, kv_heads, P, head_dim];
outputs `logits` float32 [1, logits_to_keep, vocab] and `present.{i}.key|value` [1, kv_heads, P + S, head_dim].
Positions are P .. P + S - 1, P read from the cache's length; attention is causal.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evalsuites.genai.gguf_model import BLOCK, GgufModel, Q4Blocks, Q8Blocks
from evalsuites.genai.reference import rope_tables

VARIANTS = ("q4", "fp32")
MS_DOMAIN = "com.microsoft"


class _Graph:
    """Nodes, initializers and fresh names for one ONNX graph."""

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self._names: set[str] = set()
        self._n = 0

    def const(self, name: str, value: np.ndarray) -> str:
        """An initializer, added on first use of its name (so a variant holds only the constants it uses)."""
        from onnx import numpy_helper

        if name not in self._names:
            self._names.add(name)
            self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def i64(self, name: str, *values: int) -> str:
        return self.const(name, np.array(values, dtype=np.int64))

    def ops(self, op_type: str, inputs: list[str], n_out: int, domain: str = "", **attrs: Any) -> list[str]:
        from onnx import helper

        self._n += 1
        outs = [f"{op_type.lower()}_{self._n}_{k}" for k in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=f"{op_type}_{self._n}", domain=domain,
                                           **attrs))
        return outs

    def op(self, op_type: str, inputs: list[str], domain: str = "", **attrs: Any) -> str:
        return self.ops(op_type, inputs, 1, domain, **attrs)[0]


def _rows(*mats: Q4Blocks) -> Q4Blocks:
    """Q4_1 matrices stacked along their output rows: one projection computing several."""
    return Q4Blocks(*(np.concatenate([getattr(m, f) for m in mats]) for f in ("q", "d", "m")))


def _pack4(q: np.ndarray) -> np.ndarray:
    """4-bit values [rows, blocks, 32] -> MatMulNBits bytes [rows, blocks, 16]: value 2j low nibble, 2j+1 high."""
    return np.asarray(q[..., 0::2] | (q[..., 1::2] << 4), dtype=np.uint8)


class _Builder:
    """One variant's graph, built layer by layer from the GGUF's tensors."""

    def __init__(self, model: GgufModel, variant: str) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; use one of {', '.join(VARIANTS)}")
        self.m, self.cfg, self.variant, self.g = model, model.config, variant, _Graph()
        g = self.g
        self.eps = g.const("rms_eps", np.array(self.cfg.rms_eps, dtype=np.float32))
        self.two = g.const("two", np.array(2.0, dtype=np.float32))

    # -- building blocks -----------------------------------------------------------------------------------------
    def rms_norm(self, x: str, weight: np.ndarray, name: str) -> str:
        """x / sqrt(mean(x^2) + eps) * w, in the pattern onnxruntime fuses into SimplifiedLayerNormalization."""
        g = self.g
        ms = g.op("ReduceMean", [g.op("Pow", [x, self.two])], axes=[-1], keepdims=1)
        normed = g.op("Div", [x, g.op("Sqrt", [g.op("Add", [ms, self.eps])])])
        return g.op("Mul", [normed, g.const(name, weight.astype(np.float32))])

    def linear(self, x: str, w: Q4Blocks, name: str) -> str:
        """x [1, S, K] . W^T -> [1, S, N] for a Q4_1 matrix W [N, K]."""
        g = self.g
        rows, blocks, _ = w.q.shape
        k = blocks * BLOCK
        if self.variant == "fp32":
            return g.op("MatMul", [x, g.const(name, np.ascontiguousarray(w.dequantize().T))])
        b = g.const(name + ".q4", _pack4(w.q))
        scales = g.const(name + ".scales", w.d.reshape(-1))
        zero = g.const(name + ".zp0", np.zeros((rows, (blocks + 1) // 2), dtype=np.uint8))
        y = g.op("MatMulNBits", [x, b, scales, zero], domain=MS_DOMAIN, K=k, N=rows, bits=4, block_size=BLOCK,
                 accuracy_level=1)
        shape = g.i64(f"{name}.blocks_view", 1, -1, blocks, BLOCK)
        sums = g.op("ReduceSum", [g.op("Reshape", [x, shape]), g.i64("last_axis", -1)], keepdims=0)
        return g.op("Add", [y, g.op("MatMul", [sums, g.const(name + ".mins", np.ascontiguousarray(w.m.T))])])

    def rope(self, x: str, cos: str, sin: str) -> str:
        """x * cos + rotate_half(x) * sin, rotate_half(x) = [-x2, x1] for the halves x1, x2 of each head."""
        g = self.g
        x1, x2 = g.ops("Split", [x, self.halves], 2, axis=-1)
        rotated = g.op("Concat", [g.op("Neg", [x2]), x1], axis=-1)
        return g.op("Add", [g.op("Mul", [x, cos]), g.op("Mul", [rotated, sin])])

    # -- the model -----------------------------------------------------------------------------------------------
    def build(self) -> Any:
        from onnx import TensorProto, helper

        cfg, g, t = self.cfg, self.g, self.m.tensors
        hd, kvh = cfg.head_dim, cfg.kv_heads
        group = cfg.heads // kvh
        self.halves = g.i64("halves", hd // 2, hd // 2)
        zero, one = g.i64("i0", 0), g.i64("i1", 1)
        two_i = g.i64("i2", 2)
        inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, "sequence"]),
                  helper.make_tensor_value_info("logits_to_keep", TensorProto.INT64, [1])]
        outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, "kept", cfg.vocab])]
        for i in range(cfg.layers):
            for kind in ("key", "value"):
                inputs.append(helper.make_tensor_value_info(f"past_key_values.{i}.{kind}", TensorProto.FLOAT,
                                                            [1, kvh, "past_sequence", hd]))
                outputs.append(helper.make_tensor_value_info(f"present.{i}.{kind}", TensorProto.FLOAT,
                                                             [1, kvh, "total_sequence", hd]))
        # positions past .. past + S - 1, their rotary tables, and the causal mask [group * S, total]
        past = g.op("Gather", [g.op("Shape", ["past_key_values.0.key"]), two_i], axis=0)
        seq = g.op("Gather", [g.op("Shape", ["input_ids"]), one], axis=0)
        total = g.op("Add", [past, seq])
        scalar = [g.op("Squeeze", [v]) for v in (past, total)]
        step = g.const("step", np.array(1, dtype=np.int64))
        positions = g.op("Range", [scalar[0], scalar[1], step])
        cos_t, sin_t = rope_tables(cfg, np.arange(cfg.context))
        view = g.i64("rope_view", 1, 1, -1, hd)
        cos, sin = (g.op("Reshape", [g.op("Gather", [g.const(name, tab.astype(np.float32)), positions], axis=0), view])
                    for name, tab in (("rope_cos", cos_t), ("rope_sin", sin_t)))
        columns = g.op("Range", [g.const("start", np.array(0, dtype=np.int64)), scalar[1], step])
        future = g.op("Less", [g.op("Unsqueeze", [positions, one]), g.op("Unsqueeze", [columns, zero])])
        mask = g.op("Where", [future, g.const("neg_inf", np.array(-np.inf, dtype=np.float32)),
                              g.const("zero_f", np.array(0.0, dtype=np.float32))])
        mask = g.op("Tile", [mask, g.i64("mask_tiles", group, 1)])
        q_view = g.i64("q_view", 1, -1, cfg.heads, hd)
        kv_view = g.i64("kv_view", 1, -1, kvh, hd)
        grouped = g.i64("grouped", 1, kvh, -1, hd)
        heads_view = g.i64("heads_view", 1, cfg.heads, -1, hd)
        merged = g.i64("merged", 1, -1, cfg.hidden)
        scale = g.const("attn_scale", np.array(1.0 / np.sqrt(hd), dtype=np.float32))

        x = self.embedding("input_ids")
        for i in range(cfg.layers):
            p = f"blk.{i}."
            h = self.rms_norm(x, t[p + "attn_norm.weight"], p + "attn_norm")
            # one projection for query, key and value (and one for gate and up): fewer, larger kernels per step
            qkv = self.linear(h, _rows(t[p + "attn_q.weight"], t[p + "attn_k.weight"], t[p + "attn_v.weight"]),
                              p + "attn_qkv")
            q, k, v = g.ops("Split", [qkv, g.i64(p + "qkv_split", cfg.hidden, kvh * hd, kvh * hd)], 3, axis=-1)
            q = g.op("Transpose", [g.op("Reshape", [q, q_view])], perm=[0, 2, 1, 3])
            k = g.op("Transpose", [g.op("Reshape", [k, kv_view])], perm=[0, 2, 1, 3])
            v = g.op("Transpose", [g.op("Reshape", [v, kv_view])], perm=[0, 2, 1, 3])
            q, k = self.rope(g.op("Mul", [q, scale]), cos, sin), self.rope(k, cos, sin)
            keys, values = f"present.{i}.key", f"present.{i}.value"
            g.nodes.append(helper.make_node("Concat", [f"past_key_values.{i}.key", k], [keys], axis=2,
                                            name=f"cache_k_{i}"))
            g.nodes.append(helper.make_node("Concat", [f"past_key_values.{i}.value", v], [values], axis=2,
                                            name=f"cache_v_{i}"))
            # query heads j*group .. j*group+group-1 read kv head j: [1, kv_heads, group * S, head_dim]
            scores = g.op("MatMul", [g.op("Reshape", [q, grouped]), g.op("Transpose", [keys], perm=[0, 1, 3, 2])])
            probs = g.op("Softmax", [g.op("Add", [scores, mask])], axis=-1)
            attn = g.op("Reshape", [g.op("MatMul", [probs, values]), heads_view])
            attn = g.op("Reshape", [g.op("Transpose", [attn], perm=[0, 2, 1, 3]), merged])
            x = g.op("Add", [x, self.linear(attn, t[p + "attn_output.weight"], p + "attn_output")])
            h = self.rms_norm(x, t[p + "ffn_norm.weight"], p + "ffn_norm")
            gate_up = self.linear(h, _rows(t[p + "ffn_gate.weight"], t[p + "ffn_up.weight"]), p + "ffn_gate_up")
            gate, up = g.ops("Split", [gate_up, g.i64(p + "ffn_split", cfg.ffn, cfg.ffn)], 2, axis=-1)
            act = g.op("Mul", [g.op("Mul", [gate, g.op("Sigmoid", [gate])]), up])
            x = g.op("Add", [x, self.linear(act, t[p + "ffn_down.weight"], p + "ffn_down")])
        kept = g.op("Slice", [x, g.op("Neg", ["logits_to_keep"]), g.i64("slice_end", 2**62), one])
        self.head(self.rms_norm(kept, t["output_norm.weight"], "output_norm"), "logits")
        graph = helper.make_graph(g.nodes, f"smollm2_135m_{self.variant}", inputs, outputs, g.inits)
        opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(MS_DOMAIN, 1)] if self.variant == "q4" else [])
        return helper.make_model(graph, opset_imports=opsets)

    def embedding(self, ids: str) -> str:
        g, e = self.g, self.m.tensors["token_embd.weight"]
        if not isinstance(e, Q8Blocks):
            raise TypeError("token_embd.weight is expected as Q8_0")
        if self.variant == "fp32":
            self.embed_fp32 = g.const("token_embd", e.dequantize())
            return g.op("Gather", [self.embed_fp32, ids], axis=0)
        qi = e.q.astype(np.int16)
        self.embed_hi = g.const("token_embd.hi", _pack4(((qi >> 4) + 8).astype(np.uint8)))  # q = 16 (hi - 8) + lo
        self.embed_lo = g.const("token_embd.lo", _pack4((qi & 15).astype(np.uint8)))
        self.embed_scales = g.const("token_embd.scales", e.d)
        sixteen = g.const("f16_", np.array(16.0, dtype=np.float32))
        eight = g.const("f8_", np.array(8.0, dtype=np.float32))

        def nibbles(packed: str) -> str:  # gathered bytes [1, S, blocks, 16] -> values [1, S, blocks, 32] (float)
            b = g.op("Cast", [g.op("Gather", [packed, ids], axis=0)], to=1)
            high = g.op("Floor", [g.op("Div", [b, sixteen])])
            low = g.op("Sub", [b, g.op("Mul", [high, sixteen])])
            pairs = g.op("Concat", [g.op("Unsqueeze", [low, g.i64("last_axis", -1)]),
                                    g.op("Unsqueeze", [high, g.i64("last_axis", -1)])], axis=-1)
            return g.op("Reshape", [pairs, g.i64(f"{packed}.view", 1, -1, self.cfg.hidden // BLOCK, BLOCK)])

        q = g.op("Add", [g.op("Mul", [g.op("Sub", [nibbles(self.embed_hi), eight]), sixteen]), nibbles(self.embed_lo)])
        d = g.op("Unsqueeze", [g.op("Gather", [self.embed_scales, ids], axis=0), g.i64("last_axis", -1)])
        return g.op("Reshape", [g.op("Mul", [q, d]), g.i64("embed_view", 1, -1, self.cfg.hidden)])

    def head(self, x: str, out: str) -> None:
        """The tied output projection: x [1, n, hidden] -> logits [1, n, vocab]."""
        from onnx import helper

        g, cfg = self.g, self.cfg
        if not cfg.tied_embeddings:
            raise ValueError("only tied embeddings are converted (SmolLM2 ties them)")
        if self.variant == "fp32":
            flat = g.op("Reshape", [x, g.i64("flat", -1, cfg.hidden)])
            y = g.op("Gemm", [flat, self.embed_fp32], transB=1)
            g.nodes.append(helper.make_node("Reshape", [y, g.i64("logits_view", 1, -1, cfg.vocab)], [out],
                                            name="logits"))
            return
        blocks = cfg.hidden // BLOCK
        zero = g.const("token_embd.zp0", np.zeros((cfg.vocab, (blocks + 1) // 2), dtype=np.uint8))
        hi_scales = g.const("token_embd.hi_scales", (16.0 * self.m.tensors["token_embd.weight"].d).reshape(-1))
        common: dict[str, Any] = {"K": cfg.hidden, "N": cfg.vocab, "bits": 4, "block_size": BLOCK, "accuracy_level": 1}
        hi = g.op("MatMulNBits", [x, self.embed_hi, hi_scales], MS_DOMAIN, **common)  # zero point 8: 16 d (hi - 8)
        # the gather's scales [vocab, blocks] serve as they are: MatMulNBits takes them 2-D (1.20 and later)
        lo = g.op("MatMulNBits", [x, self.embed_lo, self.embed_scales, zero], MS_DOMAIN, **common)
        g.nodes.append(helper.make_node("Add", [hi, lo], [out], name="logits"))


def build_model(model: GgufModel, variant: str) -> Any:
    """The ONNX ModelProto of one variant (not yet finalized: see evalsuites.genai.build)."""
    return _Builder(model, variant).build()
