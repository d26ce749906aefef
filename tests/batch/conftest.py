"""Batch files for the tests: small schemas, few tokens, so a real-model run stays cheap."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PERSON = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 8},
                                           "age": {"type": "integer", "minimum": 0, "maximum": 120}},
          "required": ["name", "age"], "additionalProperties": False}
PEOPLE = [("Ann", 31), ("Bob", 45), ("Cy", 22), ("Dee", 60), ("Eve", 19), ("Fay", 33), ("Gus", 70), ("Hal", 27),
          ("Ida", 52), ("Jo", 41), ("Kim", 38), ("Lu", 29)]


def person_line(cid: str, name: str, age: int, **extra: Any) -> dict[str, Any]:
    """A chat request for a person, constrained by ``PERSON``."""
    return {"custom_id": cid, "method": "POST", "url": "/v1/chat/completions", "body": {
        "messages": [{"role": "user", "content": f"{name} is {age}. Extract the person."}], "max_tokens": 24,
        "temperature": 0, "response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON}},
        **extra}}


def people_file(path: Path, n: int) -> Path:
    """``n`` person lines (ids ``p0``...)."""
    people = [person_line(f"p{i}", *PEOPLE[i % len(PEOPLE)]) for i in range(n)]
    path.write_text("".join(json.dumps(x) + "\n" for x in people))
    return path


def read_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of ``path`` (none if it does not exist)."""
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
