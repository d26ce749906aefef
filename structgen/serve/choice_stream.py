"""One choice of a streamed request: ``astream``'s events as wire-neutral pieces — text, a tool call's start, a
fragment of its arguments, the finish — which the chat, text-completion and Responses endpoints each write in
their own format.

Text is held back while it may still be the start of a stop sequence or of a tool call. A tool call is announced
(``CallStart``: its index, id and name) as soon as the grammar has fixed its name, and its arguments follow as
they are decoded (``CallArguments``), so the fragments of a call add up to its validated ``arguments_json``. A
later call of a parallel reply is sent once its arguments are complete, unless it repeats an earlier call exactly
(the validated result drops such a repeat, and a client would run it twice). Where the grammar cannot enforce a
tool's whole schema (a relaxed schema), calls are held and sent whole once validated.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass
from typing import Any

from ..compile.schema import compile_schema
from ..compile.tools import parse_tools
from ..errors import GenerationError
from ..partial import PartialToolCall
from ..result import Result
from ..stream import Delta, Done, Reset, astream
from . import responses
from .metrics import Metrics
from .openai_api import Plan

__all__ = ["CallArguments", "CallStart", "ChoiceStream", "Finish", "Piece", "Reasoning", "Text", "held"]


@dataclass(frozen=True)
class Text:
    """More of the reply's text."""

    text: str


@dataclass(frozen=True)
class Reasoning:
    """What the model thought before answering (sent whole, before the answer)."""

    text: str


@dataclass(frozen=True)
class CallStart:
    """A tool call begins: its place among the reply's calls, its id and the tool's name."""

    index: int
    id: str
    name: str


@dataclass(frozen=True)
class CallArguments:
    """The next fragment of call ``index``'s arguments (JSON text)."""

    index: int
    fragment: str


@dataclass(frozen=True)
class Finish:
    """The choice is over: ``reason`` is OpenAI's ``finish_reason``; ``result`` the validated result."""

    reason: str
    result: Result[Any]


Piece = Text | Reasoning | CallStart | CallArguments | Finish


@dataclass
class _Announced:
    id: str
    name: str
    sent: str = ""   # the arguments sent so far


def held(plan: Plan) -> bool:
    """Whether the schema's grammar leaves something to the validator: then a stream holds each choice's text until
    it is validated (an attempt the validator rejects would otherwise have been shown). A reply that thinks first
    is held too: its reasoning goes to its own field, never into the streamed content."""
    if plan.options.get("think"):
        return True
    if not isinstance(plan.schema, dict) or plan.options.get("strategy") in ("best_of", "self_consistency"):
        return False
    return compile_schema(plan.schema).relaxed


def _calls_relaxed(plan: Plan) -> bool:
    """Whether some tool's arguments schema is relaxed (its calls are then sent once validated)."""
    if "tools" not in plan.options:
        return False
    return any(compile_schema(t.parameters if t.parameters is not None else {"type": "object"}).relaxed
               for t in parse_tools(plan.options["tools"]))


class ChoiceStream:
    """Choice ``index`` of a streamed ``plan``: ``pump`` runs ``astream`` into a queue, ``pieces`` turns each of
    its events into the pieces to send."""

    def __init__(self, index: int, plan: Plan, buffered: bool, model: Any, metrics: Metrics) -> None:
        self.index, self.plan, self.model, self.metrics = index, plan, model, metrics
        self.buffered = buffered
        self.tools = "tools" in plan.options
        self.calls_held = buffered or _calls_relaxed(plan)
        self.sent = 0              # characters of the current attempt's text sent
        self.announced: list[_Announced] = []   # calls sent (begun), in order
        self._placed: dict[int, int | None] = {}   # a written call's index -> its index as sent (None: a repeat)
        self.result: Result[Any] | None = None
        self.started = time.perf_counter()

    async def pump(self, events: asyncio.Queue[tuple[int, Any]]) -> None:
        """Put ``(index, event)`` for each of the choice's events on ``events`` (an exception as the last one)."""
        try:
            async for event in astream(self.plan.prompt, self.plan.schema, model=self.model,
                                       **self.plan.choice_options(self.index)):
                await events.put((self.index, event))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            await events.put((self.index, exc))

    def pieces(self, event: Any) -> list[Piece]:
        """The pieces ``event`` adds; raises ``GenerationError`` where an attempt already partly sent was dropped."""
        if isinstance(event, Reset):
            if self.sent or self.announced:   # what was sent belonged to an attempt that failed: it must not stand
                raise GenerationError(f"the attempt being streamed was dropped ({event.reason}) after part of it "
                                      "was sent; retry the request (or do not stream it)")
            self.buffered = self.buffered or self.tools
            return []
        if isinstance(event, Delta):
            if self.buffered:
                return []
            calls = event.tool_calls if self.tools else None
            if calls is not None:
                return [] if self.calls_held else self._call_pieces(calls)
            safe = self._safe_end(event.snapshot)
            return self._text(event.snapshot[self.sent:safe], safe)
        assert isinstance(event, Done)
        result = self.result = event.result
        self.metrics.served(result, time.perf_counter() - self.started)
        thought: list[Piece] = [Reasoning(result.reasoning)] if result.reasoning is not None else []
        if result.tool_calls:
            return [*thought, *self._final_calls(result), Finish("tool_calls", result)]
        text, finish = responses.visible_text(result, self.plan.stops)
        return [*thought, *self._text(text[self.sent:], len(text)), Finish(finish, result)]

    def _text(self, text: str, end: int) -> list[Piece]:
        if not text:
            return []
        self.sent = end
        return [Text(text)]

    def _call_pieces(self, calls: tuple[PartialToolCall, ...]) -> list[Piece]:
        out: list[Piece] = []
        for call in calls:
            if call.name is None:
                break
            if call.index not in self._placed:
                if call.index and not call.complete:   # a later call: sent once complete (it may be a repeat)
                    break
                repeat = call.index > 0 and any(c.complete and (c.name, c.arguments_json) == (call.name,
                                                                                          call.arguments_json)
                                            for c in calls[:call.index])
                if repeat:
                    self._placed[call.index] = None
                    continue
                self._placed[call.index] = len(self.announced)
                self.announced.append(_Announced("call_" + secrets.token_hex(12), call.name))
                out.append(CallStart(len(self.announced) - 1, self.announced[-1].id, call.name))
            placed = self._placed[call.index]
            if placed is None:
                continue
            sent = self.announced[placed]
            if len(call.arguments_json) > len(sent.sent):
                out.append(CallArguments(placed, call.arguments_json[len(sent.sent):]))
                sent.sent = call.arguments_json
        return out

    def _final_calls(self, result: Result[Any]) -> list[Piece]:
        """The rest of each validated call: what was sent of it must be where it starts."""
        final = result.tool_calls
        if len(final) < len(self.announced):
            raise GenerationError("a streamed tool call did not validate")
        out: list[Piece] = []
        for k, call in enumerate(final):
            if k == len(self.announced):
                self.announced.append(_Announced("call_" + secrets.token_hex(12), call.name))
                out.append(CallStart(k, self.announced[k].id, call.name))
            sent = self.announced[k]
            if sent.name != call.name or not call.arguments_json.startswith(sent.sent):
                raise GenerationError("a streamed tool call did not validate as it was sent")
            if len(call.arguments_json) > len(sent.sent):
                out.append(CallArguments(k, call.arguments_json[len(sent.sent):]))
                sent.sent = call.arguments_json
        return out

    def _safe_end(self, snapshot: str) -> int:
        """How much of ``snapshot`` can be shown now: not a tail that may start a stop sequence, and nothing of a
        reply that may turn out to be a tool call."""
        if self.tools:
            head = snapshot.lstrip()
            if "<tool_call>".startswith(head[:11]) or head.startswith("<tool_call>"):
                return self.sent
        end = len(snapshot)
        for stop in self.plan.stops:
            for k in range(min(len(stop), len(snapshot)), 0, -1):
                if snapshot.endswith(stop[:k]):
                    end = min(end, len(snapshot) - k)
                    break
        return max(end, self.sent)
