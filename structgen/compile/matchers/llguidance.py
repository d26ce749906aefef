"""The default backend: llguidance (Earley + lexer over token tries, ~10 µs per mask)."""

from __future__ import annotations

import ctypes
import functools
import threading
from collections.abc import Sequence

import llguidance
import numpy as np
from numpy.typing import NDArray

from ...errors import SchemaError
from ...result import Relaxation
from ..schema import CompiledSchema
from .base import Vocab

_build_lock = threading.Lock()
_executor_lock = threading.Lock()
_executor: llguidance.LLExecutor | None = None


def _shared_executor() -> llguidance.LLExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = llguidance.LLExecutor()   # llguidance's thread pool: 80 % of the cores, at most 32
        return _executor


def tokenizer_for(vocab: Vocab) -> llguidance.LLTokenizer:
    """The ``LLTokenizer`` for a vocabulary (built once per model; ~1 s)."""
    with _build_lock:
        return vocab.cached("llguidance", lambda: _build_tokenizer(vocab))  # type: ignore[no-any-return]


def _build_tokenizer(vocab: Vocab) -> llguidance.LLTokenizer:
    if vocab.llama_vocab is not None:
        return _from_llama_vocab(vocab)
    return vocab.cached("llguidance_bytes", lambda: _from_token_bytes(vocab))  # type: ignore[no-any-return]


def _from_llama_vocab(vocab: Vocab) -> llguidance.LLTokenizer:
    """What ``llguidance.llamacpp.lltokenizer_from_vocab`` builds, a third faster: its loop over the vocabulary
    calls a deprecated llama-cpp-python wrapper that warns on every token (a model's first compile waits for
    this, so it is part of a fast start). Control tokens, and user tokens that look like them, are marked with a
    leading 0xff as llguidance expects."""
    import llama_cpp

    lib = llama_cpp.llama_cpp._lib
    ptr = vocab.llama_vocab
    piece, attr_of, string_at = lib.llama_token_to_piece, lib.llama_vocab_get_attr, ctypes.string_at
    control, user = llama_cpp.LLAMA_TOKEN_ATTR_CONTROL, llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED
    size = 16 * 1024
    buf = ctypes.create_string_buffer(size + 1)
    tokens: list[bytes] = []
    for token in range(lib.llama_vocab_n_tokens(ptr)):
        n = piece(ptr, token, buf, size, 0, True)
        if n < 0:
            raise SchemaError(f"token {token} of the model's vocabulary is longer than {size} bytes")
        text = string_at(buf, n)
        attr = attr_of(ptr, token)
        if attr & control or (attr & user and text.startswith(b"<") and text.endswith(b">")):
            text = b"\xff" + text
        tokens.append(text)
    tokenize = ctypes.cast(lib.llama_tokenize, ctypes.c_void_p).value
    return llguidance.LLTokenizer.from_llamacpp(  # type: ignore[attr-defined,no-any-return]
        tokens=tokens, vocab_ptr=ptr, tokenize_fptr=tokenize,
        eos_token=list(vocab.eos_ids), slices=None)


def _from_token_bytes(vocab: Vocab) -> llguidance.LLTokenizer:
    tokens = list(vocab.token_bytes())

    class _Wrapped:
        eos_token_id = vocab.eos_ids[0]
        bos_token_id = None

        def __init__(self) -> None:
            self.tokens = tokens
            self.special_token_ids = list(vocab.eos_ids)

        def __call__(self, text: bytes | str) -> list[int]:
            data = text.encode() if isinstance(text, str) else text
            return [b for b in data]  # only used for tokenising grammar literals in tests without llama

    return llguidance.LLTokenizer(llguidance.TokenizerWrapper(_Wrapped()))


class LLGuidanceMatcher:
    """A ``Matcher`` over ``llguidance.LLMatcher``. It keeps the tokens it consumed and the grammar's start state, so
    a rollback llguidance refuses (a grammar with ``max_tokens`` lexemes, e.g. ``think=``'s budget: llguidance then
    enters its sticky error state) is done by replaying the kept tokens on a fresh copy instead."""

    __slots__ = ("_consumed", "_m", "_start")

    def __init__(self, matcher: llguidance.LLMatcher, start: llguidance.LLMatcher | None = None,
                 consumed: Sequence[int] = ()) -> None:
        self._m = matcher
        self._start = start if start is not None else matcher.deep_copy()   # never advanced: copied to replay
        self._consumed = list(consumed)

    def fill_mask(self, bitmask: NDArray[np.int32]) -> None:
        """Write the next-token bitmask in place (drops the GIL)."""
        self._m.unsafe_compute_mask_ptr(bitmask.ctypes.data, bitmask.nbytes)

    @staticmethod
    def fill_masks(matchers: Sequence[LLGuidanceMatcher], bitmask: NDArray[np.int32]) -> None:
        """Write matcher i's next-token bitmask into row i of a 2-D int32 array, all in one call: llguidance
        computes them in parallel on its thread pool, without the GIL."""
        if bitmask.ndim != 2 or bitmask.shape[0] < len(matchers) or not bitmask.flags["C_CONTIGUOUS"]:
            raise ValueError("fill_masks needs a C-contiguous 2-D bitmask with a row per matcher")
        _shared_executor().unsafe_compute_mask_ptr([(m._m, i) for i, m in enumerate(matchers)],
                                                   bitmask.ctypes.data, bitmask.shape[1] * 4, bitmask.shape[0])

    def consume(self, token: int) -> bool:
        """Advance by one token."""
        ok = self._m.consume_token(token)
        if ok:
            self._consumed.append(token)
        return ok

    def consume_many(self, tokens: Sequence[int]) -> int:
        """Advance by the longest allowed prefix of ``tokens``."""
        n = self._m.try_consume_tokens(list(tokens))
        self._consumed.extend(tokens[:n])
        return n

    def forced_tokens(self) -> list[int]:
        """Fast-forward tokens the grammar forces."""
        return self._m.compute_ff_tokens()

    def forced_bytes(self) -> bytes:
        """Bytes the grammar forces next, past the forced tokens where their tokenization is the model's choice."""
        return bytes(self._m.compute_ff_bytes())

    def valid_prefix(self, tokens: Sequence[int]) -> int:
        """How many of ``tokens`` the grammar accepts in a row from here (nothing consumed)."""
        return int(self._m.validate_tokens(list(tokens))) if tokens else 0

    def is_accepting(self) -> bool:
        """Complete match so far."""
        return self._m.is_accepting()

    def is_stopped(self) -> bool:
        """Nothing but EOS may follow."""
        return self._m.is_stopped()

    def error(self) -> str | None:
        """Sticky error message, if any."""
        return self._m.get_error() if self._m.is_error() else None

    def rollback(self, n: int) -> bool:
        """Undo the last ``n`` tokens: llguidance's own rollback (it keeps the parser's history), else a replay of
        the tokens before them on a fresh copy of the start state."""
        if n == 0:
            return True
        if self._m.is_error() or n > len(self._consumed):
            return False
        kept = self._consumed[:-n]
        if not self._m.rollback(n) or self._m.is_error():
            replayed = self._start.deep_copy()
            if replayed.try_consume_tokens(kept) != len(kept) or replayed.is_error():
                return False    # not seen: these tokens were accepted once
            self._m = replayed
        self._consumed = kept
        return True

    def copy(self) -> LLGuidanceMatcher:
        """Independent copy."""
        return LLGuidanceMatcher(self._m.deep_copy(), self._start, self._consumed)


class LLGuidanceFactory:
    """A compiled llguidance grammar: a template matcher copied for every new sequence. ``relaxations``: what
    this grammar leaves to the validator (``CompiledSchema.relaxations`` of the schema it was built from)."""

    def __init__(self, template: llguidance.LLMatcher, relaxations: tuple[Relaxation, ...] = ()) -> None:
        self._template = template
        self.relaxations = relaxations

    def new_matcher(self) -> LLGuidanceMatcher:
        """A fresh matcher (a deep copy of the template: no recompilation)."""
        return LLGuidanceMatcher(self._template.deep_copy(), self._template)


class LLGuidanceBackend:
    """Backend factory for llguidance."""

    name = "llguidance"

    def prepare_vocab(self, vocab: Vocab) -> None:
        """Build ``vocab``'s tokenizer now."""
        tokenizer_for(vocab)

    def warm(self, vocab: Vocab) -> bool:
        """True once ``vocab``'s tokenizer is built (the first compile's ~0.3 s)."""
        return "llguidance" in vocab.cache

    def compile(self, schema: CompiledSchema, vocab: Vocab) -> LLGuidanceFactory:
        """Build (and cache per vocabulary) the matcher template for ``schema``."""
        if schema.grammar is None:
            raise SchemaError("free text has no grammar to compile")
        tokenizer = tokenizer_for(vocab)
        try:
            return LLGuidanceFactory(_compile_cached(tokenizer, schema.grammar), schema.relaxations)
        except SchemaError:
            if schema.deferred_check is None:
                raise
        # Not checked yet: the full check raises the located error, or gives the relaxed grammar.
        checked = schema.checked()
        assert checked.grammar is not None
        return LLGuidanceFactory(_compile_cached(tokenizer, checked.grammar), checked.relaxations)


@functools.lru_cache(maxsize=256)
def _compile_cached(tokenizer: llguidance.LLTokenizer, grammar: str) -> llguidance.LLMatcher:
    matcher = llguidance.LLMatcher(tokenizer, grammar, log_level=0)
    if matcher.is_error():
        raise SchemaError(f"the grammar engine rejected the schema: {matcher.get_error().splitlines()[0]}")
    return matcher
