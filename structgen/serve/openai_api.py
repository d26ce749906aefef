"""The OpenAI request bodies ``structgen serve`` accepts, and their translation to ``generate``'s arguments.

Unknown fields are ignored (clients send ``user``, ``metadata``, ``stream_options`` ...); a known field with a value
structgen cannot honour is an ``InvalidArgument`` (HTTP 400), never silently dropped. structgen's own kinds come as
extra body fields: ``regex``, ``choice``, ``grammar`` (Lark) and ``strategy``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

import pydantic

from ..compile.kinds import Choice, Grammar, Regex, SchemaLike
from ..errors import InvalidArgument
from ..request import STRATEGIES

__all__ = ["ChatRequest", "CompletionRequest", "Plan", "StructgenFields", "chat_plan", "completion_plan", "parse_body"]

MAX_N = 16
MAX_STOPS = 4


class StructgenFields(pydantic.BaseModel):
    """structgen's own request fields, beside OpenAI's (OpenAI SDK: ``extra_body={...}``); unknown fields are
    ignored."""

    model_config = pydantic.ConfigDict(extra="ignore")

    regex: str | None = None
    choice: list[str] | None = None
    grammar: str | None = None
    strategy: str | None = None
    top_k: int | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    timeout: float | None = None
    schema_in_prompt: bool | None = None
    source: str | None = None
    think: int | None = None
    priority: int | None = None   # as vLLM's: lower runs first on the engine (0 by default; batches run at 1)


class _Body(StructgenFields):
    model: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    max_tokens: int | None = None
    n: int = 1
    stop: str | list[str] | None = None
    stream: bool = False
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logprobs: Any = None
    stream_options: dict[str, Any] | None = None


class ResponseFormat(pydantic.BaseModel):
    """OpenAI's ``response_format``."""

    model_config = pydantic.ConfigDict(extra="ignore")

    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None


class ChatRequest(_Body):
    """``POST /v1/chat/completions``."""

    messages: list[dict[str, Any]]
    max_completion_tokens: int | None = None
    top_logprobs: int | None = None
    response_format: ResponseFormat | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None


class CompletionRequest(_Body):
    """``POST /v1/completions``."""

    prompt: str | list[str]
    echo: bool = False


def parse_body(model: type[pydantic.BaseModel], raw: bytes) -> Any:
    """The request body as ``model``; a body that is not JSON or not of that shape is an ``InvalidArgument``
    naming the first offending field."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"the request body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidArgument("the request body must be a JSON object")
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise InvalidArgument(f"{where}: {first['msg']}") from None


@dataclass
class Plan:
    """What one HTTP request asks for, in ``generate``'s terms: the prompt, the schema, keyword options, how many
    choices, and the stop strings cut off a free-text reply."""

    prompt: Any
    schema: SchemaLike
    options: dict[str, Any]
    n: int = 1
    stops: list[str] = field(default_factory=list)
    logprobs: bool = False
    constrained: bool = False   # a kind whose content the server guarantees (not free text)
    include_usage: bool = False  # a stream ends with a usage chunk

    def choice_options(self, index: int) -> dict[str, Any]:
        """``generate``'s keyword options for choice ``index`` (a seed moves on by one per choice)."""
        options = dict(self.options)
        if index and options.get("seed") is not None:
            options["seed"] = options["seed"] + index
        return options


def chat_plan(body: ChatRequest, *, max_tokens_cap: int, timeout: float | None) -> Plan:
    """Translate a chat request."""
    plan = _plan(body, body.max_completion_tokens or body.max_tokens, max_tokens_cap, timeout)
    if body.top_logprobs:
        if not plan.logprobs:
            raise InvalidArgument("top_logprobs needs logprobs: true")
        plan.options["top_logprobs"] = body.top_logprobs
    plan.prompt = chat_messages(body.messages)
    if body.response_format is not None and body.response_format.type != "text":
        if plan.schema is not None:
            raise InvalidArgument("give one of response_format, regex, choice and grammar")
        if body.response_format.type == "json_object":
            plan.schema = {"type": "object"}
        else:
            spec = body.response_format.json_schema
            if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
                raise InvalidArgument("response_format.json_schema needs a 'schema' object")
            plan.schema = spec["schema"]
        plan.constrained = True
    if body.tools:
        plan.options["tools"] = body.tools
        plan.options["tool_choice"] = "auto" if body.tool_choice is None else body.tool_choice
        plan.options["parallel_tool_calls"] = bool(body.parallel_tool_calls)
        plan.constrained = True
    elif body.tool_choice not in (None, "none", "auto"):
        raise InvalidArgument("tool_choice needs tools")
    plan.stops = _stops(body.stop, plan)
    return plan


def completion_plan(body: CompletionRequest, *, max_tokens_cap: int, timeout: float | None) -> Plan:
    """Translate a (raw text) completion request: the prompt as given, no chat template."""
    plan = _plan(body, body.max_tokens or 16, max_tokens_cap, timeout)
    prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
    if len(prompts) != 1:
        raise InvalidArgument("give one prompt per request")
    plan.prompt = prompts[0]
    plan.options["chat"] = False
    plan.stops = _stops(body.stop, plan)
    return plan


def _plan(body: _Body, max_tokens: int | None, cap: int, timeout: float | None) -> Plan:
    if not 1 <= body.n <= MAX_N:
        raise InvalidArgument(f"n must be between 1 and {MAX_N}, got {body.n}")
    if max_tokens is not None and max_tokens > cap:
        raise InvalidArgument(f"max_tokens {max_tokens} exceeds this server's cap of {cap}")
    if body.strategy is not None and body.strategy not in STRATEGIES:
        raise InvalidArgument(f"unknown strategy {body.strategy!r}; choose from {', '.join(STRATEGIES)}")
    kinds = [k for k in ("regex", "choice", "grammar") if getattr(body, k) is not None]
    if len(kinds) > 1:
        raise InvalidArgument(f"give one of regex, choice and grammar, not {' and '.join(kinds)}")
    schema: SchemaLike = None
    if body.regex is not None:
        schema = Regex(body.regex)
    elif body.choice is not None:
        schema = Choice(body.choice)
    elif body.grammar is not None:
        schema = Grammar(body.grammar, name="request.grammar")
    if body.timeout is not None and (body.timeout <= 0 or (timeout is not None and body.timeout > timeout)):
        raise InvalidArgument(f"timeout must be in (0, {timeout}] seconds" if timeout else "timeout must be > 0")
    options: dict[str, Any] = {
        # OpenAI's defaults where the body leaves a field out: temperature 1, top_p 1.
        "temperature": 1.0 if body.temperature is None else body.temperature,
        "top_p": 1.0 if body.top_p is None else body.top_p,
        "max_tokens": max_tokens or cap,
        "seed": body.seed,
        "timeout": body.timeout or timeout,
    }
    for name in ("frequency_penalty", "presence_penalty", "top_k", "min_p", "repetition_penalty", "strategy",
                 "schema_in_prompt", "source", "think", "priority"):
        if getattr(body, name) is not None:
            options[name] = getattr(body, name)
    return Plan(None, schema, options, n=body.n, logprobs=bool(body.logprobs), constrained=schema is not None,
                include_usage=bool((body.stream_options or {}).get("include_usage")))


def _stops(stop: str | list[str] | None, plan: Plan) -> list[str]:
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    stops = [s for s in stops if s]
    if len(stops) > MAX_STOPS:
        raise InvalidArgument(f"at most {MAX_STOPS} stop sequences")
    if stops and plan.schema is None and "tools" not in plan.options:
        plan.schema = stop_grammar(stops)
    return stops   # a constrained kind ends where its grammar ends: stop does not apply there


def stop_grammar(stops: list[str]) -> Grammar:
    """Free text that ends at the first of ``stops`` (included in the text; the server cuts it off)."""
    alternatives = " | ".join(json.dumps(s) for s in stops)
    source = (f"start: TEXT STOP?\nTEXT: /(.|\\n)*/ & ~(/(.|\\n)*/ ({alternatives}) /(.|\\n)*/)\n"
              f"STOP: {alternatives}\n")
    return Grammar(source, name="stop")


def chat_messages(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    """OpenAI chat messages as plain ``{"role", "content"}`` turns: content parts joined, ``developer`` as
    ``system``, an assistant's ``tool_calls`` written the way the model writes them, a ``tool`` result as a user
    turn in ``<tool_response>`` tags."""
    out: list[dict[str, str]] = []
    if not messages:
        raise InvalidArgument("messages is empty")
    for i, m in enumerate(messages):
        role = m.get("role")
        if role not in ("system", "developer", "user", "assistant", "tool"):
            raise InvalidArgument(f"messages[{i}].role {role!r} is not supported")
        content = _text(m.get("content"), i)
        if role == "developer":
            role = "system"
        if role == "assistant" and m.get("tool_calls"):
            content = "\n".join([content] * bool(content) + [_call_text(c, i) for c in m["tool_calls"]])
        if role == "tool":
            role, content = "user", f"<tool_response>\n{content}\n</tool_response>"
        out.append({"role": role, "content": content})
    return out


def _text(content: Any, i: int) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise InvalidArgument(f"messages[{i}].content: only text parts are supported")
            parts.append(part["text"])
        return "".join(parts)
    raise InvalidArgument(f"messages[{i}].content must be a string or a list of text parts")


def _call_text(call: Any, i: int) -> str:
    fn = call.get("function") if isinstance(call, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise InvalidArgument(f"messages[{i}].tool_calls: each call needs function.name")
    args = fn.get("arguments") or "{}"
    if not isinstance(args, str):
        args = json.dumps(args)
    return f'<tool_call>\n{{"name": {json.dumps(fn["name"])}, "arguments": {args}}}\n</tool_call>'
