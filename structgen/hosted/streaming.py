"""Streaming a hosted request: ``HostedStream`` runs the fallback chain in a worker thread and hears every
single-choice call's reply as the server sends it (``tap``), through a context variable the transport reads
(``listener_of``), so the chain itself needs no knowledge of streams."""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ..chain.strategies import Call
from ..errors import BackendError, Cancelled, StructgenError
from ..request import Request
from ..result import Result

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionChunk

__all__ = ["HostedStream", "listener_of", "tap"]

_listener: contextvars.ContextVar[Callable[[str, str], None] | None] = contextvars.ContextVar(
    "structgen_hosted_listener", default=None)
"""Set while a request is streamed (``OpenAICompatible.open_stream``): told of each call and its text."""


class HostedStream:
    """A hosted request run in a worker thread with every single-choice call streamed: ``sink`` receives
    ``("call", "")`` as each call of the chain starts, ``("text", piece)`` as its reply arrives, and one
    ``("done", Result | StructgenError)``; ``cancel`` stops it at the next piece."""

    def __init__(self, run: Callable[[Request], Result[Any]], request: Request) -> None:
        self.sink: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self.cancelled = False
        context = contextvars.copy_context()
        context.run(_listener.set, self._hear)
        self._thread = threading.Thread(target=context.run, args=(self._serve, run, request),
                                        name="structgen-hosted-stream", daemon=True)
        self._thread.start()

    def cancel(self) -> None:
        """Stop at the next streamed piece (the result is then ``Cancelled``)."""
        self.cancelled = True

    def _hear(self, kind: str, text: str) -> None:
        if self.cancelled:
            raise Cancelled("the stream was closed")
        self.sink.put((kind, text))

    def _serve(self, run: Callable[[Request], Result[Any]], request: Request) -> None:
        outcome: Any
        try:
            outcome = run(request)
        except StructgenError as exc:
            outcome = exc
        except Exception as exc:  # the reader must not wait forever on a failed thread
            outcome = BackendError(f"hosted stream failed: {type(exc).__name__}: {exc}")
        self.sink.put(("done", outcome))



def listener_of(call: Call) -> Callable[[str, str], None] | None:
    """The stream listening to this thread's calls, for a call with one choice (None: nobody listens)."""
    return _listener.get() if call.n == 1 else None


def tap(events: Iterator[ChatCompletionChunk], listener: Callable[[str, str], None]) -> Iterator[ChatCompletionChunk]:
    """Pass the chunks on, telling ``listener`` of choice 0's text as it comes."""
    for chunk in events:
        for ch in getattr(chunk, "choices", None) or ():
            if getattr(ch, "index", 0) == 0:
                piece = getattr(getattr(ch, "delta", None), "content", None)
                if isinstance(piece, str) and piece:
                    listener("text", piece)
        yield chunk
