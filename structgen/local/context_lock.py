"""``ContextLock``: who may touch a llama.cpp context, the engine thread or one exclusive caller.

The scheduler's engine thread holds the lock while it has work and lets go when it is idle. Other users of the
context (scoring in ``structgen.probs``, the unmasked text chain, the lone-request path) take it with ``with
model.lock:``; while one of them waits, the engine admits no new request and gives the lock up as soon as its
live requests are done. An exclusive user may clear the KV cache, so releasing the lock bumps ``epoch``: the
engine then knows its prefix cache is gone.
"""

from __future__ import annotations

import threading
from types import TracebackType

__all__ = ["ContextLock"]


class ContextLock:
    """A re-entrant lock with a count of exclusive waiters and an epoch bumped by every exclusive release."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._meta = threading.Lock()
        self._depth = threading.local()
        self.waiting = 0
        self.epoch = 0

    def __enter__(self) -> ContextLock:
        with self._meta:
            self.waiting += 1
        try:
            self._lock.acquire()
        finally:
            with self._meta:
                self.waiting -= 1
        self._depth.n = getattr(self._depth, "n", 0) + 1
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._depth.n -= 1
        if self._depth.n == 0:
            self.epoch += 1
        self._lock.release()

    def acquire_for_engine(self) -> None:
        """Take the lock for the engine thread (not counted as a waiter, no epoch bump)."""
        self._lock.acquire()

    def release_for_engine(self) -> None:
        """Give back what ``acquire_for_engine`` took."""
        self._lock.release()

    def held_by_me(self) -> bool:
        """True if this thread holds the lock as an exclusive user."""
        return getattr(self._depth, "n", 0) > 0
