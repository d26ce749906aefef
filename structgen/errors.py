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
    "Cancelled",
    "DatabaseError",
    "DeadlineExceeded",
    "GenerationError",
    "GrammarError",
    "InvalidArgument",
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
