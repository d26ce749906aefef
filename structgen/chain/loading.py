"""Strict loading of a JSON or YAML payload (``json.loads`` refusing duplicate keys; ruamel.yaml's safe,
pure loader with bounds on size and nesting), and the ``LoadFailure`` every loading or repair step raises."""

from __future__ import annotations

import base64
import datetime as _dt
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.constructor import ConstructorError, DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError

from . import _jsonish as jsonish

__all__ = ["MAX_NESTING", "LoadFailure", "finite", "json_load", "line_col", "yaml_is_empty", "yaml_value"]


class LoadFailure(Exception):
    """A parse step failed; ``pos`` indexes the payload (None when unknown), ``kind`` says how."""

    def __init__(self, message: str, pos: int | None = None, *, kind: str = "syntax") -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos
        self.kind = kind


def line_col(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of ``index`` in ``text``."""
    index = max(0, min(index, len(text)))
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """object_pairs_hook: a key given twice is ambiguous, not silently 'last one wins'."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise LoadFailure(f"duplicate key {key!r}", kind="duplicate")
        result[key] = value
    return result


def json_load(payload: str) -> Any:
    """Strict JSON (NaN/Infinity pass here and are dealt with by ``finite``)."""
    try:
        return json.loads(payload, object_pairs_hook=_reject_duplicates)
    except json.JSONDecodeError as exc:
        raise LoadFailure(exc.msg, exc.pos) from exc
    except (ValueError, RecursionError) as exc:  # e.g. an integer over Python's digit limit
        raise LoadFailure(str(exc) or type(exc).__name__) from exc


def _yaml_index(payload: str, line: int, column: int) -> int:
    """Index in ``payload`` of a 0-based line/column."""
    pos = 0
    for _ in range(line):
        nxt = payload.find("\n", pos)
        if nxt < 0:
            return len(payload)
        pos = nxt + 1
    return min(pos + column, len(payload))


def _yaml_failure(payload: str, exc: MarkedYAMLError) -> LoadFailure:
    """A LoadFailure for a ruamel error, located at its problem mark."""
    mark = exc.problem_mark or exc.context_mark
    pos = None if mark is None else _yaml_index(payload, mark.line, mark.column)
    message = " ".join(str(part) for part in (exc.context, exc.problem) if part) or str(exc).split("\n")[0]
    kind = (
        "unsafe"
        if isinstance(exc, ConstructorError)
        else "duplicate"
        if isinstance(exc, DuplicateKeyError)
        else "syntax"
    )
    return LoadFailure(message, pos, kind=kind)


def _yaml_load(payload: str) -> Any:
    """ruamel.yaml safe, pure-Python load; every failure becomes a LoadFailure."""
    try:
        return YAML(typ="safe", pure=True).load(payload)
    except MarkedYAMLError as exc:
        raise _yaml_failure(payload, exc) from exc
    except Exception as exc:  # ruamel raises assorted errors (ValueError for 2024-13-45, ...): none escape
        raise LoadFailure(f"{type(exc).__name__}: {exc}", kind="value") from exc


_MAX_NODES = 200_000
MAX_NESTING = 400
_BRACKET = re.compile(r"[\[{]")


def _check_yaml_nesting(payload: str) -> None:
    """Refuse deeply nested flow collections up front (the pure-Python parser is slow, then recurses out)."""
    if len(_BRACKET.findall(payload)) > MAX_NESTING and jsonish.analyse(payload).depth > MAX_NESTING:
        raise LoadFailure(f"nested deeper than {MAX_NESTING} levels", kind="value")


class _Plain:
    """Converts what the YAML safe loader built into plain JSON-compatible Python."""

    def __init__(self) -> None:
        self.nodes = 0
        self.active: set[int] = set()

    def convert(self, value: Any) -> Any:
        """``value`` as dict/list/str/int/float/bool/None (floats may still be non-finite)."""
        self.nodes += 1
        if self.nodes > _MAX_NODES:
            raise LoadFailure("YAML aliases expand to too large a value", kind="unsafe")
        if value is None or isinstance(value, bool | int | float | str):
            return value
        if isinstance(value, _dt.date | _dt.time):
            return value.isoformat()
        if isinstance(value, bytes):
            return base64.b64encode(value).decode("ascii")
        if isinstance(value, Mapping | list | tuple | set | frozenset):
            return self._container(value)
        raise LoadFailure(f"unsupported YAML value of type {type(value).__name__}", kind="unsafe")

    def _container(self, value: Any) -> Any:
        if id(value) in self.active:
            raise LoadFailure("recursive YAML alias", kind="unsafe")
        self.active.add(id(value))
        try:
            if isinstance(value, Mapping):
                return self._mapping(value)
            items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
            return [self.convert(item) for item in items]
        finally:
            self.active.discard(id(value))

    def _mapping(self, value: Mapping[Any, Any]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, item in value.items():
            name = self._key(key)
            if name in result:
                raise LoadFailure(f"YAML keys collide as JSON strings: {name!r}", kind="duplicate")
            result[name] = self.convert(item)
        return result

    def _key(self, key: Any) -> str:
        """A mapping key as JSON would write it (``1`` -> ``"1"``, ``true`` -> ``"true"``)."""
        if isinstance(key, str):
            return key
        if key is None or isinstance(key, bool | int | float):
            return json.dumps(key)
        if isinstance(key, _dt.date | _dt.time):
            return key.isoformat()
        return json.dumps(self.convert(key), allow_nan=True)


def yaml_value(payload: str) -> Any:
    """Strict YAML load converted to plain Python."""
    _check_yaml_nesting(payload)
    return _Plain().convert(_yaml_load(payload))


def yaml_is_empty(payload: str) -> bool:
    """Whether a YAML payload holds nothing but blank lines, comments and document markers."""
    for line in payload.split("\n"):
        stripped = line.strip()
        if stripped and not stripped.startswith("#") and stripped not in ("---", "..."):
            return False
    return True


def finite(value: Any) -> tuple[Any, int]:
    """``value`` with NaN/Infinity replaced by None, and how many were replaced."""
    if isinstance(value, float) and not math.isfinite(value):
        return None, 1
    if isinstance(value, dict):
        pairs = [(key, finite(item)) for key, item in value.items()]
        return {key: item for key, (item, _) in pairs}, sum(n for _, (_, n) in pairs)
    if isinstance(value, list):
        items = [finite(item) for item in value]
        return [item for item, _ in items], sum(n for _, n in items)
    return value, 0
