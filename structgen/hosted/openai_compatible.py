"""``OpenAICompatible``: an OpenAI-compatible chat endpoint (OpenAI, llama.cpp's servers, vLLM, ...) served
through the fallback chain of ``structgen.strategies``.

Transport rules: the official ``openai`` SDK (sync and async clients) with its own retries off, so the
backoff here and ``Result.attempts`` are the whole truth. Every failure becomes a ``BackendError``:
timeouts, refused or dropped connections, 408/409/429 and 5xx are ``retryable`` and retried with
exponential backoff and jitter (``Retry-After`` honoured up to ``max_retry_after``; a longer one fails at
once rather than hang); other 4xx are not. A reply that is not a chat completion (an HTML page, a body cut
mid-JSON, an empty ``choices`` list, a stream that ends before its finish reason) is retryable too.

Server-side constraints: JSON kinds go as ``response_format={"type": "json_schema", ...}`` with
``strict: true`` (OpenAI, vLLM, llama.cpp's own server), and where that is refused as
``{"type": "json_object", "schema": ...}`` (llama-cpp-python's server, which rejects ``json_schema``); regex,
choice and Lark kinds as llama.cpp's ``grammar`` field (GBNF, translated here). An HTTP error on such a
request is read as a refusal of that form: the chain records it and tries the next form or step, and the
endpoint is remembered as not supporting it.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import importlib
import importlib.util
import json
import math
import random
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ..chain.strategies import Call, Capabilities, Completion, Constraint, Reply, arun_chain, run_chain
from ..compile.schema import CompiledSchema
from ..compile.tools import ToolSet, call_text
from ..errors import BackendError, Cancelled, InvalidArgument
from ..request import Request
from ..result import Result
from .gbnf import to_gbnf
from .pacing import Pacer, estimate_tokens
from .portable import portable_schema
from .streaming import HostedStream, listener_of, tap

if TYPE_CHECKING:
    import openai
    from openai.types.chat import ChatCompletionChunk

__all__ = ["OpenAICompatible"]


@functools.cache
def _sdk() -> ModuleType:
    """The ``openai`` package, imported on first use: it doubles ``import structgen``'s time otherwise."""
    import openai

    return openai


@functools.cache
def _transport_errors() -> tuple[type[BaseException], ...]:
    """Errors of the SDK's HTTP layer (httpx2 for openai ≥ 3, httpx before), which can surface mid-body."""
    http: Any = importlib.import_module("httpx2" if importlib.util.find_spec("httpx2") else "httpx")
    return (http.HTTPError, http.StreamError, OSError)

_RETRYABLE_STATUS = frozenset({408, 409, 429})
_CONSTRAINT_WORDS = ("response_format", "json_schema", "grammar")
_NO_KEY = "sk-no-key"  # local servers ignore the key, the SDK insists on one


class OpenAICompatible:
    """A hosted model behind an OpenAI-compatible ``/v1/chat/completions`` endpoint.

    ``base_url``: e.g. ``http://127.0.0.1:8080/v1``. ``api_key``: None for local servers. ``timeout``:
    seconds any request may wait to connect or between bytes of a reply. ``max_retries``: extra tries for a
    retryable failure, with backoff from ``backoff`` seconds doubling up to ``max_backoff``. ``concurrency``:
    most requests in flight for best-of-n / self-consistency. ``logprobs``: ask for token logprobs — None
    (default) only where the chain selects by them (best-of, self-consistency), since some servers pay
    dearly for them (llama-cpp-python's server: ~4x slower per token); True always; False never.
    ``stream``: read replies as server-sent events (a stream that stops before its end is detected).
    ``pacer``: requests/tokens-per-minute limits every async attempt waits for (``structgen.hosted.pacing``; the
    batch runner's ``--rpm`` / ``--tpm``).
    """

    def __init__(
        self,
        base_url: str,
        model: str = "local",
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 2,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        max_retry_after: float = 30.0,
        concurrency: int = 4,
        logprobs: bool | None = None,
        stream: bool = False,
        pacer: Pacer | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise InvalidArgument(f"base_url must be an http(s) URL, got {base_url!r}")
        if timeout <= 0 or max_retries < 0 or backoff < 0 or max_backoff < 0 or max_retry_after < 0:
            raise InvalidArgument("timeout must be positive; max_retries and the backoff settings non-negative")
        if concurrency < 1:
            raise InvalidArgument("concurrency must be at least 1")
        self.base_url = base_url
        self.model = model
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self.concurrency = concurrency
        self.stream = stream
        self.logprobs = logprobs
        self.pacer = pacer
        self.caps = Capabilities()
        self._api_key = api_key or _NO_KEY
        self._client: openai.OpenAI | None = None
        self._aclient: openai.AsyncOpenAI | None = None
        self._lock = threading.Lock()
        self._jitter = random.Random()

    @property
    def name(self) -> str:
        """The model name sent to the endpoint."""
        return self.model

    def __repr__(self) -> str:
        return f"OpenAICompatible({self.base_url!r}, model={self.model!r})"

    # ---- Model -------------------------------------------------------------------------------------

    def run(self, request: Request) -> Result[Any]:
        """Serve one request through the fallback chain (see ``structgen.strategies``)."""
        _check(request)
        return run_chain(self, request, concurrency=self.concurrency)

    def open_stream(self, request: Request) -> HostedStream:
        """Start ``run(request)`` in a worker thread with its replies streamed (see ``HostedStream``)."""
        _check(request)
        return HostedStream(self.run, request)

    async def arun(self, request: Request) -> Result[Any]:
        """``run`` with asyncio: requests go through the SDK's async client."""
        _check(request)
        return await arun_chain(self, request, concurrency=self.concurrency)

    def constraints(self, schema: CompiledSchema) -> tuple[Constraint, ...]:
        """The server-side forms of ``schema``: a strict json_schema ``response_format`` then the
        json_object + schema one (both with the schema's portable copy); or a GBNF grammar; or none."""
        if schema.kind == "json" and schema.json_schema is not None:
            # Only the portable subset is sent (see hosted/portable.py); the chain validates the full schema.
            sendable, _ = portable_schema(schema.json_schema)
            if sendable is None:
                return ()
            title = schema.json_schema.get("title")
            name = re.sub(r"[^A-Za-z0-9_-]", "_", title)[:64] if isinstance(title, str) and title else "output"
            return (Constraint("json_schema", {"type": "json_schema", "json_schema": {
                        "name": name, "schema": sendable, "strict": True}}),
                    Constraint("json_object", {"type": "json_object", "schema": sendable}))
        if schema.kind == "tools" and isinstance(schema.source, ToolSet):
            return (Constraint("tools", {"tools": list(schema.source.tools),
                                         "tool_choice": schema.source.openai_tool_choice()}),)
        gbnf = to_gbnf(schema)
        return (Constraint("grammar", gbnf),) if gbnf is not None else ()

    # ---- one request, with retries -----------------------------------------------------------------

    def complete(self, call: Call) -> Reply:
        """Make one chat-completion request, retrying retryable failures; raise ``BackendError``."""
        for attempt in range(self.max_retries + 1):
            try:
                return self._once(call)
            except BackendError as exc:
                delay = self._delay(exc, attempt)
                if delay is None:
                    raise
                time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def acomplete(self, call: Call) -> Reply:
        """``complete`` with the async client."""
        for attempt in range(self.max_retries + 1):
            try:
                return await self._aonce(call)
            except BackendError as exc:
                delay = self._delay(exc, attempt)
                if delay is None:
                    raise
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _once(self, call: Call) -> Reply:
        client = self._sync_client()
        params = self._params(call)
        listener = listener_of(call)
        try:
            if listener is not None:
                listener("call", "")
                with client.chat.completions.create(**params, stream=True) as events:
                    return self._learn(params, _from_stream(tap(iter(events), listener)))
            if self.stream:
                with client.chat.completions.create(**params, stream=True) as events:
                    return self._learn(params, _from_stream(iter(events)))
            return self._learn(params, _from_completion(client.chat.completions.create(**params)))
        except (BackendError, Cancelled):
            raise
        except Exception as exc:
            raise self._normalise(exc, call) from exc

    async def _aonce(self, call: Call) -> Reply:
        client = self._async_client()
        params = self._params(call)
        if self.pacer is not None:
            chars = sum(len(str(m.get("content") or "")) for m in call.messages)
            await self.pacer.acquire(estimate_tokens(chars, call.max_tokens) * max(call.n, 1))
        try:
            if self.stream:
                events = await client.chat.completions.create(**params, stream=True)
                async with events:
                    return self._learn(params, _from_stream(await _collect(events)))
            return self._learn(params, _from_completion(await client.chat.completions.create(**params)))
        except BackendError:
            raise
        except Exception as exc:
            raise self._normalise(exc, call) from exc

    def _learn(self, params: dict[str, Any], reply: Reply) -> Reply:
        """Remember whether the endpoint returns the logprobs it was asked for."""
        if params.get("logprobs"):
            self.caps.logprobs = all(c.logprobs is not None or not c.text for c in reply.completions)
        return reply

    def _params(self, call: Call) -> dict[str, Any]:
        s = call.sampling
        params: dict[str, Any] = {"model": self.model, "messages": [dict(m) for m in call.messages],
                                  "max_tokens": call.max_tokens, "temperature": s.temperature, "seed": call.seed}
        extra: dict[str, Any] = {}
        if call.n > 1:
            params["n"] = call.n
        if s.top_p < 1.0:
            params["top_p"] = s.top_p
        if s.frequency_penalty:
            params["frequency_penalty"] = s.frequency_penalty
        if s.presence_penalty:
            params["presence_penalty"] = s.presence_penalty
        # llama.cpp / vLLM extensions: sent only when set, so strict endpoints never see them by default.
        if s.top_k > 0:
            extra["top_k"] = s.top_k
        if s.min_p > 0:
            extra["min_p"] = s.min_p
        if s.repetition_penalty != 1.0:
            extra["repeat_penalty"] = s.repetition_penalty
        if self.logprobs or (self.logprobs is None and call.want_logprobs and self.caps.logprobs is not False):
            params["logprobs"] = True
            params["top_logprobs"] = 0
        if call.constraint is not None:
            if call.constraint.kind in ("json_schema", "json_object"):
                params["response_format"] = call.constraint.payload
            elif call.constraint.kind == "tools":
                params.update(call.constraint.payload)
            else:
                extra["grammar"] = call.constraint.payload
        if extra:
            params["extra_body"] = extra
        return params

    def _normalise(self, exc: Exception, call: Call) -> BackendError:
        """A failure of one request as a ``BackendError`` with the right ``retryable`` (anything that is not
        the SDK's or the transport's — a bug — is re-raised as it is)."""
        openai = _sdk()
        where = f"{self.base_url} ({self.model})"
        if isinstance(exc, openai.APITimeoutError):
            return BackendError(f"{where}: no reply within timeout={self.timeout}s", retryable=True)
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__ or exc
            return BackendError(f"{where}: connection failed: {type(cause).__name__}: {cause}", retryable=True)
        if isinstance(exc, openai.APIStatusError):
            code = exc.status_code
            message = _error_message(exc)
            refusal = call.constraint is not None and (
                (400 <= code < 500 and code not in _RETRYABLE_STATUS)
                or any(w in message for w in _CONSTRAINT_WORDS))
            retryable = not refusal and (code in _RETRYABLE_STATUS or (code >= 500 and code != 501))
            return BackendError(f"{where}: HTTP {code}: {message}", retryable=retryable, status_code=code)
        if isinstance(exc, openai.APIResponseValidationError | ValueError):
            return BackendError(f"{where}: the reply is not a chat completion: {exc}", retryable=True)
        if isinstance(exc, _transport_errors()):
            return BackendError(f"{where}: transport failed: {type(exc).__name__}: {exc}", retryable=True)
        if isinstance(exc, openai.OpenAIError):
            return BackendError(f"{where}: {type(exc).__name__}: {exc}", retryable=False)
        raise exc

    def _delay(self, exc: BackendError, attempt: int) -> float | None:
        """Seconds to wait before retrying, or None to give up (and raise ``exc``)."""
        if not exc.retryable or attempt >= self.max_retries:
            return None
        cause = exc.__cause__
        retry_after = (_retry_after(cause.response.headers.get("retry-after"))
                       if isinstance(cause, _sdk().APIStatusError) else None)
        if retry_after is not None:
            if retry_after > self.max_retry_after:
                return None
            return retry_after
        return float(min(self.max_backoff, self.backoff * 2**attempt) * self._jitter.uniform(0.5, 1.0))

    # ---- clients -----------------------------------------------------------------------------------

    def _sync_client(self) -> openai.OpenAI:
        with self._lock:
            if self._client is None:
                self._client = _sdk().OpenAI(base_url=self.base_url, api_key=self._api_key, timeout=self.timeout,
                                             max_retries=0)
            return self._client

    def _async_client(self) -> openai.AsyncOpenAI:
        # An AsyncOpenAI is bound to the event loop it first ran on; asyncio.run() makes a new loop each time.
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._aclient is None or getattr(self, "_aclient_loop", None) is not loop:
                self._aclient = _sdk().AsyncOpenAI(base_url=self.base_url, api_key=self._api_key,
                                                   timeout=self.timeout, max_retries=0)
                self._aclient_loop = loop
            return self._aclient

    def close(self) -> None:
        """Close the HTTP connections of the sync client."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    async def aclose(self) -> None:
        """Close the HTTP connections of both clients."""
        self.close()
        with self._lock:
            aclient, self._aclient = self._aclient, None
        if aclient is not None:
            await aclient.close()


def _check(request: Request) -> None:
    if not request.chat:
        raise InvalidArgument("an OpenAI-compatible endpoint is chat-only: chat=False needs a local model")
    if request.top_logprobs:
        raise InvalidArgument("top_logprobs needs a local model (a hosted chain reads the chosen tokens only)")


def _error_message(exc: openai.APIStatusError) -> str:
    """The server's error message on one line: ``{"error": {"message": ...}}`` where given, else the body."""
    body: Any = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        body = inner.get("message", inner) if isinstance(inner, dict) else inner
    text = body if isinstance(body, str) else (json.dumps(body) if body is not None else exc.message)
    return " ".join(text.split())[:400]


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


# ---- replies -----------------------------------------------------------------------------------------

def _from_completion(resp: Any) -> Reply:
    from openai.types.chat import ChatCompletion

    if not isinstance(resp, ChatCompletion):
        raise BackendError(f"the reply is not a chat completion: {str(resp)[:200]!r}", retryable=True)
    if not isinstance(resp.choices, list) or not resp.choices:
        raise BackendError("the reply has an empty choices list", retryable=True)
    # The SDK does not check the types of what a server sent: every field read here is checked.
    choices = sorted(resp.choices, key=lambda c: _count(getattr(c, "index", 0)))
    usage = resp.usage
    total = _count(getattr(usage, "completion_tokens", 0))
    completions = []
    for ch in choices:
        message = getattr(ch, "message", None)
        content = getattr(getattr(ch, "logprobs", None), "content", None)
        logprobs = _logprobs(content)
        tokens = len(logprobs) if logprobs else (total if len(choices) == 1 else total // len(choices))
        text = _calls_text(getattr(message, "tool_calls", None)) or _text(getattr(message, "content", None))
        reasoning = _text(getattr(message, "reasoning_content", None) or (getattr(message, "model_extra", None) or {})
                          .get("reasoning_content")) or None
        completions.append(Completion(text, _text(getattr(ch, "finish_reason", None)) or "unknown", tokens, logprobs,
                                      reasoning=reasoning))
    return Reply(tuple(completions), prompt_tokens=_count(getattr(usage, "prompt_tokens", 0)),
                 completion_tokens=total or sum(c.tokens for c in completions))


def _calls_text(calls: Any) -> str:
    """A reply's ``tool_calls`` written as a model writes them (``structgen.compile.tools``), for the validator;
    empty when there are none."""
    if not isinstance(calls, list) or not calls:
        return ""
    written = []
    for call in calls:
        fn = getattr(call, "function", None)
        name, arguments = _text(getattr(fn, "name", None)), _text(getattr(fn, "arguments", None))
        written.append(call_text(name, arguments or "{}"))
    return "\n".join(written)


def _text(value: Any) -> str:
    """A text field of a reply (None: empty); anything else is a malformed reply."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BackendError(f"the reply has {type(value).__name__} where text belongs: {str(value)[:100]!r}",
                           retryable=True)
    return value


def _count(value: Any) -> int:
    """A token count or an index of a reply (0 when missing or not a non-negative integer)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _logprobs(content: Any) -> tuple[float, ...] | None:
    """Token logprobs of a reply, or None when missing or malformed (they only rank candidates)."""
    if not isinstance(content, list) or not content:
        return None
    values = [getattr(t, "logprob", None) for t in content]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v <= 0
               for v in values):
        return None
    return tuple(float(v) for v in values)   # type: ignore[arg-type]   # checked just above


async def _collect(events: AsyncIterator[ChatCompletionChunk]) -> Iterator[ChatCompletionChunk]:
    return iter([e async for e in events])


def _from_stream(events: Iterator[ChatCompletionChunk]) -> Reply:
    """Assemble streamed chunks; a stream without choices, or one that ends before a finish reason, fails."""
    from openai.types.chat import ChatCompletionChunk

    texts: dict[int, list[str]] = {}
    calls: dict[int, dict[int, list[str]]] = {}    # choice -> call index -> [name, arguments so far]
    logprobs: dict[int, list[float]] = {}
    finish: dict[int, str] = {}
    prompt_tokens = completion_tokens = 0
    for chunk in events:
        if not isinstance(chunk, ChatCompletionChunk):
            raise BackendError(f"the stream sent something that is not a chunk: {str(chunk)[:200]!r}",
                               retryable=True)
        if chunk.usage is not None:
            prompt_tokens = _count(getattr(chunk.usage, "prompt_tokens", 0))
            completion_tokens = _count(getattr(chunk.usage, "completion_tokens", 0))
        for ch in chunk.choices if isinstance(chunk.choices, list) else ():
            index = _count(getattr(ch, "index", 0))
            delta = getattr(ch, "delta", None)
            texts.setdefault(index, []).append(_text(getattr(delta, "content", None)))
            for piece in getattr(delta, "tool_calls", None) or ():
                fn = getattr(piece, "function", None)
                slot = calls.setdefault(index, {}).setdefault(_count(getattr(piece, "index", 0)), ["", ""])
                slot[0] += _text(getattr(fn, "name", None))
                slot[1] += _text(getattr(fn, "arguments", None))
            lps = _logprobs(getattr(getattr(ch, "logprobs", None), "content", None))
            if lps:
                logprobs.setdefault(index, []).extend(lps)
            reason = _text(getattr(ch, "finish_reason", None))
            if reason:
                finish[index] = reason
    if not texts:
        raise BackendError("the stream carried no choices", retryable=True)
    unfinished = sorted(set(texts) - set(finish))
    if unfinished:
        raise BackendError(f"the stream stopped before choice {unfinished[0]} finished", retryable=True)
    completions = []
    for i in sorted(texts):
        lps = tuple(logprobs[i]) if i in logprobs else None
        text = "\n".join(call_text(name, args or "{}") for _, (name, args) in sorted(calls.get(i, {}).items()))
        completions.append(Completion(text or "".join(texts[i]), finish[i], len(lps) if lps else 0, lps))
    counted = sum(c.tokens for c in completions)
    return Reply(tuple(completions), prompt_tokens=prompt_tokens, completion_tokens=completion_tokens or counted)
