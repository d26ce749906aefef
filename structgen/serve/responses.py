"""OpenAI response bodies from structgen results, and OpenAI error bodies from structgen's typed errors."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from ..errors import (
    BackendError,
    Cancelled,
    DeadlineExceeded,
    GenerationError,
    GrammarError,
    InvalidArgument,
    ModelNotFound,
    Overloaded,
    SchemaError,
    StructgenError,
    UnsafeSQL,
)
from ..result import Result, ToolCall

__all__ = ["RETRY_AFTER_S", "chat_choice", "chat_completion", "completion_id", "error_body", "error_status",
           "text_completion", "tool_calls_json", "usage"]

RETRY_AFTER_S = 1
"""What ``Retry-After`` says when the server or its engine is full."""


def completion_id(prefix: str) -> str:
    """A fresh OpenAI-style id (``chatcmpl-...``, ``cmpl-...``)."""
    return f"{prefix}-{secrets.token_hex(12)}"


def envelope(kind: str, rid: str, model: str, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """The common shape of a completion or chunk."""
    return {"id": rid, "object": kind, "created": int(time.time()), "model": model, "choices": choices, **extra}


def visible_text(result: Result[Any], stops: list[str]) -> tuple[str, str]:
    """The reply's text as the client sees it (a stop sequence cut off) and its ``finish_reason``."""
    text = result.text
    for stop in stops:
        if text.endswith(stop):
            return text[: -len(stop)], "stop"
    return text, "length" if result.finish_reason == "length" else "stop"


def tool_calls_json(calls: list[ToolCall]) -> list[dict[str, Any]]:
    """``message.tool_calls``."""
    return [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments_json}}
            for c in calls]


def chat_choice(index: int, result: Result[Any], stops: list[str], logprobs: bool, tokenizer: Any) -> dict[str, Any]:
    """One choice of a chat completion."""
    message: dict[str, Any] = {"role": "assistant"}
    calls = result.tool_calls
    if calls:
        message.update(content=None, tool_calls=tool_calls_json(calls))
        finish = "tool_calls"
    else:
        message["content"], finish = visible_text(result, stops)
    if result.reasoning is not None:
        message["reasoning_content"] = result.reasoning
    choice = {"index": index, "message": message, "finish_reason": finish,
              "logprobs": {"content": token_logprobs(result, tokenizer)} if logprobs else None}
    return choice


def token_logprobs(result: Result[Any], tokenizer: Any) -> list[dict[str, Any]]:
    """OpenAI's per-token logprobs: the chosen tokens, and the likeliest alternatives where they were asked for."""

    def entry(token: int, lp: float) -> dict[str, Any]:
        raw = tokenizer(token)
        return {"token": raw.decode("utf-8", "replace"), "logprob": lp, "bytes": list(raw)}

    tops = result.top_logprobs or [[] for _ in result.tokens]
    return [{**entry(token, lp), "top_logprobs": [entry(t, a) for t, a in top]}
            for token, lp, top in zip(result.tokens, result.logprobs, tops, strict=False)]


def chat_completion(model: str, stops: list[str], logprobs: bool, results: list[Result[Any]],
                    token_bytes: Callable[[int], bytes]) -> dict[str, Any]:
    """The whole ``chat.completion`` body for a request's choices (what ``POST /v1/chat/completions`` answers)."""
    choices = [chat_choice(i, r, stops, logprobs, token_bytes) for i, r in enumerate(results)]
    return envelope("chat.completion", completion_id("chatcmpl"), model, choices, usage=usage(results),
                    structgen=structgen_extra(results))


def text_completion(model: str, stops: list[str], logprobs: bool, results: list[Result[Any]],
                    token_bytes: Callable[[int], bytes], *, echo: str = "") -> dict[str, Any]:
    """The whole ``text_completion`` body (what ``POST /v1/completions`` answers); ``echo``: the prompt, when the
    request asked for it back."""
    choices = []
    for i, r in enumerate(results):
        text, finish = visible_text(r, stops)
        choices.append({"index": i, "text": echo + text, "finish_reason": finish,
                        "logprobs": completion_logprobs(r, token_bytes) if logprobs else None})
    return envelope("text_completion", completion_id("cmpl"), model, choices, usage=usage(results),
                    structgen=structgen_extra(results))


def completion_logprobs(result: Result[Any], token_bytes: Callable[[int], bytes]) -> dict[str, Any]:
    """A text completion's ``logprobs`` (tokens, their logprobs and text offsets)."""
    tokens = [token_bytes(t).decode("utf-8", "replace") for t in result.tokens]
    offsets, at = [], 0
    for t in tokens:
        offsets.append(at)
        at += len(t)
    return {"tokens": tokens, "token_logprobs": list(result.logprobs), "top_logprobs": None, "text_offset": offsets}


def usage(results: list[Result[Any]]) -> dict[str, Any]:
    """``usage`` over the choices (the prompt counted once)."""
    prompt = results[0].timings.prompt_tokens if results else 0
    completion = sum(r.timings.generated_tokens for r in results)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def structgen_extra(results: list[Result[Any]]) -> dict[str, Any]:
    """structgen's own account of each choice (strategy, attempts, relaxations, timings): an extra field clients
    ignore."""
    return {"choices": [{"strategy": r.strategy, "seed": r.seed, "attempts": len(r.attempts),
                         "relaxed": [x.to_dict() for x in r.relaxed], "timings": asdict(r.timings),
                         "spans": {pointer: list(where) for pointer, where in r.spans.items()}}
                        for r in results]}


_STATUS: list[tuple[type[StructgenError], int]] = [
    (Overloaded, 503), (DeadlineExceeded, 504), (Cancelled, 499), (ModelNotFound, 404),
    (InvalidArgument, 400), (SchemaError, 400), (GrammarError, 400), (UnsafeSQL, 400),
    (GenerationError, 500), (BackendError, 502),
]


def error_status(exc: StructgenError) -> int:
    """The HTTP status for a typed error: 4xx for bad input, 5xx when no valid value could be made, 503 when full."""
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 500


def error_body(exc: StructgenError | str, *, kind: str | None = None, param: str | None = None) -> bytes:
    """An OpenAI-style error body naming structgen's typed error."""
    name = kind or type(exc).__name__
    message = str(exc)
    if isinstance(exc, SchemaError) and exc.pointer:
        param = param or exc.pointer
    return json.dumps({"error": {"message": message, "type": name, "param": param,
                                 "code": _snake(name)}}).encode()


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() and i else c.lower() for i, c in enumerate(name))
