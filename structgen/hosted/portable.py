"""JSON Schemas in the portable subset that OpenAI-compatible servers' converters take, so that a request of
structgen's never takes a server down.

llama-cpp-python's server turns a ``response_format`` schema into GBNF with its own converter, which passes a
``pattern``'s escapes through as they are: ``\\d`` becomes a GBNF escape llama.cpp does not know, its grammar
parser fails, and the server then segfaults, failing every later request of every client. A careful client
sends only what the server can take:

1. every ``pattern`` (and ``patternProperties`` key) is rewritten without shorthand classes (``\\d`` →
   ``[0-9]``, ``\\w`` → ``[A-Za-z0-9_]``, ``\\s`` → ``[ \\t\\n\\r\\x0C\\x0B]``, their negations, and ``\\f``/``\\v``);
   an unanchored pattern is sent anchored (``^(p)$``: narrower, every string it admits valid, and a small model
   cannot fill a free prefix with chatter); a pattern that cannot be rewritten (look-arounds, back-references,
   ``(?...)`` groups, inline flags, an alternation the anchors do not bind) is left out of the copy sent, and so
   is a ``patternProperties`` with such a key (with its ``additionalProperties``, so that the copy does not
   refuse keys the schema allows); so are length and count
   bounds over ``PORTABLE_MAX_REPEAT`` (llama.cpp writes a bounded repetition out rule by rule, and a
   ``maxLength`` of 32,767 crashed its grammar parser);
2. the copy is converted with llama-cpp-python's own converter and the GBNF checked with llama.cpp's own
   parser, in a child process (it can crash), before anything is sent; if that fails, every pattern is
   left out, and if that still fails no JSON constraint is sent at all (the chain's prompting steps carry
   the schema).

Whatever was left out is still enforced: the chain validates every reply against the full schema.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from llama_cpp.llama_grammar import json_schema_to_gbnf

from .gbnf import llama_accepts

__all__ = ["portable_pattern", "portable_schema"]

_NOT_IN_STRING = '"\\\\\\x0A\\x0D'   # what a negated class leaves out too: a quote, a backslash, line breaks
_OUTSIDE = {"d": "[0-9]", "D": f"[^0-9{_NOT_IN_STRING}]", "w": "[A-Za-z0-9_]", "W": f"[^A-Za-z0-9_{_NOT_IN_STRING}]",
            "s": "[ ]", "S": f"[^ \\t\\n\\r\\x0C\\x0B{_NOT_IN_STRING}]", "f": "\\x0C", "v": "\\x0B"}
_WHITESPACE = " \\t\\n\\r\\x0C\\x0B"
# \s is sent as a space: a tab or a line break written raw inside a JSON string is not JSON.
_INSIDE = {"d": "0-9", "w": "A-Za-z0-9_", "s": " ", "f": "\\x0C", "v": "\\x0B"}
STRING_CHAR = f"[^{_NOT_IN_STRING}]"
"""What ``.`` becomes in the copy sent: llama-cpp-python's converter lets its ``.`` match a double quote inside a
JSON string, so the string need never end and the model writes until ``max_tokens`` (seen on this server).
Quotes and backslashes are left out (narrower only for values that hold them; the client validates anyway)."""

PORTABLE_MAX_REPEAT = 500
"""Largest minLength / maxLength / minItems / maxItems kept in the copy sent (a larger bound is left out)."""
_REPEAT_BOUNDS = frozenset({"minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties"})
_CONVERTER_KEYWORDS = frozenset({
    "type", "properties", "required", "additionalProperties", "patternProperties", "items", "prefixItems",
    "additionalItems", "minItems", "maxItems", "enum", "const", "pattern", "minLength", "maxLength", "format",
    "anyOf", "oneOf", "allOf", "$ref", "$defs", "definitions", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum"})
"""The keywords kept in the copy sent; the others are left out (a node left with none is any value)."""
_ANNOTATIONS = frozenset({"$schema", "$id", "id", "$comment", "title", "description", "default", "examples",
                          "deprecated", "readOnly", "writeOnly"})
_PLAIN_ESCAPES = set("\\^[]-tnr\"")   # escapes the converters and llama.cpp's GBNF parser take as they are
_LITERAL_PUNCTUATION = set("/.$|?*+(){}'")   # escaped punctuation, written as a one-character class


def portable_pattern(pattern: str) -> str | None:
    """``pattern`` rewritten without shorthand classes and anchored at both ends (the converters require it), or
    None where it cannot be written portably. An unanchored JSON Schema pattern matches anywhere; sent as
    ``^(p)$`` it admits fewer strings, each of them valid: the server need only produce *some* valid value, and
    ``^.*(p).*$`` let a small model fill the free prefix with chatter and never reach ``p`` (seen on
    llama_cpp.server: a date-time field that ran to ``max_tokens``)."""
    start = pattern.startswith("^")
    end = pattern.endswith("$") and not _escaped_at(pattern, len(pattern) - 1)
    core = pattern[1 if start else 0: len(pattern) - 1 if end else len(pattern)]
    if not core or ((start or end) and _top_level_alternation(core)):
        return None   # ^a|b$ is (^a)|(b$): the anchors do not bind the whole
    rewritten = _portable_core(core)
    if rewritten is None:
        return None
    return f"^{rewritten}$" if start and end else f"^({rewritten})$"


def _top_level_alternation(pattern: str) -> bool:
    """Whether ``pattern`` has a ``|`` outside every group and class."""
    depth, i, in_class = 0, 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "|" and depth == 0:
            return True
        i += 1
    return False


def _escaped_at(text: str, index: int) -> bool:
    """Whether ``text[index]`` is escaped by an odd run of backslashes before it."""
    run = 0
    while index - run - 1 >= 0 and text[index - run - 1] == "\\":
        run += 1
    return run % 2 == 1


def _portable_core(pattern: str) -> str | None:
    """The body of a pattern (no outer anchors) without shorthand classes; None where that cannot be done."""
    out: list[str] = []
    i, n, in_class, negated = 0, len(pattern), False, False
    while i < n:
        c = pattern[i]
        if c == "\\":
            if i + 1 >= n:
                return None
            nxt = pattern[i + 1]
            table = _INSIDE if in_class else _OUTSIDE
            if in_class and negated and nxt == "s":
                out.append(_WHITESPACE)   # every kind stays left out: narrower, never wider
            elif nxt in table:
                out.append(table[nxt])
            elif nxt in _LITERAL_PUNCTUATION:
                # The converter copies an escape into GBNF as it is, and llama.cpp knows only a few (\. failed its
                # parser): a class holds the character literally instead, and inside a class it needs no escape.
                out.append(nxt if in_class else f"[{nxt}]")
            elif nxt in _PLAIN_ESCAPES:
                out.append(pattern[i:i + 2])
            else:
                return None   # \b, \1, \p{...}, \u..., \x..., negated shorthand inside a class ...
            i += 2
            continue
        if in_class:
            if c == "]":
                in_class = False
                if negated:   # as with ".": the converter's [^x] would let a quote end the JSON string early
                    out.append(_NOT_IN_STRING)
            elif c == "[":
                return None   # a nested set or a POSIX class
        elif c == "[":
            in_class = True
            out.append(c)
            negated = pattern.startswith("^", i + 1)
            if negated:
                out.append("^")
                i += 1
            if pattern.startswith("]", i + 1):
                return None   # a literal ] first in a class: converters read it as the end
            i += 1
            continue
        elif c == "(" and pattern.startswith("?", i + 1):
            return None   # (?:...), (?=...), (?P<name>...), (?i) ...
        elif c in "^$":
            return None   # an anchor inside the pattern
        elif c == ".":
            out.append(STRING_CHAR)
            i += 1
            continue
        out.append(c)
        i += 1
    return None if in_class else "".join(out)


def _rewrite(node: Any, pointer: str, dropped: list[str], strip_all: bool,
             refused: frozenset[str] = frozenset()) -> Any:
    """The copy of ``node`` to send; ``refused``: rewritten patterns the server's converter cannot take."""
    def portable(p: str) -> str | None:
        rewritten = None if strip_all else portable_pattern(p)
        return None if rewritten in refused else rewritten

    if isinstance(node, list):
        return [_rewrite(v, f"{pointer}/{i}", dropped, strip_all, refused) for i, v in enumerate(node)]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        where = f"{pointer}/{key}"
        if key == "pattern" and isinstance(value, str):
            rewritten = portable(value)
            if rewritten is None:
                dropped.append(where)
            else:
                out[key] = rewritten
        elif key == "patternProperties" and isinstance(value, dict):
            keys = {k: portable(k) for k in value}
            if any(v is None for v in keys.values()):
                dropped.append(where)
                if "additionalProperties" in node:
                    dropped.append(f"{pointer}/additionalProperties")
            else:
                out[key] = {keys[k]: _rewrite(v, f"{where}/{k}", dropped, strip_all, refused)
                            for k, v in value.items()}
        elif key in ("properties", "$defs", "definitions", "dependentSchemas") and isinstance(value, dict):
            out[key] = {k: _rewrite(v, f"{where}/{k}", dropped, strip_all, refused) for k, v in value.items()}
        elif key in ("const", "enum", "default", "examples"):
            out[key] = value   # values, not schemas
        elif key in _REPEAT_BOUNDS and isinstance(value, int) and value > PORTABLE_MAX_REPEAT:
            dropped.append(where)   # llama.cpp writes x{0,N} out as N nested rules: 32,767 crashed its parser
        elif key not in _CONVERTER_KEYWORDS:
            # llama-cpp-python's converter asserts on a node it does not recognise ({"description": ...} or a
            # misspelt "OneOf": any value in JSON Schema) and the server then sends no schema at all.
            if key not in _ANNOTATIONS:
                dropped.append(where)
        else:
            out[key] = _rewrite(value, where, dropped, strip_all, refused)
    if f"{pointer}/patternProperties" in dropped:
        out.pop("additionalProperties", None)
    return _converter_shape(out)


_OBJECT_KEYS = frozenset({"properties", "additionalProperties", "patternProperties", "required"})
_COMBINERS = frozenset({"anyOf", "oneOf", "allOf", "$ref", "enum", "const"})


def _converter_shape(node: dict[str, Any]) -> dict[str, Any]:
    """``node`` in the shape llama-cpp-python's converter reads: draft-04's tuple ``items: [...]`` as
    ``prefixItems`` (it raised a KeyError on the list, and on ``items: {}``), and object (array) keywords without
    a ``type`` under ``"type": "object"`` (``"array"``): it asserted on ``{"additionalProperties": true}``. The
    typed form is narrower (the keywords allowed any other type too), which a server-side constraint may be."""
    items = node.get("items")
    if items == {} or items is True:
        del node["items"]            # items of any kind: the converter took the empty schema for a missing one
    elif isinstance(items, list):
        node["prefixItems"] = items
        extra = node.pop("additionalItems", None)
        if isinstance(extra, dict):
            node["items"] = extra
        else:
            del node["items"]
    if "type" not in node and not (node.keys() & _COMBINERS):
        if node.keys() & _OBJECT_KEYS:
            node["type"] = "object"
        elif "items" in node or "prefixItems" in node:
            node["type"] = "array"
    return node


def _llama_cpp_takes(schema: dict[str, Any]) -> bool:
    """Whether llama-cpp-python's converter turns ``schema`` into GBNF that llama.cpp parses."""
    try:
        gbnf = json_schema_to_gbnf(json.dumps(schema))
    except Exception:   # the converter asserts and raises on what it does not handle
        return False
    return llama_accepts(gbnf)


@functools.lru_cache(maxsize=256)
def _portable(key: str) -> tuple[str | None, tuple[str, ...]]:
    schema = json.loads(key)
    dropped: list[str] = []
    candidate = _rewrite(schema, "", dropped, False)   # a new copy: the rewrite never changes its input
    if _llama_cpp_takes(candidate):
        return json.dumps(candidate), tuple(dropped)
    # Some pattern the converter or llama.cpp cannot take: find which, alone, and leave only those out.
    refused = frozenset(p for p in _patterns(candidate) if not _llama_cpp_takes({"type": "string", "pattern": p}))
    for strip_all in ((False, True) if refused else (True,)):
        dropped = []
        candidate = _rewrite(schema, "", dropped, strip_all, refused)
        if _llama_cpp_takes(candidate):
            return json.dumps(candidate), tuple(dropped)
    return None, ("",)


def _patterns(node: Any) -> set[str]:
    """Every ``pattern`` and ``patternProperties`` key in a schema copy."""
    found: set[str] = set()
    if isinstance(node, list):
        for v in node:
            found |= _patterns(v)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str):
                found.add(value)
            elif key == "patternProperties" and isinstance(value, dict):
                found |= set(value)
            if key not in ("const", "enum", "default", "examples"):
                found |= _patterns(value)
    return found


def portable_schema(schema: dict[str, Any]) -> tuple[dict[str, Any] | None, tuple[str, ...]]:
    """The copy of ``schema`` to send as a server-side constraint, and the JSON pointers of what it leaves out;
    ``(None, ("",))`` when no form of it is safe to send."""
    text, dropped = _portable(json.dumps(schema, sort_keys=False))
    return (json.loads(text) if text is not None else None), dropped
