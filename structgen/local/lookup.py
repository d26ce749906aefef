"""Draft tokens for speculative decoding, looked up in the sequence's own context (prompt lookup).

Structured output copies: an extraction repeats the document's names, numbers and phrases, and a value often repeats
text the prompt or an earlier value already holds. When the last few tokens of a sequence occurred before, the
tokens that followed them then are a good guess of what follows now. The decode loop sends that guess (the draft)
to the model in the same batch as the token just chosen, reads the logits of every drafted position, and keeps the
drafted tokens for as long as the sampler, run on those logits as it would have been run step by step, picks them
(``decode.Loop.verify``). The sampler makes the same picks from the same logits; the draft only changes how many model
steps a reply takes (llama.cpp's logits themselves depend a little on the batch they come from: see ``LlamaCpp``).

On a CPU a drafted token is not free (each adds about a third of a one-token step on SmolLM2, 2 cores), so drafts
are short, only proposed from a match of at least ``MIN_MATCH`` tokens, and cut where the grammar would refuse them.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["MAX_MATCH", "MIN_MATCH", "PromptLookup"]

MIN_MATCH = 2
"""Tokens the end of the sequence must share with an earlier place before what followed there is proposed."""

MAX_MATCH = 4
"""Longest end of the sequence looked up; a longer match is tried first (it predicts better)."""


class PromptLookup:
    """An index of the n-grams (``MIN_MATCH``..``MAX_MATCH`` tokens) of a prompt and of the tokens generated after it,
    each mapped to where it last ended, so a draft costs a few dictionary lookups a step, not a scan of the context.

    ``propose(generated, k)`` takes the sequence's generated tokens as they stand (they may have been taken back by a
    back-off since the last call: ``version`` changes then, and the generated part is indexed again)."""

    __slots__ = ("_index", "_prompt_len", "_tokens", "_version")

    def __init__(self, prompt: Sequence[int]) -> None:
        self._tokens: list[int] = list(prompt)
        self._prompt_len = len(self._tokens)
        self._index: dict[tuple[int, ...], int] = {}
        self._version = 0
        self._add(MIN_MATCH, len(self._tokens))

    def propose(self, generated: Sequence[int], k: int, version: int = 0) -> list[int]:
        """Up to ``k`` tokens that followed the longest earlier occurrence of the end of prompt + ``generated``."""
        if k <= 0:
            return []
        self._sync(generated, version)
        tokens = self._tokens
        n_all = len(tokens)
        for n in range(min(MAX_MATCH, n_all - 1), MIN_MATCH - 1, -1):
            end = self._index.get(tuple(tokens[n_all - n:]))
            if end is not None:
                return tokens[end:end + k]
        return []

    def _sync(self, generated: Sequence[int], version: int) -> None:
        tokens = self._tokens
        known = len(tokens) - self._prompt_len
        if version != self._version or len(generated) < known:   # taken back: index the generated part again
            self._version = version
            del tokens[self._prompt_len:]
            self._index = {}
            self._add(MIN_MATCH, self._prompt_len)
            known = 0
        if len(generated) > known:
            before = len(tokens)
            tokens.extend(generated[known:])
            self._add(max(MIN_MATCH, before), len(tokens))

    def _add(self, start: int, stop: int) -> None:
        """Index the n-grams that end just before positions ``start`` .. ``stop - 1`` (``stop``: the length so far).
        The sequence's own end is never indexed, so looking it up finds an earlier occurrence, with a token after."""
        tokens, index = self._tokens, self._index
        for end in range(max(start, MIN_MATCH), stop):
            for n in range(MIN_MATCH, min(MAX_MATCH, end) + 1):
                index[tuple(tokens[end - n:end])] = end
