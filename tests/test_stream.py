"""``stream`` / ``astream``: token deltas, partial values that are always prefixes of the final value, resets on
retry, cancellation when the stream is dropped; and ``structgen.partial`` on its own."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

import structgen
from structgen.partial import MISSING, parse_prefix

from .local.test_retries import ECHO_PROMPT, ECHO_PRONE

ORDER = {
    "type": "object",
    "properties": {
        "customer": {"type": "object", "properties": {"name": {"type": "string"}, "city": {"type": "string"}},
                     "required": ["name", "city"], "additionalProperties": False},
        "items": {"type": "array", "minItems": 1, "maxItems": 3,
                  "items": {"type": "object", "properties": {"product": {"type": "string"},
                                                             "qty": {"type": "integer"}},
                            "required": ["product", "qty"], "additionalProperties": False}},
        "paid": {"type": "boolean"},
        "note": {"type": ["string", "null"]},
    },
    "required": ["customer", "items", "paid", "note"],
    "additionalProperties": False,
}
ORDER_PROMPT = "Anna from Graz ordered 2 lamps and 1 \"desk\" and paid. Note: leave at the door \\ porch."


def _pointer_parts(pointer: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]] if pointer else []


def is_prefix(partial: Any, final: Any, incomplete: str | None, here: str = "") -> bool:
    """True if ``partial`` is a prefix of ``final``: equal everywhere except along ``incomplete``'s path, where
    strings are prefixes and containers hold a prefix of the final members."""
    on_path = incomplete is not None and (incomplete == here or incomplete.startswith(here + "/"))
    if not on_path:
        return bool(partial == final)
    if isinstance(partial, str):
        return isinstance(final, str) and final.startswith(partial)
    if isinstance(partial, dict):
        return isinstance(final, dict) and all(
            k in final and is_prefix(v, final[k], incomplete, f"{here}/{k.replace('~', '~0').replace('/', '~1')}")
            for k, v in partial.items())
    if isinstance(partial, list):
        return isinstance(final, list) and len(partial) <= len(final) and all(
            is_prefix(v, final[i], incomplete, f"{here}/{i}") for i, v in enumerate(partial))
    return bool(partial == final)


@pytest.mark.parametrize("text", [
    '{"a": [1, 2.5e3, {"b": "x\\"y\\u00e9z"}], "c": null, "d": true, "e": -0.5}',
    '[{"k": []}, [], "", {"": {"~/": "\\\\"}}]',
    '  "just a string"  ',
    '{"n": 12345}',
])
def test_every_prefix_of_a_json_text_parses_to_a_prefix_of_its_value(text: str) -> None:
    final = json.loads(text)
    for i in range(len(text) + 1):
        p = parse_prefix(text[:i])
        if p.value is MISSING:
            continue
        assert is_prefix(p.value, final, p.incomplete), (text[:i], p)
    assert parse_prefix(text) == structgen.Partial(final, None)


def test_a_number_being_written_is_left_out() -> None:
    assert parse_prefix('{"n": 12').value == {}
    assert parse_prefix('{"n": 12').incomplete == "/n"
    assert parse_prefix('[1, 2').value == [1]


def test_a_stream_shows_partial_values_that_are_prefixes_of_the_final_value(model: structgen.LlamaCpp) -> None:
    events = list(structgen.stream(ORDER_PROMPT, ORDER, model=model, seed=2, max_tokens=200))
    done = events[-1]
    assert isinstance(done, structgen.Done)
    final = done.result.value
    deltas = [e for e in events if isinstance(e, structgen.Delta)]
    assert len(deltas) > 5
    resets = [i for i, e in enumerate(events) if isinstance(e, structgen.Reset)]
    last_attempt = [e for e in events[(resets[-1] + 1 if resets else 0):] if isinstance(e, structgen.Delta)]
    assert "".join(d.text for d in last_attempt) == done.result.text
    assert [t for d in last_attempt for t in d.tokens] == done.result.tokens
    for d in last_attempt:
        assert d.partial is not None
        if d.value is not MISSING:
            assert is_prefix(d.value, final, d.partial.incomplete), (d.snapshot, d.partial)
    assert last_attempt[-1].partial == structgen.Partial(final, None)


def test_a_retry_shows_as_a_reset_and_the_next_attempt_starts_afresh(model: structgen.LlamaCpp) -> None:
    events = list(structgen.stream(ECHO_PROMPT, ECHO_PRONE, model=model, temperature=0.0, seed=3, max_tokens=256))
    kinds = [type(e).__name__ for e in events]
    assert "Reset" in kinds and kinds[-1] == "Done"
    first_reset = kinds.index("Reset")
    after = events[first_reset + 1]
    assert isinstance(after, structgen.Delta) and after.attempt == 1 and after.snapshot == after.text
    assert "repetition loop" in events[first_reset].reason   # type: ignore[union-attr]


def test_dropping_a_stream_cancels_its_request(model: structgen.LlamaCpp) -> None:
    it = structgen.stream("Write a long story about the sea.", model=model, max_tokens=400, seed=1)
    for _ in range(3):
        assert isinstance(next(it), structgen.Delta)
    it.close()
    deadline = time.monotonic() + 10
    while model.scheduler.live_sequences and time.monotonic() < deadline:
        time.sleep(0.01)
    assert model.scheduler.live_sequences == 0


def test_astream_gives_the_same_events(model: structgen.LlamaCpp) -> None:
    async def main() -> list[Any]:
        return [e async for e in structgen.astream(ORDER_PROMPT, ORDER, model=model, seed=2, max_tokens=200)]

    events = asyncio.run(main())
    sync = list(structgen.stream(ORDER_PROMPT, ORDER, model=model, seed=2, max_tokens=200))
    assert [type(e) for e in events] == [type(e) for e in sync]
    assert events[-1].result.text == sync[-1].result.text


def test_best_of_streams_its_chosen_value_once(model: structgen.LlamaCpp) -> None:
    class Colour(BaseModel):
        colour: str

    events = list(structgen.stream("Name a colour.", Colour, model=model, strategy="best_of", n=3, seed=1,
                                   max_tokens=30))
    assert [type(e) for e in events] == [structgen.Delta, structgen.Done]
    assert events[0].text == events[1].result.text   # type: ignore[union-attr]


def test_stream_errors_are_the_typed_errors_of_generate(model: structgen.LlamaCpp) -> None:
    with pytest.raises(structgen.TruncatedOutput):
        list(structgen.stream(ORDER_PROMPT, ORDER, model=model, seed=2, max_tokens=3, max_attempts=1))


def test_the_cli_streams_text_to_stderr_and_prints_the_value() -> None:
    from cli.main import app

    result = CliRunner().invoke(app, ["generate", "Flip a coin.", "--choice", "heads,tails", "--stream",
                                      "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() in ("heads", "tails")
    assert result.stderr.strip() == result.stdout.strip()


WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20},
                                                    "unit": {"enum": ["c", "f"]}},
                   "required": ["city", "unit"], "additionalProperties": False}}}
TIME_TOOL = {"type": "function", "function": {"name": "get_time", "description": "The local time in a city",
                                              "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                             "required": ["city"]}}}


def test_a_streamed_tool_call_shows_its_name_then_arguments_that_are_prefixes(model: structgen.LlamaCpp) -> None:
    events = list(structgen.stream("What is the weather in Paris, in celsius?", model=model, tools=[WEATHER_TOOL, TIME_TOOL],
                                   tool_choice="required", seed=1, temperature=0, max_tokens=80, max_attempts=1))
    done = events[-1]
    assert isinstance(done, structgen.Done) and done.result.tool_calls
    final = done.result.tool_calls[0]
    seen = [d.tool_calls[0] for d in events if isinstance(d, structgen.Delta) and d.tool_calls]
    named = [c for c in seen if c.name is not None]
    assert named and all(c.name == final.name for c in named)
    assert len({c.arguments_json for c in named}) >= 3   # the arguments grew over several deltas
    for c in named:
        assert final.arguments_json.startswith(c.arguments_json)
        if c.arguments is not MISSING:
            assert is_prefix(c.arguments, json.loads(final.arguments_json), c.partial.incomplete)
    assert named[-1].complete and named[-1].arguments == json.loads(final.arguments_json)


def test_an_answer_has_no_tool_calls_and_other_requests_none_at_all(model: structgen.LlamaCpp) -> None:
    events = list(structgen.stream("Say hello.", model=model, tools=[WEATHER_TOOL], tool_choice="none", seed=1,
                                   max_tokens=5))
    assert all(e.tool_calls is None for e in events if isinstance(e, structgen.Delta))
    events = list(structgen.stream("Say hello.", model=model, seed=1, max_tokens=5))
    assert all(e.tool_calls is None for e in events if isinstance(e, structgen.Delta))
