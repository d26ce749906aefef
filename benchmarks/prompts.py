"""Fixed prompts the model benches share: JSON-extraction prompts (throughput) and a small labelled
classification set (strategies). Fixed text, no randomness: every run and every peer sees the same input."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Extraction:
    """Extract a JSON value matching ``schema`` from ``text``."""

    name: str
    text: str
    schema: dict[str, Any]

    def prompt(self) -> str:
        """The user message every configuration receives (the schema is in the text for all of them)."""
        return (f"Extract the data from the text below as JSON.\n\nText: {self.text}\n\n"
                f"Reply with JSON only, matching this JSON Schema: {json.dumps(self.schema, separators=(',', ':'))}")


def _str(max_length: int) -> dict[str, Any]:
    return {"type": "string", "maxLength": max_length}


def _obj(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


# Bounded strings and arrays: every output can finish well inside the default 256-token budget.
EXTRACTIONS: tuple[Extraction, ...] = (
    Extraction(
        "invoice",
        "Invoice INV-2041 from Acme Tools, dated 2024-03-14: 3 hammers at $12.50 each and 2 saws at $30.00 "
        "each; total due $97.50.",
        _obj({"invoice_number": _str(20), "vendor": _str(40), "date": _str(10),
              "items": {"type": "array", "maxItems": 4,
                        "items": _obj({"name": _str(30), "quantity": {"type": "integer", "minimum": 0},
                                       "unit_price": {"type": "number"}})},
              "total": {"type": "number"}}),
    ),
    Extraction(
        "contact",
        "Dr. Maria Lopez, 42, works as a cardiologist at St. Mary's Hospital in Boston. Reach her at "
        "maria.lopez@stmarys.org or +1 617 555 0199.",
        _obj({"name": _str(40), "age": {"type": "integer", "minimum": 0, "maximum": 130}, "job": _str(40),
              "employer": _str(60), "city": _str(40), "email": _str(60), "phone": _str(20)}),
    ),
    Extraction(
        "event",
        "The PyData Berlin meetup takes place on 12 June 2024 at 18:30 in the Mitte public library. Entry is free "
        "and the room holds at most 80 people.",
        _obj({"title": _str(60), "date": _str(20), "time": _str(5), "venue": _str(60),
              "free": {"type": "boolean"}, "capacity": {"type": "integer", "minimum": 0}}),
    ),
    Extraction(
        "review",
        "I bought the X200 headphones last month. The sound is great and the battery lasts two days, but the "
        "ear cushions get uncomfortable after an hour. Four stars.",
        _obj({"product": _str(40), "sentiment": {"enum": ["positive", "mixed", "negative"]},
              "rating": {"type": "integer", "minimum": 1, "maximum": 5},
              "pros": {"type": "array", "maxItems": 3, "items": _str(40)},
              "cons": {"type": "array", "maxItems": 3, "items": _str(40)}}),
    ),
    Extraction(
        "flight",
        "Your flight LH 401 from Frankfurt (FRA) to New York (JFK) departs on 2 July 2024 at 10:15 and arrives at "
        "12:55 local time. Seat 32A, economy class, one checked bag.",
        _obj({"flight": _str(10), "from": _str(3), "to": _str(3), "date": _str(20), "departure": _str(5),
              "arrival": _str(5), "seat": _str(4), "cabin": {"enum": ["economy", "premium", "business", "first"]},
              "bags": {"type": "integer", "minimum": 0, "maximum": 5}}),
    ),
)


@dataclass(frozen=True, slots=True)
class Labelled:
    """A text to classify into one of ``labels``; ``gold`` is the expected label."""

    text: str
    labels: tuple[str, ...]
    gold: str

    def prompt(self) -> str:
        """The user message."""
        return f"Classify the text. Answer with one label.\n\nText: {self.text}"


_SENTIMENT = ("positive", "negative", "neutral")
_TOPIC = ("sports", "politics", "technology", "health", "business")

CLASSIFICATIONS: tuple[Labelled, ...] = (
    Labelled("The battery died after two days and support never answered my emails.", _SENTIMENT, "negative"),
    Labelled("Absolutely love this blender, smoothies in thirty seconds!", _SENTIMENT, "positive"),
    Labelled("The package arrived on Tuesday.", _SENTIMENT, "neutral"),
    Labelled("Worst hotel stay of my life: noisy, dirty and overpriced.", _SENTIMENT, "negative"),
    Labelled("The staff were friendly and the room was spotless.", _SENTIMENT, "positive"),
    Labelled("The meeting has been moved to 3 pm.", _SENTIMENT, "neutral"),
    Labelled("I regret buying these shoes; they fell apart in a week.", _SENTIMENT, "negative"),
    Labelled("What a fantastic concert, the band was on fire.", _SENTIMENT, "positive"),
    Labelled("The store opens at nine and closes at six.", _SENTIMENT, "neutral"),
    Labelled("This app keeps crashing whenever I open the camera.", _SENTIMENT, "negative"),
    Labelled("The striker scored twice as the home side won the cup final 3-1.", _TOPIC, "sports"),
    Labelled("Parliament passed the budget bill after a late-night vote.", _TOPIC, "politics"),
    Labelled("The new chip doubles battery life in laptops, the company said.", _TOPIC, "technology"),
    Labelled("Doctors recommend at least 150 minutes of exercise a week.", _TOPIC, "health"),
    Labelled("Shares of the retailer fell 8% after weaker quarterly sales.", _TOPIC, "business"),
    Labelled("The tennis champion withdrew from the tournament with a wrist injury.", _TOPIC, "sports"),
    Labelled("The senator announced she will run for governor next year.", _TOPIC, "politics"),
    Labelled("A software update fixes a security flaw in millions of routers.", _TOPIC, "technology"),
    Labelled("A new vaccine cut hospital admissions for flu by a third.", _TOPIC, "health"),
    Labelled("The two airlines agreed to merge in a deal worth $4 billion.", _TOPIC, "business"),
)
