"""Second backend: outlines-core (regex → token-level DFA index). JSON Schema, regex and choice only."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import outlines_core
from numpy.typing import NDArray

from ...errors import SchemaError
from ..schema import CompiledSchema
from .base import Vocab

_build_lock = threading.Lock()


def vocabulary_for(vocab: Vocab) -> Any:
    """The outlines-core ``Vocabulary`` (token bytes → ids, EOS excluded) for a model vocabulary."""
    with _build_lock:
        return vocab.cached("outlines-core", lambda: _build_vocabulary(vocab))


def _build_vocabulary(vocab: Vocab) -> Any:
    eos = set(vocab.eos_ids)
    by_bytes: dict[bytes, list[int]] = {}
    for token_id, data in enumerate(vocab.token_bytes()):
        if token_id not in eos and data:
            by_bytes.setdefault(data, []).append(token_id)
    return outlines_core.Vocabulary(vocab.eos_ids[0], by_bytes)


class OutlinesCoreMatcher:
    """A ``Matcher`` over ``outlines_core.Guide``; errors become a sticky state, as the contract asks."""

    __slots__ = ("_consumed", "_eos", "_error", "_guide", "_index")

    def __init__(self, index: Any, eos: int) -> None:
        self._index = index
        self._guide = outlines_core.Guide(index)
        self._eos = eos
        self._error: str | None = None
        self._consumed: list[int] = []

    def fill_mask(self, bitmask: NDArray[np.int32]) -> None:
        """Write the next-token bitmask in place."""
        if self._error is not None:
            bitmask[:] = 0
            return
        self._guide.write_mask_into(bitmask.ctypes.data, bitmask.size, 4)

    def consume(self, token: int) -> bool:
        """Advance by one token."""
        if self._error is not None:
            return False
        try:
            self._guide.advance(token, return_tokens=False)
        except (ValueError, RuntimeError, OverflowError) as exc:
            self._error = f"token {token} not allowed: {exc}"
            return False
        self._consumed.append(token)
        return True

    def consume_many(self, tokens: Sequence[int]) -> int:
        """Advance by the longest allowed prefix of ``tokens``."""
        for i, token in enumerate(tokens):
            if not self._guide.accepts_tokens([token]) or not self.consume(token):
                return i
        return len(tokens)

    def forced_tokens(self) -> list[int]:
        """The single allowed token if exactly one non-EOS token may follow, else nothing."""
        if self._error is not None:
            return []
        allowed = self._guide.get_tokens()
        return list(allowed) if len(allowed) == 1 and allowed[0] != self._eos else []

    def forced_bytes(self) -> bytes:
        """Not known to an outlines-core index (it is token-level): b""."""
        return b""

    def valid_prefix(self, tokens: Sequence[int]) -> int:
        """How many of ``tokens`` the guide accepts in a row from here (nothing consumed)."""
        if self._error is not None:
            return 0
        n = 0
        while n < len(tokens) and self._guide.accepts_tokens(list(tokens[: n + 1])):
            n += 1
        return n

    def is_accepting(self) -> bool:
        """Complete match so far."""
        return self._error is None and bool(self._guide.is_finished())

    def is_stopped(self) -> bool:
        """Only EOS may follow (or error)."""
        if self._error is not None:
            return True
        allowed = self._guide.get_tokens()
        return bool(self._guide.is_finished()) and all(t == self._eos for t in allowed)

    def error(self) -> str | None:
        """Sticky error message, if any."""
        return self._error

    def copy(self) -> OutlinesCoreMatcher:
        """Independent copy: a new guide over the shared index, replayed to the same state."""
        twin = OutlinesCoreMatcher(self._index, self._eos)
        twin._error = self._error
        for token in self._consumed:
            twin.consume(token)
        return twin

    def rollback(self, n: int) -> bool:
        """Undo the last ``n`` tokens: a new guide replayed to the earlier state."""
        if self._error is not None or not 0 <= n <= len(self._consumed):
            return False
        keep = self._consumed[: len(self._consumed) - n]
        self._guide = outlines_core.Guide(self._index)
        self._consumed = []
        for token in keep:
            self.consume(token)
        return True


class OutlinesCoreFactory:
    """A compiled outlines-core index."""

    def __init__(self, index: Any, eos: int) -> None:
        self._index = index
        self._eos = eos

    def new_matcher(self) -> OutlinesCoreMatcher:
        """A fresh guide over the shared index."""
        return OutlinesCoreMatcher(self._index, self._eos)


class OutlinesCoreBackend:
    """Backend factory for outlines-core."""

    name = "outlines-core"

    def prepare_vocab(self, vocab: Vocab) -> None:
        """Nothing: outlines-core builds its vocabulary with the first index."""

    def warm(self, vocab: Vocab) -> bool:
        """Always: every compile runs inline (its indexes are per regex, not per vocabulary)."""
        return True

    def compile(self, schema: CompiledSchema, vocab: Vocab) -> OutlinesCoreFactory:
        """Build the regex index for ``schema`` (JSON Schema, regex or choice)."""
        regex = regex_for(schema)
        cache: dict[str, OutlinesCoreFactory] = vocab.cached("outlines-core-indexes", dict)
        if regex not in cache:
            cache[regex] = _build_index(vocabulary_for(vocab), regex, vocab.eos_ids[0])
        return cache[regex]


def regex_for(schema: CompiledSchema) -> str:
    """The regex outlines-core compiles for ``schema``; SchemaError for kinds it cannot express."""
    if schema.kind == "json" and schema.json_schema is not None:
        try:
            return str(outlines_core.json_schema.build_regex_from_schema(json.dumps(schema.json_schema), ""))
        except (ValueError, TypeError, RuntimeError) as exc:
            raise SchemaError(f"outlines-core cannot compile this JSON Schema: {exc}") from exc
    if schema.regex is not None:
        return schema.regex
    raise SchemaError(f"the outlines-core backend supports JSON Schema, regex and choice, not {schema.kind}; "
                      "use backend='llguidance'")


def _build_index(vocabulary: Any, regex: str, eos: int) -> OutlinesCoreFactory:
    try:
        index = outlines_core.Index(regex, vocabulary)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise SchemaError(f"outlines-core cannot build an index: {exc}") from exc
    return OutlinesCoreFactory(index, eos)
