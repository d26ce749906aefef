"""Tool calls compile to one grammar: an answer or well-formed calls whose arguments are valid for their tool."""

from __future__ import annotations

import json

import pydantic
import pytest

import structgen
from structgen.compile._byte_tokenizer import grammar_accepts
from structgen.compile.schema import compile_schema
from structgen.compile.tools import Tool, compile_tools, parse_tool_choice, parse_tools, partial_calls
from structgen.partial import MISSING

from ..test_stream import is_prefix

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30},
                                                    "unit": {"enum": ["c", "f"]}},
                   "required": ["city"], "additionalProperties": False}}}
ADD = {"name": "add", "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                                     "required": ["a", "b"]}}


class Lookup(pydantic.BaseModel):
    """Look a word up."""

    word: str
    limit: int = pydantic.Field(ge=1, le=10)


def call(name: str, args: str) -> str:
    return f'<tool_call>\n{{"name": "{name}", "arguments": {args}}}\n</tool_call>'


def compiled(choice: object = "auto", answer: object = None, parallel: bool = False) -> structgen.compile.schema.CompiledSchema:
    tools = parse_tools([WEATHER, ADD, Lookup])
    return compile_tools(compile_schema(answer), tools, parse_tool_choice(choice, tools, parallel=parallel))


def test_tools_parse_from_openai_definitions_bare_functions_and_pydantic_models() -> None:
    tools = parse_tools([WEATHER, ADD, Lookup, Tool("noop")])
    assert [t.name for t in tools] == ["get_weather", "add", "Lookup", "noop"]
    assert tools[2].description == "Look a word up."
    assert tools[2].parameters_schema()["required"] == ["word", "limit"]
    assert tools[3].parameters_schema()["properties"] == {}


@pytest.mark.parametrize("bad, message", [
    ([{"type": "retrieval"}], "only type 'function'"),
    ([{"function": {"description": "x"}}], "needs a function with a 'name'"),
    ([{"name": "has space"}], "must be 1-64 letters"),
    ([ADD, ADD], "repeated: add"),
    ([42], "must be a function definition"),
    ({"name": "x"}, "tools must be a list"),
    ([{"name": "x", "parameters": "nope"}], "parameters must be"),
])
def test_malformed_tools_are_invalid_arguments(bad: object, message: str) -> None:
    with pytest.raises(structgen.InvalidArgument, match=message):
        parse_tools(bad)   # type: ignore[arg-type]


@pytest.mark.parametrize("choice, message", [
    ("sometimes", "not one of the tools"),
    ({"type": "function", "function": {"name": "nope"}}, "not one of the tools"),
    ({"type": "function"}, "tool_choice must be"),
    (3, "must be a string or an object"),
])
def test_bad_tool_choice_is_an_invalid_argument(choice: object, message: str) -> None:
    with pytest.raises(structgen.InvalidArgument, match=message):
        parse_tool_choice(choice, parse_tools([ADD]))


def test_a_tool_whose_parameters_do_not_compile_is_a_located_schema_error() -> None:
    tools = parse_tools([{"name": "bad", "parameters": {"type": "object", "properties": {"x": {"type": "wat"}}}}])
    with pytest.raises(structgen.SchemaError, match="tool 'bad'") as info:
        compile_tools(compile_schema(None), tools, parse_tool_choice("auto", tools))
    assert info.value.pointer.startswith("/parameters")


def test_the_grammar_admits_well_formed_calls_and_free_text_but_not_text_posing_as_a_call() -> None:
    g = compiled().grammar
    assert g is not None
    assert grammar_accepts(g, call("get_weather", '{"city":"Paris"}'))
    assert grammar_accepts(g, call("add", '{"a":1,"b":2}'))
    assert grammar_accepts(g, call("Lookup", '{"word":"cat","limit":3}'))
    assert grammar_accepts(g, "It is sunny today.")
    assert not grammar_accepts(g, call("get_weather", '{"town":"Paris"}'))     # not the tool's parameters
    assert not grammar_accepts(g, call("delete_all", "{}"))                     # not a tool
    assert not grammar_accepts(g, "<tool_call>\nanything at all")              # free text may not pose as a call
    assert not grammar_accepts(g, call("add", '{"a":1,"b":2}') + "\n" + call("add", '{"a":3,"b":4}'))   # one call


def test_parallel_calls_are_bounded_and_a_required_call_excludes_an_answer() -> None:
    g = compiled("required", parallel=True).grammar
    assert g is not None
    two = call("add", '{"a":1,"b":2}') + "\n" + call("get_weather", '{"city":"Rome"}')
    assert grammar_accepts(g, two)
    assert not grammar_accepts(g, "\n".join([call("add", '{"a":1,"b":2}')] * 5))
    assert not grammar_accepts(g, "plain answer")


def test_a_named_tool_choice_admits_only_that_tool() -> None:
    g = compiled({"type": "function", "function": {"name": "add"}}).grammar
    assert g is not None
    assert grammar_accepts(g, call("add", '{"a":1,"b":2}'))
    assert not grammar_accepts(g, call("get_weather", '{"city":"Paris"}'))


def test_with_a_json_answer_the_reply_is_that_json_or_a_call() -> None:
    answer = {"type": "object", "properties": {"total": {"type": "number"}}, "required": ["total"]}
    schema = compiled("auto", answer)
    assert schema.grammar is not None and grammar_accepts(schema.grammar, '{"total":3.5}')
    assert not grammar_accepts(schema.grammar, "free text")
    assert schema.validate('{"total":3.5}') == {"total": 3.5}


def test_the_validator_returns_tool_calls_with_validated_arguments() -> None:
    schema = compiled("auto")
    calls = schema.validate(call("Lookup", '{"word":"cat","limit":3}'))
    assert isinstance(calls, structgen.ToolCalls) and len(calls) == 1
    assert calls[0].name == "Lookup" and calls[0].arguments == Lookup(word="cat", limit=3)
    assert calls[0].arguments_json == '{"word":"cat","limit":3}' and calls[0].id.startswith("call_")
    assert schema.validate("just text") == "just text"
    with pytest.raises(ValueError, match="limit"):
        schema.validate(call("Lookup", '{"word":"cat","limit":99}'))
    with pytest.raises(ValueError, match="not one of the tools"):
        schema.validate(call("nope", "{}"))


def test_the_same_call_twice_counts_once() -> None:
    schema = compiled("required", parallel=True)
    text = call("add", '{"a":1,"b":2}') + "\n" + call("add", '{"a":1,"b":2}')
    assert [c.arguments for c in schema.validate(text)] == [{"a": 1, "b": 2}]


def test_the_prompt_hint_lists_the_tools_and_the_format() -> None:
    hint = compiled("required").prompt_hint
    assert hint is not None and "<tools>" in hint and "You must call a tool." in hint
    listed = [json.loads(line) for line in hint.split("<tools>\n")[1].split("\n</tools>")[0].splitlines()]
    assert [t["name"] for t in listed] == ["get_weather", "add", "Lookup"]


def test_tool_choice_none_leaves_the_answer_alone() -> None:
    answer = compile_schema(None)
    tools = parse_tools([ADD])
    assert compile_tools(answer, tools, parse_tool_choice("none", tools)) is answer


def test_tool_choice_without_tools_is_refused_before_any_request() -> None:
    hosted = structgen.OpenAICompatible("http://127.0.0.1:9/v1")
    with pytest.raises(structgen.InvalidArgument, match="needs tools"):
        structgen.generate("hi", model=hosted, tool_choice="required")


def test_a_hosted_endpoint_is_sent_the_tools_natively() -> None:
    hosted = structgen.OpenAICompatible("http://127.0.0.1:9/v1")
    tools = parse_tools([ADD])
    schema = compile_tools(compile_schema(None), tools, parse_tool_choice("add", tools))
    (constraint,) = hosted.constraints(schema)
    assert constraint.kind == "tools"
    assert constraint.payload["tool_choice"] == {"type": "function", "function": {"name": "add"}}
    assert constraint.payload["tools"][0]["function"]["name"] == "add"


def test_partial_calls_name_a_call_once_the_grammar_has_fixed_it() -> None:
    names = ["get_weather", "get_time", "add"]
    assert partial_calls("It is sunny", names) is None            # an answer
    assert partial_calls("<tool", names) is None                  # may still be an answer
    calls = partial_calls("<tool_call>\n{\"name\": \"get_", names)
    assert calls is not None and [(c.index, c.name) for c in calls] == [(0, None)]   # get_weather or get_time
    calls = partial_calls("<tool_call>\n{\"name\": \"get_w", names)
    assert calls is not None and calls[0].name == "get_weather" and calls[0].arguments_json == ""
    assert calls[0].arguments is MISSING and not calls[0].complete
    only = partial_calls("<tool_call>\n", ["add"])                # one tool: the grammar forces its name at once
    assert only is not None and only[0].name == "add"


def test_partial_calls_arguments_grow_as_prefixes_of_the_final_arguments() -> None:
    args = '{"city":"Par\\"is","unit":"c"}'
    text = call("get_weather", args) + "\n" + call("add", '{"a":1,"b":22}')
    first_end = len(call("get_weather", args))
    seen: list[str] = []
    for i in range(len(text) + 1):
        calls = partial_calls(text[:i], ["get_weather", "add"])
        if calls is None or not calls or calls[0].name is None:
            continue
        first = calls[0]
        assert args.startswith(first.arguments_json)
        if first.arguments is not MISSING:
            assert is_prefix(first.arguments, json.loads(args), first.partial.incomplete)
        seen.append(first.arguments_json)
        if i < first_end + 2:
            assert len(calls) == 1
    assert seen == sorted(seen, key=len) and seen[-1] == args
    final = partial_calls(text, ["get_weather", "add"])
    assert final is not None and [(c.name, c.arguments_json, c.complete) for c in final] == [
        ("get_weather", args, True), ("add", '{"a":1,"b":22}', True)]
    assert final[1].arguments == {"a": 1, "b": 22}
    # a number still being written is not complete: it may go on
    cut = partial_calls('<tool_call>\n{"name": "add", "arguments": {"a":1,"b":2', ["add"])
    assert cut is not None and cut[0].arguments_json == '{"a":1,"b":2' and not cut[0].complete
