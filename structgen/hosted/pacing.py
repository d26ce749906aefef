"""``Pacer``: keep a hosted endpoint's rate limits — requests and tokens per minute — from the client side.

Each HTTP attempt (retries included) takes one request and its estimated tokens (the prompt's characters / 4 plus
its ``max_tokens``: what providers count against a token limit before the reply exists) from a sliding window of
60 seconds; when the window is full the attempt waits until enough of it has slid out. So a batch of thousands of
requests is sent at the pace the endpoint allows instead of earning 429s (which are still retried, honouring
``Retry-After``).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from ..errors import InvalidArgument

__all__ = ["Pacer", "estimate_tokens"]

WINDOW_S = 60.0


def estimate_tokens(prompt_chars: int, max_tokens: int) -> int:
    """A request's tokens as a rate limiter counts them before the reply: prompt characters / 4 + ``max_tokens``."""
    return prompt_chars // 4 + 1 + max_tokens


class Pacer:
    """At most ``rpm`` requests and ``tpm`` tokens in any 60 seconds (None: no limit on that count)."""

    def __init__(self, rpm: int | None = None, tpm: int | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if (rpm is not None and rpm < 1) or (tpm is not None and tpm < 1):
            raise InvalidArgument("rpm and tpm must be at least 1")
        self.rpm, self.tpm = rpm, tpm
        self._clock = clock
        self._sent: deque[tuple[float, int]] = deque()   # (when, tokens) of the attempts in the window
        self._tokens = 0
        self._lock = asyncio.Lock()

    async def acquire(self, tokens: int) -> None:
        """Wait until one more request of ``tokens`` fits the limits, and count it."""
        if self.tpm is not None:
            tokens = min(tokens, self.tpm)   # a request larger than the whole budget goes into an empty window
        async with self._lock:   # first come, first served
            while (wait := self.wait_for(tokens)) > 0:
                await asyncio.sleep(wait)
            self._sent.append((self._clock(), tokens))
            self._tokens += tokens

    def wait_for(self, tokens: int) -> float:
        """Seconds until a request of ``tokens`` fits (0 when it fits now)."""
        now = self._clock()
        while self._sent and self._sent[0][0] <= now - WINDOW_S:
            self._tokens -= self._sent.popleft()[1]
        waits = [0.0]
        if self.rpm is not None and len(self._sent) >= self.rpm:
            waits.append(self._sent[len(self._sent) - self.rpm][0] + WINDOW_S - now)
        if self.tpm is not None and self._tokens + min(tokens, self.tpm) > self.tpm:
            freed, need = 0, self._tokens + min(tokens, self.tpm) - self.tpm
            for when, used in self._sent:   # the oldest attempts leave first
                freed += used
                if freed >= need:
                    waits.append(when + WINDOW_S - now)
                    break
        return max(waits)
