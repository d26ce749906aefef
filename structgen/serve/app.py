"""The OpenAI-compatible HTTP app of ``structgen serve`` (FastAPI), on one model's concurrent engine.

Endpoints: ``/v1/chat/completions``, ``/v1/completions``, ``/v1/responses`` (translated into the chat request it
stands for: ``responses_api``), ``/v1/models``, ``/health``, ``/metrics``. Every request becomes ``agenerate`` /
``astream`` calls on the engine, so requests from many clients decode together. The guarantee holds over HTTP:
content returned for a ``json_schema``, ``json_object``, regex, choice, grammar or tool request is valid (streamed
content included: a stream whose attempt is dropped ends with an error event instead of going on with other text);
when no valid value can be made the reply is an OpenAI-style error naming structgen's typed error, never invalid
content with status 200. Only free text may end with ``finish_reason: "length"``.
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
from ..errors import Cancelled, StructgenError
from ..result import Result
from ..stream import Done
from . import openai_api, responses, responses_api
from .choice_stream import CallArguments, CallStart, ChoiceStream, Finish, Piece, Reasoning, Text, held
from .metrics import Metrics
from .responses_output import Reply, ReplyEvents

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

    @app.post("/v1/responses")
    async def responses_endpoint(request: Request) -> Response:
        return await handle("responses", request, serve_responses)

    @app.get("/v1/responses/{response_id}")
    @app.delete("/v1/responses/{response_id}")
    async def stored_response(request: Request, response_id: str) -> Response:
        return keyed(request, lambda: error_response(_HttpError(404, f"no response {response_id!r}: "
                                                                     f"{responses_api.NOT_STORED}", "NotFound")))

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

    async def serve_responses(raw: bytes, request: Request, release: Callable[[], None]) -> Response:
        body = openai_api.parse_body(responses_api.ResponsesRequest, raw)
        plan = responses_api.responses_plan(body, max_tokens_cap=config.max_tokens, timeout=config.timeout)
        reply = Reply(body, plan, name)
        if body.stream:
            streams, events, tasks, first = await open_streams(plan)
            return StreamingResponse(reply_events(ReplyEvents(reply), streams, events, first, tasks, release),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        [result] = await run_choices(plan, request)
        return JSONResponse(reply.completed(result))

    async def reply_events(writer: ReplyEvents, streams: Sequence[ChoiceStream], events: asyncio.Queue[Any],
                           first: list[tuple[int, Any]], tasks: Sequence[asyncio.Future[Any]],
                           release: Callable[[], None]) -> AsyncIterator[bytes]:
        outcome = "ok"
        try:
            for event in writer.start():
                yield event
            try:
                async for _, piece in pieces(streams, events, first):
                    for event in writer.piece(piece):
                        yield event
            except StructgenError as exc:
                outcome = type(exc).__name__
                for event in writer.failed(exc):
                    yield event
        finally:
            for t in tasks:
                t.cancel()
            metrics.outcome("responses", outcome)
            release()

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
        streams, events, tasks, first = await open_streams(plan)
        rid = responses.completion_id("chatcmpl" if kind == "chat" else "cmpl")
        obj = "chat.completion.chunk" if kind == "chat" else "text_completion"
        return StreamingResponse(sse(rid, obj, kind, streams, events, first, tasks, release),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def open_streams(plan: openai_api.Plan) -> tuple[list[ChoiceStream], asyncio.Queue[tuple[int, Any]],
                                                           list[asyncio.Future[Any]], list[tuple[int, Any]]]:
        """The choices' streams, the queue their events arrive on, their tasks, and the first event (an error
        before it raises here, to be answered as an HTTP error)."""
        buffered = held(plan)
        if not buffered:
            # Text once sent cannot be taken back, so a streamed attempt is the only one: no repetition loop is cut
            # short to retry (a bounded grammar still ends, and max_tokens still bounds it).
            plan.options.setdefault("max_attempts", 1)
        streams = [ChoiceStream(i, plan, buffered, model, metrics) for i in range(plan.n)]
        events: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()
        tasks: list[asyncio.Future[Any]] = [asyncio.ensure_future(s.pump(events)) for s in streams]
        first: list[tuple[int, Any]] = []
        try:
            first.append(await events.get())
            if isinstance(first[0][1], BaseException):
                raise first[0][1]
        except BaseException:
            for t in tasks:
                t.cancel()
            raise
        return streams, events, tasks, first

    async def pieces(streams: Sequence[ChoiceStream], events: asyncio.Queue[Any], first: list[tuple[int, Any]],
                     ) -> AsyncIterator[tuple[int, Piece]]:
        """Each choice's pieces as its events arrive, until every choice has finished; a failure raises a
        ``StructgenError``."""
        pending = len(streams)
        while pending:
            index, item = first.pop(0) if first else await events.get()
            if isinstance(item, BaseException):
                raise item if isinstance(item, StructgenError) else StructgenError(str(item))
            for piece in streams[index].pieces(item):
                yield index, piece
            if isinstance(item, Done):
                pending -= 1

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
            try:
                async for index, piece in pieces(streams, events, first):
                    wire = _wire_piece(index, piece, kind)
                    if wire is not None:
                        yield chunk([wire])
            except StructgenError as exc:
                outcome = type(exc).__name__
                yield b"data: " + responses.error_body(exc) + b"\n\n"
                return
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


def _wire_piece(index: int, piece: Piece, kind: str) -> dict[str, Any] | None:
    """A piece of choice ``index`` as one choice of a chat (``kind`` "chat") or text-completion chunk."""
    out: dict[str, Any] = {"index": index, "finish_reason": None, "logprobs": None}
    if isinstance(piece, Text):
        out.update({"delta": {"content": piece.text}} if kind == "chat" else {"text": piece.text})
    elif isinstance(piece, Reasoning):   # a text completion has no place for it
        if kind != "chat":
            return None
        out["delta"] = {"reasoning_content": piece.text}
    elif isinstance(piece, CallStart):   # as OpenAI sends it: id, type and name first, the arguments after
        out["delta"] = {"tool_calls": [{"index": piece.index, "id": piece.id, "type": "function",
                                        "function": {"name": piece.name, "arguments": ""}}]}
    elif isinstance(piece, CallArguments):
        out["delta"] = {"tool_calls": [{"index": piece.index, "function": {"arguments": piece.fragment}}]}
    else:
        assert isinstance(piece, Finish)
        out["finish_reason"] = piece.reason
        if kind == "chat":
            out["delta"] = {}
        else:
            out["text"] = ""
    return out
