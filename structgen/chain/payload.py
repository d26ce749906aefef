"""Where the payload is in a model's reply: code fences, chatter around it, bracket spans.

``find_payload`` returns the part of a reply that a JSON or YAML parser should read (``Payload``: its text,
its offset in the reply, so that errors point into the reply, and notes on what was stripped). Reading the
payload is ``parse.py``'s, which also uses the predicates here to tell a JSON-looking span from prose.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from typing import Literal

from ..errors import InvalidArgument
from . import _jsonish as jsonish

Format = Literal["json", "yaml"]
FormatOrAuto = Literal["json", "yaml", "auto"]


@dataclass(frozen=True)
class Payload:
    """The part of a reply that gets parsed, where it starts, and what was stripped around it."""

    text: str
    offset: int
    notes: tuple[str, ...]
    kind: Format


def check_format(fmt: str) -> None:
    """Refuse an unknown ``format`` argument."""
    if fmt not in ("json", "yaml", "auto"):
        raise InvalidArgument(f"format must be 'json', 'yaml' or 'auto', not {fmt!r}")


@dataclass(frozen=True)
class _Fence:
    """A markdown code fence: its language, body bounds, outer bounds, and whether it was closed."""

    lang: str
    body_start: int
    body_end: int
    outer_start: int
    outer_end: int
    closed: bool


_FENCE_OPEN = re.compile(r"^(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n`]*?)[ \t]*\r?$", re.M)
_JSON_LANGS = frozenset({"json", "json5", "jsonc", "jsonl", "javascript", "js"})
_YAML_LANGS = frozenset({"yaml", "yml"})


def _fences(text: str) -> list[_Fence]:
    """Every code fence in ``text``; an unclosed fence runs to the end."""
    found: list[_Fence] = []
    pos = 0
    while (match := _FENCE_OPEN.search(text, pos)) is not None:
        fence = match.group("fence")
        lang = (match.group("info").split() or [""])[0].lower()
        body_start = min(match.end() + 1, len(text))
        closing = re.compile(rf"^[ \t]{{0,3}}{re.escape(fence[0])}{{{len(fence)},}}[ \t]*\r?$", re.M)
        close = closing.search(text, body_start)
        if close is None:
            found.append(_Fence(lang, body_start, len(text), match.start(), len(text), closed=False))
            break
        found.append(_Fence(lang, body_start, close.start(), match.start(), close.end(), closed=True))
        pos = close.end()
    return found


def _pick_fence(text: str, fmt: FormatOrAuto) -> _Fence | None:
    """The fence holding the payload: one labelled for ``fmt``, else an unlabelled one, else the first."""
    fences = _fences(text)
    wanted = _JSON_LANGS if fmt == "json" else _YAML_LANGS if fmt == "yaml" else frozenset()
    for accept in (lambda f: f.lang in wanted, lambda f: f.lang == "", lambda f: True):
        for fence in fences:
            if accept(fence):
                return fence
    return None


@dataclass(frozen=True)
class _Region:
    """Where to look for the payload (a fence body or the whole reply) and what was stripped to get it."""

    start: int
    end: int
    notes: tuple[str, ...]
    outer_chatter: bool
    fenced: bool


def _region(text: str, fmt: FormatOrAuto) -> tuple[_Region, str]:
    """The region to search, and the fence's language ('' when unfenced or unlabelled)."""
    fence = _pick_fence(text, fmt)
    if fence is None:
        return _Region(0, len(text), (), False, False), ""
    note = "stripped code fence" if fence.closed else "stripped unclosed code fence"
    outside = text[: fence.outer_start] + text[fence.outer_end :]
    return _Region(fence.body_start, fence.body_end, (note,), bool(outside.strip()), True), fence.lang


def _payload(text: str, region: _Region, start: int, end: int, kind: Format) -> Payload:
    """The payload ``text[start:end]``, noting chatter stripped around it."""
    inner = text[region.start : start] + text[end : region.end]
    notes = region.notes
    if region.outer_chatter or inner.strip():
        notes += ("stripped surrounding text",)
    return Payload(text[start:end], start, notes, kind)


def _strip_bounds(text: str, start: int, end: int) -> tuple[int, int]:
    """``start``/``end`` moved past surrounding whitespace."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def is_strict_json(candidate: str) -> bool:
    """Whether ``candidate`` is valid JSON as it stands."""
    try:
        json.loads(candidate)
    except (ValueError, RecursionError):
        return False
    return True


def plausible(text: str, start: int, end: int | None = None) -> bool:
    """Whether the bracket at ``start`` opens JSON rather than prose such as ``[see below]``.

    Looks at the two tokens after the bracket only (``end`` bounds the text they may come from), so it
    costs the same on a 100 KB reply as on a short one."""
    limit = len(text) if end is None else end
    toks = list(itertools.islice((tok for tok in jsonish.tokens(text, start + 1, limit) if tok.kind != "comment"), 2))
    if not toks:
        return True
    first, word = toks[0], text[toks[0].start : toks[0].end]
    if first.kind in ("str", "close") or (first.kind == "open" and text[start] == "["):
        return True
    if first.kind != "word":
        return False
    if text[start] == "{":
        return len(toks) > 1 and toks[1].kind == "colon"
    return is_scalar_word(word)


def is_scalar_word(word: str) -> bool:
    """Whether a bare word reads as a JSON/Python scalar (number, literal, NaN ...)."""
    return (word in jsonish.JSON_LITERALS or word in jsonish.PY_LITERALS or word in jsonish.NON_FINITE
            or bool(jsonish.LOOSE_NUMBER.fullmatch(word)))


_MAX_CANDIDATES = 256
_OPENER = re.compile(r"[{\[]")


def first_span(text: str, start: int, end: int) -> tuple[int, int] | None:
    """The first JSON-looking bracketed span in ``text[start:end]`` (to ``end`` when truncated)."""
    region = text[:end]
    pos = start
    # Plausibility first (two tokens), the span only for the one plausible opener: linear in the reply.
    for _ in range(_MAX_CANDIDATES):
        match = _OPENER.search(region, pos)
        if match is None:
            return None
        if plausible(region, match.start()):
            return match.start(), jsonish.match_span(region, match.start())
        pos = match.start() + 1
    return None


def _json_payload(text: str, region: _Region, span: tuple[int, int] | None = None) -> Payload:
    """The JSON payload in ``region``: all of it if valid, else its first JSON-looking span, else all."""
    start, end = _strip_bounds(text, region.start, region.end)
    if is_strict_json(text[start:end]):
        return _payload(text, region, start, end, "json")
    span = span or first_span(text, start, end)
    if span is not None:
        start, end = _strip_bounds(text, *span)
    return _payload(text, region, start, end, "json")


# --- YAML bodies and chatter lines

_CHATTER_WORDS = re.compile(
    r"\b(?:here|here's|below|following|sure|certainly|yaml|json|output|answer|response|result)\b", re.I
)
_LABEL_WORDS = frozenset({"Answer", "Output", "Result", "Response", "Reply", "Here", "Sure", "Final"})


def _is_chatter_label(label: str) -> bool:
    """Whether ``label`` (text before a colon) is chatter such as "Here is the JSON" or "Answer".

    Short labels count only when capitalised like prose ("Answer", not the YAML key "answer") or when
    they name the format ("JSON", "yaml output").
    """
    words = label.split()
    if len(words) >= 3:
        return _CHATTER_WORDS.search(label) is not None
    if re.search(r"json|yaml", label, re.I):
        return True
    return bool(words) and words[0] in _LABEL_WORDS


_YAML_LINE = re.compile(r"""^\s*(?:[-?:](?:\s|$)|[{\[]|(?:"(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|[^\s#'"][^#]*?):(?:\s|$))""")


def _is_chatter(line: str, next_line: str | None = None) -> bool:
    """Whether a line at column 0 reads as prose around a YAML document rather than YAML."""
    stripped = line.strip()
    if not stripped or line[0].isspace() or not stripped[0].isalpha():
        return False
    if ": " in stripped or " #" in stripped:
        return False
    words = stripped.split()
    if stripped.endswith(":"):
        nested = next_line is not None and next_line[:1].isspace()
        return _is_chatter_label(stripped[:-1]) and (len(words) >= 3 or not nested)
    return stripped[-1] in ".!?" or len(words) >= 3


def _is_yaml_line(line: str) -> bool:
    """Whether a line shows YAML structure (a key, a list item, a flow collection) and is not chatter."""
    return bool(_YAML_LINE.match(line)) and not _is_chatter(line)


def _line_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """(start, end) of each line of ``text[start:end]`` (split on newlines only, not on U+2028 etc.)."""
    spans, pos = [], start
    while pos <= end:
        stop = text.find("\n", pos, end)
        stop = end if stop < 0 else stop
        spans.append((pos, stop))
        pos = stop + 1
    return spans


def _document_lines(text: str, lines: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Lines from a ``---`` that only prose precedes, up to a ``...`` end marker."""
    body = [text[s:e].rstrip() for s, e in lines]
    for i, line in enumerate(body):
        if line == "---" or line.startswith("--- "):
            if not any(_is_yaml_line(prev) for prev in body[:i]):
                lines, body = lines[i:], body[i:]
            break
    for i, line in enumerate(body):
        if line == "...":
            return lines[: i + 1]
    return lines


def _strip_chatter(text: str, lines: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Drop prose lines before and after the YAML document (only while YAML structure remains).

    Each line is classified once and the "structure remains" test reads running counts, so a reply of many
    lines costs linear time (it was quadratic: a hosted endpoint chooses the reply)."""
    lines = _trim_blank(text, lines)
    seen = [0]   # seen[i]: YAML-looking lines among lines[:i]
    for s, e in lines:
        seen.append(seen[-1] + _is_yaml_line(text[s:e]))

    def blank(i: int) -> bool:
        return not text[slice(*lines[i])].strip()

    lo, hi = 0, len(lines)
    while hi - lo > 1:
        if not _is_chatter(text[slice(*lines[lo])], text[slice(*lines[lo + 1])]) or seen[hi] == seen[lo + 1]:
            break
        lo += 1
        while lo < hi and blank(lo):
            lo += 1
    while hi - lo > 1 and _is_chatter(text[slice(*lines[hi - 1])]) and seen[hi - 1] > seen[lo]:
        hi -= 1
        while hi > lo and blank(hi - 1):
            hi -= 1
    return lines[lo:hi]


def _trim_blank(text: str, lines: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``lines`` without blank lines at either end."""
    begin, end = 0, len(lines)
    while begin < end and not text[slice(*lines[begin])].strip():
        begin += 1
    while end > begin and not text[slice(*lines[end - 1])].strip():
        end -= 1
    return lines[begin:end]


def _yaml_payload(text: str, region: _Region) -> Payload:
    """The YAML document in ``region``: a fenced body as is, an unfenced one without chatter."""
    lines = _line_spans(text, region.start, region.end)
    if not region.fenced:
        lines = _strip_chatter(text, _document_lines(text, lines))
    lines = _trim_blank(text, lines)
    if not lines:
        return _payload(text, region, region.start, region.start, "yaml")
    end = lines[-1][1]
    while end > lines[0][0] and text[end - 1].isspace():
        end -= 1
    return _payload(text, region, lines[0][0], end, "yaml")


# --- auto: JSON or YAML?

_QUOTED_KEY_LINE = re.compile(r"""\s*(?:-\s+)*(?:"(?:[^"\\]|\\.)*"|'(?:[^']|'')*')\s*:(?:\s|$)""")
_LIST_ITEM = re.compile(r"\s*[-?:](?:\s|$)")  # list item, explicit key or value
_PLAIN_KEY = r"""(?:[^\s\-?:,\[\]{}#&*!|>'"%@`]|[-?:](?=\S))(?:[^:\n]|:(?=\S))*?"""
_YAML_PREFIX = re.compile(
    rf"""\s*(?:-\s+)*(?:(?P<key>"[^"]*"|'[^']*'|{_PLAIN_KEY})\s*:\s+)?(?P<props>(?:[!&]\S*\s+)*)"""
)


def _yaml_around(text: str, start: int, span_start: int) -> bool:
    """Whether the JSON-looking span at ``span_start`` sits inside a YAML document (``key: [1, 2]``)."""
    line_start = text.rfind("\n", start, span_start) + 1 or start
    prefix = text[max(line_start, start) : span_start]
    line_end = text.find("\n", span_start)
    if _QUOTED_KEY_LINE.match(text, line_start, line_end if line_end >= 0 else len(text)):
        return True
    if _LIST_ITEM.match(prefix):
        return True
    match = _YAML_PREFIX.fullmatch(prefix)
    if match is not None and match.group("props"):
        return True
    key = match.group("key") if match is not None else None
    if key is not None and not _is_chatter_label(key) and len(key.split()) < 3:
        return True
    return any(_is_yaml_line(line) for line in text[start:line_start].split("\n"))


def _auto_payload(text: str) -> Payload:
    """The payload for ``format="auto"``, with the format it most likely is."""
    start, end = _strip_bounds(text, 0, len(text))
    if is_strict_json(text[start:end]):
        return Payload(text[start:end], start, (), "json")
    region, lang = _region(text, "auto")
    if lang in _JSON_LANGS:
        return _json_payload(text, region)
    if lang in _YAML_LANGS:
        return _yaml_payload(text, region)
    body_start, body_end = _strip_bounds(text, region.start, region.end)
    span = first_span(text, body_start, body_end)
    if span is not None and not _yaml_around(text, body_start, span[0]):
        return _json_payload(text, region, span)
    return _yaml_payload(text, region)


def find_payload(text: str, fmt: FormatOrAuto) -> Payload:
    """The payload of ``text`` for ``fmt``."""
    if fmt == "json":
        start, end = _strip_bounds(text, 0, len(text))
        if is_strict_json(text[start:end]):
            return Payload(text[start:end], start, (), "json")
        return _json_payload(text, _region(text, "json")[0])
    if fmt == "yaml":
        return _yaml_payload(text, _region(text, "yaml")[0])
    return _auto_payload(text)


def extract_payload(text: str, format: FormatOrAuto = "auto") -> str:
    """Strip markdown code fences (```json ... ```, ```yaml, ~~~) and chatter ("Sure! Here is the JSON: ...",
    trailing explanations); return the first complete JSON object/array (bracket matching that respects
    strings and escapes) or, for YAML, the fenced block / the document body."""
    check_format(format)
    return find_payload(text, format).text
