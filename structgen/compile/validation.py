"""The independent validator of JSON outputs: ``jsonschema`` for the schema's own draft, with every format
jsonschema knows checked (a relaxed grammar may leave formats to it) and every regex match of the value bounded
in time (``regex_match``)."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from . import regex_match

if TYPE_CHECKING:
    import jsonschema

__all__ = ["clip", "json_validator"]


def json_validator(schema: dict[str, Any]) -> Any:
    """A jsonschema validator for ``schema`` (its own draft), with every format checked and bounded regex matches."""
    import jsonschema  # imported on first use: with its format checkers it is a tenth of a second
    from jsonschema.validators import validator_for

    cls = validator_for(schema, default=jsonschema.Draft202012Validator)
    bounded = jsonschema.validators.extend(cls, {"pattern": _bounded_pattern,
                                                 "patternProperties": _bounded_pattern_properties})
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
    """jsonschema's ``pattern``, with the match bounded in time (see ``regex_match``)."""
    import jsonschema

    if not validator.is_type(instance, "string"):
        return
    try:
        if not regex_match.search(pattern, instance):
            yield jsonschema.ValidationError(f"{clip(instance)!r} does not match {pattern!r}")
    except ValueError as exc:
        yield jsonschema.ValidationError(str(exc))


def _bounded_pattern_properties(validator: Any, patterns: dict[str, Any], instance: Any,
                                schema: Any) -> Iterator[Any]:
    """jsonschema's ``patternProperties``, with each key match bounded in time."""
    import jsonschema

    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            try:
                matched = regex_match.search(pattern, key)
            except ValueError as exc:
                yield jsonschema.ValidationError(str(exc))
                continue
            if matched:
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def clip(text: str, limit: int = 200) -> str:
    """``text`` shortened for an error message."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} chars)"
