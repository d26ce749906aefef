"""Executors that run a batch in this process: on a local ``LlamaCpp`` (its engine thread co-batches the lines in
flight) or on an OpenAI-compatible endpoint through the hosted chain.

Both keep a window of lines in flight, weighted by the sequences each takes (a line with ``n`` choices takes
``n``): for a local model the window is its ``n_seq_max``, so the engine is always full and nothing waits in its
queue; for an endpoint it is ``--concurrency``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidArgument
from ..hosted.openai_compatible import OpenAICompatible
from ..hosted.pacing import Pacer
from .plans import PlannedLine
from .results import Outcome, run_line

__all__ = ["AsyncExecutor", "endpoint_model", "run_window"]


@dataclass
class AsyncExecutor:
    """Runs the lines on ``model`` with at most ``window`` sequences in flight (default: the model's
    ``n_seq_max``); ``extra`` goes into each success body's ``structgen`` object."""

    model: Any
    window: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __call__(self, pending: list[PlannedLine], emit: Callable[[Outcome], None]) -> None:
        """Run ``pending`` on an event loop of its own (Ctrl-C cancels what is in flight, then raises
        ``KeyboardInterrupt``)."""
        window = self.window or int(getattr(self.model, "n_seq_max", 0) or 0) or 4
        asyncio.run(self._run(pending, emit, window))

    async def _run(self, pending: list[PlannedLine], emit: Callable[[Outcome], None], window: int) -> None:
        try:
            await run_window(self.model, pending, emit, window=window, extra=self.extra)
        finally:   # an endpoint's async client lives on this loop: close its connections before the loop ends
            aclose = getattr(self.model, "aclose", None)
            if callable(aclose):
                await aclose()


async def run_window(model: Any, pending: list[PlannedLine], emit: Callable[[Outcome], None], *, window: int,
                     extra: dict[str, Any] | None = None, priority: int | None = None) -> None:
    """Run ``pending`` on ``model``, ``window`` sequences in flight, emitting each outcome as it completes
    (``priority``: the engine priority of every line's requests; None: each line's own)."""
    if window < 1:
        raise InvalidArgument("the window of lines in flight must be at least 1")
    name = str(getattr(model, "name", "structgen"))
    free = window
    room = asyncio.Condition()
    tasks: set[asyncio.Task[None]] = set()

    async def one(item: PlannedLine, weight: int) -> None:
        nonlocal free
        try:
            emit(await run_line(model, item, name=name, extra=extra, priority=priority))
        finally:
            async with room:
                free += weight
                room.notify_all()

    need = 0

    def has_room() -> bool:
        return free >= need

    try:
        for item in pending:
            need = weight = max(1, min(item.plan.n, window))
            async with room:
                await room.wait_for(has_room)
                free -= weight
            task = asyncio.ensure_future(one(item, weight))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        while tasks:
            await asyncio.gather(*list(tasks))
    finally:
        for task in list(tasks):
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


def endpoint_model(url: str, *, model: str = "default", api_key: str | None = None, rpm: int | None = None,
                   tpm: int | None = None, timeout: float = 120.0, max_retries: int = 6) -> OpenAICompatible:
    """The hosted model for ``--endpoint``: retries (429 and 5xx with backoff honouring ``Retry-After``), pacing
    (``rpm`` / ``tpm``), and the hosted chain's validation and re-asks for every reply."""
    pacer = Pacer(rpm, tpm) if rpm or tpm else None
    return OpenAICompatible(url, model, api_key=api_key, timeout=timeout, max_retries=max_retries, pacer=pacer,
                            max_retry_after=120.0)
