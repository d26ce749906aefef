"""The Matcher contract: what the decode loop needs from a grammar engine.

A *backend* compiles a ``CompiledSchema`` against a model's vocabulary into a ``MatcherFactory``; the
factory makes one fresh ``Matcher`` per generated sequence.

Error contract (who raises, who returns an error state):
- ``Backend.compile`` raises ``SchemaError``/``GrammarError`` for grammars it cannot build. Nothing else
  in this module raises on user input.
- A ``Matcher`` never raises on a bad token: ``consume`` returns False and the matcher enters a sticky
  error state, reported by ``error()``. The decode loop turns that into a typed error (fail closed).
- Misuse at the API level (wrong mask shape) raises ``ValueError``; that is a structgen bug.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np
from numpy.typing import NDArray

from ..schema import CompiledSchema

T = TypeVar("T")


@dataclass(eq=False)
class Vocab:
    """A model's vocabulary as grammar engines need it; per-backend tokenizers are built once and cached."""

    n_vocab: int
    eos_ids: tuple[int, ...]
    token_bytes: Callable[[], Sequence[bytes]]   # lazily computed: the raw bytes of each token id
    llama_vocab: Any = None                      # llama_vocab_p, for llguidance's llama.cpp glue
    cache: dict[str, Any] = field(default_factory=dict)
    _pending: list[Future[Any]] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def cached(self, key: str, build: Callable[[], Any]) -> Any:
        """Build a per-vocabulary object once (e.g. a backend's tokenizer)."""
        if key not in self.cache:
            self.cache[key] = build()
        return self.cache[key]

    def background(self, work: Callable[[], T]) -> Future[T]:
        """Run ``work`` (which may read the model's vocabulary) on its own thread; ``join`` waits for it, so
        the model is never freed under it. Errors stay in the future."""
        future: Future[T] = Future()

        def run() -> None:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(work())
                except BaseException as exc:  # handed to whoever waits on the future
                    future.set_exception(exc)

        with self._lock:
            self._pending = [f for f in self._pending if not f.done()] + [future]
        threading.Thread(target=run, name="structgen-compile", daemon=True).start()
        return future

    def join(self) -> None:
        """Wait for every ``background`` work still running (before the model is freed)."""
        with self._lock:
            pending = list(self._pending)
        wait(pending)

    def texts(self) -> Sequence[bytes]:
        """Every token's bytes (control tokens: b""), built once."""
        return self.cached("texts", self.token_bytes)  # type: ignore[no-any-return]

    def leading_digits(self) -> NDArray[np.int16]:
        """For each token, how many ASCII digits its text starts with (the JSON number bound reads it)."""
        def build() -> NDArray[np.int16]:
            digits = b"0123456789"
            return np.array([len(t) - len(t.lstrip(digits)) for t in self.texts()], dtype=np.int16)

        return self.cached("leading_digits", build)  # type: ignore[no-any-return]

    def string_closers(self) -> NDArray[np.intp]:
        """The tokens that, written inside a JSON string with no bracket open, close a ``}`` or ``]`` before they
        leave the string (``}}}``, ``0]``, but not ``"}`` or ``{}``): ``decode.Loop`` rules them out where a small
        model wrote one believing the JSON had ended."""
        def closes(text: bytes) -> bool:
            depth = 0
            for b in text:
                if b in (0x22, 0x5C):        # the string ends (or an escape: not worth following)
                    return False
                if b in (0x7B, 0x5B):
                    depth += 1
                elif b in (0x7D, 0x5D):
                    depth -= 1
                    if depth < 0:
                        return True
            return False

        def build() -> NDArray[np.intp]:
            return np.array([i for i, t in enumerate(self.texts()) if closes(t)], dtype=np.intp)

        return self.cached("string_closers", build)  # type: ignore[no-any-return]

    def string_enders(self) -> NDArray[np.intp]:
        """The tokens that, inside a JSON string, end it and then only close brackets (``"``, ``"}``, ``"]}``)."""
        def build() -> NDArray[np.intp]:
            return np.array([i for i, t in enumerate(self.texts())
                             if t.startswith(b'"') and not t[1:].strip(b"]} \t\n")], dtype=np.intp)

        return self.cached("string_enders", build)  # type: ignore[no-any-return]

    @property
    def mask_words(self) -> int:
        """Number of int32 words in a token bitmask."""
        return (self.n_vocab + 31) // 32


class Matcher(Protocol):
    """Grammar state of one sequence being generated."""

    def fill_mask(self, bitmask: NDArray[np.int32]) -> None:
        """Write the allowed-token bitmask (bit i of word i//32 = token i allowed) into a 1-D int32 row."""

    def consume(self, token: int) -> bool:
        """Advance by one token; False (and a sticky error state) if the token is not allowed."""

    def consume_many(self, tokens: Sequence[int]) -> int:
        """Advance by as many of ``tokens`` as are allowed; returns how many were consumed."""

    def forced_tokens(self) -> list[int]:
        """Tokens the grammar forces next (fast-forward); may be empty."""

    def forced_bytes(self) -> bytes:
        """Bytes the grammar forces next, however they will be tokenized; may run past ``forced_tokens`` (where a
        token that starts inside them could also run on past them, the tokens are the model's choice, the bytes are
        not: after ``"city`` the grammar forces ``":"``, which the model may write as ``":"`` or ``":`` ``"``).
        Speculative drafts guess their spelling; b"" where the backend cannot say."""

    def valid_prefix(self, tokens: Sequence[int]) -> int:
        """How many of ``tokens``, in a row from here, the grammar would accept (nothing is consumed): where a
        speculative draft is cut."""

    def is_accepting(self) -> bool:
        """True if the output so far is a complete match (EOS would be allowed)."""

    def is_stopped(self) -> bool:
        """True if no further token but EOS can follow (or the matcher is in an error state)."""

    def error(self) -> str | None:
        """The error message if the matcher is in an error state, else None."""

    def copy(self) -> Matcher:
        """An independent copy in the same state (for best-of-n)."""

    def rollback(self, n: int) -> bool:
        """Undo the last ``n`` consumed tokens (the decode loop's back-off from a repetition loop); False if this
        matcher cannot (its state is then unchanged)."""


class MatcherFactory(Protocol):
    """A grammar compiled for one vocabulary; makes fresh matchers cheaply."""

    def new_matcher(self) -> Matcher:
        """A matcher at the start of the grammar."""


class Backend(Protocol):
    """A grammar engine."""

    name: str

    def compile(self, schema: CompiledSchema, vocab: Vocab) -> MatcherFactory:
        """Compile ``schema`` for ``vocab``; raises SchemaError/GrammarError if it cannot."""

    def prepare_vocab(self, vocab: Vocab) -> None:
        """Build the per-vocabulary tables now (a model starts this in the background when it loads)."""

    def warm(self, vocab: Vocab) -> bool:
        """True once compiling for ``vocab`` is cheap (its per-vocabulary tables are built); a cold backend's
        first compile is run beside the prompt's prefill."""
