"""Every error structgen raises on purpose.

    StructgenError
    ├── SchemaError          unsupported or malformed schema / regex / choice (carries a JSON pointer)
    ├── GrammarError         malformed Lark grammar (carries file, line, column)
    ├── GenerationError      the decode loop could not produce a valid value
    │   ├── TruncatedOutput  max_tokens ran out before the grammar was complete (carries the partial text)
    │   ├── ValidationFailed every attempt produced a value that failed validation (carries each attempt)
    │   └── DeadlineExceeded the request's ``timeout`` passed before a valid value was ready
    ├── ParseError           a model reply that no defensive parse could turn into a JSON/YAML value
    ├── BackendError         transport or server failure; ``retryable`` says whether a retry may help
    │   └── Overloaded       the local engine's wait queue is full (retryable: try again shortly)
    ├── Cancelled            the caller cancelled the request (or dropped its stream)
    ├── ModelNotFound        the model file or the bundled default model is missing
    ├── InvalidArgument      an argument out of its range (top_p=2, max_tokens=-1, empty prompt, ...)
    │   └── BatchInputError  a batch input file with bad lines (carries each line number and reason)
    ├── ManifestMismatch     a batch resumed with another model, engine options or version than its results
    ├── UnsafeSQL            SQL that is not a single read-only SELECT (carries the reason)
    └── DatabaseError        a database that cannot be used (missing file, not SQLite, no tables), or a
                             query SQLite refused or stopped (carries the path where known)

Dependency exceptions never escape the public API: they are wrapped with ``raise ... from exc``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "BackendError",
    "BatchInputError",
    "Cancelled",
    "DatabaseError",
    "DeadlineExceeded",
    "GenerationError",
    "GrammarError",
    "InvalidArgument",
    "ManifestMismatch",
    "ModelNotFound",
    "Overloaded",
    "ParseError",
    "SchemaError",
    "StructgenError",
    "TruncatedOutput",
    "UnsafeSQL",
    "ValidationFailed",
]


class StructgenError(Exception):
    """Root of every error structgen raises on purpose."""


class SchemaError(StructgenError, ValueError):
    """A schema, regex or choice list that cannot be compiled; ``pointer`` locates the problem."""

    def __init__(self, message: str, *, pointer: str = "") -> None:
        self.pointer = pointer
        self.reason = message
        where = f" at {pointer}" if pointer else ""
        super().__init__(f"{message}{where}")


class GrammarError(StructgenError, ValueError):
    """A Lark grammar that cannot be compiled; ``file``, ``line`` and ``column`` locate the problem."""

    def __init__(
        self, message: str, *, file: str | None = None, line: int | None = None, column: int | None = None
    ) -> None:
        self.file = file
        self.line = line
        self.column = column
        self.reason = message
        where = ":".join(str(p) for p in (file or "<grammar>", line, column) if p is not None)
        super().__init__(f"{where}: {message}")


class GenerationError(StructgenError):
    """Generation ran but could not produce a valid value."""


class TruncatedOutput(GenerationError):
    """``max_tokens`` ran out before the output was complete; ``partial_text`` holds what was generated.

    ``looped`` is True when the output ended in one block of tokens repeated over and over (the model was
    caught in a loop, so a larger ``max_tokens`` would not have helped)."""

    def __init__(self, message: str, *, partial_text: str, tokens: Sequence[int] = (), looped: bool = False) -> None:
        self.partial_text = partial_text
        self.tokens = list(tokens)
        self.looped = looped
        super().__init__(message)


class ValidationFailed(GenerationError):
    """Every attempt failed validation; ``attempts`` holds each attempt's text and error."""

    def __init__(self, message: str, *, attempts: Sequence[Any] = ()) -> None:
        self.attempts = list(attempts)
        super().__init__(message)


class ParseError(StructgenError, ValueError):
    """A reply that could not be parsed as JSON/YAML even after repair; ``line``/``column`` locate it."""

    def __init__(self, message: str, *, text: str = "", line: int | None = None, column: int | None = None) -> None:
        self.text = text
        self.line = line
        self.column = column
        where = f" (line {line}, column {column})" if line is not None else ""
        super().__init__(f"{message}{where}")


class BackendError(StructgenError):
    """The model backend or server failed; ``retryable`` tells whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool = False, status_code: int | None = None) -> None:
        self.retryable = retryable
        self.status_code = status_code
        super().__init__(message)


class Overloaded(BackendError):
    """The engine's wait queue is full; nothing was started, so the same request may be sent again shortly."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True, status_code=503)


class DeadlineExceeded(GenerationError):
    """The request's ``timeout`` passed (waiting or generating) before a valid value was ready."""


class Cancelled(StructgenError):
    """The request was cancelled by its caller (a cancelled task, a closed stream); its sequences are freed."""


class ModelNotFound(StructgenError, FileNotFoundError):
    """The GGUF file (or the bundled default model package) could not be found."""


class InvalidArgument(StructgenError, ValueError):
    """An argument is outside its allowed range or of the wrong kind."""


class BatchInputError(InvalidArgument):
    """A batch input file with bad lines; ``problems`` holds each one's ``(line, reason)`` (1-based line numbers)."""

    def __init__(self, path: str, problems: Sequence[tuple[int, str]]) -> None:
        self.path = path
        self.problems = list(problems)
        shown = "; ".join(f"line {line}: {reason}" for line, reason in self.problems[:5])
        more = f" (and {len(self.problems) - 5} more)" if len(self.problems) > 5 else ""
        super().__init__(f"{path}: {len(self.problems)} bad line(s): {shown}{more}")


class ManifestMismatch(StructgenError):
    """Existing batch results were made with another model, engine options or structgen version than this run;
    ``differences`` maps each differing key to ``(recorded, now)``."""

    def __init__(self, message: str, *, differences: dict[str, tuple[Any, Any]] | None = None) -> None:
        self.differences = dict(differences or {})
        super().__init__(message)


class UnsafeSQL(StructgenError, ValueError):
    """SQL that is not a single read-only SELECT; ``reason`` says what was refused."""

    def __init__(self, reason: str, *, sql: str = "") -> None:
        self.reason = reason
        self.sql = sql
        super().__init__(f"unsafe SQL: {reason}")


class DatabaseError(StructgenError):
    """A database that cannot be used (missing file, not SQLite, no tables) or a query that failed.

    ``path`` names the database file where known.
    """

    def __init__(self, message: str, *, path: str | None = None) -> None:
        self.path = path
        super().__init__(message)
