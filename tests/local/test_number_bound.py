"""The JSON number digit bound on the real model: a number a greedy model would grow without end stops at the
bound, digits inside strings are untouched, and the bound yields to what the grammar requires."""

from __future__ import annotations

import re

import pytest

import structgen
from structgen.errors import InvalidArgument, TruncatedOutput
from structgen.local import engine

PI = {"type": "object", "properties": {"pi": {"type": "number"}}, "required": ["pi"]}


def _longest_run(text: str) -> int:
    return max((len(m) for m in re.findall(r"\d+", text)), default=0)


@pytest.mark.parametrize("digits", [3, 8])
def test_a_long_number_stops_at_the_bound(model: structgen.LlamaCpp, digits: int) -> None:
    r = structgen.generate("Write the number pi with 60 decimals.", PI, model=model, max_tokens=96,
                           number_digits=digits)
    assert isinstance(r.value["pi"], float)
    assert _longest_run(r.text) <= digits, r.text


LONG_NUMBERS = ("Write the number pi with 60 decimals.", "Write 1/7 as a decimal number with 60 digits.",
                "Write the number e with 60 decimals.", "Write 2/3 as a decimal number with 60 digits.")


def test_unbounded_a_greedy_number_runs_past_the_bound(model: structgen.LlamaCpp,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """What the bound is for: unbounded, greedy digits run long (here to 16), at worst until max_tokens; the same
    prompts bounded stay within it."""
    monkeypatch.setattr(engine, "MAX_BACK_OFFS", 0)   # the loop's back-off would re-decide a repeat
    schema = {"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]}
    runs = {}
    for digits in (None, 8):
        longest = 0
        for prompt in LONG_NUMBERS:
            try:
                text = structgen.generate(prompt, schema, model=model, max_tokens=96, number_digits=digits,
                                          max_attempts=1).text
            except TruncatedOutput as exc:
                text = exc.partial_text
            longest = max(longest, _longest_run(text))
        runs[digits] = longest
    assert runs[None] > 8 >= runs[8], runs

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
