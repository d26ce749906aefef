"""The prefix cache: KV of recent prompts kept in spare llama.cpp sequences, so that a new request whose prompt
starts the same way (chat template, system prompt, schema hint) decodes only the rest.

Each entry is one spare sequence holding the KV of a prompt's start. A new request copies the longest common
prefix of the best entry into its own sequence (``llama_memory_seq_cp``: on a unified cache this tags the cells;
with one KV stream per sequence llama.cpp copies the stream, cut at that length; no recompute either way) and
prefills from there. An entry in use by live requests (``pins``) is never written or evicted, nor cut below the
longest start they copied from it (``in_use``), so a prefix shared by live requests is never mutated. Bounded by
its number of slots and, through the scheduler's KV-cell budget, by cells; least recently used first out.

What an entry keeps: the newest entry holds its whole prompt (a prompt asked again, or continued, hits in full)
unless its own text is longer than ``TAIL_CELLS``; when a newer one arrives, an older entry is cut back to
what is worth keeping: its ``shared`` head (template, system prompt, earlier turns, schema hint: everything before
the last user text) or, if longer, the start it shares with another entry (an instruction many prompts open
with). Why: on a unified cache every sequence's attention spans every cell in use, so cells that no request will
reuse slow every step (measured with SmolLM2 on CPU, flash attention off: four whole cached prompts of ~350 tokens
cost a lone request ~20 % of its decode speed, against none; with flash attention on, masked cells cost less).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

__all__ = ["TAIL_CELLS", "CacheEntry", "KvSequences", "PrefixCache", "common_prefix"]

TAIL_CELLS = 256
"""The most tokens of a prompt's own text (past its shared head) the newest entry keeps: enough for a short text
asked again; a longer one would cost every step its attention span (one llama.cpp cell-padding unit)."""


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
    shared: int = 0                  # leading tokens worth keeping even alone (the conversation's head)
    pins: int = 0
    in_use: int = 0                  # the longest start live requests copied (while pinned)
    logits: NDArray[np.float32] | None = None   # the last prompt token's logits, while the entry holds it all
    used: float = field(default_factory=time.monotonic)


class PrefixCache:
    """Prompts' KV in the spare sequences ``slots`` of a KV cache."""

    def __init__(self, kv: KvSequences, slots: Sequence[int]) -> None:
        self._kv = kv
        self.size = len(slots)
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
        entry.in_use = max(entry.in_use, n)
        entry.used = time.monotonic()

    def insert(self, tokens: Sequence[int], src: int, *, shared: int = 0,
               logits: NDArray[np.float32] | None = None) -> None:
        """Keep the prompt ``tokens`` just decoded into sequence ``src`` (if a slot is free or can be freed);
        ``shared``: how many of its leading tokens are its conversation's head (kept when the entry is cut back).
        A tail past the head and past what other entries share is kept only up to ``TAIL_CELLS`` tokens.
        ``logits``: the last token's, kept while the entry holds the whole prompt (the same prompt again then
        decodes nothing, and starts from the very numbers the first call had)."""
        query = np.asarray(tokens, dtype=np.int32)
        floor = max([shared, *(common_prefix(e.tokens, query) for e in self.entries)])
        whole = len(query)
        if len(query) - floor > TAIL_CELLS:
            query = query[:floor]
        if len(query) == 0:
            return
        kept = logits if len(query) == whole else None
        for entry in self.entries:
            if len(entry.tokens) >= len(query) and np.array_equal(entry.tokens[: len(query)], query):
                entry.used = time.monotonic()   # already covered
                if kept is not None and len(entry.tokens) == whole and entry.logits is None:
                    entry.logits = kept
                return
        if not self._free and not self.evict_one():
            return
        slot = self._free.pop()
        self._kv.seq_remove(slot, 0, -1)
        self._kv.seq_copy(src, slot, 0, len(query))
        newest = CacheEntry(slot, query, shared=min(shared, len(query)), logits=kept)
        self.entries.append(newest)
        self._cut_back(newest)

    def _cut_back(self, newest: CacheEntry) -> None:
        """Cut every entry but ``newest`` back to its shared head or, if longer, its longest start shared with another
        entry (a pinned one not below what live requests copied); then free the slots of idle entries that keep
        nothing or that another entry covers."""
        for entry in [e for e in self.entries if e is not newest]:
            with_others = max((common_prefix(entry.tokens, o.tokens) for o in self.entries if o is not entry),
                              default=0)
            keep = max(with_others, entry.shared, entry.in_use if entry.pins else 0)
            if keep < len(entry.tokens):
                self._kv.seq_remove(entry.seq, keep, -1)
                entry.tokens = entry.tokens[:keep]
                entry.logits = None
        for entry in [e for e in self.entries if e is not newest and e.pins == 0]:
            n = len(entry.tokens)
            cover = next((o for o in self.entries if o is not entry and common_prefix(entry.tokens, o.tokens) == n),
                         None)
            if cover is not None:   # what this entry kept, the covering one now keeps
                cover.shared = max(cover.shared, n)
            if cover is not None or n == 0:
                self._drop(entry)

    def unpin(self, entry: CacheEntry) -> None:
        """A request that reused ``entry`` is done with it."""
        entry.pins -= 1
        if entry.pins == 0:
            entry.in_use = 0

    def evict_one(self) -> bool:
        """Drop the least recently used unpinned entry; False if every entry is pinned (or none exists)."""
        idle = [e for e in self.entries if e.pins == 0]
        if not idle:
            return False
        self._drop(min(idle, key=lambda e: e.used))
        return True

    def _drop(self, entry: CacheEntry) -> None:
        self.entries.remove(entry)
        self._kv.seq_remove(entry.seq, 0, -1)
        self._free.append(entry.seq)

    def clear(self) -> None:
        """Forget every entry (after someone else cleared the KV cache, or the model changed)."""
        for entry in self.entries:
            self._free.append(entry.seq)
        self.entries.clear()
