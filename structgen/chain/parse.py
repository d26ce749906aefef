"""Defensive parsing of JSON and YAML replies from hosted models that cannot be constrained.

The pipeline is ``find_payload`` (``payload.py``: strip markdown code fences and chatter), then a strict
parse of the payload (``json.loads`` / ruamel.yaml's safe loader), then, with ``repair=True``, syntax repair.

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

import base64
import datetime as _dt
import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import json_repair
from ruamel.yaml import YAML
from ruamel.yaml.constructor import ConstructorError, DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError

from . import _jsonish as jsonish
from .errors import ParseError
from .payload import (
    Format,
    FormatOrAuto,
    Payload,
    check_format,
    extract_payload,
    find_payload,
    first_span,
    is_scalar_word,
    is_strict_json,
    plausible,
)

__all__ = ["Parsed", "extract_payload", "parse_json", "parse_structured", "parse_yaml"]



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


class _Failure(Exception):
    """A parse step failed; ``pos`` indexes the payload (None when unknown), ``kind`` says how."""

    def __init__(self, message: str, pos: int | None = None, *, kind: str = "syntax") -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos
        self.kind = kind


def _line_col(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of ``index`` in ``text``."""
    index = max(0, min(index, len(text)))
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def _error(reply: str, payload: Payload, failure: _Failure, what: str) -> ParseError:
    """A ParseError for ``failure``, located in the whole reply."""
    line = column = None
    if failure.pos is not None:
        line, column = _line_col(reply, payload.offset + failure.pos)
    return ParseError(f"{what}: {failure.message}", text=reply, line=line, column=column)


_MARKUP = re.compile(r"\s*(?:<!doctype\s+html|<html[\s>]|<head[\s>]|<body[\s>]|<\?xml\s)", re.I)


def _reject_unusable(reply: str) -> None:
    """Refuse replies that cannot hold a payload: empty, or an HTML/XML page (an error page)."""
    if not reply.strip():
        raise ParseError("empty reply", text=reply)
    if _MARKUP.match(reply):
        raise ParseError("reply is an HTML/XML document (an error page?), not JSON or YAML", text=reply)


# ---------------------------------------------------------------------------------------------------
# strict loading


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """object_pairs_hook: a key given twice is ambiguous, not silently 'last one wins'."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _Failure(f"duplicate key {key!r}", kind="duplicate")
        result[key] = value
    return result


def _json_load(payload: str) -> Any:
    """Strict JSON (NaN/Infinity pass here and are dealt with by ``_finite``)."""
    try:
        return json.loads(payload, object_pairs_hook=_reject_duplicates)
    except json.JSONDecodeError as exc:
        raise _Failure(exc.msg, exc.pos) from exc
    except (ValueError, RecursionError) as exc:  # e.g. an integer over Python's digit limit
        raise _Failure(str(exc) or type(exc).__name__) from exc


def _yaml_index(payload: str, line: int, column: int) -> int:
    """Index in ``payload`` of a 0-based line/column."""
    pos = 0
    for _ in range(line):
        nxt = payload.find("\n", pos)
        if nxt < 0:
            return len(payload)
        pos = nxt + 1
    return min(pos + column, len(payload))


def _yaml_failure(payload: str, exc: MarkedYAMLError) -> _Failure:
    """A _Failure for a ruamel error, located at its problem mark."""
    mark = exc.problem_mark or exc.context_mark
    pos = None if mark is None else _yaml_index(payload, mark.line, mark.column)
    message = " ".join(str(part) for part in (exc.context, exc.problem) if part) or str(exc).split("\n")[0]
    kind = (
        "unsafe"
        if isinstance(exc, ConstructorError)
        else "duplicate"
        if isinstance(exc, DuplicateKeyError)
        else "syntax"
    )
    return _Failure(message, pos, kind=kind)


def _yaml_load(payload: str) -> Any:
    """ruamel.yaml safe, pure-Python load; every failure becomes a _Failure."""
    try:
        return YAML(typ="safe", pure=True).load(payload)
    except MarkedYAMLError as exc:
        raise _yaml_failure(payload, exc) from exc
    except Exception as exc:  # ruamel raises assorted errors (ValueError for 2024-13-45, ...): none escape
        raise _Failure(f"{type(exc).__name__}: {exc}", kind="value") from exc


_MAX_NODES = 200_000
_MAX_NESTING = 400
_BRACKET = re.compile(r"[\[{]")


def _check_yaml_nesting(payload: str) -> None:
    """Refuse deeply nested flow collections up front (the pure-Python parser is slow, then recurses out)."""
    if len(_BRACKET.findall(payload)) > _MAX_NESTING and jsonish.analyse(payload).depth > _MAX_NESTING:
        raise _Failure(f"nested deeper than {_MAX_NESTING} levels", kind="value")


class _Plain:
    """Converts what the YAML safe loader built into plain JSON-compatible Python."""

    def __init__(self) -> None:
        self.nodes = 0
        self.active: set[int] = set()

    def convert(self, value: Any) -> Any:
        """``value`` as dict/list/str/int/float/bool/None (floats may still be non-finite)."""
        self.nodes += 1
        if self.nodes > _MAX_NODES:
            raise _Failure("YAML aliases expand to too large a value", kind="unsafe")
        if value is None or isinstance(value, bool | int | float | str):
            return value
        if isinstance(value, _dt.date | _dt.time):
            return value.isoformat()
        if isinstance(value, bytes):
            return base64.b64encode(value).decode("ascii")
        if isinstance(value, Mapping | list | tuple | set | frozenset):
            return self._container(value)
        raise _Failure(f"unsupported YAML value of type {type(value).__name__}", kind="unsafe")

    def _container(self, value: Any) -> Any:
        if id(value) in self.active:
            raise _Failure("recursive YAML alias", kind="unsafe")
        self.active.add(id(value))
        try:
            if isinstance(value, Mapping):
                return self._mapping(value)
            items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
            return [self.convert(item) for item in items]
        finally:
            self.active.discard(id(value))

    def _mapping(self, value: Mapping[Any, Any]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, item in value.items():
            name = self._key(key)
            if name in result:
                raise _Failure(f"YAML keys collide as JSON strings: {name!r}", kind="duplicate")
            result[name] = self.convert(item)
        return result

    def _key(self, key: Any) -> str:
        """A mapping key as JSON would write it (``1`` -> ``"1"``, ``true`` -> ``"true"``)."""
        if isinstance(key, str):
            return key
        if key is None or isinstance(key, bool | int | float):
            return json.dumps(key)
        if isinstance(key, _dt.date | _dt.time):
            return key.isoformat()
        return json.dumps(self.convert(key), allow_nan=True)


def _yaml_value(payload: str) -> Any:
    """Strict YAML load converted to plain Python."""
    _check_yaml_nesting(payload)
    return _Plain().convert(_yaml_load(payload))


def _yaml_is_empty(payload: str) -> bool:
    """Whether a YAML payload holds nothing but blank lines, comments and document markers."""
    for line in payload.split("\n"):
        stripped = line.strip()
        if stripped and not stripped.startswith("#") and stripped not in ("---", "..."):
            return False
    return True


def _finite(value: Any) -> tuple[Any, int]:
    """``value`` with NaN/Infinity replaced by None, and how many were replaced."""
    if isinstance(value, float) and not math.isfinite(value):
        return None, 1
    if isinstance(value, dict):
        pairs = [(key, _finite(item)) for key, item in value.items()]
        return {key: item for key, (item, _) in pairs}, sum(n for _, (_, n) in pairs)
    if isinstance(value, list):
        items = [_finite(item) for item in value]
        return [item for item, _ in items], sum(n for _, n in items)
    return value, 0


def _finish(reply: str, payload: Payload, value: Any, fmt: Format, notes: list[str], repair: bool) -> Parsed:
    """The Parsed result, after dealing with non-finite numbers (refused unless repairing)."""
    value, replaced = _finite(value)
    if replaced:
        if not repair:
            message = f"{jsonish.plural(replaced, 'non-finite number')} (NaN/Infinity): not JSON-compatible"
            raise ParseError(message, text=reply)
        notes = [*notes, f"replaced {jsonish.plural(replaced, 'non-finite number')} (NaN/Infinity) with null"]
    return Parsed(value, fmt, bool(notes), payload.notes + tuple(notes), payload.text)


# ---------------------------------------------------------------------------------------------------
# JSON repair


def _close_string(token_text: str) -> str:
    """An unclosed string token closed, without a half-written escape at its end."""
    match = re.search(r"(\\+)(u[0-9a-fA-F]{0,3})?$", token_text)
    if match and len(match.group(1)) % 2 == 1:
        token_text = token_text[: match.end(1) - 1]
    return token_text + token_text[0]


_LITERAL_PREFIXES = (
    ("true", "true"),
    ("false", "false"),
    ("null", "null"),
    ("True", "true"),
    ("False", "false"),
    ("None", "null"),
)


def _complete_word(word: str) -> str | None:
    """A word cut off by truncation completed (``tru`` -> ``true``, ``12.`` -> ``12``); None to drop it."""
    if word in jsonish.JSON_LITERALS or word in jsonish.PY_LITERALS or jsonish.JSON_NUMBER.fullmatch(word):
        return word
    literals = {full for prefix, full in _LITERAL_PREFIXES if prefix.startswith(word)}
    if len(literals) == 1:
        return literals.pop()
    number = jsonish.JSON_NUMBER.match(word)
    if number is not None and re.fullmatch(r"\.?(?:[eE][+-]?)?", word[number.end() :]):
        return number.group()
    return None if word in ("-", "+") else word


def _dangling(tok: jsonish.Tok, index: int, an: jsonish.Analysis) -> bool:
    """Whether a trailing token is left dangling by truncation (separator, key, comment, junk)."""
    return tok.kind in ("comma", "colon", "comment", "other") or index in an.keys


def _trim_tail(payload: str, an: jsonish.Analysis) -> tuple[str, list[str]]:
    """The payload cut back to its last complete value, with the last open string closed."""
    notes: list[str] = []
    cut, tail, index, dropped = len(payload), "", len(an.tokens) - 1, 0
    while index >= 0:
        tok = an.tokens[index]
        if _dangling(tok, index, an):
            cut, index, dropped = tok.start, index - 1, dropped + 1
            continue
        if tok.kind == "str" and not tok.closed:
            cut, tail = tok.start, _close_string(payload[tok.start :])
            notes.append("closed an open string (truncated tail)")
        elif tok.kind == "word" and dropped == 0:
            word = payload[tok.start : tok.end]
            fixed = _complete_word(word)
            if fixed is None:
                cut, index, dropped = tok.start, index - 1, dropped + 1
                continue
            if fixed != word:
                cut, tail = tok.start, fixed
                notes.append(f"completed truncated {word!r} as {fixed} (truncated tail)")
        break
    if dropped:
        notes.insert(0, "dropped an incomplete trailing item (truncated tail)")
    return payload[:cut] + tail, notes


def _complete_truncated(payload: str, an: jsonish.Analysis) -> tuple[str, list[str]]:
    """Close a truncated payload: open string, dangling key/separator, then open brackets in order."""
    text, notes = _trim_tail(payload, an)
    closers = "".join("}" if opener == "{" else "]" for opener in reversed(an.stack))
    if closers:
        notes.append(f"closed {jsonish.plural(len(closers), 'open bracket')} (truncated tail)")
    return text + closers, notes


def _is_truncated(an: jsonish.Analysis) -> bool:
    """Whether the payload stops inside a container, a string or a block comment."""
    last = an.tokens[-1] if an.tokens else None
    return bool(an.stack) or (last is not None and last.kind in ("str", "comment") and not last.closed)


def _replace_words(text: str, an: jsonish.Analysis, words: frozenset[str], replacement: str) -> str:
    """``text`` with every bare-word token in ``words`` replaced (tokens come from ``an``)."""
    pieces, pos = [], 0
    for tok in an.tokens:
        if tok.kind == "word" and text[tok.start : tok.end] in words:
            pieces += [text[pos : tok.start], replacement]
            pos = tok.end
    return "".join(pieces) + text[pos:]


def _has_json_shape(an: jsonish.Analysis, text: str) -> bool:
    """Whether the payload starts like a JSON value at all (JSON-looking bracket, quote, number, literal)."""
    first = next((tok for tok in an.tokens if tok.kind != "comment"), None)
    if first is None:
        return False
    if first.kind == "open":
        return plausible(text, first.start, len(text))
    return first.kind == "str" or (first.kind == "word" and is_scalar_word(text[first.start : first.end]))


def _call_json_repair(text: str) -> Any:
    """json_repair on ``text``; any failure inside it becomes a _Failure."""
    try:
        return json_repair.repair_json(text, return_objects=True, skip_json_loads=True)
    except Exception as exc:  # the library's own errors, RecursionError ...: never let them escape
        raise _Failure(f"json_repair failed ({type(exc).__name__}: {exc})", kind="garbage") from exc


def _load_repaired(text: str) -> tuple[Any, list[str]]:
    """Parse pre-repaired text: as strict JSON if it now is, else through json_repair."""
    try:
        return _json_load(text), []
    except _Failure as failure:
        duplicate = failure.kind == "duplicate"
    if duplicate:  # the duplicate may have been seen before a syntax error further on
        try:
            return json.loads(text), ["kept the last value of a duplicated key"]
        except ValueError:
            pass
    return _call_json_repair(text), []


def _alnum(text: str) -> int:
    return sum(ch.isalnum() for ch in text)


def _check_repair(payload: str, an: jsonish.Analysis, value: Any) -> None:
    """Refuse json_repair results that are not a repair of ``payload`` but a replacement for it."""
    first = next(tok for tok in an.tokens if tok.kind != "comment")
    opener = payload[first.start]
    if first.kind == "open" and not isinstance(value, dict if opener == "{" else list):
        raise _Failure(f"repair turned a {opener!r} payload into a {type(value).__name__}", kind="garbage")
    if value == "" and not (first.kind == "str" and first.end - first.start <= 2):
        raise _Failure("repair found no value in the payload", kind="garbage")
    kept = "".join(payload[tok.start : tok.end] for tok in an.tokens if tok.kind != "comment")
    before, after = _alnum(kept), _alnum(json.dumps(value, ensure_ascii=True))
    if before >= 16 and after < before // 2:
        raise _Failure(f"repair discarded most of the payload ({after} of {before} characters kept)", kind="garbage")


def _count_empty(value: Any) -> int:
    """How many empty strings (keys and values) ``value`` holds."""
    if isinstance(value, str):
        return int(value == "")
    if isinstance(value, dict):
        return sum(int(key == "") + _count_empty(item) for key, item in value.items())
    if isinstance(value, list):
        return sum(_count_empty(item) for item in value)
    return 0


def _repair_json(payload: str) -> tuple[Any, list[str]]:
    """Repair a payload that failed strict parsing; raises _Failure where no honest repair exists."""
    an = jsonish.analyse(payload)
    if not _has_json_shape(an, payload):
        raise _Failure("no JSON value found", kind="garbage")
    if an.depth > _MAX_NESTING:
        raise _Failure(f"nested deeper than {_MAX_NESTING} levels", kind="garbage")
    text, notes = _prerepair(payload, an)
    value, more = _load_repaired(text)
    _check_repair(payload, an, value)
    invented = _count_empty(value) - sum(1 for t in an.tokens if t.kind == "str" and t.end - t.start == 2)
    if invented > 0:
        more.append(f"filled {jsonish.plural(invented, 'missing value')} with an empty string")
    return value, (notes + more) or ["fixed other JSON syntax errors"]


def _prerepair(payload: str, an: jsonish.Analysis) -> tuple[str, list[str]]:
    """What is fixed before json_repair: NaN/Infinity, a truncated tail, a single-quoted scalar."""
    text, notes = payload, []
    if an.issues["non_finite"]:
        text = _replace_words(payload, an, jsonish.NON_FINITE, "null")
        count = jsonish.plural(an.issues["non_finite"], "non-finite number")
        notes.append(f"replaced {count} (NaN/Infinity) with null")
    if _is_truncated(an):
        text, more = _complete_truncated(text, jsonish.analyse(text))
        notes += more
    final = jsonish.analyse(text) if text != payload else an
    if _is_single_quoted_scalar(final, text):
        text = json.dumps(_unquote_single(text.strip()))
    return text, jsonish.issue_notes(final.issues) + notes


def _is_single_quoted_scalar(an: jsonish.Analysis, payload: str) -> bool:
    """Whether the whole payload is one single-quoted string (json_repair turns that into '')."""
    return len(an.tokens) == 1 and an.tokens[0].kind == "str" and payload[an.tokens[0].start] == "'"


def _unquote_single(token_text: str) -> str:
    """The content of a single-quoted string token (closed or not) with JSON escapes decoded."""
    body = token_text[1:-1] if len(token_text) > 1 and token_text.endswith("'") else token_text[1:]
    body = body.replace("\\'", "'").replace('"', '\\"').replace('\\\\"', '\\"')
    try:
        decoded = json.loads(f'"{body}"')
    except ValueError:
        return body
    return decoded if isinstance(decoded, str) else body


def _parse_json_payload(reply: str, payload: Payload, repair: bool) -> Parsed:
    """Strict JSON, else (``repair``) repaired JSON."""
    try:
        value = _json_load(payload.text)
    except _Failure as failure:
        if not repair:
            raise _error(reply, payload, failure, "invalid JSON") from failure
        return _repaired_json(reply, payload, failure)
    return _finish(reply, payload, value, "json", [], repair)


def _repaired_json(reply: str, payload: Payload, strict: _Failure) -> Parsed:
    """The repaired parse; a failed repair is reported at the strict parser's error position."""
    try:
        value, notes = _repair_json(payload.text)
    except _Failure as failure:
        raise _error(reply, payload, strict, f"unparseable JSON ({failure.message})") from failure
    return _finish(reply, payload, value, "json", notes, repair=True)  # notes are never empty here


# ---------------------------------------------------------------------------------------------------
# YAML parse and repair


def _parse_yaml_payload(reply: str, payload: Payload, repair: bool) -> Parsed:
    """Strict YAML, else (``repair``, syntax errors only) repaired YAML."""
    if _yaml_is_empty(payload.text):
        raise ParseError("no YAML document found in the reply", text=reply)
    try:
        value = _yaml_value(payload.text)
    except _Failure as failure:
        if not repair or failure.kind != "syntax":
            raise _error(reply, payload, failure, "invalid YAML") from failure
        return _repaired_yaml(reply, payload, failure)
    return _finish(reply, payload, value, "yaml", [], repair)


def _yaml_candidates(payload: str, failure: _Failure) -> Iterator[tuple[str, list[str]]]:
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
        if not _yaml_is_empty(shorter):
            yield shorter, [*notes, "dropped the incomplete last line (truncated tail)"]


def _first_yaml_repair(payload: str, failure: _Failure, auto: bool) -> tuple[Any, list[str]] | None:
    """The value and notes of the first YAML repair candidate that loads (and, in auto mode, is acceptable)."""
    for text, notes in _yaml_candidates(payload, failure):
        try:
            value = _yaml_value(text)
        except _Failure:
            continue
        if not auto or _acceptable_yaml(value, text):
            return value, notes
    return None


def _repaired_yaml(reply: str, payload: Payload, failure: _Failure) -> Parsed:
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
        value = _yaml_value(payload.text)
    except _Failure as failure:
        if failure.kind == "unsafe":
            raise _error(reply, payload, failure, "invalid YAML") from failure
        return None
    if not _acceptable_yaml(value, payload.text):
        return None
    return _finish(reply, payload, value, "yaml", [], repair)


def _auto_json(reply: str, payload: Payload, repair: bool) -> Parsed:
    """A JSON-looking payload: strict JSON, then YAML (where it reads JSON the same), then repair."""
    try:
        return _finish(reply, payload, _json_load(payload.text), "json", [], repair)
    except _Failure as failure:
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
    if not _yaml_is_empty(payload.text):
        try:
            value = _yaml_value(payload.text)
        except _Failure as exc:
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


def _auto_repair(reply: str, payload: Payload, failure: _Failure | None) -> Parsed | None:
    """Auto-mode repair: the YAML repairs, then JSON repair where the payload has no bracketed span."""
    repaired = _first_yaml_repair(payload.text, failure, auto=True) if failure is not None else None
    if repaired is not None:
        return _finish(reply, payload, repaired[0], "yaml", repaired[1], repair=True)
    if first_span(payload.text, 0, len(payload.text)) is not None:
        return None
    if not _has_json_shape(jsonish.analyse(payload.text), payload.text):
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
