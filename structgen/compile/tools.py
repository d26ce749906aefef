"""Tool calls: one grammar that admits either the answer or well-formed calls of the request's tools.

``compile_tools`` wraps an answer ``CompiledSchema`` (free text, JSON, regex, ...) and a list of tools (OpenAI
function definitions, or Pydantic models) into one ``CompiledSchema`` of kind ``"tools"``. A call is written the
way many open models were trained to write them (Hermes / Qwen / SmolLM2)::

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>

The name is one of the tools' and the arguments are valid for that tool's ``parameters`` schema: each tool's
arguments grammar is compiled like any JSON Schema (relaxations included, each call validated afterwards). A free
text answer may not begin with ``<tool_call>``, so a reply is unambiguously an answer or calls. The validator
returns the answer's value, or ``ToolCalls`` (see ``Result.tool_calls``).
"""

from __future__ import annotations

import functools
import json
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pydantic

from ..errors import InvalidArgument, SchemaError
from ..partial import MISSING, Partial, PartialToolCall, parse_prefix
from ..result import ToolCall, ToolCalls
from .schema import CompiledSchema, JsonOptions, _Invalid, compile_schema, named_grammars

__all__ = ["MAX_PARALLEL_CALLS", "Tool", "ToolChoice", "ToolSet", "call_text", "compile_tools", "parse_tool_choice",
           "parse_tools", "partial_calls"]

MAX_PARALLEL_CALLS = 4
"""Most calls one reply may make when parallel calls are allowed (a bound, so a small model cannot call tools
until ``max_tokens``)."""

CALL_OPEN = "<tool_call>\n"
CALL_CLOSE = "\n</tool_call>"

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}


@dataclass(frozen=True)
class Tool:
    """A function the model may call: its ``name`` (letters, digits, ``_``, ``-``; at most 64), what it does, and
    its ``parameters``: a JSON Schema dict of the arguments object, or a Pydantic model."""

    name: str
    parameters: Any = None
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise InvalidArgument(f"tool name {self.name!r} must be 1-64 letters, digits, '_' or '-'")
        if not isinstance(self.description, str):
            raise InvalidArgument(f"tool {self.name!r}: description must be a string")
        if self.parameters is not None and not isinstance(self.parameters, Mapping | type):
            raise InvalidArgument(f"tool {self.name!r}: parameters must be a JSON Schema object or a Pydantic model")

    def parameters_schema(self) -> dict[str, Any]:
        """The arguments' JSON Schema (as the prompt shows it)."""
        if self.parameters is None:
            return dict(_EMPTY_PARAMETERS)
        if isinstance(self.parameters, type):
            try:
                return pydantic.TypeAdapter(self.parameters).json_schema()
            except (pydantic.PydanticUserError, pydantic.PydanticSchemaGenerationError) as exc:
                raise SchemaError(f"tool {self.name!r}: pydantic cannot build a schema: {exc}") from exc
        return dict(self.parameters)

    def openai(self) -> dict[str, Any]:
        """The OpenAI ``{"type": "function", "function": {...}}`` form."""
        function: dict[str, Any] = {"name": self.name, "parameters": self.parameters_schema()}
        if self.description:
            function["description"] = self.description
        return {"type": "function", "function": function}


@dataclass(frozen=True)
class ToolChoice:
    """``mode``: "auto" (answer or call), "required" (call some tool), "none" (answer only) or "function" (call
    ``name``). ``parallel``: whether one reply may make several calls (up to ``MAX_PARALLEL_CALLS``; off by
    default: small models given the choice tend to repeat the call they just made)."""

    mode: str = "auto"
    name: str | None = None
    parallel: bool = False


@dataclass(frozen=True)
class ToolSet:
    """The ``source`` of a tools ``CompiledSchema``: what a hosted endpoint is sent to call tools natively."""

    answer: CompiledSchema
    tools: tuple[dict[str, Any], ...]       # OpenAI ``{"type": "function", "function": {...}}`` definitions
    choice: ToolChoice

    def openai_tool_choice(self) -> Any:
        """OpenAI's ``tool_choice`` for this choice."""
        if self.choice.mode == "function":
            return {"type": "function", "function": {"name": self.choice.name}}
        return self.choice.mode

    def callable_names(self) -> tuple[str, ...]:
        """The names a call may have (the one named tool, or all of them)."""
        if self.choice.mode == "function" and self.choice.name is not None:
            return (self.choice.name,)
        return tuple(t["function"]["name"] for t in self.tools)


def call_text(name: str, arguments_json: str) -> str:
    """One call as the model writes it (and the tools validator reads it)."""
    return f"{CALL_OPEN}{_call_prefix(name)}{arguments_json}}}{CALL_CLOSE}"


def parse_tools(tools: Sequence[Any]) -> tuple[Tool, ...]:
    """``Tool``s from OpenAI function definitions (``{"type": "function", "function": {...}}`` or the bare
    function object), Pydantic models (the class name, its docstring) or ``Tool``s; names must be distinct."""
    if isinstance(tools, str | bytes | Mapping) or not isinstance(tools, Sequence):
        raise InvalidArgument("tools must be a list")
    out: list[Tool] = []
    for i, item in enumerate(tools):
        if isinstance(item, Tool):
            out.append(item)
        elif isinstance(item, type) and issubclass(item, pydantic.BaseModel):
            out.append(Tool(item.__name__, item, (item.__doc__ or "").strip()))
        elif isinstance(item, Mapping):
            if item.get("type", "function") != "function":
                raise InvalidArgument(f"tools[{i}]: only type 'function' is supported, got {item.get('type')!r}")
            fn = item.get("function", item)
            if not isinstance(fn, Mapping) or "name" not in fn:
                raise InvalidArgument(f"tools[{i}] needs a function with a 'name'")
            out.append(Tool(fn["name"], fn.get("parameters"), fn.get("description") or ""))
        else:
            raise InvalidArgument(f"tools[{i}] must be a function definition (dict), a Pydantic model or a Tool")
    names = [t.name for t in out]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InvalidArgument(f"tool names must be distinct; repeated: {', '.join(duplicates)}")
    return tuple(out)


def parse_tool_choice(choice: Any, tools: Sequence[Tool], *, parallel: bool = False) -> ToolChoice:
    """A ``ToolChoice`` from OpenAI's ``tool_choice`` ("auto", "none", "required", a tool's name, or
    ``{"type": "function", "function": {"name": ...}}``), checked against ``tools``."""
    if choice is None:
        choice = "auto"
    if isinstance(choice, Mapping):
        fn = choice.get("function")
        if choice.get("type") != "function" or not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str):
            raise InvalidArgument('tool_choice must be "auto", "none", "required" or '
                                  '{"type": "function", "function": {"name": ...}}')
        choice = fn["name"]
        named = True
    else:
        named = False
    if not isinstance(choice, str):
        raise InvalidArgument(f"tool_choice must be a string or an object, got {type(choice).__name__}")
    if choice in ("auto", "none", "required") and not named:
        if choice != "none" and not tools:
            raise InvalidArgument(f"tool_choice {choice!r} needs at least one tool")
        return ToolChoice(choice, parallel=parallel)
    if choice not in {t.name for t in tools}:
        raise InvalidArgument(f"tool_choice names {choice!r}, which is not one of the tools")
    return ToolChoice("function", choice, parallel=False)


def compile_tools(answer: CompiledSchema, tools: Sequence[Tool], choice: ToolChoice,
                  options: JsonOptions | None = None) -> CompiledSchema:
    """One ``CompiledSchema`` admitting the answer (unless a call is required) or calls of ``tools``."""
    if choice.mode == "none" or not tools:
        return answer
    key = json.dumps([t.openai() for t in tools], sort_keys=True, default=str)
    sources = tuple(t.parameters if isinstance(t.parameters, type) else None for t in tools)
    return _compile(answer, key, sources, choice, options or JsonOptions())


@functools.lru_cache(maxsize=256)
def _compile(answer: CompiledSchema, key: str, sources: tuple[type | None, ...], choice: ToolChoice,
             options: JsonOptions) -> CompiledSchema:
    described = json.loads(key)
    tools = [Tool(d["function"]["name"], src if src is not None else d["function"]["parameters"],
                  d["function"].get("description", "")) for d, src in zip(described, sources, strict=True)]
    callable_tools = [t for t in tools if choice.mode != "function" or t.name == choice.name]
    arguments = {t.name: _arguments_schema(t, options) for t in callable_tools}
    grammars: list[dict[str, Any]] = [{}]
    rules = []
    for i, tool in enumerate(callable_tools):
        grammars.extend(named_grammars(arguments[tool.name].grammar or "", f"tool_{i}_arguments"))
        rules.append(f"call_{i}: {json.dumps(_call_prefix(tool.name))} @tool_{i}_arguments \"}}\"")
    repeat = f' ("\\n" call){{0,{MAX_PARALLEL_CALLS - 1}}}' if choice.parallel else ""
    lines = [f"calls: call{repeat}",
             f"call: {json.dumps(CALL_OPEN)} ({' | '.join(f'call_{i}' for i in range(len(callable_tools)))}) "
             f"{json.dumps(CALL_CLOSE)}", *rules]
    if choice.mode == "auto":
        if answer.grammar is None:   # free text that does not start like a call
            lines[:0] = ["start: answer | calls", "answer: TEXT",
                         r"TEXT: /(.|\n)*/ & ~/[ \t\r\n]*<tool_call>(.|\n)*/"]
        else:
            lines[:0] = ["start: answer | calls", "answer: @answer"]
            grammars.extend(named_grammars(answer.checked().grammar or "", "answer"))
    else:
        lines.insert(0, "start: calls")
    grammars[0] = {"name": "tool_calls", "lark_grammar": "\n".join(lines) + "\n"}
    relaxations = tuple(r for s in arguments.values() for r in s.relaxations)
    if choice.mode == "auto":
        relaxations += answer.checked().relaxations

    def validate(text: str) -> Any:
        if text.lstrip().startswith(CALL_OPEN.strip()):
            return _parse_calls(text, arguments)
        if choice.mode != "auto":
            raise _Invalid("a tool call is required")
        return answer.validator(text)

    hint = functools.partial(_hint, tools, choice, answer if choice.mode == "auto" else None)
    return CompiledSchema(kind="tools", grammar=json.dumps({"grammars": grammars}), validator=validate,
                          relaxations=relaxations, hint=hint,
                          source=ToolSet(answer, tuple(t.openai() for t in tools), choice))


def partial_calls(text: str, names: Sequence[str]) -> tuple[PartialToolCall, ...] | None:
    """The calls a prefix of a tools reply holds so far, for streaming them: None while the text is (or may still
    be) an answer; once it has begun ``<tool_call>``, one ``PartialToolCall`` per call begun. A call's ``name`` is
    set as soon as what is written of it fits one of ``names`` only (the grammar then forces the rest); its
    ``arguments_json`` grows as the arguments are written and never holds text past them. For example, with
    tools ``get_weather`` and ``get_time``, ``'<tool_call>\\n{"name": "get_w'`` holds one call, of ``get_weather``,
    with no arguments yet.
    """
    pos = len(text) - len(text.lstrip())
    if not text.startswith(CALL_OPEN.strip(), pos):
        return None
    calls: list[PartialToolCall] = []
    opening = CALL_OPEN + '{"name": "'
    while True:
        index = len(calls)
        written, closed = "", False
        if len(text) - pos > len(opening):
            start = pos + len(opening)
            quote = text.find('"', start)
            closed = quote >= 0
            written = text[start:quote] if closed else text[start:]
        fits = [n for n in names if (n == written if closed else n.startswith(written))]
        if len(fits) != 1:
            calls.append(PartialToolCall(index, None, "", Partial(MISSING, ""), False))
            break
        name = fits[0]
        at = pos + len(CALL_OPEN) + len(_call_prefix(name))
        arguments = text[at:]
        end = _json_end(arguments)
        if end is None:
            partial = parse_prefix(arguments) if arguments else Partial(MISSING, "")
            calls.append(PartialToolCall(index, name, arguments, partial, False))
            break
        written_args = arguments[:end]
        calls.append(PartialToolCall(index, name, written_args, Partial(json.loads(written_args), None), True))
        after = at + end
        after += len(text[after:]) - len(text[after:].lstrip())
        between = "}" + CALL_CLOSE + "\n"
        if not text.startswith(between + CALL_OPEN.strip(), after):
            break
        pos = after + len(between)
    return tuple(calls)


def _json_end(text: str) -> int | None:
    """Where the JSON value that ``text`` starts with ends, once it has (a number at the very end may go on)."""
    start = len(text) - len(text.lstrip())
    try:
        value, end = _DECODER.raw_decode(text, start)
    except ValueError:
        return None
    if end == len(text) and not isinstance(value, dict | list | str):
        return None
    return end


_DECODER = json.JSONDecoder()


def _arguments_schema(tool: Tool, options: JsonOptions) -> CompiledSchema:
    try:
        return compile_schema(tool.parameters if tool.parameters is not None else _EMPTY_PARAMETERS, options)
    except SchemaError as exc:
        raise SchemaError(f"tool {tool.name!r}: {exc.reason}", pointer="/parameters" + exc.pointer) from None


def _call_prefix(name: str) -> str:
    return '{"name": ' + json.dumps(name) + ', "arguments": '


def _parse_calls(text: str, arguments: Mapping[str, CompiledSchema]) -> ToolCalls:
    calls: list[ToolCall] = []
    pos = len(text) - len(text.lstrip())
    decoder = json.JSONDecoder()
    while pos < len(text):
        if calls:
            if not text.startswith("\n", pos):
                raise _Invalid(f"unexpected text after a tool call at character {pos}")
            pos += 1
        if not text.startswith(CALL_OPEN, pos):
            raise _Invalid(f"expected {CALL_OPEN!r} at character {pos}")
        start = pos + len(CALL_OPEN)
        try:
            call, end = decoder.raw_decode(text, start)
        except ValueError as exc:
            raise _Invalid(f"the tool call is not JSON: {exc}") from None
        if not text.startswith(CALL_CLOSE, end):
            raise _Invalid(f"expected {CALL_CLOSE!r} at character {end}")
        pos = end + len(CALL_CLOSE)
        if not isinstance(call, dict) or set(call) != {"name", "arguments"}:
            raise _Invalid('a tool call must be {"name": ..., "arguments": {...}}')
        name = call["name"]
        if name not in arguments:
            raise _Invalid(f"{name!r} is not one of the tools")
        prefix = _call_prefix(name)
        body = text[start:end]
        args_json = body[len(prefix):-1] if body.startswith(prefix) else json.dumps(call["arguments"])
        if any(c.name == name and c.arguments_json == args_json for c in calls):
            continue   # the same call again (small models repeat themselves): it would run twice
        value = arguments[name].validator(args_json)
        calls.append(ToolCall(name, value, args_json, "call_" + secrets.token_hex(12)))
    if not calls:
        raise _Invalid("no tool call")
    return ToolCalls(calls)


def _hint(tools: Sequence[Tool], choice: ToolChoice, answer: CompiledSchema | None) -> str:
    listed = "\n".join(json.dumps(t.openai()["function"], separators=(",", ":")) for t in tools)
    lines = ["You can call these tools:", "<tools>", listed, "</tools>",
             'To call a tool, reply with <tool_call>\n{"name": "<tool name>", "arguments": {<arguments>}}\n'
             "</tool_call>"]
    if choice.mode == "function":
        lines.append(f"Call the tool {choice.name}.")
    elif choice.mode == "required":
        lines.append("You must call a tool.")
    else:
        lines.append("Call a tool only when it is needed; otherwise answer directly.")
        if answer is not None and answer.prompt_hint:
            lines.append(answer.prompt_hint)
    return "\n".join(lines)
