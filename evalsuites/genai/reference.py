"""The numpy reference of SmolLM2's forward pass, independent of onnxruntime and of the ONNX graphs.

It runs on the dequantized GGUF weights (float32 matrix products, float64 normalisation, softmax and log-softmax)
and gives what the generative scenario's quality figures are checked against: greedy decodes and per-token
log-likelihoods.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from evalsuites.genai.gguf_model import GgufModel, LlamaConfig


@dataclass
class KvCache:
    """Keys and values of every layer so far: [batch, kv_heads, length, head_dim] each, float32."""

    keys: list[np.ndarray] = field(default_factory=list)
    values: list[np.ndarray] = field(default_factory=list)

    @property
    def length(self) -> int:
        return int(self.keys[0].shape[2]) if self.keys else 0


def rope_tables(cfg: LlamaConfig, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin [len(positions), head_dim] of Llama's rotary embedding (halves rotated, as Hugging Face does)."""
    half = cfg.head_dim // 2
    inv_freq = 1.0 / (cfg.rope_theta ** (np.arange(half, dtype=np.float64) * 2.0 / cfg.head_dim))
    angles = np.asarray(positions, dtype=np.float64)[:, None] * inv_freq[None, :]
    cos, sin = np.cos(angles), np.sin(angles)
    return np.concatenate((cos, cos), axis=1), np.concatenate((sin, sin), axis=1)


def _rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    x64 = x.astype(np.float64)
    return np.asarray(x64 / np.sqrt(np.mean(x64 * x64, axis=-1, keepdims=True) + eps) * w, dtype=np.float32)


def _rotate(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    half = x.shape[-1] // 2
    rotated = np.concatenate((-x[..., half:], x[..., :half]), axis=-1)
    return np.asarray(x * cos + rotated * sin, dtype=np.float32)


class Reference:
    """SmolLM2 in numpy: forward with a KV cache, greedy decoding, log-likelihoods."""

    def __init__(self, model: GgufModel) -> None:
        cfg = self.cfg = model.config
        t = model.tensors
        self.embed = t["token_embd.weight"].dequantize()  # [vocab, hidden], also the (tied) output projection
        self.head = self.embed if cfg.tied_embeddings else t["output.weight"].dequantize()
        self.final_norm = t["output_norm.weight"]
        self.layers = []
        for i in range(cfg.layers):
            p = f"blk.{i}."
            self.layers.append({
                "attn_norm": t[p + "attn_norm.weight"], "ffn_norm": t[p + "ffn_norm.weight"],
                # stored transposed, [in, out], so that x @ w is the projection
                **{k: np.ascontiguousarray(t[p + k + ".weight"].dequantize().T)
                   for k in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")},
            })

    def forward(self, ids: np.ndarray, cache: KvCache, last_only: bool = False) -> np.ndarray:
        """Logits [batch, S, vocab] (float32) of the tokens following each of ids [batch, S] (with last_only, of the
        last position only: [batch, 1, vocab]); extends cache."""
        cfg = self.cfg
        ids = np.asarray(ids, dtype=np.int64)
        b, s = ids.shape
        past = cache.length
        cos, sin = rope_tables(cfg, np.arange(past, past + s))
        x = self.embed[ids]  # [b, s, hidden]
        group = cfg.heads // cfg.kv_heads
        causal = np.triu(np.full((s, past + s), -np.inf), k=past + 1)
        for i, lw in enumerate(self.layers):
            h = _rms_norm(x, lw["attn_norm"], cfg.rms_eps)
            q = (h @ lw["attn_q"]).reshape(b, s, cfg.heads, cfg.head_dim).transpose(0, 2, 1, 3)
            k = (h @ lw["attn_k"]).reshape(b, s, cfg.kv_heads, cfg.head_dim).transpose(0, 2, 1, 3)
            v = (h @ lw["attn_v"]).reshape(b, s, cfg.kv_heads, cfg.head_dim).transpose(0, 2, 1, 3)
            q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
            if i < len(cache.keys):
                cache.keys[i] = np.concatenate((cache.keys[i], k), axis=2)
                cache.values[i] = np.concatenate((cache.values[i], v), axis=2)
            else:
                cache.keys.append(k)
                cache.values.append(v)
            keys = np.repeat(cache.keys[i], group, axis=1)  # query head j reads kv head j // group
            values = np.repeat(cache.values[i], group, axis=1)
            scores = (q @ keys.transpose(0, 1, 3, 2)).astype(np.float64) / np.sqrt(cfg.head_dim) + causal
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            probs = (scores / scores.sum(axis=-1, keepdims=True)).astype(np.float32)
            attn = (probs @ values).transpose(0, 2, 1, 3).reshape(b, s, cfg.hidden)
            x = x + attn @ lw["attn_output"]
            h = _rms_norm(x, lw["ffn_norm"], cfg.rms_eps)
            gate = (h @ lw["ffn_gate"]).astype(np.float64)
            act = (gate / (1.0 + np.exp(-gate))).astype(np.float32) * (h @ lw["ffn_up"])
            x = x + act @ lw["ffn_down"]
        if last_only:
            x = x[:, -1:]
        return np.asarray(_rms_norm(x, self.final_norm, cfg.rms_eps) @ self.head.T)

    def greedy(self, prompts: np.ndarray, new_tokens: int) -> np.ndarray:
        """new_tokens [batch, new_tokens] greedily decoded after each of prompts [batch, S], all in one batch.

        Decoding never stops early (the count is fixed, as in the scenario); a batch of equal-length prompts reads
        the weights once per step for all of them.
        """
        cache = KvCache()
        logits = self.forward(prompts, cache, last_only=True)[:, -1]
        out = np.zeros((len(prompts), new_tokens), dtype=np.int64)
        for n in range(new_tokens):
            out[:, n] = np.argmax(logits, axis=-1)
            if n + 1 < new_tokens:
                logits = self.forward(out[:, n:n + 1], cache, last_only=True)[:, -1]
        return out

    def log_likelihoods(self, windows: np.ndarray, chunk: int = 64) -> np.ndarray:
        """log p(w[t] | w[:t]) for t = 1..W-1 of each window w of windows [batch, W] (float64), W fed in chunks."""
        windows = np.asarray(windows, dtype=np.int64)
        b, w = windows.shape
        cache = KvCache()
        out = np.zeros((b, w - 1), dtype=np.float64)
        rows = np.arange(b)[:, None]
        for start in range(0, w - 1, chunk):
            stop = min(start + chunk, w - 1)
            logits = self.forward(windows[:, start:stop], cache).astype(np.float64)
            top = logits.max(axis=-1)
            logz = np.log(np.exp(logits - top[..., None]).sum(axis=-1)) + top
            out[:, start:stop] = logits[rows, np.arange(stop - start)[None, :], windows[:, start + 1:stop + 1]] - logz
        return out
