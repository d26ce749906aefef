"""``generate(..., tools=...)`` on the real model: a call's name is a tool's and its arguments are valid."""

from __future__ import annotations

import itertools
import math

import pydantic
import pytest

import structgen


class GetWeather(pydantic.BaseModel):
    """The current weather in a city."""

    city: str = pydantic.Field(max_length=20)
    unit: str = pydantic.Field(default="c", pattern="^(c|f)$")


ADD = {"type": "function", "function": {"name": "add", "description": "Add two integers", "parameters": {
    "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"],
    "additionalProperties": False}}}


def test_a_required_call_comes_back_validated(model: structgen.LlamaCpp) -> None:
    r = structgen.generate("What is the weather in Paris?", model=model, tools=[GetWeather, ADD],
                           tool_choice="required", max_tokens=60, temperature=0)
    call = r.tool_call
    assert call is not None and isinstance(r.value, structgen.ToolCalls) and r.tool_calls == [call]
    if call.name == "GetWeather":
        assert isinstance(call.arguments, GetWeather)
    else:
        assert set(call.arguments) == {"a", "b"}
    assert r.text.startswith("<tool_call>\n") and r.to_dict()["tool_calls"][0]["name"] == call.name


def test_a_named_choice_calls_that_tool_even_at_temperature_one(model: structgen.LlamaCpp) -> None:
    for seed in range(2):
        r = structgen.generate("Please add 2 and 3.", model=model, tools=[GetWeather, ADD], seed=seed,
                               tool_choice={"type": "function", "function": {"name": "add"}}, max_tokens=60,
                               temperature=1.0)
        assert r.tool_call is not None and r.tool_call.name == "add"
        assert isinstance(r.tool_call.arguments["a"], int) and isinstance(r.tool_call.arguments["b"], int)


def test_auto_gives_the_answer_schema_or_a_call(model: structgen.LlamaCpp) -> None:
    schema = {"type": "object", "properties": {"sum": {"type": "integer"}}, "required": ["sum"]}
    for prompt in ("What is 2 + 3? Reply as JSON.", "What is the weather in Rome?"):
        r = structgen.generate(prompt, schema, model=model, tools=[GetWeather], max_tokens=60, temperature=0)
        if r.tool_call is None:
            assert isinstance(r.value, dict) and isinstance(r.value["sum"], int)
        else:
            assert isinstance(r.tool_call.arguments, GetWeather)


def test_a_streamed_tool_call_ends_with_the_validated_calls(model: structgen.LlamaCpp) -> None:
    events = list(structgen.stream("Weather in Oslo?", model=model, tools=[GetWeather], tool_choice="required",
                                   max_tokens=60, temperature=0))
    done = events[-1]
    assert isinstance(done, structgen.Done) and done.result.tool_call is not None
    text = "".join(e.text for e in events if isinstance(e, structgen.Delta))
    assert text == done.result.text


def test_top_logprobs_are_the_likeliest_allowed_tokens(model: structgen.LlamaCpp) -> None:
    r = structgen.generate("Is fire hot?", structgen.Choice(["yes", "no", "maybe"]), model=model, temperature=0,
                           top_logprobs=3, fast_forward=False)
    assert len(r.top_logprobs) == len(r.tokens)
    first = r.top_logprobs[0]
    assert first[0][0] == r.tokens[0] and first[0][1] == pytest.approx(r.logprobs[0], abs=1e-6)   # greedy: the best
    assert all(a >= b for (_, a), (_, b) in itertools.pairwise(first))
    assert sum(math.exp(lp) for _, lp in first) <= 1.0 + 1e-6
    for t, _ in first:   # only what the grammar allows: the start of an option
        assert any(o.encode().startswith(model.token_bytes(t)) for o in ("yes", "no", "maybe"))
