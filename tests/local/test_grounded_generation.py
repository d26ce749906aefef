"""Grounded extraction, thinking and verifier selection with the real model (``generate(source=, think=,
select=)``)."""

from __future__ import annotations

import json
from typing import Any

import pydantic
import pytest

import structgen
from structgen.compile.grounding import grounded_values
from structgen.compile.source_text import written_at

DOCUMENT = ("Dear Mr. Daniel Okafor,\nthank you for booking with Hotel Miramar. Your reservation MRM-55821 is "
            "confirmed:\narrival 2025-07-10, 3 nights, double room with sea view.")


class Booking(pydantic.BaseModel):
    guest_name: str
    hotel: str
    confirmation_code: str
    nights: int = pydantic.Field(json_schema_extra={"x-source": "span"})


def test_every_grounded_value_is_a_span_of_the_source_and_spans_point_at_it(model: structgen.LlamaCpp) -> None:
    for seed in range(3):
        r = structgen.generate("Extract the booking.", Booking, model=model, source=DOCUMENT, seed=seed,
                               temperature=0.8, max_tokens=120)
        value = r.value.model_dump()
        items = list(grounded_values(Booking.model_json_schema(), value))
        assert len(items) == 4
        for pointer, item, kind in items:
            assert written_at(DOCUMENT, item, kind) is not None, (pointer, item)
            if kind == "span" and item:
                start, end = r.spans[pointer]
                assert DOCUMENT[start:end] == item
        assert r.value.nights in (3, 55821, 2025)   # only numbers written in the text (not the date's parts)


def test_thinking_comes_first_is_bounded_and_stays_out_of_the_value(model: structgen.LlamaCpp) -> None:
    r = structgen.generate("Extract the booking.", Booking, model=model, source=DOCUMENT, think=12, seed=0,
                           max_tokens=120)
    assert r.reasoning is not None and "</think>" not in r.text
    assert Booking.model_validate_json(r.text) == r.value
    thinking = model.detokenize(r.tokens).split("</think>")[0]
    assert len(model.tokenize(thinking, special=False)) <= 12 + 3   # the budget (+ the opening delimiter)
    assert r.reasoning.strip() == thinking.removeprefix("<think>").strip()


def test_a_scoring_function_chooses_among_the_candidates(model: structgen.LlamaCpp) -> None:
    def shortest(value: Any) -> float:
        return -len(json.dumps(value.model_dump()))

    r = structgen.generate("Extract the booking.", Booking, model=model, source=DOCUMENT, strategy="best_of", n=3,
                           temperature=1.0, seed=1, select=shortest, max_tokens=120)
    assert len(r.candidates) >= 2
    assert shortest(r.value) == max(shortest(c.value) for c in r.candidates)


def test_the_judge_scores_every_candidate_in_one_call_by_the_probability_of_yes(model: structgen.LlamaCpp) -> None:
    scores = structgen.Judge().scorer("Extract the booking.", DOCUMENT, model)
    right = Booking(guest_name="Daniel Okafor", hotel="Hotel Miramar", confirmation_code="MRM-55821", nights=3)
    wrong = Booking(guest_name="Hotel Miramar", hotel="Daniel Okafor", confirmation_code="3", nights=55821)
    p_right, p_wrong = scores([right, wrong])
    assert 0.0 < p_right < 1.0 and 0.0 < p_wrong < 1.0
    assert scores([wrong, right]) == pytest.approx([p_wrong, p_right], abs=1e-3)   # each scored on its own terms
    r = structgen.generate("Extract the booking.", Booking, model=model, source=DOCUMENT, strategy="best_of", n=2,
                           temperature=1.0, seed=3, select=structgen.Judge(), max_tokens=120)
    judged = dict(zip([c.text for c in r.candidates], scores([c.value for c in r.candidates]), strict=True))
    assert judged[r.text] == max(judged.values())


def test_first_finished_stops_the_other_candidates(model: structgen.LlamaCpp) -> None:
    schema = {"type": "array", "items": {"type": "string", "maxLength": 40}, "maxItems": 6}
    r = structgen.generate("List some fruits.", schema, model=model, strategy="best_of", n=4, temperature=1.2,
                           seed=5, select="first_finished", max_tokens=150)
    stopped = [a for a in r.attempts if a.error and "finished first" in a.error]
    assert stopped and len(r.candidates) + len(stopped) <= 4


def test_generate_batch_chooses_by_the_scoring_function_too(model: structgen.LlamaCpp) -> None:
    def longest(value: Any) -> float:
        return len(json.dumps(value))

    schema = {"type": "object", "properties": {"hotel": {"type": "string"}}, "required": ["hotel"]}
    results = structgen.generate_batch(["Which hotel?", "Name the hotel."], schema, model=model, source=DOCUMENT,
                                       strategy="best_of", n=3, temperature=1.0, seed=2, select=longest,
                                       max_tokens=40)
    for r in results:
        assert longest(r.value) == max(longest(c.value) for c in r.candidates)
        assert DOCUMENT[slice(*r.spans["/hotel"])] == r.value["hotel"]
