"""The nesting bound of a JSON Schema: deeper schemas are refused before any recursive step can overflow."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import SchemaError
from ._locations import json_pointer

__all__ = ["MAX_SCHEMA_DEPTH", "check_depth", "nesting"]

MAX_SCHEMA_DEPTH = 128
"""Deepest nesting of objects and arrays a JSON Schema may have (real-world schemas stay under ~30); deeper ones
are refused up front, before any recursive step (serialising, meta-validation, the grammar compiler) can
overflow the stack."""

_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_OPENING, _CLOSING = (ord("{"), ord("[")), (ord("}"), ord("]"))


def nesting(text: str) -> int:
    """How deeply the brackets of the JSON ``text`` nest (brackets inside strings ignored): no node of the value
    it encodes is nested deeper. Vectorised: walking a large schema in Python costs milliseconds."""
    chars = np.frombuffer(_JSON_STRING.sub("", text).encode(), dtype=np.uint8)
    steps = np.isin(chars, _OPENING).astype(np.int32) - np.isin(chars, _CLOSING)
    return int(np.cumsum(steps).max(initial=0))


def check_depth(schema: Mapping[str, Any], text: str | None = None) -> None:
    """``SchemaError`` at the first node of ``schema`` nested deeper than ``MAX_SCHEMA_DEPTH``. ``text``: the
    schema serialised, when at hand; it rules most schemas out at once."""
    if text is not None and (text.count("{") + text.count("[") <= MAX_SCHEMA_DEPTH
                             or nesting(text) <= MAX_SCHEMA_DEPTH):
        return
    stack: list[tuple[Any, int, tuple[Any, ...]]] = [(schema, 0, ())]   # iterative: no recursion
    while stack:
        node, depth, path = stack.pop()
        if depth > MAX_SCHEMA_DEPTH:
            raise SchemaError(f"the JSON Schema is nested deeper than {MAX_SCHEMA_DEPTH} levels",
                              pointer=json_pointer(path[:8]) + ("/…" if len(path) > 8 else ""))
        if isinstance(node, Mapping):
            stack.extend((v, depth + 1, (*path[:9], k)) for k, v in node.items())
        elif isinstance(node, list | tuple):
            stack.extend((v, depth + 1, (*path[:9], i)) for i, v in enumerate(node))
