"""Syntax repair of JSON payloads: the structural part done here (a truncated tail closed, a dangling key or
separator dropped, brackets closed in order), the lexical part handed to the ``json_repair`` library and its
output checked (see ``parse.py``'s docstring for what is refused)."""

from __future__ import annotations

import json
import re
from typing import Any

import json_repair

from . import _jsonish as jsonish
from .loading import MAX_NESTING, LoadFailure, json_load
from .payload import is_scalar_word, plausible

__all__ = ["has_json_shape", "repair_json"]


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


def has_json_shape(an: jsonish.Analysis, text: str) -> bool:
    """Whether the payload starts like a JSON value at all (JSON-looking bracket, quote, number, literal)."""
    first = next((tok for tok in an.tokens if tok.kind != "comment"), None)
    if first is None:
        return False
    if first.kind == "open":
        return plausible(text, first.start, len(text))
    return first.kind == "str" or (first.kind == "word" and is_scalar_word(text[first.start : first.end]))


def _call_json_repair(text: str) -> Any:
    """json_repair on ``text``; any failure inside it becomes a LoadFailure."""
    try:
        return json_repair.repair_json(text, return_objects=True, skip_json_loads=True)
    except Exception as exc:  # the library's own errors, RecursionError ...: never let them escape
        raise LoadFailure(f"json_repair failed ({type(exc).__name__}: {exc})", kind="garbage") from exc


def _load_repaired(text: str) -> tuple[Any, list[str]]:
    """Parse pre-repaired text: as strict JSON if it now is, else through json_repair."""
    try:
        return json_load(text), []
    except LoadFailure as failure:
        duplicate = failure.kind == "duplicate"
    if duplicate:  # the duplicate may have been seen before a syntax error further on
        try:
            return json.loads(text), ["kept the last value of a duplicated key"]
        except (ValueError, RecursionError):
            pass
    return _call_json_repair(text), []


def _alnum(text: str) -> int:
    return sum(ch.isalnum() for ch in text)


def _check_repair(payload: str, an: jsonish.Analysis, value: Any) -> None:
    """Refuse json_repair results that are not a repair of ``payload`` but a replacement for it."""
    first = next(tok for tok in an.tokens if tok.kind != "comment")
    opener = payload[first.start]
    if first.kind == "open" and not isinstance(value, dict if opener == "{" else list):
        raise LoadFailure(f"repair turned a {opener!r} payload into a {type(value).__name__}", kind="garbage")
    if value == "" and not (first.kind == "str" and first.end - first.start <= 2):
        raise LoadFailure("repair found no value in the payload", kind="garbage")
    kept = "".join(payload[tok.start : tok.end] for tok in an.tokens if tok.kind != "comment")
    before, after = _alnum(kept), _alnum(json.dumps(value, ensure_ascii=True))
    if before >= 16 and after < before // 2:
        raise LoadFailure(f"repair discarded most of the payload ({after} of {before} characters kept)", kind="garbage")


def _count_empty(value: Any) -> int:
    """How many empty strings (keys and values) ``value`` holds."""
    if isinstance(value, str):
        return int(value == "")
    if isinstance(value, dict):
        return sum(int(key == "") + _count_empty(item) for key, item in value.items())
    if isinstance(value, list):
        return sum(_count_empty(item) for item in value)
    return 0


def repair_json(payload: str) -> tuple[Any, list[str]]:
    """Repair a payload that failed strict parsing; raises LoadFailure where no honest repair exists."""
    an = jsonish.analyse(payload)
    if not has_json_shape(an, payload):
        raise LoadFailure("no JSON value found", kind="garbage")
    if an.depth > MAX_NESTING:
        raise LoadFailure(f"nested deeper than {MAX_NESTING} levels", kind="garbage")
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
