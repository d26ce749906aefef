"""``POST /v1/responses`` (OpenAI's Responses API): its request body, and its translation into the chat endpoint's
request, so that a Responses request runs through the same plan and the same checks (``openai_api.chat_plan``).

``input`` (a string, or items: messages with text parts, ``function_call`` and ``function_call_output`` items),
``instructions`` (a system turn first), ``text.format`` (``text`` | ``json_object`` | ``json_schema``), function
``tools`` and ``tool_choice``, ``max_output_tokens``, ``temperature``, ``top_p``, ``seed``, ``stream`` and
structgen's own fields (``regex``, ``choice``, ``grammar``, ``source``, ``think``, ``strategy`` ...) map onto their
chat counterparts. Nothing is stored: ``store: true``, ``previous_response_id``, ``conversation`` and item
references are ``InvalidArgument`` errors (HTTP 400) saying so, never silently dropped; so are tools other than
functions and parts other than text.
"""

from __future__ import annotations

from typing import Any, Literal

import pydantic

from ..errors import InvalidArgument
from .openai_api import ChatRequest, Plan, StructgenFields, chat_plan

__all__ = ["NOT_STORED", "ResponsesRequest", "responses_plan"]

NOT_STORED = ("structgen serve stores no responses (every reply says store: false); send the whole conversation "
              "in input")
"""Why a request that refers to a stored response is refused."""

_TEXT_PARTS = ("input_text", "output_text", "text")
_OWN_FIELDS = ("regex", "choice", "grammar", "strategy", "top_k", "min_p", "repetition_penalty", "timeout",
               "schema_in_prompt", "source", "think", "frequency_penalty", "presence_penalty", "priority")


class TextFormat(pydantic.BaseModel):
    """``text.format``: plain text, any JSON object, or JSON valid for ``schema``."""

    model_config = pydantic.ConfigDict(extra="ignore", populate_by_name=True)

    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    json_schema: Any = pydantic.Field(default=None, alias="schema")
    strict: bool | None = None
    description: str | None = None


class TextConfig(pydantic.BaseModel):
    """``text``: how the reply's text is formatted."""

    model_config = pydantic.ConfigDict(extra="ignore")

    format: TextFormat | None = None


class ResponsesRequest(StructgenFields):
    """``POST /v1/responses``. Unknown fields are ignored (``metadata``, ``user``, ``include``, ``truncation``
    ...)."""

    model: str | None = None
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    text: TextConfig | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stream: bool = False
    store: bool | None = None
    previous_response_id: str | None = None
    conversation: Any = None
    background: bool | None = None
    top_logprobs: int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None


def responses_plan(body: ResponsesRequest, *, max_tokens_cap: int, timeout: float | None) -> Plan:
    """Translate a Responses request into the chat endpoint's ``Plan`` (one choice)."""
    if body.previous_response_id is not None or body.conversation is not None:
        raise InvalidArgument(f"previous_response_id / conversation: {NOT_STORED}")
    if body.store:
        raise InvalidArgument(f"store: true: {NOT_STORED}; send store: false or leave it out")
    if body.background:
        raise InvalidArgument("background: true is not supported; stream the response instead")
    if body.top_logprobs:
        raise InvalidArgument("top_logprobs is not supported on /v1/responses; use /v1/chat/completions")
    chat: dict[str, Any] = {
        "messages": _messages(body.input, body.instructions),
        "max_completion_tokens": body.max_output_tokens,
        "temperature": body.temperature, "top_p": body.top_p, "seed": body.seed, "stream": body.stream,
        "parallel_tool_calls": body.parallel_tool_calls,
        **{name: getattr(body, name) for name in _OWN_FIELDS},
    }
    if body.text is not None and body.text.format is not None:
        chat["response_format"] = _response_format(body.text.format)
    if body.tools:
        chat["tools"] = [_tool(i, t) for i, t in enumerate(body.tools)]
    if body.tool_choice is not None:
        chat["tool_choice"] = _tool_choice(body.tool_choice)
    return chat_plan(ChatRequest.model_validate(chat), max_tokens_cap=max_tokens_cap, timeout=timeout)


def _response_format(fmt: TextFormat) -> dict[str, Any]:
    if fmt.type != "json_schema":
        return {"type": fmt.type}
    if not isinstance(fmt.json_schema, dict):
        raise InvalidArgument("text.format.schema must be a JSON Schema object")
    return {"type": "json_schema", "json_schema": {"name": fmt.name or "response", "schema": fmt.json_schema,
                                                   "strict": fmt.strict}}


def _tool(i: int, tool: dict[str, Any]) -> dict[str, Any]:
    """A Responses function tool (flat: ``{"type": "function", "name", "parameters", ...}``) in chat form."""
    kind = tool.get("type")
    if kind != "function":
        raise InvalidArgument(f"tools[{i}]: only function tools are supported, got type {kind!r}")
    if "function" in tool:   # the chat form, sent here by mistake: accepted as it is
        return tool
    function = {k: tool[k] for k in ("name", "description", "parameters", "strict") if tool.get(k) is not None}
    return {"type": "function", "function": function}


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, str):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise InvalidArgument('tool_choice must be "auto", "none", "required" or {"type": "function", "name": ...}')


def _messages(given: str | list[dict[str, Any]], instructions: str | None) -> list[dict[str, Any]]:
    """``instructions`` and ``input`` as chat messages: consecutive ``function_call`` items become one assistant
    turn's ``tool_calls``, a ``function_call_output`` a ``tool`` turn."""
    out: list[dict[str, Any]] = [{"role": "system", "content": instructions}] if instructions else []
    if isinstance(given, str):
        return [*out, {"role": "user", "content": given}]
    if not given:
        raise InvalidArgument("input is empty")
    for i, item in enumerate(given):
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "system", "developer", "assistant"):
                raise InvalidArgument(f"input[{i}].role {role!r} is not supported")
            out.append({"role": role, "content": _text(item.get("content"), f"input[{i}].content")})
        elif kind == "function_call":
            if not isinstance(item.get("name"), str):
                raise InvalidArgument(f"input[{i}]: a function_call item needs a name")
            call = {"id": item.get("call_id") or item.get("id") or "", "type": "function",
                    "function": {"name": item["name"], "arguments": item.get("arguments") or "{}"}}
            if out and out[-1]["role"] == "assistant" and out[-1].get("tool_calls"):
                out[-1]["tool_calls"].append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            text = output if isinstance(output, str) else _text(output, f"input[{i}].output")
            out.append({"role": "tool", "tool_call_id": item.get("call_id"), "content": text})
        elif kind == "reasoning":
            continue   # an earlier reply's reasoning: not shown to the model again
        elif kind == "item_reference":
            raise InvalidArgument(f"input[{i}]: item_reference: {NOT_STORED}")
        else:
            raise InvalidArgument(f"input[{i}].type {kind!r} is not supported (message, function_call, "
                                  "function_call_output)")
    return out


def _text(content: Any, where: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise InvalidArgument(f"{where} must be a string or a list of text parts")
    parts = []
    for part in content:
        if not isinstance(part, dict) or part.get("type") not in _TEXT_PARTS or not isinstance(part.get("text"), str):
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise InvalidArgument(f"{where}: only text parts are supported, got {kind!r}")
        parts.append(part["text"])
    return "".join(parts)

