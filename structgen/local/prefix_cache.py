"""The prefix cache: KV of recent prompts kept in spare llama.cpp sequences, so that a new request whose prompt
starts the same way (chat template, system prompt, schema hint) decodes only the rest.

Each entry is one spare sequence holding the KV of one whole prompt. A new request copies the longest common
prefix of the best entry into its own sequence (``llama_memory_seq_cp``: on a unified cache this tags the cells;
with one KV stream per sequence llama.cpp copies the stream, cut at that length; no recompute either way) and
prefills from there. Entries are never written after insertion, so a prefix shared
by live requests is never mutated; an entry in use by a live request (``pins``) is not evicted. Bounded by its
number of slots and, through the scheduler's KV-cell budget, by cells; least recently used first out.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

__all__ = ["CacheEntry", "KvSequences", "PrefixCache", "common_prefix"]


def common_prefix(a: NDArray[np.int32], b: NDArray[np.int32]) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    n = min(len(a), len(b))
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if differ.size else n


class KvSequences(Protocol):
    """The KV-cache operations the prefix cache needs (a ``LlamaContext``)."""

    def seq_remove(self, seq: int, start: int, end: int = -1) -> None:
        """Drop positions [start, end) of ``seq``."""

    def seq_copy(self, src: int, dst: int, start: int = 0, end: int = -1) -> None:
        """Share positions [start, end) of ``src`` with ``dst``."""


@dataclass(eq=False)
class CacheEntry:
    """One cached prompt: its tokens live in sequence ``seq``."""

    seq: int
    tokens: NDArray[np.int32]
    pins: int = 0
    used: float = field(default_factory=time.monotonic)


class PrefixCache:
    """Prompts' KV in the spare sequences ``slots`` of a KV cache."""

    def __init__(self, kv: KvSequences, slots: Sequence[int]) -> None:
        self._kv = kv
        self._free = list(slots)
        self.entries: list[CacheEntry] = []

    @property
    def cells(self) -> int:
        """KV cells the entries hold (an upper bound: entries that share a prefix share its cells)."""
        return sum(len(e.tokens) for e in self.entries)

    def lookup(self, tokens: Sequence[int]) -> tuple[CacheEntry | None, int]:
        """The entry sharing the longest prefix with ``tokens``, and that length (0: no entry)."""
        query = np.asarray(tokens, dtype=np.int32)
        best: CacheEntry | None = None
        best_n = 0
        for entry in self.entries:
            common = common_prefix(entry.tokens, query)
            if common > best_n:
                best, best_n = entry, common
        return best, best_n

    def reuse(self, entry: CacheEntry, dst: int, n: int) -> None:
        """Give sequence ``dst`` the first ``n`` positions of ``entry`` and pin the entry while ``dst`` uses it."""
        self._kv.seq_copy(entry.seq, dst, 0, n)
        entry.pins += 1
        entry.used = time.monotonic()

    def insert(self, tokens: Sequence[int], src: int) -> None:
        """Keep the prompt ``tokens`` just decoded into sequence ``src`` (if a slot is free or can be freed)."""
        query = np.asarray(tokens, dtype=np.int32)
        for entry in self.entries:
            if len(entry.tokens) >= len(query) and np.array_equal(entry.tokens[: len(query)], query):
                entry.used = time.monotonic()   # already covered
                return
        if not self._free and not self.evict_one():
            return
        slot = self._free.pop()
        self._kv.seq_remove(slot, 0, -1)
        self._kv.seq_copy(src, slot, 0, len(query))
        self.entries.append(CacheEntry(slot, query))

    def unpin(self, entry: CacheEntry) -> None:
        """A request that reused ``entry`` is done with it."""
        entry.pins -= 1

    def evict_one(self) -> bool:
        """Drop the least recently used unpinned entry; False if every entry is pinned (or none exists)."""
        idle = [e for e in self.entries if e.pins == 0]
        if not idle:
            return False
        victim = min(idle, key=lambda e: e.used)
        self.entries.remove(victim)
        self._kv.seq_remove(victim.seq, 0, -1)
        self._free.append(victim.seq)
        return True

    def clear(self) -> None:
        """Forget every entry (after someone else cleared the KV cache, or the model changed)."""
        for entry in self.entries:
            self._free.append(entry.seq)
        self.entries.clear()
