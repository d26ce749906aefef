"""The JSON number digit bound on the real model: a number a greedy model would grow without end stops at the
bound, digits inside strings are untouched, and the bound yields to what the grammar requires."""

from __future__ import annotations

import re

import pytest

import structgen
from structgen.errors import InvalidArgument, TruncatedOutput

PI = {"type": "object", "properties": {"pi": {"type": "number"}}, "required": ["pi"]}


def _longest_run(text: str) -> int:
    return max((len(m) for m in re.findall(r"\d+", text)), default=0)


@pytest.mark.parametrize("digits", [3, 8])
def test_a_long_number_stops_at_the_bound(model: structgen.LlamaCpp, digits: int) -> None:
    r = structgen.generate("Write the number pi with 60 decimals.", PI, model=model, max_tokens=96,
                           number_digits=digits)
    assert isinstance(r.value["pi"], float)
    assert _longest_run(r.text) <= digits, r.text


def test_unbounded_the_same_number_loops_to_max_tokens(model: structgen.LlamaCpp) -> None:
    bounded = structgen.generate("Write the number pi with 60 decimals.", PI, model=model, max_tokens=96,
                                 number_digits=8, max_attempts=1)
    assert bounded.value["pi"] > 0
    with pytest.raises(TruncatedOutput) as caught:   # what the bound is for: greedy digits never end
        structgen.generate("Write the number pi with 60 decimals.", PI, model=model, max_tokens=96,
                           number_digits=None, max_attempts=1)
    assert _longest_run(caught.value.partial_text) > 8


def test_digits_in_strings_and_required_digits_are_not_bounded(model: structgen.LlamaCpp) -> None:
    schema = {"type": "object", "properties": {"phone": {"type": "string", "pattern": "^[0-9]{12}$"},
                                               "code": {"type": "integer", "minimum": 10**9}},
              "required": ["phone", "code"]}
    r = structgen.generate("Write a 12-digit phone number and a 10-digit code.", schema, model=model,
                           max_tokens=64, number_digits=2)
    assert len(r.value["phone"]) == 12 and r.value["code"] >= 10**9   # the grammar needs these digits


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_a_bad_bound_is_invalid_argument(model: structgen.LlamaCpp, bad: object) -> None:
    with pytest.raises(InvalidArgument, match="number_digits"):
        structgen.generate("x", PI, model=model, number_digits=bad)  # type: ignore[arg-type]
