"""What the text-model chain tells a model: the format instruction (a plain-words shape of simple JSON
Schemas, the compact schema otherwise) and the feedback of a re-ask."""

from __future__ import annotations

import json
from typing import Any

from ..compile.refs import follow_refs
from ..compile.schema import CompiledSchema
from ..request import Request

__all__ = ["describe_schema", "feedback", "instruction"]


def instruction(schema: CompiledSchema, fmt: str, schema_in_prompt: bool) -> str | None:
    """What to tell the model about the expected reply."""
    if schema.kind == "json":
        lang = "YAML" if fmt == "yaml" else "JSON"
        if not schema_in_prompt or schema.json_schema is None:
            return f"Reply with {lang} only."
        shape = describe_schema(schema.json_schema)
        if shape is not None:
            return f"Reply with {lang} only: {shape}."
        return f"Reply with {lang} only, for a value matching this JSON Schema: {_compact_schema(schema.json_schema)}"
    if not schema_in_prompt:
        return None
    if schema.kind == "choice":
        return schema.prompt_hint
    if schema.kind == "regex":
        return f"Reply with the answer only; it must fully match the regular expression {schema.regex}"
    if schema.kind == "grammar":
        return f"Reply with the answer only, in the language of this Lark grammar:\n{schema.source}"
    return None


_SHAPE_LIMIT = 800
_PLAIN_KEYWORDS = frozenset({"type", "properties", "required", "items", "enum", "const", "format", "pattern",
                             "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength",
                             "maxLength", "minItems", "maxItems", "uniqueItems", "description", "title",
                             "default", "examples", "$ref", "$defs", "definitions", "$schema", "$id",
                             "additionalProperties"})


def describe_schema(schema: dict[str, Any]) -> str | None:
    """A plain-words shape of a simple JSON Schema ("a JSON object with these keys: city (string), ...").

    Small models copy a JSON Schema back instead of filling it in (measured with SmolLM2-135M: a schema in
    the prompt got the schema echoed; the same keys in words got the object). None for schemas whose
    meaning does not fit in words (combinators, conditionals, pattern keys): they are sent verbatim.
    """
    try:
        text = _shape(schema, schema, 0)
    except _TooComplex:
        return None
    return text if len(text) <= _SHAPE_LIMIT else None


class _TooComplex(Exception):
    """The schema does not fit in plain words."""


def _resolve(node: Any, root: dict[str, Any]) -> Any:
    followed = follow_refs(node, root)
    if followed is None:
        raise _TooComplex(str(node.get("$ref")))
    return followed


def _shape(node: Any, root: dict[str, Any], depth: int) -> str:
    node = _resolve(node, root)
    if node is True or node == {}:
        return "any JSON value"
    if isinstance(node, dict) and set(node) & {"anyOf", "oneOf"} and not set(node) - _PLAIN_KEYWORDS - {
            "anyOf", "oneOf"}:
        branches = node.get("anyOf") or node.get("oneOf")
        if not isinstance(branches, list) or not 0 < len(branches) <= 4:
            raise _TooComplex("union")
        return " or ".join(_shape(b, root, depth + 1) for b in branches) + _notes(node)
    if not isinstance(node, dict) or depth > 3 or set(node) - _PLAIN_KEYWORDS:
        raise _TooComplex("keywords")
    if "const" in node:
        return f"exactly {json.dumps(node['const'])}"
    if isinstance(node.get("enum"), list):
        return "one of " + ", ".join(json.dumps(v) for v in node["enum"])
    types = node.get("type")
    names = [types] if isinstance(types, str) else list(types) if isinstance(types, list) else []
    if "properties" in node and not names:
        names = ["object"]
    if "items" in node and not names:
        names = ["array"]
    if len(names) != 1:
        if not names or any(n in ("object", "array") for n in names):
            raise _TooComplex("type")
        return " or ".join(str(n) for n in names) + _notes(node)
    kind = names[0]
    if kind == "object":
        props = node.get("properties")
        if not isinstance(props, dict) or not props or node.get("additionalProperties") not in (None, False):
            raise _TooComplex("object")
        required = set(node.get("required") or ())
        keys = ", ".join(f"{json.dumps(k)} ({_shape(v, root, depth + 1)}{'' if k in required else ', optional'})"
                         for k, v in props.items())
        return f"a JSON object with these keys: {keys}" if depth == 0 else f"an object with keys {keys}"
    if kind == "array":
        items = node.get("items", {})
        return f"a list of {_shape(items, root, depth + 1)}{_notes(node)}" if isinstance(items, dict) else (
            _raise_complex())
    return f"{kind}{_notes(node)}"


def _raise_complex() -> str:
    raise _TooComplex("tuple items")


_NOTE_WORDS = (("format", "format {}"), ("pattern", "matching {}"), ("minimum", "at least {}"),
               ("maximum", "at most {}"), ("exclusiveMinimum", "above {}"), ("exclusiveMaximum", "below {}"),
               ("minLength", "at least {} characters"), ("maxLength", "at most {} characters"),
               ("minItems", "at least {} items"), ("maxItems", "at most {} items"))


def _notes(node: dict[str, Any]) -> str:
    notes = [template.format(node[k]) for k, template in _NOTE_WORDS if k in node]
    if node.get("uniqueItems") is True:
        notes.append("no duplicates")
    description = node.get("description")
    if isinstance(description, str) and description.strip():
        notes.append(" ".join(description.split())[:80])
    return ", " + ", ".join(notes) if notes else ""


def _compact_schema(schema: dict[str, Any]) -> str:
    return json.dumps(schema, separators=(",", ":"), ensure_ascii=False)


def feedback(error: str, request: Request, finish_reason: str) -> str:
    """The re-ask message after an invalid reply: what was wrong, and what to send instead."""
    what = "YAML" if request.schema.kind == "json" and request.format == "yaml" else (
        "JSON" if request.schema.kind == "json" else "answer")
    cut = " It was cut off at the length limit: keep it short." if finish_reason == "length" else ""
    return f"That reply was not valid: {error}.{cut} Reply again with only the corrected {what}, nothing else."


