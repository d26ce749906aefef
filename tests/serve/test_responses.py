"""``POST /v1/responses`` over real HTTP on 127.0.0.1, driven by the official ``openai`` SDK, on the real model."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import openai
import pydantic
import pytest

from structgen.serve.responses_api import ResponsesRequest, responses_plan

from .test_server import PERSON, WEATHER

ASK = "Alice is 30 years old. Extract the person."
PERSON_FORMAT = {"format": {"type": "json_schema", "name": "person", "schema": PERSON, "strict": True}}
WEATHER_FN = {"type": "function", **WEATHER["function"]}   # the Responses API's flat function tool


class Person(pydantic.BaseModel):
    name: str = pydantic.Field(max_length=20)
    age: int = pydantic.Field(ge=0, le=130)


def test_responses_parse_returns_a_validated_model(client: openai.OpenAI) -> None:
    r = client.responses.parse(model="m", input=ASK, text_format=Person, temperature=0, max_output_tokens=60)
    assert isinstance(r.output_parsed, Person) and r.output_parsed.name
    assert r.status == "completed" and r.id.startswith("resp_") and r.object == "response"
    assert r.store is False   # nothing is kept
    assert r.usage is not None and r.usage.output_tokens > 0 and r.usage.input_tokens > 0
    message = r.output[0]
    assert message.type == "message" and message.role == "assistant" and message.status == "completed"


def test_instructions_own_fields_json_object_and_a_cut_reply(client: openai.OpenAI) -> None:
    r = client.responses.create(model="m", instructions="Answer yes or no.", input="Is fire hot?", temperature=0,
                                max_output_tokens=5, extra_body={"choice": ["yes", "no"]})
    assert r.output_text in ("yes", "no")
    r = client.responses.create(model="m", input=[{"role": "user", "content": [{"type": "input_text", "text": "A date?"}]}],
                                temperature=0, max_output_tokens=20, extra_body={"regex": "[0-9]{4}-[0-9]{2}-[0-9]{2}"})
    assert len(r.output_text) == 10
    r = client.responses.create(model="m", input=ASK, temperature=0, max_output_tokens=40,
                                text={"format": {"type": "json_object"}})
    assert isinstance(json.loads(r.output_text), dict)
    r = client.responses.create(model="m", input="Tell me a long story.", temperature=0, max_output_tokens=5)
    assert r.status == "incomplete" and r.incomplete_details is not None
    assert r.incomplete_details.reason == "max_output_tokens" and r.usage is not None and r.usage.output_tokens == 5


def test_a_streamed_response_sends_the_typed_events_in_order(client: openai.OpenAI) -> None:
    events = list(client.responses.create(model="m", input=ASK, temperature=0, max_output_tokens=60, stream=True,
                                          text=PERSON_FORMAT))   # type: ignore[arg-type]
    types = [e.type for e in events]
    assert types[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert types[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 3   # it did stream
    done = next(e for e in events if e.type == "response.output_text.done")
    assert "".join(deltas) == done.text
    jsonschema.validate(json.loads(done.text), PERSON)
    final = events[-1].response   # type: ignore[union-attr]
    assert final.output_text == done.text and final.status == "completed" and final.usage is not None
    assert final.id == events[0].response.id   # type: ignore[union-attr]


def test_the_sdk_stream_helper_parses_the_streamed_value(client: openai.OpenAI) -> None:
    with client.responses.stream(model="m", input=ASK, text_format=Person, temperature=0,
                                 max_output_tokens=60) as stream:
        kinds = {e.type for e in stream}
        final = stream.get_final_response()
    assert "response.output_text.delta" in kinds
    assert isinstance(final.output_parsed, Person)


def test_a_tool_call_streamed_and_whole_then_its_output_sent_back(client: openai.OpenAI) -> None:
    ask = "What is the weather in Paris?"
    r = client.responses.create(model="m", input=ask, tools=[WEATHER_FN], tool_choice="required",   # type: ignore[list-item]
                                temperature=0, max_output_tokens=60)
    call = r.output[0]
    assert call.type == "function_call" and call.name == "get_weather" and call.call_id.startswith("call_")
    jsonschema.validate(json.loads(call.arguments), WEATHER["function"]["parameters"])
    events = list(client.responses.create(model="m", input=ask, tools=[WEATHER_FN], temperature=0,   # type: ignore[list-item]
                                          tool_choice={"type": "function", "name": "get_weather"},
                                          max_output_tokens=60, stream=True))
    added = next(e for e in events if e.type == "response.output_item.added")
    assert added.item.type == "function_call" and added.item.name == "get_weather"   # type: ignore[union-attr]
    fragments = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    assert len(fragments) >= 2
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert "".join(fragments) == done.arguments
    jsonschema.validate(json.loads(done.arguments), WEATHER["function"]["parameters"])
    assert events[-1].type == "response.completed"
    # the call and its result go back in as items; tool_choice "none" makes the model answer
    follow = client.responses.create(
        model="m", tools=[WEATHER_FN], tool_choice="none", temperature=0, max_output_tokens=30,   # type: ignore[list-item]
        input=[{"role": "user", "content": ask}, call.model_dump(exclude_none=True),   # type: ignore[list-item]
               {"type": "function_call_output", "call_id": call.call_id, "output": '{"temperature_c": 21}'}])
    assert follow.output[0].type == "message" and follow.output_text


def test_a_stream_that_fails_after_its_start_ends_with_response_failed_and_an_error(client: openai.OpenAI) -> None:
    seen: list[Any] = []
    with pytest.raises(openai.APIError) as info:
        for event in client.responses.create(model="m", input=ASK, temperature=0, max_output_tokens=3, stream=True,
                                             text=PERSON_FORMAT):   # type: ignore[arg-type]
            seen.append(event)
    assert seen[0].type == "response.created" and seen[-1].type == "response.failed"
    assert seen[-1].response.status == "failed" and seen[-1].response.error.code == "TruncatedOutput"
    assert isinstance(info.value.body, dict) and info.value.body["type"] == "TruncatedOutput"


@pytest.mark.parametrize("kwargs, kind, words", [
    ({"previous_response_id": "resp_1"}, "InvalidArgument", "stores no responses"),
    ({"store": True}, "InvalidArgument", "stores no responses"),
    ({"tools": [{"type": "web_search"}]}, "InvalidArgument", "only function tools"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]}, "InvalidArgument",
     "only text parts"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "InvalidArgument", "stores no responses"),
    ({"text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "wat"}}}}, "SchemaError", ""),
    ({"extra_body": {"regex": "("}}, "SchemaError", ""),
    ({"max_output_tokens": 100_000}, "InvalidArgument", "cap"),
    ({"tool_choice": "required"}, "InvalidArgument", "needs tools"),
])
def test_bad_input_is_a_400_naming_the_typed_error(client: openai.OpenAI, kwargs: dict[str, Any], kind: str,
                                                  words: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="m", **{"input": ASK, **kwargs})
    body = info.value.body
    assert isinstance(body, dict) and body["type"] == kind and words in body["message"]


def test_a_stored_response_is_not_found_and_says_why(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.responses.retrieve("resp_123")
    assert "stores no responses" in str(info.value)


def plan_of(**body: Any) -> Any:
    return responses_plan(ResponsesRequest.model_validate({"input": ASK, **body}), max_tokens_cap=256, timeout=60.0)


def test_a_responses_request_becomes_the_chat_plan_it_stands_for() -> None:
    items = [{"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Be brief."}]},
             {"role": "user", "content": "Weather in Paris and Rome?"},
             {"type": "reasoning", "id": "rs_1", "summary": []},
             {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Paris"}'},
             {"type": "function_call", "call_id": "call_2", "name": "get_weather", "arguments": '{"city":"Rome"}'},
             {"type": "function_call_output", "call_id": "call_1", "output": "21 C"},
             {"type": "function_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "18 C"}]}]
    plan = plan_of(input=items, instructions="You are a weather bot.", tools=[WEATHER_FN], tool_choice="auto",
                   max_output_tokens=40, temperature=0.2, seed=3, text=PERSON_FORMAT)
    roles = [m["role"] for m in plan.prompt]
    assert roles == ["system", "system", "user", "assistant", "user", "user"]
    assert plan.prompt[3]["content"].count("<tool_call>") == 2   # both calls in one assistant turn
    assert "21 C" in plan.prompt[4]["content"] and "18 C" in plan.prompt[5]["content"]
    assert plan.schema == PERSON and plan.options["tools"] == [WEATHER]
    assert plan.options["max_tokens"] == 40 and plan.options["temperature"] == 0.2 and plan.options["seed"] == 3
    named = plan_of(tools=[WEATHER_FN], tool_choice={"type": "function", "name": "get_weather"})
    assert named.options["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert plan_of(extra_field="ignored", store=False).schema is None


def test_a_reply_that_thinks_first_has_a_reasoning_item_before_its_message(client: openai.OpenAI) -> None:
    r = client.responses.create(model="m", input=ASK, text=PERSON_FORMAT, temperature=0,   # type: ignore[arg-type]
                                max_output_tokens=60, extra_body={"think": 8})
    assert [o.type for o in r.output] == ["reasoning", "message"]
    jsonschema.validate(json.loads(r.output_text), PERSON)
    events = list(client.responses.create(model="m", input=ASK, text=PERSON_FORMAT, temperature=0,   # type: ignore[arg-type]
                                          max_output_tokens=60, extra_body={"think": 8}, stream=True))
    added = [e.item.type for e in events if e.type == "response.output_item.added"]   # type: ignore[union-attr]
    assert added == ["reasoning", "message"] and events[-1].type == "response.completed"
    jsonschema.validate(json.loads(events[-1].response.output_text), PERSON)   # type: ignore[union-attr]
