"""SmolLM2's tokenizer, rebuilt from the GGUF's vocabulary and merges with the tokenizers package (build time only).

It is GPT-2's byte-level BPE with the StarCoder pre-tokenizer that the GGUF names `smollm`: every digit apart, then
GPT-2's split of letters, numbers, punctuation and spaces. The agent never tokenizes: the datasets carry token ids.
"""

from __future__ import annotations

from typing import Any

from evalsuites.genai.gguf_model import GgufError


def build_tokenizer(meta: dict[str, Any]) -> Any:
    """A tokenizers.Tokenizer equal to SmolLM2's, with its special tokens (<|im_start|>, <|im_end|>, ...)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    if meta.get("tokenizer.ggml.model") != "gpt2" or meta.get("tokenizer.ggml.pre") != "smollm":
        raise GgufError("the GGUF's tokenizer is not the gpt2/smollm byte-level BPE this build knows")
    tokens = list(meta["tokenizer.ggml.tokens"])
    types = list(meta["tokenizer.ggml.token_type"])
    merges = [tuple(m.split(" ", 1)) for m in meta["tokenizer.ggml.merges"]]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    control = 3  # llama.cpp's token type of control tokens
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, k in zip(tokens, types, strict=True)
                            if k == control])
    return tok


def chat_prompt(meta: dict[str, Any], user: str) -> str:
    """The instruct model's prompt for one user message, rendered from the GGUF's own chat template."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    template = ImmutableSandboxedEnvironment(keep_trailing_newline=True).from_string(meta["tokenizer.chat_template"])
    return str(template.render(messages=[{"role": "user", "content": user}], add_generation_prompt=True))


def encode(tok: Any, text: str) -> list[int]:
    """Token ids of text, special tokens recognised, nothing added (the GGUF says add_bos_token = false)."""
    return list(tok.encode(text, add_special_tokens=False).ids)
