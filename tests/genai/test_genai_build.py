"""The converted model and datasets: pinned bytes, the tokenizer, and onnxruntime against the numpy reference."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from agents.harness.generative import perplexity, score
from evalsuites.genai.build import PINS
from evalsuites.genai.gguf_model import GGUF_SHA256
from evalsuites.sources import file_sha256
from tests.genai.conftest import built, npz


def test_built_files_match_their_pins(build_info: dict[str, Any]) -> None:
    """The models make install converted and the committed datasets are the bytes evalsuites/genai/pins.json pins."""
    pins = json.loads(PINS.read_text())["files"]
    assert set(build_info["files"]) <= set(pins)
    for rel in sorted(set(build_info["files"]) | {r for r in pins if r.startswith("data/")}):
        path = built(rel)
        assert path.stat().st_size == pins[rel]["size"], rel
        assert file_sha256(path) == pins[rel]["sha256"], f"{rel} differs from evalsuites/genai/pins.json"
    assert build_info["gguf"]["sha256"] == GGUF_SHA256


def test_config_is_smollm2_135m(gguf_model: Any) -> None:
    c = gguf_model.config
    assert (c.layers, c.hidden, c.ffn, c.heads, c.kv_heads, c.head_dim, c.vocab) == (30, 576, 1536, 9, 3, 64, 49152)
    assert c.tied_embeddings and c.rope_theta == 100000.0


def test_tokenizer_special_tokens_and_round_trip(gguf_model: Any) -> None:
    from evalsuites.genai.tokenizer import build_tokenizer, chat_prompt, encode

    tok = build_tokenizer(gguf_model.metadata)
    text = chat_prompt(gguf_model.metadata, "Is 2024 a leap year?")
    ids = encode(tok, text)
    assert ids[:3] == [1, 9690, 198]  # <|im_start|> system \n
    assert ids.count(1) == 3 and ids.count(2) == 2  # <|im_start|> x3, <|im_end|> x2
    assert tok.decode(ids, skip_special_tokens=False) == text
    assert encode(tok, " 2024") == [216, 34, 32, 34, 36]  # a space, then every digit apart (the smollm pre-tokenizer)
    prompts = npz("data/prompts-40.npz")["input_ids"]
    assert tok.decode(prompts[0].tolist(), skip_special_tokens=False).endswith("<|im_start|>assistant\n")


def test_onnx_logits_match_the_numpy_reference(gguf_model: Any, q4_session: Any) -> None:
    from evalsuites.genai.reference import KvCache, Reference

    prompt = npz("data/prompts-40.npz")["input_ids"][:1, :8]
    want = Reference(gguf_model).forward(prompt, KvCache())[0].astype(np.float64)  # [8, vocab]
    feed: dict[str, np.ndarray] = {"input_ids": prompt, "logits_to_keep": np.array([8], dtype=np.int64)}
    feed.update({i.name: np.zeros((1, 3, 0, 64), np.float32) for i in q4_session.get_inputs()
                 if i.name.startswith("past_")})
    got = q4_session.run(["logits"], feed)[0][0].astype(np.float64)
    assert got.shape == want.shape
    assert np.max(np.abs(got - want)) < 2e-3 * np.max(np.abs(want))
    assert np.array_equal(got.argmax(-1), want.argmax(-1))


def test_perplexity_matches_the_reference(q4_session: Any) -> None:
    window = npz("data/perplexity.npz")["input_ids"][0, :128]  # causal: the first 127 predictions need no more
    want = npz("data/perplexity-reference.npz")["log_likelihoods"][0, :127]
    got = score(q4_session, window)
    assert got.shape == want.shape and np.all(np.isfinite(got))
    assert abs(got.mean() - want.mean()) < 1e-3
    assert 2.0 < perplexity(got) < 60.0
