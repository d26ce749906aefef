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

from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from itertools import accumulate

__all__ = ["MAX_MATCH", "MAX_PROPOSALS", "MIN_MATCH", "PromptLookup"]

MIN_MATCH = 2
"""Tokens the end of the sequence must share with an earlier place before what followed there is proposed."""

MAX_MATCH = 4
"""Longest end of the sequence looked up; a longer match is tried first (it predicts better)."""

MAX_PROPOSALS = 4
"""Guesses a grammar-constrained draft tries (``PromptLookup.proposals``) before it gives up on a step's draft."""

TEXT_MATCH = (12, 8, 5)
"""Bytes of the context's end looked up as text, longest first, when no token n-gram matches (``PromptLookup``)."""

WORD_BREAKS = (b'"', b":", b",", b"[", b"{", b" ")
"""Bytes after which a word (``PromptLookup._word_start``) begins: JSON's punctuation, and a space."""

WORD_MIN = 2
"""Shortest word start looked up: one byte (a digit) guesses wrong too often (measured: fresh schemas 2 % slower)."""

WORD_MAX = 12
"""Longest word start looked up (a longer one is matched by the byte lookup if at all)."""

WORD_TRIES = 8
"""Occurrences of a word start checked for a word boundary before it."""

SPELLED_BYTES_PER_TOKEN = 16
"""Bytes of a forced text ``PromptLookup.spelling`` spells per token asked for: a long forced literal (fast-forward off)
is spelled a piece at a time."""

SPELLING_TRIES = 16
"""Occurrences of a forced text ``PromptLookup.spelling`` checks for token boundaries before it tokenizes the text."""


class PromptLookup:
    """An index of the n-grams (``MIN_MATCH``..``MAX_MATCH`` tokens) of a prompt and of the tokens generated after it,
    each mapped to the places where it ended, so a draft costs a few dictionary lookups a step, not a scan of the
    context.

    ``propose(generated, k)`` takes the sequence's generated tokens as they stand (they may have been taken back by a
    back-off since the last call: ``version`` changes then, and the generated part is indexed again).

    Given the vocabulary's ``texts`` and a ``tokenize`` function, it also looks the context's end up as text: a value
    copied into JSON is tokenized apart from its source (``"Maria`` after a quote, `` Maria`` in the document), so
    its tokens match nowhere while its bytes do; what followed those bytes is tokenized into a last guess (on a CPU a
    drafted token costs about a third of a step, so the text is only looked up where the token n-grams found nothing
    the grammar takes: measured on the extraction documents, 9 % fewer model steps, ~3 % less decode time). A value's
    first bytes, too few for that, are looked up where a word begins (``_word_start``: ~1.5 % less decode time on the
    documents). ``spelling`` gives the tokens of a text the grammar forces (``Matcher.forced_bytes``)."""

    __slots__ = ("_bytes", "_index", "_prompt_len", "_starts", "_text", "_tokens", "_version")

    def __init__(self, prompt: Sequence[int], *, texts: Sequence[bytes] | None = None,
                 tokenize: Callable[[str], list[int]] | None = None) -> None:
        self._tokens: list[int] = list(prompt)
        self._prompt_len = len(self._tokens)
        self._index: dict[tuple[int, ...], list[int]] = {}
        self._version = 0
        self._add(MIN_MATCH, len(self._tokens))
        # The text lookup needs both: each token's bytes, and the tokenizer to turn found text back into tokens.
        self._text = (texts, tokenize) if texts is not None and tokenize is not None else None
        self._bytes = bytearray(b"".join(self._text[0][t] for t in self._tokens) if self._text else b"")
        # Where each token's text begins in ``_bytes`` (and, last, where the text ends): the token boundaries.
        self._starts = list(accumulate((len(self._text[0][t]) for t in self._tokens), initial=0)) if self._text else []

    def propose(self, generated: Sequence[int], k: int, version: int = 0) -> list[int]:
        """Up to ``k`` tokens that followed the latest occurrence of the longest matching end of prompt +
        ``generated``; [] when none matches."""
        return next(self.proposals(generated, k, version), [])

    def proposals(self, generated: Sequence[int], k: int, version: int = 0,
                  limit: int = MAX_PROPOSALS) -> Iterator[list[int]]:
        """Up to ``limit`` different guesses of ``k`` tokens (fewer at the context's end), best first: the longest
        match before shorter ones, a later occurrence before an earlier one. A grammar that refuses the first guess
        may accept another (the document's text after the same words, elsewhere)."""
        if k <= 0 or limit <= 0:
            return
        self._sync(generated, version)
        tokens = self._tokens
        n_all = len(tokens)
        seen: set[tuple[int, ...]] = set()
        for n in range(min(MAX_MATCH, n_all - 1), MIN_MATCH - 1, -1):
            ends = self._index.get(tuple(tokens[n_all - n:]))
            if not ends:
                continue
            for end in reversed(ends):
                guess = tokens[end:end + k]
                key = tuple(guess)
                if key in seen:
                    continue
                seen.add(key)
                yield guess
                if len(seen) >= limit:
                    return
        guess = self._text_guess(k)
        if guess and tuple(guess) not in seen:
            yield guess

    def spelling(self, text: bytes, generated: Sequence[int], k: int, version: int = 0) -> list[int]:
        """Up to ``k`` tokens that write ``text`` (its first ``SPELLED_BYTES_PER_TOKEN * k`` bytes): as the context
        last wrote it in whole tokens (a model keeps its own spelling of the JSON between a key and its value, ``":``
        ``"`` or ``":"``), else as the tokenizer writes it, as much of that as writes a prefix of ``text``. [] without
        the text lookup's vocabulary and tokenizer."""
        text = text[:SPELLED_BYTES_PER_TOKEN * k]
        if self._text is None or not text:
            return []
        self._sync(generated, version)
        data, starts = self._bytes, self._starts
        end = len(data)
        for _ in range(SPELLING_TRIES):
            at = data.rfind(text, 0, end)
            if at < 0:
                break
            first, last = bisect_left(starts, at), bisect_left(starts, at + len(text))
            if starts[first] == at and last < len(starts) and starts[last] == at + len(text):
                return self._tokens[first:min(last, first + k)]
            end = at + len(text) - 1
        tokens = self._text[1](text.decode("utf-8", "ignore"))[:k]
        return tokens[:self._writing(text, tokens)]

    def _text_guess(self, k: int) -> list[int]:
        """The first ``k`` tokens of what followed the latest earlier occurrence of the context's last bytes; failing
        that, of the rest of the latest word that begins like the context's last word (``_word_start``)."""
        if self._text is None:
            return []
        data = self._bytes
        n = len(data)
        for size in TEXT_MATCH:
            if n <= size:
                continue
            at = data.rfind(data[n - size:], 0, n - 1)   # an occurrence with at least one byte after it
            if at >= 0:
                return self._tokens_at(at + size, k)
        at = self._word_start()
        return self._tokens_at(at, k) if at >= 0 else []

    def _word_start(self) -> int:
        """A value's first bytes, right after JSON's punctuation (``"20``, ``:42``): too short, or too new, for the byte
        lookup, they are looked up as the start of a word (after a byte that is not a letter or digit), latest first;
        where that word goes on, or -1."""
        data = self._bytes
        n = len(data)
        cut = max(data.rfind(b, max(0, n - WORD_MAX - 1)) for b in WORD_BREAKS)
        word = bytes(data[cut + 1:]) if cut >= 0 else b""
        if len(word) < WORD_MIN:
            return -1
        end = n - 1
        for _ in range(WORD_TRIES):
            at = data.rfind(word, 0, end)
            if at < 0:
                return -1
            if at == 0 or not data[at - 1:at].isalnum():
                return at + len(word)
            end = at + len(word) - 1
        return -1

    def _tokens_at(self, start: int, k: int) -> list[int]:
        """The first ``k`` tokens of the text from byte ``start`` of the context on; [] where the tokenizer would not
        write that text (a leading space added)."""
        assert self._text is not None
        data = self._bytes
        stop = min(len(data), start + 8 * k + 8)
        after = bytes(data[start:stop])
        guess = self._text[1](after.decode("utf-8", "ignore"))
        if stop < len(data) and len(guess) > 1:
            guess.pop()            # the cut may have split the last token's text
        guess = guess[:k]
        return guess if self._writing(after, guess) == len(guess) else []

    def _writing(self, text: bytes, tokens: Sequence[int]) -> int:
        """How many of ``tokens``, from the first, write a prefix of ``text`` (each writing something): a tokenizer that
        adds a leading space (SentencePiece's), or a character cut in two, writes text that is not there."""
        assert self._text is not None
        texts = self._text[0]
        written = 0
        for i, token in enumerate(tokens):
            piece = texts[token]
            if not piece or not text.startswith(piece, written):
                return i
            written += len(piece)
        return len(tokens)

    def _sync(self, generated: Sequence[int], version: int) -> None:
        tokens = self._tokens
        known = len(tokens) - self._prompt_len
        if version != self._version or len(generated) < known:   # taken back: index the generated part again
            self._version = version
            del tokens[self._prompt_len:]
            if self._text is not None:
                del self._bytes[self._starts[self._prompt_len]:]
                del self._starts[self._prompt_len + 1:]
            self._index = {}
            self._add(MIN_MATCH, self._prompt_len)
            known = 0
        if len(generated) > known:
            before = len(tokens)
            tokens.extend(generated[known:])
            self._add(max(MIN_MATCH, before), len(tokens))
            if self._text is not None:
                texts = self._text[0]
                self._bytes += b"".join(texts[t] for t in generated[known:])
                self._starts += list(accumulate((len(texts[t]) for t in generated[known:]),
                                                initial=self._starts[-1]))[1:]

    def _add(self, start: int, stop: int) -> None:
        """Index the n-grams that end just before positions ``start`` .. ``stop - 1`` (``stop``: the length so far).
        The sequence's own end is never indexed, so looking it up finds an earlier occurrence, with a token after."""
        tokens, index = self._tokens, self._index
        for end in range(max(start, MIN_MATCH), stop):
            for n in range(MIN_MATCH, min(MAX_MATCH, end) + 1):
                index.setdefault(tuple(tokens[end - n:end]), []).append(end)
