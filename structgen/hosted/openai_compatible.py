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
import random
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any

from .errors import BackendError, InvalidArgument
from .request import Request
from .result import Result
from .schema import CompiledSchema
from .strategies import Call, Capabilities, Completion, Constraint, Reply, arun_chain, run_chain

if TYPE_CHECKING:
    import openai
    from openai.types.chat import ChatCompletionChunk

__all__ = ["OpenAICompatible", "llama_accepts", "to_gbnf"]


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

    async def arun(self, request: Request) -> Result[Any]:
        """``run`` with asyncio: requests go through the SDK's async client."""
        _check(request)
        return await arun_chain(self, request, concurrency=self.concurrency)

    def constraints(self, schema: CompiledSchema) -> tuple[Constraint, ...]:
        """The server-side forms of ``schema``: a strict json_schema ``response_format`` then the
        json_object + schema one; or a GBNF grammar; or none."""
        if schema.kind == "json" and schema.json_schema is not None:
            title = schema.json_schema.get("title")
            name = re.sub(r"[^A-Za-z0-9_-]", "_", title)[:64] if isinstance(title, str) and title else "output"
            return (Constraint("json_schema", {"type": "json_schema", "json_schema": {
                        "name": name, "schema": schema.json_schema, "strict": True}}),
                    Constraint("json_object", {"type": "json_object", "schema": schema.json_schema}))
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
        try:
            if self.stream:
                with client.chat.completions.create(**params, stream=True) as events:
                    return self._learn(params, _from_stream(iter(events)))
            return self._learn(params, _from_completion(client.chat.completions.create(**params)))
        except BackendError:
            raise
        except Exception as exc:
            raise self._normalise(exc, call) from exc

    async def _aonce(self, call: Call) -> Reply:
        client = self._async_client()
        params = self._params(call)
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
    if not resp.choices:
        raise BackendError("the reply has an empty choices list", retryable=True)
    choices = sorted(resp.choices, key=lambda c: c.index)
    usage = resp.usage
    total = usage.completion_tokens if usage is not None else 0
    completions = []
    for ch in choices:
        content = ch.logprobs.content if ch.logprobs is not None else None
        logprobs = tuple(t.logprob for t in content) if content else None
        tokens = len(logprobs) if logprobs else (total if len(choices) == 1 else total // len(choices))
        completions.append(Completion(ch.message.content or "", ch.finish_reason or "unknown", tokens, logprobs))
    return Reply(tuple(completions), prompt_tokens=usage.prompt_tokens if usage is not None else 0,
                 completion_tokens=total or sum(c.tokens for c in completions))


async def _collect(events: AsyncIterator[ChatCompletionChunk]) -> Iterator[ChatCompletionChunk]:
    return iter([e async for e in events])


def _from_stream(events: Iterator[ChatCompletionChunk]) -> Reply:
    """Assemble streamed chunks; a stream without choices, or one that ends before a finish reason, fails."""
    from openai.types.chat import ChatCompletionChunk

    texts: dict[int, list[str]] = {}
    logprobs: dict[int, list[float]] = {}
    finish: dict[int, str] = {}
    prompt_tokens = completion_tokens = 0
    for chunk in events:
        if not isinstance(chunk, ChatCompletionChunk):
            raise BackendError(f"the stream sent something that is not a chunk: {str(chunk)[:200]!r}",
                               retryable=True)
        if chunk.usage is not None:
            prompt_tokens, completion_tokens = chunk.usage.prompt_tokens, chunk.usage.completion_tokens
        for ch in chunk.choices:
            texts.setdefault(ch.index, []).append(ch.delta.content or "")
            if ch.logprobs is not None and ch.logprobs.content:
                logprobs.setdefault(ch.index, []).extend(t.logprob for t in ch.logprobs.content)
            if ch.finish_reason is not None:
                finish[ch.index] = ch.finish_reason
    if not texts:
        raise BackendError("the stream carried no choices", retryable=True)
    unfinished = sorted(set(texts) - set(finish))
    if unfinished:
        raise BackendError(f"the stream stopped before choice {unfinished[0]} finished", retryable=True)
    completions = []
    for i in sorted(texts):
        lps = tuple(logprobs[i]) if i in logprobs else None
        completions.append(Completion("".join(texts[i]), finish[i], len(lps) if lps else 0, lps))
    counted = sum(c.tokens for c in completions)
    return Reply(tuple(completions), prompt_tokens=prompt_tokens, completion_tokens=completion_tokens or counted)


# ---- GBNF for llama.cpp's grammar field ----------------------------------------------------------------

def to_gbnf(schema: CompiledSchema) -> str | None:
    """A GBNF grammar (llama.cpp's ``grammar`` field) for a choice, regex or Lark schema; None where the
    schema has no faithful GBNF form here (JSON kinds go as json_schema; look-arounds, back-references,
    flags and llguidance-only Lark syntax are not translated)."""
    try:
        if schema.kind == "choice" and isinstance(schema.source, tuple):
            gbnf = "root ::= " + " | ".join(_gbnf_literal(o) for o in schema.source) + "\n"
        elif schema.kind == "regex" and schema.regex is not None:
            gbnf = f"root ::= {_regex_to_gbnf(schema.regex)}\n"
        elif schema.kind == "grammar" and isinstance(schema.source, str):
            gbnf = _lark_to_gbnf(schema.source)
        else:
            return None
    except _Untranslatable:
        return None
    # llama-cpp-python's server crashes on a grammar llama.cpp cannot parse: never send one.
    return gbnf if llama_accepts(gbnf) else None


def llama_accepts(gbnf: str) -> bool:
    """Whether llama.cpp's own GBNF parser accepts ``gbnf`` (parsed locally; no model or vocabulary needed)."""
    import llama_cpp

    from ._llama import _init_backend

    _init_backend()  # routes llama.cpp's log (parse errors included) away from stderr
    sampler = llama_cpp.llama_sampler_init_grammar(None, gbnf.encode("utf-8"), b"root")
    if not sampler:
        return False
    llama_cpp.llama_sampler_free(sampler)
    return True


class _Untranslatable(Exception):
    """A construct with no GBNF form here."""


def _gbnf_char(cp: int) -> str:
    """One code point for a GBNF literal or class, escaped unless plainly safe."""
    c = chr(cp)
    if c.isascii() and (c.isalnum() or c in " _.,:;!?@#%&=<>'`~/+*{}()|$^"):
        return c
    return f"\\x{cp:02X}" if cp < 0x80 else (f"\\u{cp:04X}" if cp <= 0xFFFF else f"\\U{cp:08X}")


def _gbnf_literal(text: str) -> str:
    return '"' + "".join(_gbnf_char(ord(c)) for c in text) + '"' if text else '""'


def _gbnf_class_char(cp: int) -> str:
    c = chr(cp)
    return c if c.isascii() and c.isalnum() else (
        f"\\x{cp:02X}" if cp < 0x80 else (f"\\u{cp:04X}" if cp <= 0xFFFF else f"\\U{cp:08X}"))


_CATEGORY_RANGES: dict[str, list[tuple[int, int]]] = {
    "CATEGORY_DIGIT": [(0x30, 0x39)],
    "CATEGORY_WORD": [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)],
    "CATEGORY_SPACE": [(0x09, 0x0D), (0x20, 0x20)],
}


def _regex_to_gbnf(pattern: str) -> str:
    """A GBNF expression for a Python regex, matched in full; the ASCII forms of \\d, \\w, \\s (a subset of
    what Python's Unicode classes accept, so every output still passes the regex validator)."""
    from re import _parser  # the standard library's own regex parser: no hand-written regex lexer

    try:
        tree = _parser.parse(pattern)
    except Exception as exc:
        raise _Untranslatable(str(exc)) from exc
    if tree.state.flags & ~(_parser.SRE_FLAG_UNICODE):
        raise _Untranslatable("regex flags")
    return _seq(list(tree))


def _seq(items: list[tuple[Any, Any]]) -> str:
    parts = [p for p in (_node(op, av) for op, av in items) if p]
    return " ".join(parts) if parts else '""'


def _node(op: Any, av: Any) -> str:
    name = str(op)
    if name == "LITERAL":
        return _gbnf_literal(chr(av))
    if name == "NOT_LITERAL":
        return f"[^{_gbnf_class_char(av)}]"
    if name == "ANY":
        return "[^\\x0A]"
    if name == "IN":
        return _char_class(av)
    if name == "CATEGORY":
        return _char_class([(op, av)])
    if name == "BRANCH":
        return "(" + " | ".join(_seq(list(b)) for b in av[1]) + ")"
    if name == "SUBPATTERN":
        _group, add_flags, del_flags, sub = av
        if add_flags or del_flags:
            raise _Untranslatable("inline flags")
        return f"({_seq(list(sub))})"
    if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
        lo, hi, sub = av
        inner = f"({_seq(list(sub))})"
        from re import _constants

        if hi == _constants.MAXREPEAT:
            return f"{inner}*" if lo == 0 else (f"{inner}+" if lo == 1 else f"{inner}{{{lo},}}")
        return f"{inner}{{{lo},{hi}}}" if lo != hi else f"{inner}{{{lo}}}"
    if name == "AT" and str(av) in ("AT_BEGINNING", "AT_END", "AT_BEGINNING_STRING", "AT_END_STRING"):
        return ""  # a full match is anchored anyway
    if name == "ATOMIC_GROUP":
        return f"({_seq(list(av))})"
    raise _Untranslatable(name)


def _char_class(items: list[tuple[Any, Any]]) -> str:
    negate = False
    ranges: list[tuple[int, int]] = []
    for op, av in items:
        name = str(op)
        if name == "NEGATE":
            negate = True
        elif name == "LITERAL":
            ranges.append((av, av))
        elif name == "RANGE":
            ranges.append((av[0], av[1]))
        elif name == "CATEGORY" and str(av) in _CATEGORY_RANGES:
            ranges.extend(_CATEGORY_RANGES[str(av)])
        else:
            raise _Untranslatable(f"class item {name} {av}")
    if not ranges:
        raise _Untranslatable("empty class")
    body = "".join(_gbnf_class_char(a) if a == b else f"{_gbnf_class_char(a)}-{_gbnf_class_char(b)}"
                   for a, b in ranges)
    return f"[{'^' if negate else ''}{body}]"


def _without_left_recursion(name: str, alternatives: list[list[str]]) -> str:
    """A rule body with direct left recursion turned into repetition (llama.cpp rejects left recursion):
    ``R ::= a | b | R x | R y`` becomes ``R ::= (a | b) (x | y)*`` — the same language."""
    def seq(symbols: list[str]) -> str:
        return " ".join(symbols) or '""'

    recursive = [alt[1:] for alt in alternatives if alt and alt[0] == name]
    base = [alt for alt in alternatives if not alt or alt[0] != name]
    if not recursive:
        return " | ".join(seq(alt) for alt in base)
    if not base:
        raise _Untranslatable(f"rule {name} never ends")
    return f"({' | '.join(seq(a) for a in base)}) ({' | '.join(seq(a) for a in recursive)})*"


def _lark_to_gbnf(source: str) -> str:
    """GBNF from a Lark grammar via the ``lark`` package's own parse (rules in BNF, terminals as regexes).
    ``%ignore`` has no GBNF form (GBNF has no lexer), so such grammars are not translated."""
    import lark

    try:
        parser = lark.Lark(source, start="start", parser="earley", lexer="dynamic")
    except Exception as exc:  # llguidance-only syntax, or not Lark at all
        raise _Untranslatable(str(exc)) from exc
    if parser.ignore_tokens:
        raise _Untranslatable("%ignore")
    names: dict[str, str] = {}

    def ref(symbol_name: str) -> str:
        if symbol_name not in names:
            names[symbol_name] = f"s{len(names)}"
        return names[symbol_name]

    alternatives: dict[str, list[list[str]]] = {}
    for rule in parser.rules:
        alternatives.setdefault(ref(rule.origin.name), []).append([ref(sym.name) for sym in rule.expansion])
    rules = {name: _without_left_recursion(name, alts) for name, alts in alternatives.items()}
    for term in parser.terminals:
        pattern = term.pattern
        if pattern.flags:
            raise _Untranslatable(f"terminal {term.name} has flags")
        rules[ref(term.name)] = _gbnf_literal(pattern.value) if pattern.type == "str" else _regex_to_gbnf(pattern.value)
    if "start" not in names:
        raise _Untranslatable("no start rule")
    lines = [f"root ::= {names['start']}"]
    lines += [f"{name} ::= {body}" for name, body in rules.items()]
    return "\n".join(lines) + "\n"
