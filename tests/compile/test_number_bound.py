"""The JSON number digit bound: the schema's own literals raise it; the run tracker reads strings, escapes and
exponents as JSON does."""

from __future__ import annotations

import json

import pytest

from structgen import compile_schema
from structgen.compile.number_bound import DEFAULT_DIGITS, EXPONENT_DIGITS, NumberRuns, digit_limit
from structgen.compile.schema import JsonOptions


@pytest.mark.parametrize(("schema", "expected"), [
    ({"type": "number"}, 24),
    ({"type": "integer", "maximum": 10**30}, 31),
    ({"type": "number", "multipleOf": 1e-30}, 30),
    ({"enum": [1, 2.5, 123456789012345678901234567890]}, 30),
    ({"type": "number", "minimum": -1e300}, 301),
    ({"const": 10**1000}, 400),
    ({"type": "boolean", "default": True}, 24),       # a bool is not a number
])
def test_digit_limit_follows_the_schema_s_own_numbers(schema: object, expected: int) -> None:
    assert digit_limit(json.dumps(schema), DEFAULT_DIGITS) == expected


def test_compiled_json_carries_the_bound_and_none_turns_it_off() -> None:
    assert compile_schema({"type": "number"}).number_digits == DEFAULT_DIGITS
    assert compile_schema({"type": "number"}, JsonOptions(number_digits=5)).number_digits == 5
    assert compile_schema({"type": "number"}, JsonOptions(number_digits=None)).number_digits == 0
    assert compile_schema({"type": "number", "maximum": 1e40}, JsonOptions(number_digits=5)).number_digits == 41


def _room_after(text: str, digits: int = 5) -> int | None:
    runs = NumberRuns(digits)
    for ch in text:      # token boundaries do not matter
        runs.feed(ch.encode())
    return runs.room()


@pytest.mark.parametrize(("text", "room"), [
    ('{"a":', 5),
    ('{"a":123', 2),
    ('{"a":12345', 0),
    ('{"a":1.', 5),                 # the fraction is its own run
    ('{"a":1.234', 2),
    ('{"a":1e', EXPONENT_DIGITS),
    ('{"a":1e+2', EXPONENT_DIGITS - 1),
    ('{"a":-12', 3),
    ('{"a":"12345', None),          # inside a string digits are text
    ('{"a":"x\\"12', None),         # an escaped quote does not end it
    ('{"a":"x\\\\"', 5),            # an escaped backslash does: the string is closed
    ('{"a":"9999999","b":12', 3),
    ('{"a":true,"b":1', 4),         # the e of true is not an exponent once the value ends
])
def test_runs_are_read_like_json(text: str, room: int | None) -> None:
    assert _room_after(text) == room


@pytest.mark.parametrize(("text", "stray"), [
    (b'{"a": "total 100.0}}', True),           # a string closing what it never opened: the model thinks it ended
    (b'{"a": "x"}', False),                    # closed outside the string
    (b'{"a": "f(x) = {x}"', False),            # opened and closed inside
    (b'{"a": "[1] and 2]', True),
    (b'{"a": "ok"}, {"b": "', False),          # a new string starts with nothing open
])
def test_the_tracker_marks_a_bracket_a_string_closes_without_opening(text: bytes, stray: bool) -> None:
    runs = NumberRuns(DEFAULT_DIGITS)
    for i in range(len(text)):
        runs.feed(text[i:i + 1])
        if runs.stray:
            break
    assert runs.stray is stray


def test_a_token_that_opens_a_string_is_not_stray() -> None:
    runs = NumberRuns(DEFAULT_DIGITS)
    runs.feed(b'{"a":')
    runs.feed(b'"}}')          # the string opens in this token: the model did not believe a value had ended
    assert not runs.stray
    runs.feed(b"}]")
    assert runs.stray
