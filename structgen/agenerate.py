"""``agenerate``: ``generate`` for asyncio.

Hosted models run on the SDK's async client (``OpenAICompatible.arun``): many calls can be in flight on
one event loop. Local masked requests are submitted to the model's engine thread, which batches them with
every other caller's; the coroutine awaits the ticket, and cancelling it cancels the request (its sequences are
freed at the engine's next step). Anything else runs in a worker thread, so the event loop stays free.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Literal

from .compile.kinds import SchemaLike
from .compile.number_bound import DEFAULT_DIGITS
from .generate import build_request, default_model
from .request import Message, Request
from .result import Result
from .verify import Verifier, reselect, scorer_for

__all__ = ["agenerate"]


async def agenerate(
    prompt: str | Sequence[Message],
    schema: SchemaLike = None,
    *,
    model: Any = None,
    strategy: str = "auto",
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    min_p: float = 0.0,
    repetition_penalty: float = 1.0,
    frequency_penalty: float = 0.0,
    presence_penalty: float = 0.0,
    seed: int | None = None,
    max_tokens: int = 512,
    n: int = 1,
    select: Literal["logprob", "first_valid", "first_finished"] | Verifier | Callable[[Any], float] = "logprob",
    format: Literal["json", "yaml"] = "json",
    max_attempts: int = 3,
    system: str | None = None,
    chat: bool = True,
    schema_in_prompt: bool = True,
    fast_forward: bool = True,
    json_whitespace: str = "compact",
    number_digits: int | None = DEFAULT_DIGITS,
    extra_properties: bool = False,
    model_logprobs: bool = False,
    strict: bool = False,
    timeout: float | None = None,
    tools: Sequence[Any] | None = None,
    tool_choice: Any = "auto",
    parallel_tool_calls: bool = False,
    top_logprobs: int = 0,
    source: str | None = None,
    think: int = 0,
    priority: int = 0,
) -> Result[Any]:
    """``generate`` as a coroutine: the same arguments, the same validated ``Result`` or typed error."""
    options = {name: value for name, value in locals().items() if name not in ("prompt", "schema", "model")}
    target = model if model is not None else await asyncio.to_thread(default_model)
    request = build_request(target, prompt, schema, **options)
    result = await _serve(target, request)
    score = scorer_for(select, prompt, source, target)
    return await asyncio.to_thread(reselect, result, request.strategy, score) if score is not None else result


async def _serve(target: Any, request: Request) -> Result[Any]:
    arun = getattr(target, "arun", None)
    if callable(arun):
        result: Result[Any] = await arun(request)
        return result
    submit = getattr(target, "submit", None)
    if callable(submit) and not request.reasks:
        return await _await_ticket(submit(request))
    return await asyncio.to_thread(target.run, request)


async def _await_ticket(ticket: Any) -> Result[Any]:
    """Wait for an engine ticket without a thread; a cancelled wait cancels the request."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def settle() -> None:
        if not done.done():
            done.set_result(None)

    def wake() -> None:
        if not loop.is_closed():   # the caller may have given up and its loop ended
            loop.call_soon_threadsafe(settle)

    ticket.on_done(wake)
    try:
        await done
    except asyncio.CancelledError:
        ticket.cancel()
        raise
    result: Result[Any] = ticket.result()
    return result
