"""The Responses API's reply: the ``response`` object and its ``output`` items — a ``reasoning`` item when the
model thought first, then a ``message`` with one ``output_text`` part, or ``function_call`` items — and the typed
server-sent events a streamed response is made of (``response.created``, ``response.in_progress``,
``response.output_item.added``, ``response.content_part.added``, ``response.output_text.delta`` / ``.done``,
``response.function_call_arguments.delta`` / ``.done``, ``response.output_item.done``, then
``response.completed``, ``response.incomplete`` when free text ran out of ``max_output_tokens``, or
``response.failed`` and an ``error`` event).

Every reply says ``store: false``: nothing is kept.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import asdict
from typing import Any

from ..errors import StructgenError
from ..result import Result
from . import responses
from .choice_stream import CallArguments, CallStart, Finish, Piece, Reasoning, Text
from .openai_api import Plan
from .responses_api import ResponsesRequest

__all__ = ["Reply", "ReplyEvents"]


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(16)}"


def _message(item_id: str, text: str, status: str) -> dict[str, Any]:
    return {"type": "message", "id": item_id, "status": status, "role": "assistant",
            "content": [_text_part(text)] if status != "in_progress" else []}


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _call(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {"type": "function_call", "id": item_id, "call_id": call_id, "name": name, "arguments": arguments,
            "status": status}


def _reasoning(item_id: str, text: str) -> dict[str, Any]:
    return {"type": "reasoning", "id": item_id, "summary": [], "status": "completed",
            "content": [{"type": "reasoning_text", "text": text}]}


class Reply:
    """One response to ``body`` (translated into ``plan``), served as ``model``: its id and the fields every
    snapshot of it repeats from the request."""

    def __init__(self, body: ResponsesRequest, plan: Plan, model: str) -> None:
        self.id = _id("resp")
        self.created_at = int(time.time())
        text_format = body.text.format if body.text is not None else None
        self.fields: dict[str, Any] = {
            "instructions": body.instructions, "max_output_tokens": body.max_output_tokens, "model": model,
            "parallel_tool_calls": bool(plan.options.get("parallel_tool_calls", False)),
            "previous_response_id": None, "reasoning": {"effort": None, "summary": None}, "store": False,
            "temperature": plan.options["temperature"], "top_p": plan.options["top_p"],
            "text": {"format": text_format.model_dump(by_alias=True, exclude_none=True) if text_format is not None
                     else {"type": "text"}},
            "tool_choice": body.tool_choice if body.tool_choice is not None else "auto",
            "tools": body.tools or [], "truncation": "disabled", "metadata": {}, "background": False,
        }
        self.stops = plan.stops

    def snapshot(self, status: str, output: list[dict[str, Any]], *, result: Result[Any] | None = None,
                 error: StructgenError | None = None) -> dict[str, Any]:
        """The ``response`` object in ``status`` with ``output``; ``result`` adds usage and structgen's account,
        ``error`` the failure."""
        out: dict[str, Any] = {
            "id": self.id, "object": "response", "created_at": self.created_at, "status": status,
            "error": {"code": type(error).__name__, "message": str(error)} if error is not None else None,
            "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            **self.fields, "output": output, "usage": None,
        }
        if result is not None:
            out["completed_at"] = int(time.time())
            out["usage"] = _usage(result)
            out["structgen"] = {"strategy": result.strategy, "seed": result.seed, "attempts": len(result.attempts),
                                "relaxed": [x.to_dict() for x in result.relaxed], "timings": asdict(result.timings)}
        return out

    def completed(self, result: Result[Any]) -> dict[str, Any]:
        """The whole response for a validated ``result``."""
        output: list[dict[str, Any]] = []
        if result.reasoning is not None:
            output.append(_reasoning(_id("rs"), result.reasoning))
        status = "completed"
        if result.tool_calls:
            output += [_call(_id("fc"), c.id, c.name, c.arguments_json, "completed") for c in result.tool_calls]
        else:
            text, finish = responses.visible_text(result, self.stops)
            status = "incomplete" if finish == "length" else "completed"
            output.append(_message(_id("msg"), text, status))
        return self.snapshot(status, output, result=result)


def _usage(result: Result[Any]) -> dict[str, Any]:
    t = result.timings
    return {"input_tokens": t.prompt_tokens,
            "input_tokens_details": {"cached_tokens": t.prefix_hit_tokens, "cache_write_tokens": 0},
            "output_tokens": t.generated_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": t.prompt_tokens + t.generated_tokens}


class ReplyEvents:
    """The typed events of a streamed ``Reply``, numbered in order, as server-sent event bytes."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.sequence = 0
        self.output: list[dict[str, Any]] = []   # the items so far, in output order
        self.message: dict[str, Any] | None = None
        self.text = ""
        self.calls: dict[int, dict[str, Any]] = {}   # a call's index in the reply -> its item

    def _event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()

    def start(self) -> list[bytes]:
        """``response.created`` and ``response.in_progress``."""
        snapshot = self.reply.snapshot("in_progress", [])
        return [self._event("response.created", response=snapshot),
                self._event("response.in_progress", response=snapshot)]

    def _at(self, item: dict[str, Any]) -> int:
        """The output index of ``item`` (this very item, not one equal to it)."""
        return next(i for i, x in enumerate(self.output) if x is item)

    def _added(self, item: dict[str, Any]) -> bytes:
        self.output.append(item)
        return self._event("response.output_item.added", output_index=len(self.output) - 1, item=dict(item))

    def piece(self, piece: Piece) -> list[bytes]:
        """The events one piece of the reply adds."""
        if isinstance(piece, Reasoning):
            item = _reasoning(_id("rs"), piece.text)
            return [self._added(item), self._event("response.output_item.done", output_index=len(self.output) - 1,
                                                   item=item)]
        if isinstance(piece, Text):
            out = []
            if self.message is None:
                self.message = _message(_id("msg"), "", "in_progress")
                out += [self._added(self.message),
                        self._event("response.content_part.added", item_id=self.message["id"],
                                    output_index=len(self.output) - 1, content_index=0, part=_text_part(""))]
            self.text += piece.text
            out.append(self._event("response.output_text.delta", item_id=self.message["id"],
                                   output_index=self._at(self.message), content_index=0, delta=piece.text,
                                   logprobs=[]))
            return out
        if isinstance(piece, CallStart):
            self.calls[piece.index] = _call(_id("fc"), piece.id, piece.name, "", "in_progress")
            return [self._added(self.calls[piece.index])]
        if isinstance(piece, CallArguments):
            item = self.calls[piece.index]
            item["arguments"] += piece.fragment
            return [self._event("response.function_call_arguments.delta", item_id=item["id"],
                                output_index=self._at(item), delta=piece.fragment)]
        assert isinstance(piece, Finish)
        return self._finish(piece)

    def _finish(self, finish: Finish) -> list[bytes]:
        out = []
        status = "incomplete" if finish.reason == "length" else "completed"
        if self.message is None and not self.calls:   # an empty answer still has its message
            out.append(self._added(_message(_id("msg"), "", "in_progress")))
            self.message = self.output[-1]
            out.append(self._event("response.content_part.added", item_id=self.message["id"],
                                   output_index=len(self.output) - 1, content_index=0, part=_text_part("")))
        for index, item in enumerate(self.output):
            if item is self.message:
                done = _message(item["id"], self.text, status)
                out += [self._event("response.output_text.done", item_id=item["id"], output_index=index,
                                    content_index=0, text=self.text, logprobs=[]),
                        self._event("response.content_part.done", item_id=item["id"], output_index=index,
                                    content_index=0, part=_text_part(self.text)),
                        self._event("response.output_item.done", output_index=index, item=done)]
                self.output[index] = done
            elif item["type"] == "function_call":
                item["status"] = "completed"
                out += [self._event("response.function_call_arguments.done", item_id=item["id"],
                                    output_index=index, name=item["name"], arguments=item["arguments"]),
                        self._event("response.output_item.done", output_index=index, item=dict(item))]
        kind = "response.incomplete" if status == "incomplete" else "response.completed"
        out.append(self._event(kind, response=self.reply.snapshot(status, self.output, result=finish.result)))
        return out

    def failed(self, error: StructgenError) -> list[bytes]:
        """``response.failed`` and an ``error`` event (which the openai SDK raises as an ``APIError``)."""
        body = json.loads(responses.error_body(error))["error"]
        return [self._event("response.failed", response=self.reply.snapshot("failed", self.output, error=error)),
                self._event("error", code=body["code"], message=body["message"], param=body["param"], error=body)]
