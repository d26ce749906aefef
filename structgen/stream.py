"""``stream`` and ``astream``: ``generate`` that shows its work as it goes.

Events, in order: ``Delta`` for each step's new tokens (text, ids, logprobs, forced flags and, for JSON kinds,
the value known so far: see ``structgen.partial``; for tool calls, ``Delta.tool_calls``: each call's name once
the grammar has fixed it and its arguments so far), ``Reset`` when an attempt is dropped and a retry starts
(the text shown so far is void: never text that silently changes), and one ``Done`` carrying the validated
``Result``. Failures raise the typed errors ``generate`` raises. Closing the iterator early (``break``, a
cancelled task) cancels the request: the engine frees its sequences at its next step.

Local masked requests stream token by token from the engine thread. Hosted models stream each call of the
fallback chain as the server sends it (text only, no partial values: nothing constrains a hosted reply until
it is validated; each later call of the chain starts with a ``Reset``). Best-of / self-consistency requests
(which pick among candidates at the end) and the re-asking chain on a local model give one ``Delta`` with the
whole validated text, then ``Done``.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .compile.kinds import SchemaLike
from .compile.tools import ToolSet, partial_calls
from .errors import StructgenError
from .generate import build_request, default_model
from .partial import MISSING, Partial, PartialToolCall, parse_prefix
from .request import Message, Request
from .result import Result

__all__ = ["Delta", "Done", "Reset", "StreamEvent", "astream", "stream"]


@dataclass(frozen=True, slots=True)
class Delta:
    """New tokens of the current attempt."""

    text: str                       # the new text (bytes of a character cut in two wait for the next delta)
    snapshot: str                   # the attempt's whole text so far
    tokens: tuple[int, ...]
    logprobs: tuple[float, ...]
    forced: tuple[bool, ...]
    attempt: int
    json: bool = False              # a JSON kind: ``partial`` parses the snapshot
    tools: tuple[str, ...] | None = None   # a tools request: the names a call may have (``tool_calls``)
    _partial: list[Partial] = field(default_factory=list, repr=False, compare=False)
    _calls: list[tuple[PartialToolCall, ...] | None] = field(default_factory=list, repr=False, compare=False)

    @property
    def partial(self) -> Partial | None:
        """JSON kinds: the value so far (``structgen.partial``), parsed on first access; None for regex, choice,
        grammar and text."""
        if not self.json:
            return None
        if not self._partial:
            self._partial.append(parse_prefix(self.snapshot))
        return self._partial[0]

    @property
    def value(self) -> Any:
        """The partial value (``structgen.partial.MISSING`` when nothing is known yet, or not JSON)."""
        partial = self.partial
        return partial.value if partial is not None else MISSING

    @property
    def tool_calls(self) -> tuple[PartialToolCall, ...] | None:
        """A tools request on a local model: the calls written so far, each with its name once the grammar has
        fixed it and its arguments so far (text and partial value: ``structgen.compile.tools.partial_calls``);
        None while the reply is (or may still be) an answer, and for other requests. The final
        ``Result.tool_calls`` drops a call that repeats an earlier one exactly."""
        if self.tools is None:
            return None
        if not self._calls:
            self._calls.append(partial_calls(self.snapshot, self.tools))
        return self._calls[0]


@dataclass(frozen=True, slots=True)
class Reset:
    """The current attempt was dropped (``reason``); the next ``Delta`` starts attempt ``attempt`` afresh."""

    attempt: int
    reason: str


@dataclass(frozen=True, slots=True)
class Done:
    """The end: the validated result (the same ``Result`` ``generate`` returns)."""

    result: Result[Any]


StreamEvent = Delta | Reset | Done


def stream(
    prompt: str | Sequence[Message],
    schema: SchemaLike = None,
    *,
    model: Any = None,
    **options: Any,
) -> Iterator[StreamEvent]:
    """``generate`` as an iterator of ``Delta`` / ``Reset`` / ``Done`` events (``options``: any ``generate``
    keyword). Raises what ``generate`` raises; closing the iterator early cancels the request."""
    target = default_model() if model is None else model
    request = build_request(target, prompt, schema, **options)
    ticket = _submit(target, request)
    if ticket is None:
        result: Result[Any] = target.run(request)
        yield from _whole(result, request)
        return
    events = _Events(target, request)
    try:
        event: StreamEvent | None = None
        while not isinstance(event, Done):    # convert raises the request's error in Done's place
            event = events.convert(*ticket.sink.get())
            if event is not None:
                yield event
    finally:
        ticket.cancel()   # no effect once done; a dropped stream frees its sequences at the next step


async def astream(
    prompt: str | Sequence[Message],
    schema: SchemaLike = None,
    *,
    model: Any = None,
    **options: Any,
) -> AsyncIterator[StreamEvent]:
    """``stream`` for asyncio: an async iterator of the same events."""
    target = model if model is not None else await asyncio.to_thread(default_model)
    request = build_request(target, prompt, schema, **options)
    sink = _LoopSink(asyncio.get_running_loop())
    ticket = _submit(target, request, sink)
    if ticket is None:
        arun = getattr(target, "arun", None)
        result: Result[Any] = await arun(request) if callable(arun) else await asyncio.to_thread(target.run, request)
        for whole in _whole(result, request):
            yield whole
        return
    events = _Events(target, request)
    try:
        event: StreamEvent | None = None
        while not isinstance(event, Done):
            if ticket.sink is sink:
                raw = await sink.queue.get()
            else:   # a hosted stream fills its own queue from a worker thread
                raw = await asyncio.to_thread(ticket.sink.get)
            event = events.convert(*raw)
            if event is not None:
                yield event
    finally:
        ticket.cancel()


class _LoopSink:
    """A ticket's events handed to an asyncio queue on ``loop`` (the engine thread must never block on it)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def put(self, item: tuple[str, Any]) -> None:
        with contextlib.suppress(RuntimeError):   # the consumer's loop has ended: nobody to tell
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)


def _submit(target: Any, request: Request, sink: Any = True) -> Any:
    """A stream of the request: a ticket on the local engine, a ``HostedStream`` on a hosted model; None where
    the request cannot stream (it picks among candidates at the end, or re-asks a local model)."""
    if request.strategy in ("best_of", "self_consistency"):
        return None
    open_stream = getattr(target, "open_stream", None)
    if callable(open_stream):
        return open_stream(request)
    submit = getattr(target, "submit", None)
    if not callable(submit) or request.reasks:
        return None
    return submit(request, stream=sink)


def _whole(result: Result[Any], request: Request) -> Iterator[StreamEvent]:
    source = request.schema.source
    yield Delta(result.text, result.text, tuple(result.tokens), tuple(result.logprobs), tuple(result.forced),
                len(result.attempts) - 1 if result.attempts else 0, request.schema.kind == "json",
                source.callable_names() if isinstance(source, ToolSet) else None)
    yield Done(result)


class _Events:
    """Turns the engine's raw stream messages into events: token bytes decoded incrementally (a character split
    across tokens waits for its last byte), partial values parsed."""

    def __init__(self, model: Any, request: Request) -> None:
        self.model = model
        self.json = request.schema.kind == "json"
        source = request.schema.source
        self.tools = source.callable_names() if isinstance(source, ToolSet) else None
        self.attempt = 0
        self.calls = 0
        self._reset()

    def _reset(self) -> None:
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.snapshot = ""

    def convert(self, kind: str, payload: Any) -> StreamEvent | None:
        if kind == "tokens":
            ids, logprobs, forced = payload
            text = self.decoder.decode(b"".join(self.model.token_bytes(t) for t in ids))
            self.snapshot += text
            return Delta(text, self.snapshot, tuple(ids), tuple(logprobs), tuple(forced), self.attempt, self.json,
                         self.tools)
        if kind == "reset":
            self.attempt += 1
            self._reset()
            return Reset(self.attempt, str(payload))
        if kind == "call":   # a hosted model's next call: every call after the first voids the text shown
            self.calls += 1
            if self.calls == 1:
                return None
            self.attempt += 1
            self._reset()
            return Reset(self.attempt, "the reply was not valid; the chain asks again")
        if kind == "text":   # a hosted reply: text only (no token ids; no partial value, nothing constrains it)
            self.snapshot += payload
            return Delta(payload, self.snapshot, (), (), (), self.attempt)
        if isinstance(payload, StructgenError):
            raise payload
        return Done(payload)

