"""The value of a JSON prefix: what a stream shows while a JSON value is still being written.

``parse_prefix`` reads the text a grammar has admitted so far (always a prefix of some valid value) and returns
what is known of the value: complete members and items as parsed, the string being written as its text so far,
and a number or literal being written left out (``12`` may yet become ``125``). ``Partial.incomplete`` is the
JSON pointer of the member being written, so a partial value is always a prefix of the final one: every member
outside ``incomplete`` is final, and the one at ``incomplete`` is a prefix (a string's start, a container's
first members).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["MISSING", "Partial", "PartialToolCall", "parse_prefix"]


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
"""The value of a prefix that holds no value yet (empty, or a number still being written)."""

_SCALAR = re.compile(r"[-+0-9.eE]+|true|false|null|[a-z]+")
_WS = re.compile(r"[ \t\n\r]*")
_LITERALS = {"true": True, "false": False, "null": None}


@dataclass(frozen=True, slots=True)
class Partial:
    """What is known of a JSON value from a prefix of its text."""

    value: Any                   # MISSING when nothing is known yet
    incomplete: str | None       # JSON pointer of the part being written; None: the value is complete


@dataclass(frozen=True, slots=True)
class PartialToolCall:
    """What is known of one tool call while it is being written (see ``structgen.compile.tools.partial_calls``).

    ``index``: its place among the reply's calls. ``name``: the tool, once the grammar has fixed it (None before).
    ``arguments_json``: the arguments' text so far, always a prefix of the final ``ToolCall.arguments_json``.
    ``partial``: their value so far (``Partial``: complete members as parsed, the member being written marked).
    ``complete``: the arguments' JSON has closed."""

    index: int
    name: str | None
    arguments_json: str
    partial: Partial
    complete: bool

    @property
    def arguments(self) -> Any:
        """The arguments known so far (``MISSING`` before any)."""
        return self.partial.value


class _Eof(Exception):
    pass


def parse_prefix(text: str) -> Partial:
    """The value a JSON prefix holds so far (see the module docstring). Text that is not a JSON prefix gives
    ``Partial(MISSING, "")``."""
    reader = _Reader(text)
    try:
        value, complete = reader.value("")
    except (ValueError, IndexError):
        return Partial(MISSING, "")
    return Partial(value, None if complete else reader.incomplete)


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.incomplete: str = ""
        self._marked = False

    def _mark(self, pointer: str) -> None:
        if not self._marked:   # the innermost incomplete part is marked first
            self.incomplete, self._marked = pointer, True

    def _ws(self) -> bool:
        """Skip whitespace; True if text remains."""
        self.pos = _WS.match(self.text, self.pos).end()  # type: ignore[union-attr]
        return self.pos < len(self.text)

    def value(self, pointer: str) -> tuple[Any, bool]:
        if not self._ws():
            self._mark(pointer)
            return MISSING, False
        c = self.text[self.pos]
        if c == "{":
            return self._object(pointer)
        if c == "[":
            return self._array(pointer)
        if c == '"':
            return self._string(pointer)
        match = _SCALAR.match(self.text, self.pos)
        if match is None:
            raise ValueError(f"unexpected {c!r}")
        self.pos = match.end()
        token = match.group()
        if self.pos == len(self.text) and token not in _LITERALS:   # may go on: not known yet
            self._mark(pointer)
            return MISSING, False
        if token in _LITERALS:
            return _LITERALS[token], True
        if not token[0].isdigit() and token[0] != "-":
            self._mark(pointer)
            return MISSING, False   # a literal still being spelled
        return json.loads(token), True

    def _string(self, pointer: str) -> tuple[str, bool]:
        start = self.pos
        i = start + 1
        text = self.text
        while i < len(text):
            c = text[i]
            if c == "\\":
                i += 2
                continue
            if c == '"':
                self.pos = i + 1
                return json.loads(text[start : i + 1]), True
            i += 1
        body = text[start + 1 :]
        body = re.sub(r"\\(u[0-9a-fA-F]{0,3})?$", "", body)   # an escape cut in half
        self.pos = len(text)
        self._mark(pointer)
        return json.loads(f'"{body}"'), False

    def _object(self, pointer: str) -> tuple[dict[str, Any], bool]:
        out: dict[str, Any] = {}
        self.pos += 1
        while True:
            if not self._ws():
                break
            if self.text[self.pos] == "}":
                self.pos += 1
                return out, True
            if self.text[self.pos] == ",":
                self.pos += 1
                continue
            key, complete = self._string(pointer)
            if not complete or not self._ws():
                break
            if self.text[self.pos] != ":":
                raise ValueError("expected ':'")
            self.pos += 1
            child = f"{pointer}/{_escape(key)}"
            value, complete = self.value(child)
            if value is not MISSING:
                out[key] = value
            if not complete:
                return out, False
        self._mark(pointer)
        return out, False

    def _array(self, pointer: str) -> tuple[list[Any], bool]:
        out: list[Any] = []
        self.pos += 1
        while True:
            if not self._ws():
                break
            if self.text[self.pos] == "]":
                self.pos += 1
                return out, True
            if self.text[self.pos] == ",":
                self.pos += 1
                continue
            value, complete = self.value(f"{pointer}/{len(out)}")
            if value is not MISSING:
                out.append(value)
            if not complete:
                return out, False
        self._mark(pointer)
        return out, False


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")
