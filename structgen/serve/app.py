"""The OpenAI-compatible HTTP app of ``structgen serve`` (FastAPI), on one model's concurrent engine.

Every request becomes ``agenerate`` / ``astream`` calls on the engine, so requests from many clients decode
together. The guarantee holds over HTTP: content returned for a ``json_schema``, ``json_object``, regex, choice,
grammar or tool request is valid (streamed content included: a stream whose attempt is dropped ends with an error
event instead of going on with other text); when no valid value can be made the reply is an OpenAI-style error
naming structgen's typed error, never invalid content with status 200. Only free text may end with
``finish_reason: "length"``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from ..agenerate import agenerate
from ..compile.schema import compile_schema
from ..errors import Cancelled, GenerationError, StructgenError
from ..result import Result
from ..stream import Delta, Done, Reset, astream
from . import openai_api, responses
from .metrics import Metrics

__all__ = ["ServeConfig", "create_app"]


@dataclass(frozen=True)
class ServeConfig:
    """The server's limits. ``api_key``: when set, every endpoint but ``/health`` needs ``Authorization: Bearer
    <key>``. ``max_body_bytes``: larger request bodies get 413. ``max_tokens``: the cap (and the default) of a
    request's ``max_tokens``. ``timeout``: seconds a request may take (a request may ask for less), then 504.
    ``max_concurrency``: HTTP requests served at once; more get 429 with ``Retry-After``."""

    api_key: str | None = None
    max_body_bytes: int = 1 << 20
    max_tokens: int = 2048
    timeout: float | None = 600.0
    max_concurrency: int = 256
    model_name: str | None = None


class _HttpError(Exception):
    def __init__(self, status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.headers = status, kind, headers or {}


def create_app(model: Any, config: ServeConfig | None = None) -> FastAPI:
    """The FastAPI app serving ``model`` (a ``LlamaCpp``) under ``config``."""
    config = config or ServeConfig()
    name: str = config.model_name or str(getattr(model, "name", "structgen"))
    metrics = Metrics(model)
    state = {"in_flight": 0}
    app = FastAPI(title="structgen", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.metrics = metrics

    def check_key(request: Request) -> None:
        if config.api_key is None:
            return
        given = request.headers.get("authorization", "")
        expected = f"Bearer {config.api_key}"
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise _HttpError(401, "a valid API key is required (Authorization: Bearer <key>)", "AuthenticationError")

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > config.max_body_bytes):
            raise _HttpError(413, f"the request body exceeds {config.max_body_bytes} bytes", "RequestTooLarge")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > config.max_body_bytes:
                raise _HttpError(413, f"the request body exceeds {config.max_body_bytes} bytes", "RequestTooLarge")
        return bytes(body)

    def error_response(exc: BaseException) -> Response:
        if isinstance(exc, _HttpError):
            return Response(responses.error_body(str(exc), kind=exc.kind), status_code=exc.status,
                            media_type="application/json", headers=exc.headers)
        assert isinstance(exc, StructgenError)
        status = responses.error_status(exc)
        headers = {"Retry-After": str(responses.RETRY_AFTER_S)} if status == 503 else {}
        return Response(responses.error_body(exc), status_code=status, media_type="application/json",
                        headers=headers)

    async def handle(endpoint: str, request: Request,
                     serve: Callable[[bytes, Request, Callable[[], None]], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        try:
            check_key(request)
            if state["in_flight"] >= config.max_concurrency:
                raise _HttpError(429, f"the server is serving {config.max_concurrency} requests; retry shortly",
                                 "Overloaded", {"Retry-After": str(responses.RETRY_AFTER_S)})
            state["in_flight"] += 1
            metrics.in_flight.inc()
            released = False

            def release() -> None:   # once: at the answer, or for a stream at its last event
                nonlocal released
                if not released:
                    released = True
                    state["in_flight"] -= 1
                    metrics.in_flight.dec()

            response: Response | None = None
            try:
                raw = await read_body(request)
                response = await serve(raw, request, release)
            finally:
                if isinstance(response, StreamingResponse):   # its last event releases it (or this, if it never
                    response.background = BackgroundTask(release)   # starts)
                else:
                    release()
        except (StructgenError, _HttpError) as exc:
            metrics.outcome(endpoint, exc.kind if isinstance(exc, _HttpError) else type(exc).__name__)
            return error_response(exc)
        if not isinstance(response, StreamingResponse):
            metrics.outcome(endpoint, "ok")
            metrics.latency.observe(time.perf_counter() - started)
        return response

    # ---- endpoints --------------------------------------------------------------------------------

    @app.get("/health")
    async def health() -> dict[str, Any]:
        scheduler = getattr(model, "scheduler", None)
        return {"status": "ok", "model": name,
                "queue": scheduler.queued if scheduler is not None else 0,
                "live_sequences": scheduler.live_sequences if scheduler is not None else 0}

    def keyed(request: Request, answer: Callable[[], Response]) -> Response:
        try:
            check_key(request)
        except _HttpError as exc:
            return error_response(exc)
        return answer()

    @app.get("/metrics")
    async def metrics_endpoint(request: Request) -> Response:
        return keyed(request, lambda: Response(metrics.render(), media_type="text/plain; version=0.0.4"))

    @app.get("/v1/models")
    async def models(request: Request) -> Response:
        return keyed(request, lambda: JSONResponse({"object": "list", "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": "structgen"}]}))

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        return await handle("chat", request, serve_chat)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await handle("completions", request, serve_completion)

    # ---- serving --------------------------------------------------------------------------------------

    async def serve_chat(raw: bytes, request: Request, release: Callable[[], None]) -> Response:
        body = openai_api.parse_body(openai_api.ChatRequest, raw)
        plan = openai_api.chat_plan(body, max_tokens_cap=config.max_tokens, timeout=config.timeout)
        if body.stream:
            return await start_stream(plan, "chat", release)
        results = await run_choices(plan, request)
        return JSONResponse(responses.chat_completion(name, plan.stops, plan.logprobs, results, model.token_bytes))

    async def serve_completion(raw: bytes, request: Request, release: Callable[[], None]) -> Response:
        body = openai_api.parse_body(openai_api.CompletionRequest, raw)
        plan = openai_api.completion_plan(body, max_tokens_cap=config.max_tokens, timeout=config.timeout)
        if body.stream:
            return await start_stream(plan, "text", release)
        results = await run_choices(plan, request)
        echo = plan.prompt if body.echo else ""
        return JSONResponse(responses.text_completion(name, plan.stops, plan.logprobs, results, model.token_bytes,
                                                      echo=echo))

    async def run_choices(plan: openai_api.Plan, request: Request) -> list[Result[Any]]:
        started = time.perf_counter()
        tasks = [asyncio.ensure_future(agenerate(plan.prompt, plan.schema, model=model, **plan.choice_options(i)))
                 for i in range(plan.n)]
        watcher = asyncio.ensure_future(_cancel_on_disconnect(request, tasks))
        try:
            results = await asyncio.gather(*tasks)
        except asyncio.CancelledError:
            for t in tasks:
                t.cancel()
            if watcher.done() and not watcher.cancelled():   # the client left: nobody reads the answer
                raise Cancelled("the client disconnected") from None
            raise
        except BaseException:
            for t in tasks:
                t.cancel()
            raise
        finally:
            watcher.cancel()
        for r in results:
            metrics.served(r, time.perf_counter() - started)
        return list(results)

    async def start_stream(plan: openai_api.Plan, kind: str, release: Callable[[], None]) -> Response:
        """Start the choices' streams and wait for their first events (errors before any content are HTTP
        errors), then answer with server-sent events."""
        buffered = _relaxed(plan)
        if not buffered:
            # Text once sent cannot be taken back, so a streamed attempt is the only one: no repetition loop is cut
            # short to retry (a bounded grammar still ends, and max_tokens still bounds it).
            plan.options.setdefault("max_attempts", 1)
        streams = [ChoiceStream(i, plan, buffered, model, metrics) for i in range(plan.n)]
        events: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()
        tasks = [asyncio.ensure_future(s.pump(events)) for s in streams]
        first: list[tuple[int, Any]] = []
        try:
            first.append(await events.get())
            if isinstance(first[0][1], BaseException):
                raise first[0][1]
        except BaseException:
            for t in tasks:
                t.cancel()
            raise
        rid = responses.completion_id("chatcmpl" if kind == "chat" else "cmpl")
        obj = "chat.completion.chunk" if kind == "chat" else "text_completion"
        return StreamingResponse(sse(rid, obj, kind, streams, events, first, tasks, release),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def sse(rid: str, obj: str, kind: str, streams: Sequence[ChoiceStream], events: asyncio.Queue[Any],
                  first: list[tuple[int, Any]], tasks: Sequence[asyncio.Future[Any]],
                  release: Callable[[], None]) -> AsyncIterator[bytes]:
        def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            return b"data: " + json.dumps(responses.envelope(obj, rid, name, choices, **extra)).encode() + b"\n\n"

        outcome = "ok"
        try:
            if kind == "chat":
                yield chunk([{"index": s.index, "delta": {"role": "assistant", "content": ""}, "finish_reason": None,
                              "logprobs": None} for s in streams])
            pending = len(streams)
            while pending:
                index, item = first.pop(0) if first else await events.get()
                stream = streams[index]
                if isinstance(item, BaseException):
                    error = item if isinstance(item, StructgenError) else StructgenError(str(item))
                    outcome = type(error).__name__
                    yield b"data: " + responses.error_body(error) + b"\n\n"
                    return
                try:
                    pieces = stream.pieces(item, kind)
                except StructgenError as exc:
                    outcome = type(exc).__name__
                    yield b"data: " + responses.error_body(exc) + b"\n\n"
                    return
                for piece in pieces:
                    yield chunk([piece])
                if isinstance(item, Done):
                    pending -= 1
            if streams[0].plan.include_usage:
                yield chunk([], usage=responses.usage([s.result for s in streams if s.result is not None]))
            yield b"data: [DONE]\n\n"
        finally:
            for t in tasks:
                t.cancel()
            metrics.outcome("chat" if kind == "chat" else "completions", outcome)
            release()

    return app


async def _cancel_on_disconnect(request: Request, tasks: Sequence[asyncio.Future[Any]]) -> None:
    """Cancel ``tasks`` (and so free their sequences) if the client goes away before they finish."""
    while not all(t.done() for t in tasks):
        if await request.is_disconnected():
            for t in tasks:
                t.cancel()
            return
        await asyncio.sleep(0.1)


def _relaxed(plan: openai_api.Plan) -> bool:
    """Whether the schema's grammar leaves something to the validator: then a stream holds each choice's text until
    it is validated (an attempt the validator rejects would otherwise have been shown). A reply that thinks first
    is held too: its reasoning goes to ``reasoning_content``, never into the streamed content."""
    if plan.options.get("think"):
        return True
    if not isinstance(plan.schema, dict) or plan.options.get("strategy") in ("best_of", "self_consistency"):
        return False
    return compile_schema(plan.schema).relaxed


class ChoiceStream:
    """One choice of a streamed request: runs ``astream`` and turns its events into chunk pieces — text held back
    while it may still be the start of a stop sequence or of a tool call, tool calls sent whole once validated."""

    def __init__(self, index: int, plan: openai_api.Plan, buffered: bool, model: Any, metrics: Metrics) -> None:
        self.index, self.plan, self.model, self.metrics = index, plan, model, metrics
        self.buffered = buffered
        self.tools = "tools" in plan.options
        self.sent = 0              # characters of the current attempt's text sent
        self.result: Result[Any] | None = None
        self.started = time.perf_counter()

    async def pump(self, events: asyncio.Queue[tuple[int, Any]]) -> None:
        try:
            async for event in astream(self.plan.prompt, self.plan.schema, model=self.model,
                                       **self.plan.choice_options(self.index)):
                await events.put((self.index, event))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            await events.put((self.index, exc))

    def pieces(self, event: Any, kind: str) -> list[dict[str, Any]]:
        if isinstance(event, Reset):
            if self.sent:   # text already sent belonged to an attempt that failed: it must not stand
                raise GenerationError(f"the attempt being streamed was dropped ({event.reason}) after part of its "
                                      "text was sent; retry the request (or do not stream it)")
            self.buffered = self.buffered or self.tools
            return []
        if isinstance(event, Delta):
            if self.buffered:
                return []
            safe = self._safe_end(event.snapshot)
            return self._text_piece(event.snapshot[self.sent:safe], kind, safe)
        assert isinstance(event, Done)
        result = self.result = event.result
        self.metrics.served(result, time.perf_counter() - self.started)
        out: list[dict[str, Any]] = []
        calls = result.tool_calls
        if calls:
            delta = {"tool_calls": [{"index": i, **c} for i, c in enumerate(responses.tool_calls_json(calls))]}
            out.append({"index": self.index, "delta": delta, "finish_reason": None, "logprobs": None})
            finish = "tool_calls"
        else:
            text, finish = responses.visible_text(result, self.plan.stops)
            out += self._text_piece(text[self.sent:], kind, len(text))
        end: dict[str, Any] = {"index": self.index, "finish_reason": finish, "logprobs": None}
        end["delta" if kind == "chat" else "text"] = {} if kind == "chat" else ""
        out.append(end)
        return out

    def _text_piece(self, text: str, kind: str, end: int) -> list[dict[str, Any]]:
        if not text:
            return []
        self.sent = end
        if kind == "chat":
            return [{"index": self.index, "delta": {"content": text}, "finish_reason": None, "logprobs": None}]
        return [{"index": self.index, "text": text, "finish_reason": None, "logprobs": None}]

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

