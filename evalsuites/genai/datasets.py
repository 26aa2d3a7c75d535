"""The generative scenario's token datasets: chat prompts at fixed lengths and held-out perplexity windows.

Prompts follow the instruct model's chat template from the GGUF (its default system message included) and are cut
to exactly 40, 128 or 512 tokens, so every prompt of a set has one length. The texts are topics of The Python
Language Reference as CPython's pydoc_data.topics ships them (PSF licence), committed in texts/: the perplexity
windows come from the "Execution model" chapter, which no prompt uses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from evalsuites.genai.tokenizer import chat_prompt, encode

TEXTS = Path(__file__).resolve().parent / "texts" / "python-reference-topics.json"
PROMPT_LENGTHS = (40, 128, 512)
# The template takes 30 tokens (its default system message and the role markers): 40 leave a 10-token question.
QUESTIONS = ("Explain in one sentence why the sky is blue.", "Write a haiku about the ocean at night.",
             "Why do cats purr when they are happy?", "What are the main causes of climate change today?",
             "Give me three tips for learning to code quickly.", "Suggest a good name for a friendly robot dog.")
PASSAGES = {128: ("for", "global", "exceptions", "booleans", "raise", "with"),
            512: ("try", "import", "function", "class", "calls", "comparisons")}
INSTRUCTION = "Summarize this passage from the Python reference in two sentences:\n\n"
PERPLEXITY_TOPIC = "execmodel"
PERPLEXITY_WINDOWS, PERPLEXITY_WINDOW = 8, 256
_SLOT = "\x00"


def texts() -> dict[str, str]:
    return dict(json.loads(TEXTS.read_text(encoding="utf-8"))["topics"])


def _prompt(tok: Any, meta: dict[str, Any], content: str, length: int) -> np.ndarray:
    """The chat prompt of one user message, its content cut so the whole prompt is exactly `length` tokens."""
    before, after = chat_prompt(meta, _SLOT).split(_SLOT)
    head, tail = encode(tok, before), encode(tok, after)
    body = encode(tok, content)
    room = length - len(head) - len(tail)
    if room < 1 or len(body) < room:
        raise ValueError(f"content {content[:40]!r} gives {len(body)} tokens; a {length}-token prompt needs {room}")
    return np.array(head + body[:room] + tail, dtype=np.int64)


def prompt_sets(tok: Any, meta: dict[str, Any]) -> dict[int, np.ndarray]:
    """prompt length -> input_ids [prompts, length] int64."""
    topics = texts()
    out = {40: np.stack([_prompt(tok, meta, q, 40) for q in QUESTIONS])}
    for length, names in PASSAGES.items():
        out[length] = np.stack([_prompt(tok, meta, INSTRUCTION + topics[n], length) for n in names])
    return out


def perplexity_windows(tok: Any) -> np.ndarray:
    """input_ids [windows, window] int64: consecutive non-overlapping windows of the held-out chapter."""
    ids = encode(tok, texts()[PERPLEXITY_TOPIC])
    need = PERPLEXITY_WINDOWS * PERPLEXITY_WINDOW
    if len(ids) < need:
        raise ValueError(f"the perplexity text has {len(ids)} tokens, {need} are needed")
    return np.array(ids[:need], dtype=np.int64).reshape(PERPLEXITY_WINDOWS, PERPLEXITY_WINDOW)
