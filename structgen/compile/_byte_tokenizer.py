"""A 256-token byte-level tokenizer for llguidance, so grammars can be checked without a model."""

from __future__ import annotations

import functools

import llguidance

_EOS = 256


class _Bytes:
    eos_token_id = _EOS
    bos_token_id = None
    def __init__(self) -> None:
        self.special_token_ids = [_EOS]
        self.tokens = [bytes([b]) for b in range(256)] + [b"\xff<eos>"]

    def __call__(self, text: bytes | str) -> list[int]:
        data = text.encode("utf-8") if isinstance(text, str) else text
        return list(data)


@functools.cache
def byte_tokenizer() -> llguidance.LLTokenizer:
    """An ``LLTokenizer`` whose tokens are the 256 single bytes plus EOS (id 256)."""
    return llguidance.LLTokenizer(llguidance.TokenizerWrapper(_Bytes()))


def grammar_accepts(grammar: str, text: str) -> bool:
    """True if the llguidance ``grammar`` (as from ``LLMatcher.grammar_from_*``) accepts exactly ``text``."""
    tok = byte_tokenizer()
    matcher = llguidance.LLMatcher(tok, grammar, log_level=0)
    if matcher.is_error():
        raise ValueError(matcher.get_error())
    data = text.encode("utf-8")
    if matcher.try_consume_tokens(list(data)) != len(data):
        return False
    return matcher.is_accepting()
