"""Generative scenario, device side: greedy decoding with a KV cache over a plain onnxruntime session, timed per token.

The model is a decoder of the shape evalsuites.genai builds: inputs `input_ids` int64 [1, S], `logits_to_keep`
int64 [1], `past_key_values.{i}.key|value` float [1, kv_heads, P, head_dim]; outputs `logits` [1, kept, vocab] and
`present.{i}.key|value` [1, kv_heads, P + S, head_dim]. One prompt is one request: its issue time, then the time
each new token is known (argmax taken), on the harness clock (time.perf_counter_ns). The hot loop holds only the
model step (the previous step's cache outputs handed back as inputs), the argmax and the timestamp; the token and
time arrays are preallocated. Imports only numpy and pilotlab.genai (the model interface): the caller hands it an
onnxruntime InferenceSession.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pilotlab.genai import DecoderSpec, NotADecoder, decoder_spec

__all__ = ["Decoder", "DecoderSpec", "Generation", "NotADecoder", "PromptRun", "generate", "inspect_decoder",
           "perplexity", "run_prompts", "score", "warm_up"]


@dataclass(frozen=True)
class Generation:
    """One request: the new tokens and the raw timestamps (ns, time.perf_counter_ns) of its issue and of each token."""

    token_ids: np.ndarray  # int64 [n]
    t_issue_ns: int
    t_token_ns: np.ndarray  # int64 [n], non-decreasing; t_token_ns[0] - t_issue_ns is the time to first token


def inspect_decoder(session: Any) -> DecoderSpec:
    """The decoder's shape, or NotADecoder saying in one line what is missing or wrong (pilotlab.genai)."""
    return decoder_spec(session.get_inputs(), session.get_outputs())


class Decoder:
    """A greedy KV-cache decode loop bound to one session; reuse it for every prompt of a run."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.spec = spec = inspect_decoder(session)
        self._outputs = ["logits", *spec.present_names]
        self._token = np.zeros((1, 1), dtype=np.int64)  # the decode step's input, rewritten in place
        empty = np.zeros((1, spec.kv_heads, 0, spec.head_dim), dtype=np.float32)
        self._start: dict[str, np.ndarray] = {"logits_to_keep": np.ones(1, dtype=np.int64)}
        self._start.update({name: empty for name in spec.past_names})
        self._pairs = tuple((name, j + 1) for j, name in enumerate(spec.past_names))

    def generate(self, prompt_ids: np.ndarray, max_new_tokens: int) -> Generation:
        """Prefill prompt_ids (1-D or [1, S] int64), then greedily decode exactly max_new_tokens tokens."""
        prompt = np.ascontiguousarray(np.asarray(prompt_ids, dtype=np.int64).reshape(1, -1))
        if prompt.shape[1] < 1 or max_new_tokens < 1:
            raise ValueError("generate needs a non-empty prompt and max_new_tokens >= 1")
        tokens = np.zeros(max_new_tokens, dtype=np.int64)
        stamps = np.zeros(max_new_tokens, dtype=np.int64)
        return Generation(tokens, self.generate_into(prompt, tokens, stamps), stamps)

    def generate_into(self, prompt: np.ndarray, tokens: np.ndarray, stamps: np.ndarray) -> int:
        """generate() into preallocated int64 arrays of len(tokens) new tokens and their times, for a contiguous
        int64 prompt [1, S]; returns the issue time."""
        feed = dict(self._start, input_ids=prompt)
        # present.{i} (output 1 + j) becomes past_key_values.{i} of the next step: onnxruntime returns the outputs
        # as arrays over its own buffers, so handing them back copies nothing (io_binding measured no faster).
        pairs = self._pairs
        run, names, token, clock, argmax = self.session.run, self._outputs, self._token, time.perf_counter_ns, np.argmax
        t_issue = clock()
        out = run(names, feed)
        tokens[0] = token[0, 0] = argmax(out[0][0, -1])
        stamps[0] = clock()
        feed["input_ids"] = token
        for n in range(1, tokens.shape[0]):
            for name, k in pairs:
                feed[name] = out[k]
            out = run(names, feed)
            tokens[n] = token[0, 0] = argmax(out[0][0, -1])
            stamps[n] = clock()
        return int(t_issue)


@dataclass(frozen=True)
class PromptRun:
    """A timed run of prompts: per request its dataset row, prompt length and issue time; per request and token the
    token id and the time it was known (ns, harness clock)."""

    sample_index: np.ndarray  # int64 [Q]
    prompt_tokens: np.ndarray  # int64 [Q]
    t_issue_ns: np.ndarray  # int64 [Q]
    token_ids: np.ndarray  # int64 [Q, max_new_tokens]
    t_token_ns: np.ndarray  # int64 [Q, max_new_tokens]


def run_prompts(decoder: Decoder, prompts: Sequence[np.ndarray], max_new_tokens: int, min_count: int,
                min_duration_ms: int = 0, max_count: int = 1_000_000) -> PromptRun:
    """The prompts in order, wrapping around, one request at a time, until at least min_count requests (and one)
    and min_duration_ms have passed, at most max_count. Prompts are preloaded contiguous int64 [1, S] arrays; each
    request writes into preallocated rows, so between the timestamps runs nothing but the model and the argmax."""
    n = len(prompts)
    if n == 0 or max_new_tokens < 1:
        raise ValueError("run_prompts needs at least one prompt and max_new_tokens >= 1")
    need = max(1, min_count)
    cap = min(max(need, 16), max_count)
    issue = np.zeros(cap, dtype=np.int64)
    tokens = np.zeros((cap, max_new_tokens), dtype=np.int64)
    stamps = np.zeros((cap, max_new_tokens), dtype=np.int64)
    min_ns = int(min_duration_ms) * 1_000_000
    generate_into, clock = decoder.generate_into, time.perf_counter_ns
    q = 0
    start = clock()
    while q < max_count and (q < need or clock() - start < min_ns):
        if q == cap:
            cap = min(2 * cap, max_count)
            issue.resize(cap, refcheck=False)
            tokens = np.concatenate((tokens, np.zeros((cap - q, max_new_tokens), dtype=np.int64)))
            stamps = np.concatenate((stamps, np.zeros((cap - q, max_new_tokens), dtype=np.int64)))
        issue[q] = generate_into(prompts[q % n], tokens[q], stamps[q])
        q += 1
    rows = np.arange(q, dtype=np.int64) % n
    lengths = np.array([p.shape[-1] for p in prompts], dtype=np.int64)[rows]
    return PromptRun(rows, lengths, issue[:q].copy(), tokens[:q].copy(), stamps[:q].copy())


def warm_up(decoder: Decoder, prompts: Sequence[np.ndarray], count: int, max_new_tokens: int) -> dict[str, Any]:
    """count untimed requests (the prompts in order), as the timed run makes them; says how long they took."""
    t0 = time.perf_counter_ns()
    tokens = np.zeros(max_new_tokens, dtype=np.int64)
    stamps = np.zeros(max_new_tokens, dtype=np.int64)
    for q in range(count):
        decoder.generate_into(prompts[q % len(prompts)], tokens, stamps)
    return {"queries": count, "ms": (time.perf_counter_ns() - t0) / 1e6}


def generate(session: Any, prompt_ids: np.ndarray, max_new_tokens: int) -> Generation:
    """One prompt through a fresh Decoder (a run of many prompts should keep one Decoder)."""
    return Decoder(session).generate(prompt_ids, max_new_tokens)


def score(session: Any, ids: np.ndarray) -> np.ndarray:
    """log p(ids[t] | ids[:t]) for t = 1..len(ids)-1 (float64), one pass from an empty cache: for perplexity."""
    spec = inspect_decoder(session)
    window = np.ascontiguousarray(np.asarray(ids, dtype=np.int64).reshape(1, -1))
    n = window.shape[1]
    if n < 2:
        raise ValueError("score needs at least two tokens")
    feed: dict[str, np.ndarray] = {"input_ids": window, "logits_to_keep": np.array([n], dtype=np.int64)}
    empty = np.zeros((1, spec.kv_heads, 0, spec.head_dim), dtype=np.float32)
    feed.update({name: empty for name in spec.past_names})
    logits = session.run(["logits"], feed)[0][0, :-1].astype(np.float64)
    top = logits.max(axis=-1)
    logz = np.log(np.exp(logits - top[:, None]).sum(axis=-1)) + top
    return np.asarray(logits[np.arange(n - 1), window[0, 1:]] - logz)


def perplexity(log_likelihoods: np.ndarray) -> float:
    """exp of the mean negative log-likelihood per predicted token."""
    return float(np.exp(-np.mean(log_likelihoods)))
