"""Defensive parsing of JSON and YAML replies from hosted models that cannot be constrained.

The pipeline is ``find_payload`` (``payload.py``: strip markdown code fences and chatter), then a strict
parse of the payload (``loading.py``: ``json.loads`` / ruamel.yaml's safe loader), then, with ``repair=True``,
syntax repair (``repair.py`` for JSON; YAML's here).

JSON repair does the structural part itself (a truncated tail gets its open string closed, a dangling
key or separator dropped and its open brackets closed in the right order; NaN/Infinity become null) and
hands the lexical heavy lifting (single quotes, unquoted keys, trailing commas, comments, Python
literals, missing commas ...) to the well-kept ``json_repair`` library.  json_repair turns anything
into *some* value (prose becomes ``""``, ``{ garbage }`` becomes a list holding a string, ``-Infinity``
becomes ``"Infinity"``), so its output is checked: a reply with no JSON-looking payload, a repair that
changes the top-level container or drops most of the input, and any failure inside the library raise
``ParseError``; every accepted repair is listed in ``Parsed.repairs``.

YAML is loaded with ``YAML(typ="safe", pure=True)`` only (no ``!!python/...`` object construction) and
converted to plain JSON-compatible Python.  Nudging the parsed value toward a schema is ``coerce.py``'s.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import ParseError
from . import _jsonish as jsonish
from .loading import LoadFailure, finite, json_load, line_col, yaml_is_empty, yaml_value
from .payload import (
    Format,
    FormatOrAuto,
    Payload,
    check_format,
    extract_payload,
    find_payload,
    first_span,
    is_strict_json,
)
from .repair import has_json_shape, repair_json

__all__ = ["MAX_REPLY_CHARS", "Parsed", "check_reply_length", "extract_payload", "parse_json", "parse_structured",
           "parse_yaml"]



@dataclass(frozen=True)
class Parsed:
    """A parsed reply: the value, how it was read, and what had to be done to read it."""

    value: Any
    format: Format
    repaired: bool
    repairs: tuple[str, ...]
    source: str


# ---------------------------------------------------------------------------------------------------
# internal failures and error locations


def _error(reply: str, payload: Payload, failure: LoadFailure, what: str) -> ParseError:
    """A ParseError for ``failure``, located in the whole reply."""
    line = column = None
    if failure.pos is not None:
        line, column = line_col(reply, payload.offset + failure.pos)
    return ParseError(f"{what}: {failure.message}", text=reply, line=line, column=column)


_MARKUP = re.compile(r"\s*(?:<!doctype\s+html|<html[\s>]|<head[\s>]|<body[\s>]|<\?xml\s)", re.I)


MAX_REPLY_CHARS = 200_000
"""Longest reply the defensive parser reads (each step is linear; this bounds the seconds a hosted endpoint can
make it spend, ~2 s at worst here). A structured answer that long is a runaway, not a value."""


def check_reply_length(reply: str) -> None:
    """``ParseError`` for a reply longer than ``MAX_REPLY_CHARS`` (before any step reads it)."""
    if len(reply) > MAX_REPLY_CHARS:
        raise ParseError(f"reply of {len(reply):,} characters is longer than the parser reads "
                         f"({MAX_REPLY_CHARS:,})", text=reply[:1000])


def _reject_unusable(reply: str) -> None:
    """Refuse replies that cannot hold a payload: too long, empty, or an HTML/XML page (an error page)."""
    if not isinstance(reply, str):
        raise ParseError(f"a reply must be text, got {type(reply).__name__}", text="")
    check_reply_length(reply)
    if not reply.strip():
        raise ParseError("empty reply", text=reply)
    if _MARKUP.match(reply):
        raise ParseError("reply is an HTML/XML document (an error page?), not JSON or YAML", text=reply)



def _finish(reply: str, payload: Payload, value: Any, fmt: Format, notes: list[str], repair: bool) -> Parsed:
    """The Parsed result, after dealing with non-finite numbers (refused unless repairing)."""
    value, replaced = finite(value)
    if replaced:
        if not repair:
            message = f"{jsonish.plural(replaced, 'non-finite number')} (NaN/Infinity): not JSON-compatible"
            raise ParseError(message, text=reply)
        notes = [*notes, f"replaced {jsonish.plural(replaced, 'non-finite number')} (NaN/Infinity) with null"]
    return Parsed(value, fmt, bool(notes), payload.notes + tuple(notes), payload.text)


# ---------------------------------------------------------------------------------------------------
# JSON repair


def _parse_json_payload(reply: str, payload: Payload, repair: bool) -> Parsed:
    """Strict JSON, else (``repair``) repaired JSON."""
    try:
        value = json_load(payload.text)
    except LoadFailure as failure:
        if not repair:
            raise _error(reply, payload, failure, "invalid JSON") from failure
        return _repaired_json(reply, payload, failure)
    return _finish(reply, payload, value, "json", [], repair)


def _repaired_json(reply: str, payload: Payload, strict: LoadFailure) -> Parsed:
    """The repaired parse; a failed repair is reported at the strict parser's error position."""
    try:
        value, notes = repair_json(payload.text)
    except LoadFailure as failure:
        raise _error(reply, payload, strict, f"unparseable JSON ({failure.message})") from failure
    return _finish(reply, payload, value, "json", notes, repair=True)  # notes are never empty here


# ---------------------------------------------------------------------------------------------------
# YAML parse and repair


def _parse_yaml_payload(reply: str, payload: Payload, repair: bool) -> Parsed:
    """Strict YAML, else (``repair``, syntax errors only) repaired YAML."""
    if yaml_is_empty(payload.text):
        raise ParseError("no YAML document found in the reply", text=reply)
    try:
        value = yaml_value(payload.text)
    except LoadFailure as failure:
        if not repair or failure.kind != "syntax":
            raise _error(reply, payload, failure, "invalid YAML") from failure
        return _repaired_yaml(reply, payload, failure)
    return _finish(reply, payload, value, "yaml", [], repair)


def _yaml_candidates(payload: str, failure: LoadFailure) -> Iterator[tuple[str, list[str]]]:
    """Repaired variants of a YAML payload: tabs in indentation, then without a truncated last line."""
    text, notes = payload, []
    if re.search(r"^ *\t", payload, re.M):
        text = re.sub(r"^[ \t]+", lambda m: m.group().replace("\t", "  "), payload, flags=re.M)
        notes = ["replaced tab indentation with spaces"]
        yield text, notes
    lines = text.rstrip().split("\n")
    fail_line = payload.count("\n", 0, failure.pos) if failure.pos is not None else -1
    if len(lines) > 1 and fail_line >= len(lines) - 1:
        shorter = "\n".join(lines[:-1])
        if not yaml_is_empty(shorter):
            yield shorter, [*notes, "dropped the incomplete last line (truncated tail)"]


def _first_yaml_repair(payload: str, failure: LoadFailure, auto: bool) -> tuple[Any, list[str]] | None:
    """The value and notes of the first YAML repair candidate that loads (and, in auto mode, is acceptable)."""
    for text, notes in _yaml_candidates(payload, failure):
        try:
            value = yaml_value(text)
        except LoadFailure:
            continue
        if not auto or _acceptable_yaml(value, text):
            return value, notes
    return None


def _repaired_yaml(reply: str, payload: Payload, failure: LoadFailure) -> Parsed:
    """The first YAML repair candidate that loads; otherwise the strict error."""
    repaired = _first_yaml_repair(payload.text, failure, auto=False)
    if repaired is None:
        raise _error(reply, payload, failure, "invalid YAML") from failure
    return _finish(reply, payload, repaired[0], "yaml", repaired[1], repair=True)


# ---------------------------------------------------------------------------------------------------
# auto


def _misread_by_yaml(payload: str) -> bool:
    """Whether YAML would silently misread this JSON-ish payload (``//`` comments, None, NaN, Infinity)."""
    an = jsonish.analyse(payload)
    for index, tok in enumerate(an.tokens):
        word = payload[tok.start : tok.end]
        if tok.kind == "comment" and word.startswith("/"):
            return True
        if tok.kind == "word" and index not in an.keys and (word in jsonish.NON_FINITE or word == "None"):
            return True
    return False


_PROSE_WORD = re.compile(r"[^\W\d_]{2,}")


def _is_prose(text: str) -> bool:
    """Whether ``text`` reads as a sentence (three or more words of letters)."""
    return len(_PROSE_WORD.findall(text)) >= 3


_NULL_TEXT = re.compile(r"\b(?:null|Null|NULL)\b|~")


def _acceptable_yaml(value: Any, payload: str) -> bool:
    """In auto mode, YAML must give structure: not prose read as a plain string or as one prose key.

    Refused: a plain string, and a single-key mapping whose key is a sentence and whose value is a
    sentence too (``I cannot help with that: it is against policy.``) or an implicit null
    (``{ this is not json }``).
    """
    if isinstance(value, dict):
        if len(value) != 1:
            return True
        key, item = next(iter(value.items()))
        if not _is_prose(key):
            return True
        if item is None:
            return _NULL_TEXT.search(payload) is not None
        return not (isinstance(item, str) and (_is_prose(item) or item[-1:] in ".!?"))
    return isinstance(value, list | bool | int | float)


def _try_yaml(reply: str, payload: Payload, repair: bool) -> Parsed | None:
    """The strict YAML reading of a JSON-looking ``payload`` if acceptable; unsafe tags raise."""
    try:
        value = yaml_value(payload.text)
    except LoadFailure as failure:
        if failure.kind == "unsafe":
            raise _error(reply, payload, failure, "invalid YAML") from failure
        return None
    if not _acceptable_yaml(value, payload.text):
        return None
    return _finish(reply, payload, value, "yaml", [], repair)


def _auto_json(reply: str, payload: Payload, repair: bool) -> Parsed:
    """A JSON-looking payload: strict JSON, then YAML (where it reads JSON the same), then repair."""
    try:
        return _finish(reply, payload, json_load(payload.text), "json", [], repair)
    except LoadFailure as failure:
        strict = failure
    if not _misread_by_yaml(payload.text):
        parsed = _try_yaml(reply, payload, repair)
        if parsed is not None:
            return parsed
    if not repair:
        raise _error(reply, payload, strict, "invalid JSON") from strict
    return _repaired_json(reply, payload, strict)


def _auto_yaml(reply: str, payload: Payload, repair: bool) -> Parsed:
    """A YAML-looking payload: strict JSON (a bare scalar), strict YAML, then YAML and JSON repair.

    YAML errors other than syntax errors (unsafe tags, duplicate keys, bad dates) are final.
    """
    if is_strict_json(payload.text):
        return _parse_json_payload(reply, payload, repair)
    failure = None
    if not yaml_is_empty(payload.text):
        try:
            value = yaml_value(payload.text)
        except LoadFailure as exc:
            failure = exc
        else:
            if _acceptable_yaml(value, payload.text):
                return _finish(reply, payload, value, "yaml", [], repair)
    if failure is not None and (failure.kind != "syntax" or not repair):
        raise _error(reply, payload, failure, "invalid YAML") from failure
    repaired = _auto_repair(reply, payload, failure) if repair else None
    if repaired is not None:
        return repaired
    if failure is not None:
        raise _error(reply, payload, failure, "invalid YAML") from failure
    raise ParseError("no JSON or YAML structure found in the reply", text=reply)


def _auto_repair(reply: str, payload: Payload, failure: LoadFailure | None) -> Parsed | None:
    """Auto-mode repair: the YAML repairs, then JSON repair where the payload has no bracketed span."""
    repaired = _first_yaml_repair(payload.text, failure, auto=True) if failure is not None else None
    if repaired is not None:
        return _finish(reply, payload, repaired[0], "yaml", repaired[1], repair=True)
    if first_span(payload.text, 0, len(payload.text)) is not None:
        return None
    if not has_json_shape(jsonish.analyse(payload.text), payload.text):
        return None
    return _parse_json_payload(reply, payload, repair=True)


# ---------------------------------------------------------------------------------------------------
# public parse functions


def _too_deep(reply: str) -> ParseError:
    """The error for a reply that exhausted Python's recursion limit somewhere on the way."""
    return ParseError("reply is nested too deeply to parse", text=reply)


def parse_json(text: str, *, repair: bool = True) -> Parsed:
    """Parse a model reply as JSON: fences/chatter stripped, then strict, then (``repair``) repaired."""
    _reject_unusable(text)
    try:
        return _parse_json_payload(text, find_payload(text, "json"), repair)
    except RecursionError as exc:
        raise _too_deep(text) from exc


def parse_yaml(text: str, *, repair: bool = True) -> Parsed:
    """Parse a model reply as YAML (safe loader only); a bare scalar document is returned as is."""
    _reject_unusable(text)
    try:
        return _parse_yaml_payload(text, find_payload(text, "yaml"), repair)
    except RecursionError as exc:
        raise _too_deep(text) from exc


def parse_structured(text: str, *, format: FormatOrAuto = "auto", repair: bool = True) -> Parsed:
    """auto: try strict JSON on the extracted payload, then YAML, then JSON repair.

    In auto mode YAML must yield structure (a mapping, a sequence or a non-string scalar): prose that
    YAML would read as a plain string is refused with ParseError.
    """
    check_format(format)
    if format == "json":
        return parse_json(text, repair=repair)
    if format == "yaml":
        return parse_yaml(text, repair=repair)
    _reject_unusable(text)
    try:
        payload = find_payload(text, "auto")
        if payload.kind == "json":
            return _auto_json(text, payload, repair)
        return _auto_yaml(text, payload, repair)
    except RecursionError as exc:
        raise _too_deep(text) from exc
