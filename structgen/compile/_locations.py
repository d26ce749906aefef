"""Where an error is: a JSON pointer for a path into a schema, and the first line of an engine's message."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["first_line", "json_pointer"]


def json_pointer(path: Iterable[Any]) -> str:
    """The RFC 6901 pointer of ``path`` (``~`` and ``/`` escaped)."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def first_line(message: str) -> str:
    """The first non-blank line of ``message`` (``message`` itself when it is blank)."""
    return message.strip().splitlines()[0] if message.strip() else message
