"""The generative scenario's contract, shared by the agent, the lab, the verifier and the suite validator: the model
interface a KV-cache decoder must have, the dataset and golden arrays a task uses, and the raw sample kinds a device
sends.

Raw samples of a generative task (one set per repeat, `;repeat=r` as for latency when repeats > 1):

- `latency`: one row per prompt (request) q: index q, sample_index the dataset row, t_ns the issue time, value the
  end-to-end latency (last token's time minus issue time), aux the prompt's length in tokens.
- `token`: one row per generated token, the tokens of request q in order: index q, sample_index the dataset row,
  t_ns the time the token was known (its argmax taken), value the token id (aux unused, 0). The device sends no
  reference: the lab joins its own copy of the golden decode to these rows (pilotlab.genai_metrics.with_reference)
  and writes it as the `label` column of the report bundle's token files, as it writes dataset labels beside
  predictions; conformance compares `value` with that `label`, never with anything the device sent.

In the first repeat, when perplexity_windows > 0:

- `log-likelihood`: one row per scored position: index the row, sample_index the window (dataset row), value the
  position t of the predicted token (1-based), aux its token id, fvalue log p(token | the window before t). The
  device sends no reference log-likelihoods either: the lab joins the golden's log_likelihoods[window, t - 1] from
  its own copy of the artifact (pilotlab.genai_metrics.with_reference) and writes them as the float `reference`
  column of the report bundle's log-likelihood file; perplexity's ratio is computed against that column only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

INPUT_IDS = "input_ids"              # dataset: int64 [prompts, length]
GENERATED_IDS = "generated_ids"      # golden: int64 [prompts, >= max_new_tokens], a reference greedy decode
LOG_LIKELIHOODS = "log_likelihoods"  # golden: float [windows, length - 1], reference log p(w[t] | w[:t])
GOLDEN_ARRAYS = (GENERATED_IDS, LOG_LIKELIHOODS)

TOKEN_KIND = "token"
LL_KIND = "log-likelihood"
REFERENCE_NONE = -1
GENERATIVE_KINDS = (TOKEN_KIND, LL_KIND)  # besides latency: what labd accepts (no reference set from a device)

_PAST = re.compile(r"^past_key_values\.(\d+)\.(key|value)$")


class NotADecoder(ValueError):
    """The model is not a KV-cache decoder of the expected shape; the message is one line."""


@dataclass(frozen=True)
class DecoderSpec:
    """What the generate loop needs to know about the model, read from its inputs and outputs."""

    layers: int
    kv_heads: int
    head_dim: int
    vocab: int
    past_names: tuple[str, ...]  # past_key_values.0.key, past_key_values.0.value, 1.key, ...
    present_names: tuple[str, ...]  # present.0.key, ... in the same order


def decoder_spec(inputs: Sequence[Any], outputs: Sequence[Any]) -> DecoderSpec:
    """The decoder's shape from onnxruntime's input and output descriptions (name, type, shape), or NotADecoder
    saying in one line what is missing or wrong.

    The interface (batch 1): inputs `input_ids` int64 [1, S], `logits_to_keep` int64 [1],
    `past_key_values.{i}.key|value` float [1, kv_heads, P, head_dim]; outputs `logits` [1, kept, vocab] and
    `present.{i}.key|value` [1, kv_heads, P + S, head_dim]."""
    ins = {i.name: i for i in inputs}
    outs = {o.name: o for o in outputs}

    def refuse(why: str) -> NotADecoder:
        return NotADecoder(f"not a KV-cache decoder of the generative scenario: {why}")

    for name, kind in ((INPUT_IDS, "tensor(int64)"), ("logits_to_keep", "tensor(int64)")):
        if name not in ins or ins[name].type != kind:
            raise refuse(f"it needs an {kind[7:-1]} input {name!r} (it has {', '.join(sorted(ins)) or 'none'})")
    past = sorted(((int(m.group(1)), m.group(2)) for m in map(_PAST.match, ins) if m), key=lambda p: (p[0], p[1]))
    layers = len(past) // 2
    if layers == 0 or past != [(i, k) for i in range(layers) for k in ("key", "value")]:
        raise refuse("it needs inputs past_key_values.{i}.key and .value for layers 0..n-1")
    if len(ins) != 2 + 2 * layers:
        extra = sorted(set(ins) - {INPUT_IDS, "logits_to_keep"} - {f"past_key_values.{i}.{k}" for i, k in past})
        raise refuse(f"unexpected inputs {', '.join(extra)}")
    shape = ins["past_key_values.0.key"].shape
    if len(shape) != 4 or not isinstance(shape[1], int) or not isinstance(shape[3], int):
        raise refuse(f"past_key_values.0.key must be [1, kv_heads, past, head_dim] with fixed heads, not {shape}")
    logits = outs.get("logits")
    if logits is None or len(logits.shape) != 3 or not isinstance(logits.shape[2], int):
        raise refuse("it needs an output 'logits' [1, kept, vocab] with a fixed vocab")
    present = tuple(f"present.{i}.{k}" for i, k in past)
    missing = [n for n in present if n not in outs]
    if missing:
        raise refuse(f"output {missing[0]} is missing")
    return DecoderSpec(layers, int(shape[1]), int(shape[3]), int(logits.shape[2]),
                       tuple(f"past_key_values.{i}.{k}" for i, k in past), present)
