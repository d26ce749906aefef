"""The guard of ``structgen sql``: nothing but one read-only SELECT runs.

The feature generates a SELECT with a model constrained by :func:`~structgen.apps.sqlite_db.schema_grammar`,
checks it with :func:`check_select` and runs it (only on request) with :func:`execute_select`. The grammar is
the first line of defence; :func:`check_select` is the second and does not rely on it. It refuses
(``UnsafeSQL``) anything that is not exactly one read-only SELECT, in independent layers:

1. text: a length bound; no control, invisible, private-use or unassigned characters; no non-ASCII
   character outside quotes (homoglyph keywords, full-width semicolons);
2. tokens (a tokenizer that follows SQLite's quoting rules): no comments, unterminated quotes or second
   statement (also checked with ``sqlite3.complete_statement``); the statement starts with SELECT or
   WITH; no write, schema, transaction or PRAGMA keyword; only functions from an allow-list;
3. SQLite itself: ``EXPLAIN <sql>`` is compiled on the read-only connection under an authorizer that
   denies every action except reading (see :data:`ALLOWED_ACTIONS`), and the bytecode is audited for
   write operations (``VACUUM INTO`` has no authorizer action; it is caught here);
4. the connection: :func:`~structgen.apps.sqlite_db.open_readonly` opens the file with ``mode=ro``, sets
   ``query_only`` and ``trusted_schema=OFF`` and allows no attached databases.

:func:`execute_select` runs the checked statement again under the same authorizer, with a time limit (a
progress handler) and a row limit.
"""

from __future__ import annotations

import math
import sqlite3
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import DatabaseError, InvalidArgument, UnsafeSQL
from .sqlite_db import MAX_SQL_CHARS, SQLITE_KEYWORDS, UNSAFE_CATEGORIES

__all__ = ["ALLOWED_ACTIONS", "ALLOWED_FUNCTIONS", "check_select", "execute_select"]


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


ALLOWED_ACTIONS: frozenset[int] = frozenset(
    {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
)
"""Authorizer action codes a query may need: SELECT (21, each SELECT, also inside CTEs), READ (20, a
column of a table, view or CTE), FUNCTION (31, a function call; the name must also be in
:data:`ALLOWED_FUNCTIONS`) and RECURSIVE (33, a recursive CTE). EXPLAIN itself and plain CTEs need no other
action; everything else (INSERT, UPDATE, DELETE, CREATE_*, DROP_*, ALTER_TABLE, ATTACH, DETACH, PRAGMA,
TRANSACTION, SAVEPOINT, ANALYZE, REINDEX, CREATE_VTABLE, ...) is denied."""

ALLOWED_FUNCTIONS: frozenset[str] = frozenset(
    {
        # aggregates
        "count", "sum", "avg", "total", "min", "max", "group_concat",
        # text and numbers
        "round", "abs", "sign", "ceil", "ceiling", "floor", "length", "lower", "upper", "substr",
        "substring", "trim", "ltrim", "rtrim", "instr", "replace", "coalesce", "ifnull", "nullif", "iif",
        "typeof",
        # dates
        "strftime", "date", "time", "datetime", "julianday", "unixepoch",
        # called by the operators LIKE and GLOB and by CURRENT_DATE / CURRENT_TIME / CURRENT_TIMESTAMP
        "like", "glob", "current_date", "current_time", "current_timestamp",
    }
)
"""Side-effect-free functions a query may call (lower case). Left out on purpose, among others:
load_extension, fts3_tokenizer, readfile/writefile/edit (CLI only), zeroblob/randomblob and printf/format
(memory), random, and the sqlite_* introspection functions."""

# Words that never belong in a read-only SELECT (REPLACE only as the function replace(...)).
_FORBIDDEN_WORDS = _words(
    """INSERT UPDATE DELETE REPLACE UPSERT CREATE DROP ALTER ATTACH DETACH PRAGMA VACUUM REINDEX ANALYZE
    BEGIN COMMIT ROLLBACK SAVEPOINT RELEASE TRANSACTION RETURNING INTO EXPLAIN TRIGGER"""
)

# Bytecode that writes (or changes the schema or settings); a SELECT never contains it. Transaction is
# checked separately (p2 != 0 opens a write transaction).
_WRITE_OPCODES = _words(
    """OpenWrite CreateBtree Destroy Clear ParseSchema DropTable DropIndex DropTrigger Vacuum IncrVacuum
    VCreate VDestroy VUpdate VRename VBegin JournalMode SqlExec SetCookie Expire LoadAnalysis MaxPgcnt
    Checkpoint"""
)

_ACTION_NAMES = {
    1: "CREATE_INDEX", 2: "CREATE_TABLE", 3: "CREATE_TEMP_INDEX", 4: "CREATE_TEMP_TABLE",
    5: "CREATE_TEMP_TRIGGER", 6: "CREATE_TEMP_VIEW", 7: "CREATE_TRIGGER", 8: "CREATE_VIEW", 9: "DELETE",
    10: "DROP_INDEX", 11: "DROP_TABLE", 12: "DROP_TEMP_INDEX", 13: "DROP_TEMP_TABLE",
    14: "DROP_TEMP_TRIGGER", 15: "DROP_TEMP_VIEW", 16: "DROP_TRIGGER", 17: "DROP_VIEW", 18: "INSERT",
    19: "PRAGMA", 20: "READ", 21: "SELECT", 22: "TRANSACTION", 23: "UPDATE", 24: "ATTACH", 25: "DETACH",
    26: "ALTER_TABLE", 27: "REINDEX", 28: "ANALYZE", 29: "CREATE_VTABLE", 30: "DROP_VTABLE",
    31: "FUNCTION", 32: "SAVEPOINT", 33: "RECURSIVE",
}



_ALLOWED_CONTROLS = frozenset("\t\n\r")
_WORD_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_WORD_CHARS = _WORD_START | frozenset("0123456789$")
_QUOTES = {"'": "'", '"': '"', "`": "`", "[": "]"}


@dataclass(frozen=True)
class _Token:
    kind: str  # "word", "number", "string", "quoted", "semi", "punct"
    text: str
    start: int


def _refuse(reason: str, sql: str) -> UnsafeSQL:
    return UnsafeSQL(reason, sql=sql[:200])


def _check_characters(sql: str) -> None:
    for i, ch in enumerate(sql):
        if ch in _ALLOWED_CONTROLS:
            continue
        category = unicodedata.category(ch)
        if category in UNSAFE_CATEGORIES:
            raise _refuse(f"character U+{ord(ch):04X} ({category}) at offset {i}", sql)


def _tokenize(sql: str) -> list[_Token]:
    """Split ``sql`` the way SQLite does; comments, unterminated quotes and stray non-ASCII are refused."""
    tokens = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in " \t\n\r":
            i += 1
        elif sql.startswith("--", i) or sql.startswith("/*", i):
            raise _refuse(f"comment at offset {i}", sql)
        elif ch in _QUOTES:
            close = _QUOTES[ch]
            j = i + 1
            while True:
                j = sql.find(close, j)
                if j < 0:
                    raise _refuse(f"unterminated {ch} quote at offset {i}", sql)
                if close != "]" and sql.startswith(close * 2, j):
                    j += 2
                    continue
                break
            tokens.append(_Token("string" if ch == "'" else "quoted", sql[i : j + 1], i))
            i = j + 1
        elif ch in _WORD_START:
            j = i + 1
            while j < n and sql[j] in _WORD_CHARS:
                j += 1
            tokens.append(_Token("word", sql[i:j], i))
            i = j
        elif ch.isascii() and (ch.isdigit() or (ch == "." and i + 1 < n and sql[i + 1].isdigit())):
            j = i + 1
            while j < n and (sql[j].isascii() and (sql[j].isalnum() or sql[j] in "._")):
                if sql[j] in "eE" and j + 1 < n and sql[j + 1] in "+-":
                    j += 1
                j += 1
            tokens.append(_Token("number", sql[i:j], i))
            i = j
        elif ch == ";":
            tokens.append(_Token("semi", ch, i))
            i += 1
        elif ch.isascii():
            tokens.append(_Token("punct", ch, i))
            i += 1
        else:
            raise _refuse(f"non-ASCII character {ch!r} outside quotes at offset {i}", sql)
    return tokens


def _check_tokens(tokens: list[_Token], sql: str) -> None:
    if not tokens:
        raise _refuse("empty statement", sql)
    semis = [k for k, t in enumerate(tokens) if t.kind == "semi"]
    if semis:
        raise _refuse("more than one statement", sql)
    first = tokens[0]
    if first.kind != "word" or first.text.upper() not in {"SELECT", "WITH"}:
        raise _refuse(f"not a SELECT: starts with {first.text[:20]!r}", sql)
    for k, token in enumerate(tokens):
        if token.kind != "word":
            continue
        word = token.text.upper()
        calls = k + 1 < len(tokens) and tokens[k + 1].text == "("
        if word in _FORBIDDEN_WORDS and not (word == "REPLACE" and calls):
            raise _refuse(f"{word} is not allowed in a read-only SELECT", sql)
        if word.startswith("PRAGMA_"):
            raise _refuse(f"{token.text} is not allowed", sql)
        if calls and (word not in SQLITE_KEYWORDS or word == "REPLACE"):
            if _declares_cte_columns(tokens, k):
                continue
            if token.text.lower() not in ALLOWED_FUNCTIONS:
                raise _refuse(f"function {token.text}() is not allowed", sql)


def _declares_cte_columns(tokens: list[_Token], k: int) -> bool:
    """Whether ``tokens[k]`` is a CTE name with its column list: ``WITH | , name(a, b) AS (``."""
    if k == 0 or tokens[k - 1].text.upper() not in {"WITH", "RECURSIVE", ","}:
        return False
    j = k + 2
    while j < len(tokens) and tokens[j].kind in {"word", "quoted"}:
        if j + 1 < len(tokens) and tokens[j + 1].text == ",":
            j += 2
        else:
            j += 1
            break
    after = [t.text.upper() for t in tokens[j : j + 3]]
    return after[:2] == [")", "AS"] and len(after) == 3 and after[2] in {"(", "MATERIALIZED", "NOT"}


def _lexical_check(sql: str) -> str:
    """Layers 1 and 2 (text and tokens); returns the statement without surrounding space and final ``;``."""
    if not isinstance(sql, str):
        raise InvalidArgument(f"sql must be a str, not {type(sql).__name__}")
    if len(sql) > MAX_SQL_CHARS:
        raise _refuse(f"longer than {MAX_SQL_CHARS} characters ({len(sql)})", sql)
    _check_characters(sql)
    text = sql.strip()
    if text.endswith(";"):
        text = text[:-1].rstrip()
    _check_tokens(_tokenize(text), sql)
    if not sqlite3.complete_statement(text + ";") or sqlite3.complete_statement(text):
        raise _refuse("not exactly one complete statement", sql)
    return text


def _authorizer(denied: list[str]) -> Callable[[int, str | None, str | None, str | None, str | None], int]:
    def authorize(action: int, arg1: str | None, arg2: str | None, db: str | None, _source: str | None) -> int:
        if action in ALLOWED_ACTIONS:
            if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() not in ALLOWED_FUNCTIONS:
                denied.append(f"function {arg2}()")
                return sqlite3.SQLITE_DENY
            if action == sqlite3.SQLITE_READ and db not in (None, "main", "temp"):
                denied.append(f"reading from database {db!r}")
                return sqlite3.SQLITE_DENY
            return sqlite3.SQLITE_OK
        what = " ".join(a for a in (arg1, arg2) if a)
        denied.append(f"{_ACTION_NAMES.get(action, str(action))} {what}".strip())
        return sqlite3.SQLITE_DENY

    return authorize


def _engine_check(sql: str, conn: sqlite3.Connection) -> None:
    """Layer 3: compile ``EXPLAIN sql`` under the authorizer and audit the bytecode."""
    denied: list[str] = []
    try:
        conn.set_authorizer(_authorizer(denied))
        try:
            program = conn.execute("EXPLAIN " + sql).fetchall()
        finally:
            conn.set_authorizer(None)
    except sqlite3.ProgrammingError as exc:
        if "one statement" in str(exc):
            raise _refuse("more than one statement", sql) from exc
        raise DatabaseError(f"SQLite rejected the query: {exc}") from exc
    except sqlite3.Error as exc:
        if denied:
            raise _refuse(f"not authorized: {', '.join(denied)}", sql) from exc
        raise DatabaseError(f"SQLite rejected the query: {exc}") from exc
    if denied:  # pragma: no cover - SQLite fails the statement whenever the authorizer denies
        raise _refuse(f"not authorized: {', '.join(denied)}", sql)
    for row in program:
        opcode, p2 = row[1], row[3]
        if opcode in _WRITE_OPCODES or (opcode == "Transaction" and p2 != 0):
            raise _refuse(f"the statement writes (bytecode {opcode})", sql)


def check_select(sql: str, conn: sqlite3.Connection) -> str:
    """Return ``sql`` normalised (stripped, no final ``;``) if it is exactly one read-only SELECT.

    Raises :class:`UnsafeSQL` with the reason otherwise (see the module docstring for the layers), and
    :class:`DatabaseError` for a safe statement that SQLite cannot compile (unknown column, syntax
    error). Replaces any authorizer set on ``conn``.
    """
    text = _lexical_check(sql)
    _engine_check(text, conn)
    return text


def execute_select(
    sql: str, conn: sqlite3.Connection, *, max_rows: int = 1000, timeout_s: float = 5.0
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Check ``sql`` with :func:`check_select`, run it, and return ``(column names, at most max_rows rows)``.

    The query runs under the same authorizer and is stopped after ``timeout_s`` seconds (progress handler)
    with :class:`DatabaseError`; other SQLite errors are DatabaseError too.
    """
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
        raise InvalidArgument(f"max_rows must be a positive int, not {max_rows!r}")
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or not (
        math.isfinite(timeout_s) and timeout_s > 0
    ):
        raise InvalidArgument(f"timeout_s must be a positive number of seconds, not {timeout_s!r}")
    text = check_select(sql, conn)
    deadline = time.monotonic() + timeout_s
    expired = False

    def progress() -> int:
        nonlocal expired
        if time.monotonic() > deadline:
            expired = True
            return 1
        return 0

    denied: list[str] = []
    cursor: sqlite3.Cursor | None = None
    conn.set_progress_handler(progress, 1000)
    conn.set_authorizer(_authorizer(denied))
    try:
        cursor = conn.execute(text)
        columns = [d[0] for d in cursor.description or ()]
        rows = [tuple(r) for r in cursor.fetchmany(max_rows)]
    except sqlite3.Error as exc:
        if expired:
            raise DatabaseError(f"query stopped after the {timeout_s:g} s time limit") from exc
        if denied:
            raise _refuse(f"not authorized: {', '.join(denied)}", text) from exc
        raise DatabaseError(f"query failed: {exc}") from exc
    finally:
        if cursor is not None:
            cursor.close()
        conn.set_progress_handler(None, 0)
        conn.set_authorizer(None)
    return columns, rows
