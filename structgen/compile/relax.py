"""The relaxation ladder: a JSON Schema that llguidance refuses becomes the closest schema it accepts that admits
every value the original admits (an over-approximation), and ``Relaxation`` records say exactly what the
grammar then leaves to the validator, keyword and JSON pointer.

Rungs, tried only after a strict compile was refused (so the common path pays nothing):

1. llguidance's own approximations: ``coerce_one_of`` (``oneOf`` as ``anyOf``) and ``lenient`` (keywords it
   does not implement are ignored: ``not``, ``if``/``then``/``else``, ``dependentRequired``, ``uniqueItems``,
   unknown ``format`` s, ``min``/``maxProperties`` with optional keys ...);
2. rewrites at the exact node a refusal names, each one widening: drop an unknown ``format``, a ``pattern``
   (or ``patternProperties``, with the ``additionalProperties`` it constrains) that the regex engine rejects,
   ``allOf`` whose intersection is too deep, the sibling keys of a ``$ref`` cycle; an unresolvable ``$ref``
   becomes "any value";
3. the node the refusal locates becomes "any value"; at worst the root does.

An "Unsatisfiable schema" refusal is never relaxed: that schema has no valid value, and it stays a
``SchemaError``. Every output of a relaxed grammar is validated against the full schema and resampled, so a
relaxation costs attempts, never validity.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator
from typing import Any

import llguidance

from ..errors import SchemaError
from ..result import Relaxation
from ._locations import first_line, json_pointer

__all__ = ["Relaxation", "relax_json_schema", "subschemas"]

MAX_RUNGS = 24   # rewrites tried before the root itself is widened to "any value"


_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
_VALUES = frozenset({"const", "enum", "default", "examples", "required", "dependentRequired", "$comment",
                     "description", "title"})


def subschemas(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], dict[str, Any]]]:
    """Every subschema of ``node`` (an object) with its path: the maps under ``properties`` and the like hold
    schemas by name, and values under ``const``, ``enum`` ... are data, not schemas."""
    stack: list[tuple[tuple[Any, ...], Any]] = [(path, node)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, list):
            stack.extend(((*where, i), v) for i, v in enumerate(item))
            continue
        if not isinstance(item, dict):
            continue
        yield where, item
        for key, value in item.items():
            if key in _VALUES:
                continue
            if key in _SCHEMA_MAPS and isinstance(value, dict):
                stack.extend(((*where, key, name), sub) for name, sub in value.items())
            else:
                stack.append(((*where, key), value))


def _ignored_by_lenient(schema: dict[str, Any], messages: list[str]) -> list[Relaxation]:
    """What llguidance's lenient mode reported ignoring, located in the schema."""
    out: list[Relaxation] = []
    text = " ".join(messages)
    keys = set(re.findall(r'"([A-Za-z$]+)"', " ".join(m for m in messages if "Unimplemented keys" in m)))
    formats = set(re.findall(r"Unknown format: (\S*)", text))
    min_max = "min/maxProperties" in text
    for path, node in subschemas(schema):
        for key in node:
            if key in keys:
                out.append(Relaxation(key, json_pointer([*path, key]), "not enforced by the grammar"))
            elif key == "format" and isinstance(node[key], str) and node[key] in formats:
                how = f"unknown format {node[key]!r} not enforced"
                out.append(Relaxation("format", json_pointer([*path, key]), how))
            elif min_max and key in ("minProperties", "maxProperties"):
                out.append(Relaxation(key, json_pointer([*path, key]), "not enforced with optional keys"))
    return out


def _one_of(schema: dict[str, Any]) -> list[Relaxation]:
    return [Relaxation("oneOf", json_pointer([*path, "oneOf"]), "enforced as anyOf (exactly one branch not checked)")
            for path, node in subschemas(schema) if "oneOf" in node]


# ---- rewrites: each takes the message and the schema (changed in place) and returns what it relaxed ----------

Rewrite = Callable[[str, dict[str, Any]], list[Relaxation]]


def _drop_where(schema: dict[str, Any], keep: Callable[[str, Any, dict[str, Any]], bool], how: str) -> list[Relaxation]:
    found: list[Relaxation] = []
    for path, node in list(subschemas(schema)):
        for key in [k for k, v in node.items() if not keep(k, v, node)]:
            del node[key]
            found.append(Relaxation(key, json_pointer([*path, key]), how))
    return found


def _unknown_format(message: str, schema: dict[str, Any]) -> list[Relaxation]:
    m = re.search(r"Unknown format: (\S*)", message)
    if m is None:
        return []
    fmt = m.group(1)
    return _drop_where(schema, lambda k, v, _: not (k == "format" and v == fmt), f"unknown format {fmt!r} left out")


def _regex_engine_ok(pattern: str) -> bool:
    grammar = llguidance.LLMatcher.grammar_from_json_schema({"type": "string", "pattern": pattern})
    return not llguidance.LLMatcher.validate_grammar(grammar)


def _bad_regex(message: str, schema: dict[str, Any]) -> list[Relaxation]:
    if not re.search(r"regex|lookaround|look-around|backreference|class|escape", message, re.I):
        return []
    found: list[Relaxation] = []
    for path, node in list(subschemas(schema)):
        if isinstance(node.get("pattern"), str) and not _regex_engine_ok(node["pattern"]):
            del node["pattern"]
            found.append(Relaxation("pattern", json_pointer([*path, "pattern"]), "the grammar engine cannot "
                                    "express this regex; left to the validator"))
        props = node.get("patternProperties")
        if isinstance(props, dict) and not all(_regex_engine_ok(k) for k in props):
            found += _drop_pattern_properties(path, node, "a key regex the grammar engine cannot express")
        names = node.get("propertyNames")
        if isinstance(names, dict) and isinstance(names.get("pattern"), str) and not _regex_engine_ok(names["pattern"]):
            del node["propertyNames"]
            found.append(Relaxation("propertyNames", json_pointer([*path, "propertyNames"]), "left to the validator"))
    return found


def _drop_pattern_properties(path: tuple[Any, ...], node: dict[str, Any], why: str) -> list[Relaxation]:
    found = [Relaxation("patternProperties", json_pointer([*path, "patternProperties"]), why)]
    del node["patternProperties"]
    if "additionalProperties" in node:   # it constrained the keys no pattern matched: without the patterns, widen it
        del node["additionalProperties"]
        found.append(Relaxation("additionalProperties", json_pointer([*path, "additionalProperties"]),
                                "left out with the patternProperties it complements"))
    return found


def _not_disjoint(message: str, schema: dict[str, Any]) -> list[Relaxation]:
    if "not disjoint" not in message:
        return []
    found: list[Relaxation] = []
    for path, node in list(subschemas(schema)):
        if isinstance(node.get("patternProperties"), dict):
            found += _drop_pattern_properties(path, node, "overlapping key patterns: left to the validator")
    return found


def _deep_intersection(message: str, schema: dict[str, Any]) -> list[Relaxation]:
    if "intersection stack level exceeded" not in message:
        return []
    return _drop_where(schema, lambda k, v, _: not (k == "allOf" and isinstance(v, list)),
                       "an intersection too deep for the grammar: left to the validator")


_KEEP_BESIDE_REF = frozenset({"$ref", "$defs", "definitions", "$id", "$schema", "$anchor", "description", "title",
                              "$comment"})


def _ref_siblings(message: str, schema: dict[str, Any]) -> list[Relaxation]:
    """A $ref cycle through a node that has keys beside its $ref: those keys go (the one the message names
    first; if none is found, beside every $ref)."""
    if "circular references with sibling keys" not in message:
        return []
    m = re.search(r"(#\S*)", message)
    target = m.group(1) if m else None

    def siblings(only_target: bool) -> list[Relaxation]:
        found: list[Relaxation] = []
        for path, node in list(subschemas(schema)):
            ref = node.get("$ref")
            if not isinstance(ref, str) or not set(node) - _KEEP_BESIDE_REF or (
                    only_target and not (target and ref.endswith(target))):
                continue
            for key in [k for k in node if k not in _KEEP_BESIDE_REF]:
                del node[key]
                found.append(Relaxation(key, json_pointer([*path, key]), f"beside a $ref in a cycle ({ref}): left to "
                                        "the validator"))
        return found

    def intersected() -> list[Relaxation]:
        # A cycle through allOf: llguidance intersects the $ref with its siblings. Dropping that branch widens.
        found: list[Relaxation] = []
        for path, node in list(subschemas(schema)):
            branches = node.get("allOf")
            if not isinstance(branches, list):
                continue
            for i in reversed(range(len(branches))):
                ref = branches[i].get("$ref") if isinstance(branches[i], dict) else None
                if isinstance(ref, str) and target and ref.endswith(target) and len(branches) > 1:
                    del branches[i]
                    found.append(Relaxation("allOf", json_pointer([*path, "allOf", i]), f"the branch {ref} closes a "
                                            "cycle: left to the validator"))
        return found

    return siblings(True) or intersected() or siblings(False)


def _unresolvable_ref(message: str, schema: dict[str, Any]) -> list[Relaxation]:
    """A $ref that cannot be resolved here (another document, an $id this compiler does not map) is any value."""
    m = re.search(r"Resource '([^']*)' is not present|Unresolvable[^']*'([^']*)'", message)
    if m is None:
        return []
    resource = (m.group(1) or m.group(2) or "").rstrip("/")
    tail = resource.rsplit("/", 1)[-1]
    found: list[Relaxation] = []
    for path, node in list(subschemas(schema)):
        ref = node.get("$ref")
        if isinstance(ref, str) and (not ref.startswith("#") or (tail and tail in ref)):
            node.clear()
            found.append(Relaxation("$ref", json_pointer([*path, "$ref"]), f"{ref} cannot be resolved here: any value"))
    return found


def _huge_bounds(message: str, schema: dict[str, Any]) -> list[Relaxation]:
    """Numeric bounds past 2**53 (a range llguidance cannot write as a regex) are left out."""
    if "integer range" not in message and "number range" not in message:
        return []
    bounds = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
    return _drop_where(schema, lambda k, v, _: not (k in bounds and isinstance(v, int | float) and abs(v) >= 2**53),
                       "a bound past 2**53 the grammar cannot write: left to the validator")


def _key_regex_sets(message: str, schema: dict[str, Any]) -> list[Relaxation]:
    """Key patterns whose combination the regex engine cannot decide (empty or not): left to the validator."""
    if "regex is empty" not in message:
        return []
    found: list[Relaxation] = []
    named = set(re.findall(r"Regex /(.*?)/\)", message))
    for path, node in list(subschemas(schema)):
        if isinstance(node.get("pattern"), str) and node["pattern"] in named:
            del node["pattern"]
            found.append(Relaxation("pattern", json_pointer([*path, "pattern"]), "combined with this node's other "
                                    "constraints, the regex engine cannot decide it: left to the validator"))
    if found:
        return found
    for path, node in list(subschemas(schema)):
        if isinstance(node.get("patternProperties"), dict):
            found += _drop_pattern_properties(path, node, "key patterns the grammar engine cannot combine")
        if "propertyNames" in node:
            del node["propertyNames"]
            found.append(Relaxation("propertyNames", json_pointer([*path, "propertyNames"]), "left to the validator"))
    return found


_REWRITES: tuple[Rewrite, ...] = (_unknown_format, _bad_regex, _not_disjoint, _deep_intersection, _ref_siblings,
                                  _unresolvable_ref, _huge_bounds, _key_regex_sets)


def _widen_located(message: str, schema: dict[str, Any]) -> tuple[dict[str, Any], list[Relaxation]]:
    """The node the message locates (" at /a/b") becomes "any value"; with no location, the root does."""
    m = re.search(r" at (/\S*)", message)
    if m is not None:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in m.group(1).split("/")[1:]]
        parent: Any = schema
        for part in parts[:-1]:
            parent = parent.get(part) if isinstance(parent, dict) else (
                parent[int(part)] if isinstance(parent, list) and part.isdigit() and int(part) < len(parent) else None)
        last = parts[-1] if parts else None
        if isinstance(parent, dict) and last in parent and isinstance(parent[last], dict) and parent[last]:
            parent[last] = {}
            return schema, [Relaxation("*", m.group(1), f"any value here ({_first_line(message)})")]
    return {}, [Relaxation("*", "", f"any JSON value: the grammar enforces nothing of this schema "
                                    f"({_first_line(message)})")]


def _first_line(message: str) -> str:
    return first_line(message)[:200] if message.strip() else "refused"


def _validate(schema: Any, options: dict[str, Any]) -> tuple[str, bool, list[str]]:
    grammar = llguidance.LLMatcher.grammar_from_json_schema(schema, overrides=options)   # type: ignore[arg-type]
    is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar)
    return grammar, is_error, messages


def relax_json_schema(schema: dict[str, Any], options: dict[str, Any], refusal: str) -> tuple[
        str, tuple[Relaxation, ...], list[str]]:
    """The grammar of the closest over-approximation of ``schema`` that llguidance accepts, what it leaves to the
    validator, and llguidance's messages. ``refusal``: the strict compile's error. ``SchemaError`` when the
    schema cannot be satisfied."""
    if "Unsatisfiable" in refusal:
        raise SchemaError(f"the schema cannot be satisfied: {_first_line(refusal)}")
    dangling = re.search(r"Pointer '([^']*)' does not exist", refusal)
    if dangling:   # a $ref to nothing in this document: a malformed schema, not one to relax
        raise SchemaError(f"$ref to {dangling.group(1)!r}, which does not exist in the schema",
                          pointer=dangling.group(1))
    loose = {**options, "lenient": True, "coerce_one_of": True}
    current = copy.deepcopy(schema)
    done: list[Relaxation] = _one_of(current)
    for _ in range(MAX_RUNGS):
        grammar, is_error, messages = _validate(current, loose)
        if not is_error:
            if any("min/maxProperties" in m for m in messages):
                # What lenient mode makes of these can refuse valid objects (with {"minProperties": 1} and two
                # optional keys, "}" after both); left out, the grammar admits a superset again.
                dropped = _drop_where(current, lambda k, v, _: k not in ("minProperties", "maxProperties"),
                                      "not enforced with optional keys; left to the validator")
                if dropped:
                    done += dropped
                    continue
            return grammar, tuple(done + _ignored_by_lenient(current, messages)), messages
        message = messages[0] if messages else ""
        if "Unsatisfiable" in message:
            raise SchemaError(f"the schema cannot be satisfied: {_first_line(message)}")
        for rewrite in _REWRITES:
            step = rewrite(message, current)
            if step:
                done += step
                break
        else:
            current, step = _widen_located(message, current)
            done += step
            if current == {}:
                grammar, is_error, messages = _validate(current, loose)
                if is_error:   # pragma: no cover - "any value" always compiles
                    raise SchemaError(f"JSON Schema not supported: {_first_line(message)}")
                return grammar, tuple(done), messages
    grammar, _, messages = _validate({}, loose)
    return grammar, (*done, Relaxation("*", "", "any JSON value: too many refusals to relax one by one")), messages
