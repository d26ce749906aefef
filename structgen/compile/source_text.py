"""What a source text holds for grounded extraction: its numbers, its dates, the labels of its "Label: value" lines,
and where a given value is written in it (``structgen.compile.grounding``)."""

from __future__ import annotations

import datetime
import re
from typing import Any

__all__ = ["LABEL", "NUMBER", "json_numbers", "locate", "source_dates", "written_at", "written_numbers"]

LABEL = re.compile(r"(?m)^[ \t]*(?:[-*•][ \t]*)?([^\W\d][^:\n]{0,39}):(?=[ \t]|$)")
"""The label of a "Label: value" line (a field name in the document, never a value)."""
NUMBER = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\w])")

_MONTHS = {name: i + 1 for i, names in enumerate(
    ["january jan", "february feb", "march mar", "april apr", "may", "june jun", "july jul", "august aug",
     "september sep sept", "october oct", "november nov", "december dec"]) for name in names.split()}
_MONTH = r"(" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_DAY = r"(\d{1,2})(?:st|nd|rd|th)?"
_DATE_FORMS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b(\d{4})[-/](\d{1,2})[-/](\d{1,2})\b"), "ymd"),
    (re.compile(r"\b(\d{1,2})[./](\d{1,2})[./](\d{4})\b"), "dmy"),
    (re.compile(rf"\b{_DAY}\s+{_MONTH},?\s+(\d{{4}})\b", re.IGNORECASE), "dMy"),
    (re.compile(rf"\b{_MONTH}\s+{_DAY},?\s+(\d{{4}})\b", re.IGNORECASE), "Mdy"),
)


def source_dates(source: str) -> list[tuple[str, int, int]]:
    """Dates written in ``source`` as ``(ISO date, start, end)``: 2025-02-12, 12.02.2025 and 12/02/2025 (day first,
    and month first too where that is a date), 12 February 2025, February 12, 2025 (English month names)."""
    found: list[tuple[str, int, int]] = []
    for pattern, order in _DATE_FORMS:
        for m in pattern.finditer(source):
            a, b, c = m.groups()
            if order == "ymd":
                candidates = [(a, b, c)]
            elif order == "dmy":
                candidates = [(c, b, a), (c, a, b)]
            elif order == "dMy":
                candidates = [(c, str(_MONTHS[b.lower()]), a)]
            else:
                candidates = [(c, str(_MONTHS[a.lower()]), b)]
            for y, mo, d in candidates:
                try:
                    found.append((datetime.date(int(y), int(mo), int(d)).isoformat(), m.start(), m.end()))
                except ValueError:
                    continue
    return found


def locate(source: str, text: str) -> tuple[int, int] | None:
    """Offsets ``(start, end)`` of the first occurrence of ``text`` in ``source`` (whitespace runs may differ); None
    when it does not occur. The empty string is at (0, 0)."""
    if text == "":
        return 0, 0
    at = source.find(text)
    if at >= 0:
        return at, at + len(text)
    words = text.split()
    if not words:
        return None
    m = re.search(r"\s+".join(map(re.escape, words)), source)
    return (m.start(), m.end()) if m else None


def written_at(source: str, item: Any, kind: str) -> tuple[int, int] | None:
    """Where a grounded value of ``kind`` ("span", "number", "date") is written in ``source``."""
    if kind == "number":
        return next(((m.start(), m.end()) for m in NUMBER.finditer(source)
                     if float(m.group().replace(",", "")) == float(item)), None)
    if kind == "date":
        return next(((start, end) for iso, start, end in source_dates(source) if iso == item), None)
    return locate(source, item)


def written_numbers(source: str) -> list[str]:
    """The numbers written in ``source`` (thousands commas removed), those inside a written date left out: a day or
    a year is part of the date, not a quantity of its own."""
    in_date = {i for _, start, end in source_dates(source) for i in range(start, end)}
    return sorted({m.group().replace(",", "") for m in NUMBER.finditer(source) if m.start() not in in_date},
                  key=float)


def json_numbers(text: str) -> set[str]:
    """JSON literals of a number written as ``text`` (commas removed): as written, where that is JSON, and its
    shortest form (``12.50`` → ``12.50``, ``12.5``)."""
    try:
        value = float(text)
    except ValueError:
        return set()
    forms = {str(int(value)) if "." not in text else repr(value)}
    if value.is_integer():
        forms.add(str(int(value)))
    if not text.lstrip("-").startswith("0") or text.lstrip("-").startswith("0."):
        forms.add(text)
    return forms
