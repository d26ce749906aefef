"""The schema kinds users pass besides Pydantic models and JSON Schema dicts: ``Regex``, ``Choice`` and
``Grammar`` (Lark, with the grammars bundled in the package)."""

from __future__ import annotations

import importlib.resources
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import GrammarError, SchemaError

__all__ = ["Choice", "Grammar", "Regex", "SchemaLike", "bundled_grammars", "python_regex_check"]


@dataclass(frozen=True, slots=True)
class Regex:
    """Constrain the output to a full match of a (Python-syntax) regular expression."""

    pattern: str


@dataclass(frozen=True, slots=True, init=False)
class Choice:
    """Constrain the output to exactly one of a fixed list of strings."""

    options: tuple[str, ...]

    def __init__(self, options: Iterable[str]) -> None:
        opts = tuple(options)
        if not opts:
            raise SchemaError("a Choice needs at least one option")
        for i, o in enumerate(opts):
            if not isinstance(o, str) or o == "":
                raise SchemaError("every Choice option must be a non-empty string", pointer=f"/{i}")
        if len(set(opts)) != len(opts):
            raise SchemaError("Choice options must be distinct")
        object.__setattr__(self, "options", opts)


@dataclass(frozen=True, slots=True)
class Grammar:
    """A Lark grammar (llguidance dialect; start rule ``start``) the output must match.

    ``check``: an extra test of what a context-free grammar cannot express (``re.compile`` for a regex
    grammar: ordered ranges, ``{n,m}`` with n <= m). It raises ``ValueError`` for an output the grammar
    admits but that is not valid, and that output is resampled like any invalid one. Bundled grammars come
    with theirs (``python_regex``).
    """

    source: str
    name: str | None = None
    check: Callable[[str], object] | None = None

    @classmethod
    def from_file(cls, name_or_path: str | Path) -> Grammar:
        """Load a grammar from a file path, or a bundled grammar by name (``"json"``, ``"sqlite_select"``)."""
        path = Path(name_or_path)
        check = None
        if not path.is_file() and path.suffix in ("", ".lark") and len(path.parts) <= 2:
            bundled = _bundled_path(path.name)
            if bundled is not None:
                path, check = bundled, _BUNDLED_CHECKS.get(bundled.stem)
        try:
            return cls(path.read_text(encoding="utf-8"), name=str(name_or_path), check=check)
        except FileNotFoundError as exc:
            raise GrammarError(f"grammar file not found (bundled: {', '.join(bundled_grammars())})",
                               file=str(name_or_path)) from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise GrammarError(f"cannot read grammar: {exc}", file=str(name_or_path)) from exc

    @classmethod
    def bundled(cls, name: str) -> Grammar:
        """A grammar shipped with structgen, by name: see ``bundled_grammars()``."""
        path = _bundled_path(name)
        if path is None:
            raise GrammarError(f"no bundled grammar {name!r}; have: {', '.join(bundled_grammars())}")
        return cls(path.read_text(encoding="utf-8"), name=name, check=_BUNDLED_CHECKS.get(path.stem))


def python_regex_check(text: str) -> str:
    """``check`` of the bundled ``python_regex`` grammar: the output must compile with ``re.compile``."""
    try:
        re.compile(text)
    except re.error as exc:
        raise ValueError(f"re.compile rejects it: {exc}") from None
    return text


_BUNDLED_CHECKS: dict[str, Callable[[str], object]] = {"python_regex": python_regex_check}


def _grammar_dir() -> Path:
    """Where the bundled .lark files are: the installed package data, or grammars/ in a checkout."""
    try:
        return Path(str(importlib.resources.files("structgen.grammars")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[2] / "grammars"


def bundled_grammars() -> list[str]:
    """Names of the grammars shipped in the package."""
    return sorted(p.stem for p in _grammar_dir().glob("*.lark"))


def _bundled_path(name: str) -> Path | None:
    stem = name[:-5] if name.endswith(".lark") else name
    path = _grammar_dir() / f"{stem}.lark"
    return path if path.is_file() else None


SchemaLike = type | Mapping[str, Any] | Regex | Choice | Grammar | None
