"""OpenAI Batch input lines: one request a line, ``{"custom_id", "method": "POST", "url", "body"}``.

``read_batch_file`` reads a whole file and sorts its lines into requests and problems (the line number and why),
so a job can report every bad line before its first request. A problem's ``custom_id`` is kept where the line had
a unique one, so its error line can be matched to the input; a duplicate's is not (the first line with that id
owns it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidArgument

__all__ = ["URLS", "BatchLine", "LineProblem", "read_batch_file", "sort_lines"]

URLS = ("/v1/chat/completions", "/v1/completions")
"""The request kinds a batch line may name (``url``)."""

MAX_CUSTOM_ID = 512


@dataclass(frozen=True, slots=True)
class BatchLine:
    """One request of a batch: its 1-based ``line`` in the input, ``custom_id``, ``url`` and ``body``."""

    line: int
    custom_id: str
    url: str
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class LineProblem:
    """A line that cannot be run: its 1-based ``line``, its ``custom_id`` where it owns one, ``code`` (a typed
    error's name) and ``reason``."""

    line: int
    custom_id: str | None
    code: str
    reason: str


def read_batch_file(path: Path) -> tuple[list[BatchLine], list[LineProblem]]:
    """The requests and the bad lines of the OpenAI Batch file ``path`` (blank lines are skipped)."""
    try:
        with path.open("rb") as f:
            raw = [(n, _decode(n, data)) for n, data in enumerate(f, start=1)]
    except OSError as exc:
        raise InvalidArgument(f"cannot read {path}: {exc.strerror or exc}") from exc
    return sort_lines(raw)


def sort_lines(raw: list[tuple[int, Any]]) -> tuple[list[BatchLine], list[LineProblem]]:
    """Check decoded lines ``(line number, JSON value or LineProblem)``: shape, known ``url``, unique
    ``custom_id``."""
    lines: list[BatchLine] = []
    problems: list[LineProblem] = []
    seen: dict[str, int] = {}
    for n, item in raw:
        if item is None:
            continue
        if isinstance(item, LineProblem):
            problems.append(item)
            continue
        try:
            line = _shape(n, item)
        except ValueError as exc:
            cid = item.get("custom_id") if isinstance(item, dict) else None
            owned = cid if isinstance(cid, str) and cid and cid not in seen else None
            if owned is not None:
                seen[owned] = n
            problems.append(LineProblem(n, owned, "InvalidArgument", str(exc)))
            continue
        if line.custom_id in seen:
            problems.append(LineProblem(n, None, "InvalidArgument",
                                        f"custom_id {line.custom_id!r} is also on line {seen[line.custom_id]}"))
            continue
        seen[line.custom_id] = n
        lines.append(line)
    return lines, problems


def _decode(n: int, data: bytes) -> Any:
    if not data.strip():
        return None
    try:
        return json.loads(data)
    except UnicodeDecodeError as exc:
        return LineProblem(n, None, "InvalidArgument", f"not UTF-8 (byte {exc.start})")
    except ValueError as exc:
        return LineProblem(n, None, "InvalidArgument", f"not JSON: {exc}")


def _shape(n: int, item: Any) -> BatchLine:
    if not isinstance(item, dict):
        raise ValueError(f"a line must be a JSON object, got {type(item).__name__}")
    cid = item.get("custom_id")
    if not isinstance(cid, str) or not cid:
        raise ValueError("custom_id must be a non-empty string")
    if len(cid) > MAX_CUSTOM_ID:
        raise ValueError(f"custom_id is longer than {MAX_CUSTOM_ID} characters")
    method = item.get("method", "POST")
    if method != "POST":
        raise ValueError(f"method must be POST, got {method!r}")
    url = item.get("url")
    if url not in URLS:
        raise ValueError(f"unknown url {url!r}; use one of {', '.join(URLS)}")
    body = item.get("body")
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    return BatchLine(n, cid, url, body)
