"""The clients people already use, unchanged, pointed at a real ``structgen serve`` on 127.0.0.1: the openai SDK's
``.parse`` helpers and stream helper, instructor in its TOOLS and JSON_SCHEMA modes (``create_partial`` included),
LangChain's ``with_structured_output`` and pydantic-ai's agents (chat and Responses models). Each returns an instance
its library validated; nothing here asserts what the model writes beyond that."""

from __future__ import annotations

import asyncio
from typing import Any

import instructor
import openai
import pydantic
import pytest
from langchain_openai import ChatOpenAI
from pydantic_ai import Agent, NativeOutput
from pydantic_ai.models.openai import OpenAIChatModel, OpenAIResponsesModel
from pydantic_ai.providers.openai import OpenAIProvider

ASK = "Alice is 30 years old. Extract the person."


class Person(pydantic.BaseModel):
    name: str = pydantic.Field(max_length=20)
    age: int = pydantic.Field(ge=0, le=130)


class GetWeather(pydantic.BaseModel):
    """The current weather in a city."""

    city: str = pydantic.Field(max_length=20)


def sdk(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key="unused", max_retries=0)


def test_openai_parse_with_a_pydantic_response_format(url: str) -> None:
    r = sdk(url).chat.completions.parse(model="m", messages=[{"role": "user", "content": ASK}], response_format=Person,
                                        temperature=0, max_tokens=60)
    assert isinstance(r.choices[0].message.parsed, Person)


def test_openai_parse_with_a_pydantic_function_tool(url: str) -> None:
    r = sdk(url).chat.completions.parse(model="m", messages=[{"role": "user", "content": "Weather in Paris?"}],
                                        tools=[openai.pydantic_function_tool(GetWeather)], tool_choice="required",
                                        temperature=0, max_tokens=60)
    calls = r.choices[0].message.tool_calls
    assert calls and isinstance(calls[0].function.parsed_arguments, GetWeather)   # type: ignore[union-attr]


def test_openai_stream_helper_gets_a_tool_call_in_fragments(url: str) -> None:
    with sdk(url).chat.completions.stream(model="m", messages=[{"role": "user", "content": "Weather in Oslo?"}],
                                          tools=[openai.pydantic_function_tool(GetWeather)], tool_choice="required",
                                          temperature=0, max_tokens=60) as stream:
        fragments = [e for e in stream if e.type == "tool_calls.function.arguments.delta"]
        final = stream.get_final_completion()
    assert len(fragments) >= 2 and all(e.name == "GetWeather" for e in fragments)
    calls = final.choices[0].message.tool_calls
    assert calls and isinstance(calls[0].function.parsed_arguments, GetWeather)   # type: ignore[union-attr]
    assert "".join(e.arguments_delta for e in fragments) == calls[0].function.arguments


def is_prefix_of(partial: pydantic.BaseModel, final: pydantic.BaseModel) -> bool:
    """Every field the partial object has is the final one's, or (the field being written) the start of its text."""
    for field, value in partial.model_dump().items():
        if value is None:
            continue
        want = getattr(final, field)
        if not (want.startswith(value) if isinstance(value, str) else str(want).startswith(str(value))):
            return False
    return True


@pytest.mark.parametrize("mode", [instructor.Mode.TOOLS, instructor.Mode.JSON_SCHEMA])
def test_instructor_returns_a_model_and_streams_partial_ones(url: str, mode: instructor.Mode) -> None:
    client = instructor.from_openai(sdk(url), mode=mode)
    person = client.chat.completions.create(model="m", response_model=Person, messages=[{"role": "user", "content": ASK}],
                                            temperature=0, max_tokens=60, max_retries=0)
    assert isinstance(person, Person)
    partials: list[Any] = list(client.chat.completions.create_partial(
        model="m", response_model=Person, messages=[{"role": "user", "content": ASK}], temperature=0, max_tokens=60,
        max_retries=0))
    final = Person.model_validate(partials[-1].model_dump())
    distinct = {repr(p.model_dump()) for p in partials}
    assert len(distinct) >= 3   # the value arrived in pieces, not in one chunk at the end
    assert all(is_prefix_of(p, final) for p in partials)


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_langchain_with_structured_output(url: str, method: str) -> None:
    llm = ChatOpenAI(base_url=url, api_key="unused", model="m", temperature=0, max_tokens=60,  # type: ignore[arg-type]
                     max_retries=0)
    assert isinstance(llm.with_structured_output(Person, method=method).invoke(ASK), Person)   # type: ignore[arg-type]


# On the Responses API too (slow: /v1/responses has its own tests, tests/serve/test_responses.py).
@pytest.mark.parametrize("api", [OpenAIChatModel, pytest.param(OpenAIResponsesModel, marks=pytest.mark.slow)])
@pytest.mark.parametrize("native", [False, True], ids=["tool_output", "native_output"])
def test_pydantic_ai_agent_output(url: str, api: Any, native: bool) -> None:
    async def run() -> Any:
        async with openai.AsyncOpenAI(base_url=url, api_key="unused", max_retries=0) as client:
            agent = Agent(api("m", provider=OpenAIProvider(openai_client=client)),
                          output_type=NativeOutput(Person) if native else Person,
                          model_settings={"temperature": 0, "max_tokens": 60})
            return (await agent.run(ASK)).output

    assert isinstance(asyncio.run(run()), Person)
