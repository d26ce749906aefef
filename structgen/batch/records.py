"""Batch lines for users without a batch file: records (JSONL, CSV or a folder of .txt files) and one schema.

Each record's text becomes the user message after ``prompt`` (and, with ``source``, the grounding source every
plain string of the value is copied from); its id becomes the ``custom_id``. The lines are the chat requests
``structgen serve`` would take, so the rest of a job is the same as for an OpenAI Batch file.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidArgument
from .lines import BatchLine, LineProblem, sort_lines

__all__ = ["RecordSpec", "read_records"]


@dataclass(frozen=True)
class RecordSpec:
    """How records become requests: the JSON ``schema``, the instruction ``prompt`` put before each text, the
    record fields holding the text and the id (a record without an id field is numbered by its line), whether
    the text is also the grounding ``source``, and ``max_tokens`` / ``temperature`` for every request."""

    schema: dict[str, Any]
    prompt: str
    text_field: str = "text"
    id_field: str = "id"
    source: bool = False
    max_tokens: int = 512
    temperature: float = 0.0

    def body(self, text: str) -> dict[str, Any]:
        """The chat request body for one record's ``text``."""
        body: dict[str, Any] = {
            "messages": [{"role": "user", "content": f"{self.prompt}\n\n{text}" if self.prompt else text}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "output", "schema": self.schema}},
            "max_tokens": self.max_tokens, "temperature": self.temperature,
        }
        if self.source:
            body["source"] = text
        return body


def read_records(path: Path, spec: RecordSpec) -> tuple[list[BatchLine], list[LineProblem]]:
    """The batch lines for the records at ``path``: a folder of ``.txt`` files (id: the file name without
    ``.txt``; line: its place in name order), a ``.csv`` file (with a header row) or a JSONL file of objects."""
    if path.is_dir():
        raw = _folder(path, spec)
    elif path.suffix.lower() == ".csv":
        raw = _csv(path, spec)
    else:
        raw = _jsonl(path, spec)
    return sort_lines(raw)


def _line(n: int, spec: RecordSpec, record: Any) -> Any:
    if not isinstance(record, dict):
        return LineProblem(n, None, "InvalidArgument", f"a record must be an object, got {type(record).__name__}")
    text = record.get(spec.text_field)
    if not isinstance(text, str) or not text.strip():
        return LineProblem(n, None, "InvalidArgument", f"no text in field {spec.text_field!r}")
    cid = record.get(spec.id_field, str(n))
    if isinstance(cid, int) and not isinstance(cid, bool):
        cid = str(cid)
    return {"custom_id": cid, "method": "POST", "url": "/v1/chat/completions", "body": spec.body(text)}


def _jsonl(path: Path, spec: RecordSpec) -> list[tuple[int, Any]]:
    out: list[tuple[int, Any]] = []
    for n, data in enumerate(_read(path).splitlines(), start=1):
        if not data.strip():
            continue
        try:
            record = json.loads(data)
        except ValueError as exc:
            out.append((n, LineProblem(n, None, "InvalidArgument", f"not JSON: {exc}")))
            continue
        out.append((n, _line(n, spec, record)))
    return out


def _csv(path: Path, spec: RecordSpec) -> list[tuple[int, Any]]:
    rows = csv.DictReader(_read(path).splitlines(keepends=True))
    if rows.fieldnames is None or spec.text_field not in rows.fieldnames:
        raise InvalidArgument(f"{path}: the header row has no column {spec.text_field!r}")
    # Line numbers count the header: row i of the data is line i + 1 (a quoted field spanning lines aside).
    return [(rows.line_num, _line(rows.line_num, spec, row)) for row in rows]


def _folder(path: Path, spec: RecordSpec) -> list[tuple[int, Any]]:
    files = sorted(p for p in path.iterdir() if p.suffix == ".txt" and p.is_file())
    if not files:
        raise InvalidArgument(f"{path}: no .txt files in the folder")
    return [(n, _line(n, spec, {spec.text_field: _read(p), spec.id_field: p.stem}))
            for n, p in enumerate(files, start=1)]


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"{path} is not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
    except OSError as exc:
        raise InvalidArgument(f"cannot read {path}: {exc.strerror or exc}") from exc
