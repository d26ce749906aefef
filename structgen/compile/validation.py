"""The independent validator of JSON outputs: ``jsonschema`` for the schema's own draft, with every format
jsonschema knows checked (a relaxed grammar may leave formats to it) and every regex match of the value bounded
in time (``regex_match``) and read with ECMA-262 semantics, as JSON Schema and the grammar engine read it
(``ecma_regex``)."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from . import regex_match
from .ecma_regex import python_pattern

if TYPE_CHECKING:
    import jsonschema

__all__ = ["clip", "json_validator"]


def json_validator(schema: dict[str, Any]) -> Any:
    """A jsonschema validator for ``schema`` (its own draft), with every format checked and bounded regex matches."""
    import jsonschema  # imported on first use: with its format checkers it is a tenth of a second
    from jsonschema.validators import validator_for

    cls = validator_for(schema, default=jsonschema.Draft202012Validator)
    overrides = {"pattern": _bounded_pattern, "patternProperties": _bounded_pattern_properties,
                 "additionalProperties": _bounded_additional_properties}
    if "unevaluatedProperties" in cls.VALIDATORS:
        overrides["unevaluatedProperties"] = _bounded_unevaluated_properties
    bounded = jsonschema.validators.extend(cls, overrides)
    # Every format jsonschema knows, whatever the draft: a draft-04 schema may still say "iri" or "uuid", and a
    # format the validator skips is a format nobody enforces once the grammar has relaxed it.
    return bounded(schema, format_checker=_format_checker(cls))


@functools.cache
def _format_checker(cls: Any) -> jsonschema.FormatChecker:
    """The schema's own draft's format checks, then 2020-12's, then any other format jsonschema knows."""
    import jsonschema

    checker = jsonschema.FormatChecker(formats=())
    newest = jsonschema.Draft202012Validator.FORMAT_CHECKER.checkers
    checker.checkers = {**jsonschema.FormatChecker().checkers, **newest, **cls.FORMAT_CHECKER.checkers}
    return checker


def _bounded_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[Any]:
    """jsonschema's ``pattern``: ECMA-262 semantics (``\\d`` is ASCII, ``$`` the very end), the match bounded in
    time (see ``regex_match``)."""
    import jsonschema

    if not validator.is_type(instance, "string"):
        return
    try:
        if not regex_match.search(python_pattern(pattern), instance):
            yield jsonschema.ValidationError(f"{clip(instance)!r} does not match {pattern!r}")
    except ValueError as exc:
        yield jsonschema.ValidationError(str(exc))


def _bounded_pattern_properties(validator: Any, patterns: dict[str, Any], instance: Any,
                                schema: Any) -> Iterator[Any]:
    """jsonschema's ``patternProperties``, each key matched as ``_bounded_pattern`` matches a value."""
    import jsonschema

    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            try:
                matched = regex_match.search(python_pattern(pattern), key)
            except ValueError as exc:
                yield jsonschema.ValidationError(str(exc))
                continue
            if matched:
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _bounded_additional_properties(validator: Any, extra_schema: Any, instance: Any, schema: Any) -> Iterator[Any]:
    """jsonschema's ``additionalProperties``, with "matched by a ``patternProperties`` key" decided as
    ``_bounded_pattern_properties`` decides it (jsonschema's own test is an unbounded Python ``re.search``)."""
    import jsonschema

    if not validator.is_type(instance, "object"):
        return
    known = schema.get("properties", {})
    patterns = schema.get("patternProperties", {})
    extras: list[str] = []
    for key in instance:
        if key in known:
            continue
        try:
            if _matches_any(patterns, key):
                continue
        except ValueError as exc:
            yield jsonschema.ValidationError(str(exc))
            return
        extras.append(key)
    if validator.is_type(extra_schema, "object"):
        for key in extras:
            yield from validator.descend(instance[key], extra_schema, path=key)
    elif not extra_schema and extras:
        yield jsonschema.ValidationError(f"additional properties are not allowed: {_listed(extras)}")


def _bounded_unevaluated_properties(validator: Any, extra_schema: Any, instance: Any, schema: Any) -> Iterator[Any]:
    """``unevaluatedProperties``: the keys no adjacent or in-place keyword evaluated must be valid under
    ``extra_schema``. jsonschema's own finds the evaluated keys with an unbounded Python ``re.search`` on every
    ``patternProperties`` key; ``_evaluated_keys`` matches as ``_bounded_pattern_properties`` does."""
    import jsonschema

    if not validator.is_type(instance, "object"):
        return
    try:
        evaluated = _evaluated_keys(validator, instance, schema)
    except ValueError as exc:   # a match past its time limit: the object is not verified
        yield jsonschema.ValidationError(str(exc))
        return
    left = [k for k in instance if k not in evaluated and not _valid(validator, instance[k], extra_schema, k)]
    if left:
        what = "not allowed" if extra_schema is False else "not valid under their schema"
        yield jsonschema.ValidationError(f"unevaluated properties are {what}: {_listed(left)}")


def _listed(keys: list[str], shown: int = 10) -> str:
    """Object keys for an error message: the first ``shown`` in order, each clipped, and how many more."""
    head = ", ".join(repr(clip(k, 60)) for k in sorted(keys)[:shown])
    return head + (f" and {len(keys) - shown} more" if len(keys) > shown else "")


def _matches_any(patterns: Any, key: str) -> bool:
    """Whether ``key`` matches one of the (ECMA-262) ``patterns``; ``MatchTimeout`` past the time limit."""
    return any(regex_match.search(python_pattern(p), key) for p in patterns)


def _valid(validator: Any, instance: Any, schema: Any, path: str | None = None) -> bool:
    return next(iter(validator.descend(instance, schema, path=path)), None) is None


def _evaluated_keys(validator: Any, instance: dict[str, Any], schema: Any) -> set[str]:
    """The keys of ``instance`` that ``schema`` evaluates (JSON Schema 2020-12 section 11.3): by its
    ``properties``, ``patternProperties``, ``additionalProperties`` and ``unevaluatedProperties``, and by the
    in-place subschemas that hold (``$ref``, ``$dynamicRef``, ``allOf``, ``anyOf``, ``oneOf``, ``if`` /
    ``then`` / ``else``, ``dependentSchemas``). A pattern match past its time limit raises ``MatchTimeout``."""
    if not isinstance(schema, dict):
        return set()
    keys: set[str] = set()
    for ref_keyword in ("$ref", "$dynamicRef"):
        ref = schema.get(ref_keyword)
        if isinstance(ref, str):
            resolved = validator._resolver.lookup(ref)
            inner = validator.evolve(schema=resolved.contents, _resolver=resolved.resolver)
            keys |= _evaluated_keys(inner, instance, resolved.contents)
    properties = schema.get("properties")
    if isinstance(properties, dict):
        keys |= properties.keys() & instance.keys()
    patterns = schema.get("patternProperties")
    if isinstance(patterns, dict):
        keys |= {k for k in instance if _matches_any(patterns, k)}
    for keyword in ("additionalProperties", "unevaluatedProperties"):
        if keyword in schema:
            keys |= {k for k, v in instance.items() if _valid(validator, v, schema[keyword])}
    dependent = schema.get("dependentSchemas")
    if isinstance(dependent, dict):
        for name, sub in dependent.items():
            if name in instance:
                keys |= _evaluated_keys(validator, instance, sub)
    for keyword in ("allOf", "anyOf", "oneOf"):
        subs = schema.get(keyword)
        for sub in subs if isinstance(subs, list) else ():
            if _valid(validator, instance, sub):
                keys |= _evaluated_keys(validator, instance, sub)
    if "if" in schema:
        if _valid(validator, instance, schema["if"]):
            keys |= _evaluated_keys(validator, instance, schema["if"])
            keys |= _evaluated_keys(validator, instance, schema.get("then"))
        else:
            keys |= _evaluated_keys(validator, instance, schema.get("else"))
    return keys


def clip(text: str, limit: int = 200) -> str:
    """``text`` shortened for an error message."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} chars)"
