"""``structgen serve`` over real HTTP on 127.0.0.1, driven by the official ``openai`` SDK, on the real model."""

from __future__ import annotations

import asyncio
import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import jsonschema
import openai
import pytest

import structgen
from structgen.partial import MISSING, parse_prefix
from structgen.serve import ServeConfig
from structgen.testing.app_server import serving

PERSON = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20},
                                           "age": {"type": "integer", "minimum": 0, "maximum": 130}},
          "required": ["name", "age"], "additionalProperties": False}
JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
ASK = [{"role": "user", "content": "Alice is 30 years old. Extract the person."}]
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                   "required": ["city"], "additionalProperties": False}}}


def valid(content: str | None, schema: dict[str, Any] = PERSON) -> Any:
    assert content is not None
    value = json.loads(content)
    jsonschema.validate(value, schema)
    return value


def test_a_strict_json_schema_reply_is_valid(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="any", messages=ASK, temperature=0, max_tokens=60,
                                       response_format=JSON_SCHEMA)   # type: ignore[arg-type]
    choice = r.choices[0]
    assert choice.finish_reason == "stop"
    assert isinstance(valid(choice.message.content)["name"], str)   # what it says: the eight-request test below
    assert r.usage is not None and r.usage.completion_tokens > 0 and r.usage.prompt_tokens > 0
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")


def test_json_object_regex_choice_and_grammar_requests(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="m", messages=ASK, temperature=0, max_tokens=40,
                                       response_format={"type": "json_object"})
    assert isinstance(json.loads(r.choices[0].message.content or ""), dict)
    # [0-9], not \d: Python's \d admits every Unicode decimal digit, and greedy SmolLM2 starts with U+1FBF8 (four
    # tokens a digit), which could run out of these 20 tokens on every attempt.
    r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "A date?"}], temperature=0,
                                       max_tokens=20, extra_body={"regex": r"[0-9]{4}-[0-9]{2}-[0-9]{2}"})
    assert len(r.choices[0].message.content or "") == 10
    r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Is fire hot?"}],
                                       temperature=0, max_tokens=5, extra_body={"choice": ["yes", "no"]})
    assert r.choices[0].message.content in ("yes", "no")
    r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Two letters"}],
                                       temperature=0, max_tokens=5, extra_body={"grammar": 'start: "a" "b" | "c" "d"'})
    assert r.choices[0].message.content in ("ab", "cd")


def test_n_choices_with_a_seed_and_logprobs(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="m", messages=ASK, temperature=0.8, seed=7, n=2, max_tokens=60,
                                       logprobs=True, top_logprobs=3,
                                       response_format=JSON_SCHEMA)   # type: ignore[arg-type]
    assert [c.index for c in r.choices] == [0, 1]
    for c in r.choices:
        valid(c.message.content)
        assert c.logprobs is not None and c.logprobs.content
        assert "".join(t.token for t in c.logprobs.content) == c.message.content
        for t in c.logprobs.content:
            assert t.logprob <= 0 and 1 <= len(t.top_logprobs) <= 3
            alternatives = [a.logprob for a in t.top_logprobs]
            assert alternatives == sorted(alternatives, reverse=True)
            # sampled at T=0.8: the chosen token is one of the alternatives, or less likely than all of them
            assert any(abs(t.logprob - a) < 1e-5 for a in alternatives) or t.logprob <= alternatives[-1] + 1e-5


def test_streamed_deltas_add_up_to_a_valid_value_and_each_partial_is_a_prefix(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model="m", messages=ASK, temperature=0, max_tokens=60, stream=True,
                                            stream_options={"include_usage": True},
                                            response_format=JSON_SCHEMA)   # type: ignore[arg-type]
    text, finish, usage, snapshots = "", None, None, []
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for c in chunk.choices:
            text += c.delta.content or ""
            snapshots.append(text)
            finish = c.finish_reason or finish
    final = valid(text)
    assert finish == "stop" and usage is not None and usage.completion_tokens > 0
    assert len([s for s in snapshots if s]) > 3   # it did stream
    for snap in snapshots:   # every member the stream has finished is final; the one being written is a prefix
        assert text.startswith(snap)
        partial = parse_prefix(snap)
        if isinstance(partial.value, dict):
            being_written = (partial.incomplete or "/").split("/")[1] if partial.incomplete else None
            for key, v in partial.value.items():
                if key == being_written:
                    assert isinstance(v, str) and str(final[key]).startswith(v)
                else:
                    assert final[key] == v
        else:
            assert partial.value is MISSING


def test_streamed_plain_text_and_a_stop_sequence(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Count to ten: 1, 2,"}],
                                            temperature=0, max_tokens=40, stream=True, stop=[","])
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert "," not in text


def test_a_free_text_reply_cut_by_max_tokens_says_length(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Tell me a long story."}],
                                       temperature=0, max_tokens=5)
    assert r.choices[0].finish_reason == "length" and r.usage is not None and r.usage.completion_tokens == 5


def test_completions_endpoint_models_health_and_metrics(client: openai.OpenAI, url: str) -> None:
    r = client.completions.create(model="m", prompt="The capital of France is", temperature=0, max_tokens=5,
                                  extra_body={"choice": [" Paris", " Rome"]})
    assert r.choices[0].text in (" Paris", " Rome") and r.object == "text_completion"
    assert [m.id for m in client.models.list()] == ["SmolLM2-135M-Instruct.Q4_1.gguf"]
    root = url.removesuffix("/v1")
    health = json.loads(urllib.request.urlopen(f"{root}/health").read())
    assert health["status"] == "ok" and health["queue"] >= 0
    metrics = urllib.request.urlopen(f"{root}/metrics").read().decode()
    for name in ("structgen_requests_total", "structgen_completion_tokens_total", "structgen_queue_depth",
                 "structgen_live_sequences", "structgen_time_to_first_token_seconds_bucket",
                 "structgen_inter_token_latency_seconds_bucket", "structgen_prefix_cache_hit_tokens_total"):
        assert name in metrics, name
    assert 'structgen_requests_total{endpoint="completions",outcome="ok"}' in metrics


def test_tool_calls_required_named_and_auto(client: openai.OpenAI) -> None:
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    r = client.chat.completions.create(model="m", messages=ask, temperature=0, max_tokens=60, tools=[WEATHER],
                                       tool_choice="required")   # type: ignore[list-item]
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    calls = choice.message.tool_calls
    assert calls and calls[0].function.name == "get_weather" and calls[0].id.startswith("call_")
    jsonschema.validate(json.loads(calls[0].function.arguments), WEATHER["function"]["parameters"])
    named = client.chat.completions.create(
        model="m", messages=ask, temperature=0, max_tokens=60, tools=[WEATHER],   # type: ignore[list-item]
        tool_choice={"type": "function", "function": {"name": "get_weather"}})
    assert named.choices[0].message.tool_calls
    # The call's result goes back in; tool_choice "none" makes the model answer.
    follow = [*ask, {"role": "assistant", "content": None, "tool_calls": [c.model_dump() for c in calls]},
              {"role": "tool", "tool_call_id": calls[0].id, "content": '{"temperature_c": 21, "sky": "clear"}'}]
    answer = client.chat.completions.create(model="m", messages=follow, temperature=0, max_tokens=30,
                                            tools=[WEATHER], tool_choice="none")   # type: ignore[arg-type,list-item]
    assert answer.choices[0].finish_reason in ("stop", "length") and answer.choices[0].message.content
    auto = client.chat.completions.create(model="m", messages=ask, temperature=0, max_tokens=60, tools=[WEATHER],
                                          response_format=JSON_SCHEMA)   # type: ignore[arg-type,list-item]
    message = auto.choices[0].message
    if message.tool_calls:
        jsonschema.validate(json.loads(message.tool_calls[0].function.arguments), WEATHER["function"]["parameters"])
    else:
        valid(message.content)


def streamed_calls(stream: Any) -> tuple[list[Any], str, str | None]:
    """A streamed chat reply's tool-call deltas, its content and its finish_reason."""
    deltas, content, finish = [], "", None
    for chunk in stream:
        for c in chunk.choices:
            content += c.delta.content or ""
            deltas += c.delta.tool_calls or []
            finish = c.finish_reason or finish
    return deltas, content, finish


def test_a_streamed_tool_call_comes_as_openai_sends_it(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Weather in Rome?"}],
                                            temperature=0, max_tokens=60, stream=True, tools=[WEATHER],
                                            tool_choice="required")   # type: ignore[list-item]
    deltas, content, finish = streamed_calls(stream)
    assert finish == "tool_calls" and content == ""
    first, rest = deltas[0], deltas[1:]
    # the first delta: index, id, type and name (the arguments to come); then only arguments fragments
    assert first.index == 0 and first.id and first.id.startswith("call_") and first.type == "function"
    assert first.function is not None and first.function.name == "get_weather" and first.function.arguments == ""
    assert len(rest) >= 2 and all(d.index == 0 and d.id is None and d.function is not None
                                  and d.function.name is None for d in rest)
    arguments = "".join(d.function.arguments or "" for d in rest)
    jsonschema.validate(json.loads(arguments), WEATHER["function"]["parameters"])


def test_a_streamed_call_of_a_relaxed_tool_schema_comes_once_validated(client: openai.OpenAI) -> None:
    params = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20, "format": "path"}},
              "required": ["city"], "additionalProperties": False}   # "format: path" is left to the validator
    relaxed = {"type": "function", "function": {"name": "get_weather", "parameters": params}}
    stream = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Weather in Rome?"}],
                                            temperature=0, max_tokens=60, stream=True, tools=[relaxed],
                                            tool_choice="required")   # type: ignore[list-item]
    deltas, _, finish = streamed_calls(stream)
    assert finish == "tool_calls" and len(deltas) == 2 and deltas[0].id is not None
    jsonschema.validate(json.loads(deltas[1].function.arguments or ""), params)


@pytest.mark.slow   # tests/serve/test_choice_stream.py covers the logic without a model
def test_streamed_parallel_calls_each_have_their_index(client: openai.OpenAI) -> None:
    time_tool = {"type": "function", "function": {"name": "get_time", "description": "The local time in a city",
                                                  "parameters": WEATHER["function"]["parameters"]}}
    stream = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "Weather and time in Rome and in Oslo?"}], temperature=0.9,
        seed=5, max_tokens=160, stream=True, tools=[WEATHER, time_tool], tool_choice="required",  # type: ignore[list-item]
        parallel_tool_calls=True)
    deltas, _, finish = streamed_calls(stream)
    assert finish == "tool_calls"
    calls: dict[int, dict[str, str]] = {}
    for d in deltas:
        if d.id is not None:
            assert d.index not in calls and d.index == len(calls)   # each call announced once, in order
            calls[d.index] = {"name": d.function.name, "arguments": ""}
        calls[d.index]["arguments"] += d.function.arguments or ""
    assert calls
    for c in calls.values():
        assert c["name"] in ("get_weather", "get_time")
        jsonschema.validate(json.loads(c["arguments"]), WEATHER["function"]["parameters"])
    assert len({(c["name"], c["arguments"]) for c in calls.values()}) == len(calls)   # no call repeated


@pytest.mark.parametrize("kwargs, kind", [
    ({"extra_body": {"regex": "("}}, "SchemaError"),
    ({"extra_body": {"grammar": "start: nope"}}, "GrammarError"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "wat"}}}},
     "SchemaError"),
    ({"max_tokens": 100_000}, "InvalidArgument"),
    ({"top_logprobs": 3}, "InvalidArgument"),
    ({"top_logprobs": 30, "logprobs": True}, "InvalidArgument"),
    ({"temperature": -1}, "InvalidArgument"),
    ({"tools": [{"type": "function", "function": {"name": "bad name"}}]}, "InvalidArgument"),
    ({"extra_body": {"regex": "a", "choice": ["a"]}}, "InvalidArgument"),
])
def test_bad_input_is_a_400_naming_the_typed_error(client: openai.OpenAI, kwargs: dict[str, Any], kind: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="m", messages=ASK, **kwargs)
    body = info.value.body
    assert isinstance(body, dict) and body["type"] == kind and body["message"]


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    """POST to the chat endpoint: status, headers (case-insensitive) and the JSON body."""
    request = urllib.request.Request(f"{url}/chat/completions", data=body,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=120) as resp:
            return resp.status, resp.headers, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers, json.loads(exc.read())


def test_malformed_bodies_are_400s(url: str) -> None:
    for raw in (b"{not json", b"[1, 2]", json.dumps({"messages": "hi"}).encode(),
                json.dumps({"messages": [{"role": "robot", "content": "x"}]}).encode(),
                json.dumps({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}).encode()):
        status, _, body = post(url, raw)
        assert status == 400 and body["error"]["type"] == "InvalidArgument", raw


def test_api_key_body_cap_and_concurrency_cap(model: structgen.LlamaCpp) -> None:
    config = ServeConfig(api_key="s3cret", max_body_bytes=2_000, max_tokens=64, max_concurrency=1)
    with serving(model, config) as base:
        body = json.dumps({"messages": ASK, "max_tokens": 3, "temperature": 0}).encode()
        assert post(base, body)[0] == 401
        assert post(base, body, {"Authorization": "Bearer wrong"})[0] == 401
        assert post(base, body, {"Authorization": "Bearer s3cret"})[0] == 200
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=base, api_key="nope", max_retries=0).models.list()
        big = json.dumps({"messages": [{"role": "user", "content": "x" * 5_000}]}).encode()
        status, _, err = post(base, big, {"Authorization": "Bearer s3cret"})
        assert status == 413 and err["error"]["type"] == "RequestTooLarge"
        # One request in flight (streaming slowly) fills the server: the next one gets 429 with Retry-After.
        conn = http.client.HTTPConnection(urllib.parse.urlsplit(base).netloc, timeout=60)
        try:
            slow = json.dumps({"messages": ASK, "max_tokens": 64, "temperature": 0, "stream": True}).encode()
            conn.request("POST", "/v1/chat/completions", slow, {"Content-Type": "application/json",
                                                                "Authorization": "Bearer s3cret"})
            resp = conn.getresponse()
            assert resp.status == 200
            resp.readline()
            status, headers, err = post(base, body, {"Authorization": "Bearer s3cret"})
            assert status == 429 and headers["Retry-After"] == "1" and err["error"]["type"] == "Overloaded"
        finally:
            conn.close()


def test_a_full_engine_queue_is_a_503_with_retry_after(model: structgen.LlamaCpp) -> None:
    small = structgen.LlamaCpp(model.path, n_ctx=1024, n_seq_max=1, max_queue=1, prefix_cache=0)
    try:
        with serving(small) as base:
            async def burst() -> list[Any]:
                async with openai.AsyncOpenAI(base_url=base, api_key="x", max_retries=0) as client:
                    async def one() -> Any:
                        try:
                            return await client.chat.completions.create(model="m", messages=ASK, max_tokens=40,
                                                                        temperature=0)
                        except openai.APIStatusError as exc:
                            return exc

                    return await asyncio.gather(*(one() for _ in range(4)))

            outcomes = asyncio.run(burst())
        refused = [o for o in outcomes if isinstance(o, openai.APIStatusError)]
        assert refused and all(o.status_code == 503 and o.response.headers.get("retry-after") for o in refused)
        assert all(o.body["type"] == "Overloaded" for o in refused)   # type: ignore[index]
        assert len(refused) < 4
    finally:
        small.close()


def test_a_client_that_disconnects_mid_stream_frees_its_sequences(model: structgen.LlamaCpp, url: str) -> None:
    netloc = urllib.parse.urlsplit(url).netloc
    conn = http.client.HTTPConnection(netloc, timeout=60)
    try:
        body = json.dumps({"messages": [{"role": "user", "content": "Write a very long story about a dragon."}],
                           "max_tokens": 256, "temperature": 0, "stream": True}).encode()
        conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200
        for _ in range(4):
            resp.readline()
        assert model.scheduler.live_sequences >= 1
    finally:
        conn.close()
        resp.close()
    deadline = time.monotonic() + 20
    while model.scheduler.live_sequences and time.monotonic() < deadline:
        time.sleep(0.1)
    assert model.scheduler.live_sequences == 0
    metrics = urllib.request.urlopen(url.removesuffix("/v1") + "/metrics").read().decode()
    completion = [line for line in metrics.splitlines() if line.startswith("structgen_completion_tokens_total")]
    assert completion   # the dropped stream did not count as served


def test_eight_concurrent_async_requests_are_all_valid(client: openai.OpenAI, url: str) -> None:
    people = [("Alice", 30), ("Bob", 41), ("Chen", 25), ("Dana", 52), ("Eve", 19), ("Farid", 64), ("Gita", 37),
              ("Hugo", 8)]
    async def all_of() -> list[Any]:
        async with openai.AsyncOpenAI(base_url=url, api_key="x", max_retries=0) as aclient:
            async def ask(name: str, age: int) -> Any:
                r = await aclient.chat.completions.create(
                    model="m", temperature=0, max_tokens=60, response_format=JSON_SCHEMA,   # type: ignore[arg-type]
                    messages=[{"role": "user", "content": f"{name} is {age} years old. Extract the person."}])
                return valid(r.choices[0].message.content)

            return await asyncio.gather(*(ask(n, a) for n, a in people))

    values = asyncio.run(all_of())
    assert len(values) == 8
    # Each reply read its own message: a case-insensitive count over the eight (a model that did not read the
    # prompt scores at most one), since what a 135M model writes may differ in a letter on another CPU.
    named = sum(v["name"].strip().lower() == n.lower() for v, (n, _) in zip(values, people, strict=True))
    assert named >= 6, values


def test_hosted_chain_pointed_at_structgen_serve_is_served_by_the_server_step(url: str) -> None:
    hosted = structgen.OpenAICompatible(url, "structgen", timeout=120)
    for name, age in (("Ana", 33), ("Ben", 71), ("Cy", 12)):
        r = structgen.generate(f"{name} is {age} years old. Extract the person.", PERSON, model=hosted,
                               temperature=0, max_tokens=60)
        jsonschema.validate(r.value, PERSON)
        assert r.strategy == "server" and len(r.attempts) <= 1


def test_deterministic_mode_over_http_is_byte_identical_to_sequential_runs(model: structgen.LlamaCpp) -> None:
    det = structgen.LlamaCpp(model.path, n_ctx=1024, deterministic=True)
    prompts = [f"{n} is {a} years old. Extract the person." for n, a in
               (("Alice", 30), ("Bob", 41), ("Chen", 25), ("Dana", 52), ("Eve", 19), ("Farid", 64), ("Gita", 37),
                ("Hugo", 8))]
    try:
        with serving(det) as base:
            async def both() -> tuple[list[tuple[str, list[float]]], list[tuple[str, list[float]]]]:
                async with openai.AsyncOpenAI(base_url=base, api_key="x", max_retries=0) as client:
                    async def ask(p: str) -> tuple[str, list[float]]:
                        r = await client.chat.completions.create(
                            model="m", messages=[{"role": "user", "content": p}], temperature=0.7, seed=11,
                            max_tokens=60, logprobs=True, response_format=JSON_SCHEMA)   # type: ignore[arg-type]
                        c = r.choices[0]
                        assert c.logprobs is not None and c.logprobs.content is not None
                        return c.message.content or "", [t.logprob for t in c.logprobs.content]

                    together = await asyncio.gather(*(ask(p) for p in prompts))
                    return list(together), [await ask(p) for p in prompts]

            concurrent, sequential = asyncio.run(both())
        assert concurrent == sequential
        for text, _ in concurrent:
            valid(text)
    finally:
        det.close()


def test_hosted_tool_calls_go_natively_to_the_server_and_come_back_validated(url: str) -> None:
    hosted = structgen.OpenAICompatible(url, "structgen", timeout=120)
    r = structgen.generate("What is the weather in Paris?", model=hosted, tools=[WEATHER], tool_choice="required",
                           temperature=0, max_tokens=60)
    assert r.strategy == "server" and r.tool_call is not None and r.tool_call.name == "get_weather"
    jsonschema.validate(r.tool_call.arguments, WEATHER["function"]["parameters"])
    events = list(structgen.stream("Weather in Oslo?", model=hosted, tools=[WEATHER], tool_choice="required",
                                   temperature=0, max_tokens=60))
    done = events[-1]
    assert isinstance(done, structgen.Done) and done.result.tool_call is not None


def tool_call_body(name: str, arguments: str) -> bytes:
    return json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                       "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                           "role": "assistant", "content": None, "tool_calls": [
                               {"id": "c1", "type": "function", "function": {"name": name, "arguments": arguments}}]}}],
                       "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}).encode()


def test_a_hosted_call_with_bad_arguments_or_an_unknown_tool_is_never_returned(url: str) -> None:
    bad = [tool_call_body("get_weather", '{"town": "Paris"}'), tool_call_body("rm_rf", "{}"),
           tool_call_body("get_weather", '{"city": ')]
    with structgen.FaultProxy(url.removesuffix("/v1")) as proxy:
        hosted = structgen.OpenAICompatible(f"{proxy.url}/v1", "structgen", max_retries=0)
        proxy.always(None)
        proxy.inject(*(structgen.Fault.status(200, body=b) for b in bad))
        try:
            r = structgen.generate("What is the weather in Paris?", model=hosted, tools=[WEATHER],
                                   tool_choice="required", temperature=0, max_tokens=60, strategy="server",
                                   max_attempts=3)
        except structgen.ValidationFailed as exc:
            assert all(a.error for a in exc.attempts)
        else:   # the server step gave up on the bad replies and a later call was served for real
            assert r.tool_call is not None
            jsonschema.validate(r.tool_call.arguments, WEATHER["function"]["parameters"])
        assert len(proxy.log) >= 3
