"""Defer ``rfc3987_syntax``: jsonschema imports it for its ``iri`` format checks, and importing it builds a Lark
parser (0.9–1.6 s here), which every ``import structgen`` would pay. A stand-in module takes its place until the
first ``iri`` / ``iri-reference`` check, which imports the real one."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from typing import Any

__all__ = ["install"]

_NAME = "rfc3987_syntax"
_lock = threading.Lock()


def install() -> None:
    """Put the stand-in in ``sys.modules`` (unless the real module is already loaded or not installed)."""
    if _NAME in sys.modules or importlib.util.find_spec(_NAME) is None:
        return
    stand_in = types.ModuleType(_NAME, "structgen's lazy stand-in for rfc3987_syntax (loads it on first use)")
    stand_in.is_valid_syntax = _is_valid_syntax  # type: ignore[attr-defined]
    sys.modules[_NAME] = stand_in


def _is_valid_syntax(*args: Any, **kwargs: Any) -> Any:
    with _lock:
        module = sys.modules.get(_NAME)
        if module is None or getattr(module, "is_valid_syntax", None) is _is_valid_syntax:
            sys.modules.pop(_NAME, None)
            module = importlib.import_module(_NAME)
    return module.is_valid_syntax(*args, **kwargs)
