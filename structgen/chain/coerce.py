"""Schema-guided coercion: nudge a parsed reply toward a JSON Schema before it is validated.

A hosted model's reply, once parsed, is often right in substance and wrong in form: ``"42"`` for an integer,
``"yes"`` for a boolean, a scalar where the schema wants an array, the object wrapped in a key named after
the schema's title.
``coerce_to_schema`` fixes such shapes where the schema says what was meant, and leaves everything else
alone; it never validates (that happens afterwards, on the coerced value).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..compile import regex_match
from ..compile.ecma_regex import python_pattern
from ..compile.refs import resolve_ref

__all__ = ["coerce_to_schema"]

_NO = object()
_TRUE_WORDS = frozenset({"true", "yes", "y", "on", "1"})
_FALSE_WORDS = frozenset({"false", "no", "n", "off", "0"})
_NULL_WORDS = frozenset({"null", "none", "nil", ""})
_INT_TEXT = re.compile(r"[+-]?\d+(?:\.0*)?")
_FLOAT_TEXT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_MAX_DEPTH = 64


def _is_type(value: Any, name: str) -> bool:
    """JSON Schema's notion of ``value`` being of type ``name`` (1.0 is an integer, True is not)."""
    if name == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and math.isfinite(value) and value.is_integer()
        )
    checks: dict[str, Any] = {
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "string": lambda v: isinstance(v, str),
        "boolean": lambda v: isinstance(v, bool),
        "null": lambda v: v is None,
        "array": lambda v: isinstance(v, list),
        "object": lambda v: isinstance(v, dict),
    }
    check = checks.get(name)
    return bool(check(value)) if check is not None else True


def _same(a: Any, b: Any) -> bool:
    """JSON equality: type-aware for booleans, 1 == 1.0, recursive for containers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and bool(a == b)


def _types(schema: Mapping[str, Any]) -> list[str]:
    """The JSON types a schema allows, inferred from keywords when ``type`` is absent."""
    declared = schema.get("type")
    types = [declared] if isinstance(declared, str) else [t for t in declared or () if isinstance(t, str)]
    if not types:
        if any(k in schema for k in ("properties", "required", "additionalProperties", "patternProperties")):
            types = ["object"]
        elif any(k in schema for k in ("items", "prefixItems")):
            types = ["array"]
    if schema.get("nullable") is True and types and "null" not in types:
        types.append("null")
    return types


def _to_int(value: Any) -> Any:
    if isinstance(value, str) and _INT_TEXT.fullmatch(value.strip()):
        try:
            return int(value.strip().split(".")[0])
        except ValueError:  # more digits than Python converts
            return _NO
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return _NO


def _to_number(value: Any) -> Any:
    if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
        integer = _to_int(value)
        number = integer if integer is not _NO else float(value)
        return number if math.isfinite(number) else _NO
    return _NO


def _to_bool(value: Any) -> Any:
    if isinstance(value, str):
        word = value.strip().lower()
        return True if word in _TRUE_WORDS else False if word in _FALSE_WORDS else _NO
    if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
        return bool(value)
    return _NO


def _to_string(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return json.dumps(value) if isinstance(value, float) and math.isfinite(value) else str(value)
    return _NO


def _to_null(value: Any) -> Any:
    return None if isinstance(value, str) and value.strip().lower() in _NULL_WORDS else _NO


def _embedded_json(value: Any, kind: type) -> Any:
    """A JSON document written as a string where a container is expected (``'{"a": 1}'``)."""
    if isinstance(value, str) and value.strip()[:1] in ("{", "["):
        try:
            loaded = json.loads(value)
        except (ValueError, RecursionError):
            return _NO
        return loaded if isinstance(loaded, kind) else _NO
    return _NO


def _to_array(value: Any) -> Any:
    embedded = _embedded_json(value, list)
    if embedded is not _NO:
        return embedded
    if isinstance(value, tuple):
        return list(value)
    return _NO if value is None or isinstance(value, list) else [value]


def _to_object(value: Any) -> Any:
    embedded = _embedded_json(value, dict)
    if embedded is not _NO:
        return embedded
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
        return value[0]
    return _NO


_CONVERTERS: dict[str, Any] = {
    "integer": _to_int,
    "number": _to_number,
    "boolean": _to_bool,
    "string": _to_string,
    "null": _to_null,
    "array": _to_array,
    "object": _to_object,
}


def _json_type(value: Any) -> str:
    """The JSON type name of a plain value."""
    for name in ("boolean", "null", "integer", "number", "string", "array", "object"):
        if _is_type(value, name):
            return name
    return ""


def _normalise_name(name: Any) -> str:
    return re.sub(r"[^0-9a-z]", "", str(name).lower())


class _Coercer:
    """Schema-guided coercion with $ref resolution against the root schema."""

    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root

    def lookup(self, ref: Any) -> Any:
        """The schema a local ``$ref`` (``#``, ``#/$defs/X``, ``#/definitions/X`` ...) points at."""
        return resolve_ref(self.root, ref) if isinstance(ref, str) else None

    def resolve(self, schema: Any) -> Any:
        """``schema`` with ``$ref`` followed (sibling keywords kept); unresolvable refs stay as they are."""
        for _ in range(_MAX_DEPTH):
            if not isinstance(schema, Mapping) or "$ref" not in schema:
                return schema
            ref = schema["$ref"]
            target = self.lookup(ref)
            if not isinstance(target, Mapping):
                return schema
            implicit = {"title": ref.rsplit("/", 1)[-1]} if "/" in ref else {}  # #/$defs/Person -> Person
            schema = {**implicit, **target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return schema

    # --- fitting: a type-level check, used to pick union branches and to leave good values alone

    def fits(self, value: Any, schema: Any, depth: int = 0) -> bool:
        """Whether ``value`` matches ``schema`` at the level of types, enums and required keys."""
        schema = self.resolve(schema)
        if schema is False:
            return False
        if not isinstance(schema, Mapping) or depth > _MAX_DEPTH:
            return True
        if not all(self.fits(value, sub, depth + 1) for sub in schema.get("allOf") or ()):
            return False
        branches = list(schema.get("anyOf") or ()) + list(schema.get("oneOf") or ())
        if branches and not any(self.fits(value, sub, depth + 1) for sub in branches):
            return False
        return self._fits_keywords(value, schema, depth)

    def _fits_keywords(self, value: Any, schema: Mapping[str, Any], depth: int) -> bool:
        if "const" in schema and not _same(value, schema["const"]):
            return False
        enum = schema.get("enum")
        if isinstance(enum, list) and not any(_same(value, member) for member in enum):
            return False
        types = _types(schema)
        if types and not any(_is_type(value, t) for t in types):
            return False
        if isinstance(value, dict):
            return self._fits_object(value, schema, depth)
        if isinstance(value, list):
            return all(self.fits(item, self._item_schema(schema, i), depth + 1) for i, item in enumerate(value))
        return True

    def _fits_object(self, value: dict[str, Any], schema: Mapping[str, Any], depth: int) -> bool:
        required = schema.get("required")
        if isinstance(required, list) and any(name not in value for name in required):
            return False
        if schema.get("additionalProperties") is False and any(self._property_schema(schema, k) is None for k in value):
            return False
        return all(self.fits(v, self._property_schema(schema, k), depth + 1) for k, v in value.items())

    # --- sub-schemas

    def _property_schema(self, schema: Mapping[str, Any], key: str) -> Any:
        """The schema for property ``key``: properties, then patternProperties, then additionalProperties."""
        properties = schema.get("properties")
        if isinstance(properties, Mapping) and key in properties:
            return properties[key]
        patterns = schema.get("patternProperties")
        for pattern, sub in patterns.items() if isinstance(patterns, Mapping) else ():
            try:
                if regex_match.search(python_pattern(pattern), key):   # a hosted reply's key: bounded in time
                    return sub
            except (ValueError, TypeError):
                continue
        additional = schema.get("additionalProperties")
        return additional if isinstance(additional, Mapping) else None if additional is False else {}

    def _item_schema(self, schema: Mapping[str, Any], index: int) -> Any:
        """The schema for array position ``index`` (prefixItems / tuple-form items, then items)."""
        prefix = schema.get("prefixItems")
        items = schema.get("items")
        if not isinstance(prefix, list) and isinstance(items, list):
            prefix, items = items, schema.get("additionalItems")
        if isinstance(prefix, list) and index < len(prefix):
            return prefix[index]
        return items if isinstance(items, Mapping | bool) else {}

    def nullable(self, schema: Any, depth: int = 0) -> bool:
        """Whether ``schema`` admits null."""
        schema = self.resolve(schema)
        if not isinstance(schema, Mapping) or depth > _MAX_DEPTH:
            return False
        if "null" in _types(schema) or ("const" in schema and schema["const"] is None):
            return True
        if isinstance(schema.get("enum"), list) and None in schema["enum"]:
            return True
        branches = list(schema.get("anyOf") or ()) + list(schema.get("oneOf") or ())
        return any(self.nullable(sub, depth + 1) for sub in branches)

    # --- coercion

    def coerce(self, value: Any, schema: Any, depth: int = 0) -> Any:
        """``value`` nudged toward ``schema``."""
        schema = self.resolve(schema)
        if not isinstance(schema, Mapping) or depth > _MAX_DEPTH:
            return value
        for sub in schema.get("allOf") or ():
            value = self.coerce(value, sub, depth + 1)
        branches = list(schema.get("anyOf") or ()) + list(schema.get("oneOf") or ())
        if branches:
            value = self._coerce_union(value, branches, depth)
        value = self._unwrap_title(value, schema)
        value = self._coerce_type(value, schema, depth)
        return self._snap(value, schema)

    def _coerce_union(self, value: Any, branches: Sequence[Any], depth: int) -> Any:
        """Unchanged if some branch fits already, else the first branch that coerces cleanly."""
        if any(self.fits(value, branch, depth + 1) for branch in branches):
            return value
        for branch in branches:
            coerced = self.coerce(value, branch, depth + 1)
            if self.fits(coerced, branch, depth + 1):
                return coerced
        return value

    def _unwrap_title(self, value: Any, schema: Mapping[str, Any]) -> Any:
        """``{"Person": {...}}`` -> ``{...}`` when the schema (titled Person) wants an object."""
        title = schema.get("title")
        if not isinstance(value, dict) or len(value) != 1 or not isinstance(title, str) or not title.strip():
            return value
        if "object" not in _types(schema):
            return value
        ((key, inner),) = value.items()
        properties = schema.get("properties")
        declared = isinstance(properties, Mapping) and key in properties
        if isinstance(inner, dict) and not declared and _normalise_name(key) == _normalise_name(title):
            return inner
        return value

    def _coerce_type(self, value: Any, schema: Mapping[str, Any], depth: int) -> Any:
        types = _types(schema)
        if not types:
            return self._children(value, schema, depth)
        matched = next((t for t in types if _is_type(value, t)), None)
        if matched == "integer" and isinstance(value, float):
            return int(value)  # 42.0 is a JSON Schema integer; give Python an int
        if matched is not None:
            return self._children(value, schema, depth)
        for name in types:
            converted = _CONVERTERS.get(name, lambda v: _NO)(value)
            if converted is not _NO:
                return self._children(converted, schema, depth)
        return value

    def _children(self, value: Any, schema: Mapping[str, Any], depth: int) -> Any:
        if isinstance(value, dict):
            return self._object(value, schema, depth)
        if isinstance(value, list):
            return [self.coerce(item, self._item_schema(schema, i), depth + 1) for i, item in enumerate(value)]
        return value

    def _object(self, value: dict[str, Any], schema: Mapping[str, Any], depth: int) -> dict[str, Any]:
        result = {}
        for key, item in value.items():
            sub = self._property_schema(schema, key)
            result[key] = item if sub is None else self.coerce(item, sub, depth + 1)
        properties = schema.get("properties")
        required = schema.get("required")
        if isinstance(properties, Mapping) and isinstance(required, list):
            for name in required:
                if isinstance(name, str) and name not in result and self.nullable(properties.get(name)):
                    result[name] = None
        return result

    def _snap(self, value: Any, schema: Mapping[str, Any]) -> Any:
        """Snap onto an enum/const member: same value after type conversion, or same text ignoring case."""
        members = [schema["const"]] if "const" in schema else schema.get("enum")
        if not isinstance(members, list) or any(_same(value, m) for m in members):
            return value
        for member in members:
            if isinstance(member, str) and isinstance(value, str) and member.casefold() == value.strip().casefold():
                return member
            converted = _CONVERTERS.get(_json_type(member), lambda v: _NO)(value)
            if converted is not _NO and _same(converted, member):
                return member
        return value


def coerce_to_schema(value: Any, schema: Mapping[str, Any]) -> Any:
    """Best-effort, schema-guided coercion of a parsed value toward a JSON Schema (dict): "42" -> 42 for
    integer, "3.5" -> 3.5 for number, "true"/"yes" -> True for boolean, a scalar -> [scalar] where an array
    is expected, {"k": v} unwrapping when the model wrapped the object in a single extra key equal to the
    schema title, None for missing nullable... Follows $ref into $defs/definitions, properties, items,
    anyOf/oneOf (first branch that coerces cleanly). Never raises; returns the value unchanged where
    unsure. Validation happens elsewhere (it decides validity, not this function)."""
    if not isinstance(schema, Mapping):
        return value
    try:
        return _Coercer(schema).coerce(value, schema)
    except Exception:  # documented contract: never raises (odd schemas, RecursionError ...)
        return value
