"""How a bench checks a reply: JSON text whose value is valid for its schema (jsonschema, formats checked)."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["checked_value", "is_valid"]


def checked_value(text: str, schema: dict[str, Any]) -> Any:
    """The value of ``text`` if it is JSON valid for ``schema``; else a ``ValueError`` with the first reason."""
    import jsonschema

    value = json.loads(text)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    error = next(iter(cls(schema, format_checker=jsonschema.FormatChecker()).iter_errors(value)), None)
    if error is not None:
        raise ValueError(error.message)
    return value


def is_valid(text: str | None, schema: dict[str, Any]) -> bool:
    """Whether ``text`` is JSON valid for ``schema``."""
    if not isinstance(text, str):
        return False
    try:
        checked_value(text, schema)
    except ValueError:    # json.JSONDecodeError included
        return False
    return True
