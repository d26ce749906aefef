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

:func:`execute_select` runs the checked statement again under the same authorizer, in a child process that is
killed at the deadline, with bounds on rows, result bytes, string length and memory.
"""

from __future__ import annotations

import base64
import json
import math
import sqlite3
import subprocess
import sys
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DatabaseError, InvalidArgument, StructgenError, UnsafeSQL
from .sqlite_db import FORBIDDEN_WORDS, MAX_SQL_CHARS, SQLITE_KEYWORDS, UNSAFE_CATEGORIES

__all__ = ["ALLOWED_ACTIONS", "ALLOWED_FUNCTIONS", "MAX_RESULT_BYTES", "QUERY_MEMORY_BYTES", "check_select",
           "execute_select"]


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
        if word in FORBIDDEN_WORDS and not (word == "REPLACE" and calls):
            raise _refuse(f"{word} is not allowed in a read-only SELECT", sql)
        if word.startswith("PRAGMA_"):
            raise _refuse(f"{token.text} is not allowed", sql)
        if calls and (word not in SQLITE_KEYWORDS or word == "REPLACE"):
            _check_call(tokens, k, token.text, sql)
    # A quoted name is a name, never a keyword; but a quoted name called like a function is that function.
    for k, token in enumerate(tokens[:-1]):
        if token.kind == "quoted" and tokens[k + 1].text == "(":
            _check_call(tokens, k, _unquote(token.text), sql)


def _check_call(tokens: list[_Token], k: int, name: str, sql: str) -> None:
    """``tokens[k]`` (spelt ``name``) is followed by "(": a CTE's column list, or a call of an allowed function."""
    if not _declares_cte_columns(tokens, k) and name.lower() not in ALLOWED_FUNCTIONS:
        raise _refuse(f"function {name}() is not allowed", sql)


def _unquote(text: str) -> str:
    """The name inside a quoted identifier ("a""b", `a`, [a])."""
    opening, body = text[0], text[1:-1]
    return body.replace(opening * 2, opening) if opening in "\"`" else body


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


MAX_RESULT_BYTES = 8_000_000
"""Default byte budget of :func:`execute_select`'s result (values as UTF-8 or raw bytes, 8 per number, 16 per row)."""

QUERY_MEMORY_BYTES = 512 * 2**20
"""Address space of the child process that runs a query (SQLite's own heap is held to half of it)."""

_CHILD = Path(__file__).with_name("_sql_child.py")
_KILL_GRACE_S = 0.25   # past the deadline, the parent kills a child that has not stopped by itself


def execute_select(
    sql: str, conn: sqlite3.Connection, *, max_rows: int = 1000, timeout_s: float = 5.0,
    max_bytes: int = MAX_RESULT_BYTES,
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Check ``sql`` with :func:`check_select`, run it, and return ``(column names, at most max_rows rows)``.

    The query runs in a child process (on the same file, read-only, under the same authorizer), so its bounds
    hold whatever SQLite does inside one call: it is killed ``timeout_s`` seconds in (a single long ``instr``
    or ``LIKE`` included), its result may hold at most ``max_bytes`` bytes, no string or blob it builds may
    be longer than that, and its memory is bounded by :data:`QUERY_MEMORY_BYTES`. Each overrun, and any other
    SQLite error, is a :class:`DatabaseError`.
    """
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
        raise InvalidArgument(f"max_rows must be a positive int, not {max_rows!r}")
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise InvalidArgument(f"max_bytes must be a positive int, not {max_bytes!r}")
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or not (
        math.isfinite(timeout_s) and timeout_s > 0
    ):
        raise InvalidArgument(f"timeout_s must be a positive number of seconds, not {timeout_s!r}")
    text = check_select(sql, conn)
    request = {"path": _database_file(conn), "sql": text, "max_rows": max_rows, "max_bytes": max_bytes,
               "max_length": max(1, min(max_bytes, _MAX_VALUE_LENGTH)), "timeout_s": timeout_s,
               "max_memory": QUERY_MEMORY_BYTES, "allowed_actions": sorted(ALLOWED_ACTIONS),
               "allowed_functions": sorted(ALLOWED_FUNCTIONS)}
    return _run_child(request, text, timeout_s, max_bytes)


_MAX_VALUE_LENGTH = 100_000_000   # SQLite's own default SQLITE_LIMIT_LENGTH is 1e9


def _database_file(conn: sqlite3.Connection) -> str:
    rows = conn.execute("PRAGMA database_list").fetchall()
    path = next((r[2] for r in rows if r[1] == "main"), "")
    if not path:
        raise DatabaseError("execute_select needs a connection to a database file (not an in-memory one)")
    return str(path)


def _run_child(request: dict[str, Any], text: str, timeout_s: float, max_bytes: int) -> tuple[
        list[str], list[tuple[Any, ...]]]:
    cmd = [sys.executable, "-I", "-S", str(_CHILD)]
    with subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        try:
            out, err = proc.communicate(json.dumps(request).encode() + b"\n", timeout=timeout_s + _KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise DatabaseError(f"query stopped after the {timeout_s:g} s time limit") from None
    columns: list[str] | None = None
    rows: list[tuple[Any, ...]] = []
    for line in out.splitlines():
        record = json.loads(line)
        if "columns" in record:
            columns = record["columns"]
        elif "row" in record:
            rows.append(tuple(_decode(v) for v in record["row"]))
        elif "error" in record:
            raise _child_error(record["error"], record["message"], text, timeout_s, max_bytes)
        elif record.get("done") and columns is not None:
            return columns, rows
    tail = err.decode("utf-8", "replace").strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
    raise DatabaseError(f"the query process failed: {tail[0]}")


def _decode(value: Any) -> Any:
    return base64.b64decode(value["$b"]) if isinstance(value, dict) else value


def _child_error(kind: str, message: str, sql: str, timeout_s: float, max_bytes: int) -> StructgenError:
    if kind == "timeout":
        return DatabaseError(f"query stopped after the {timeout_s:g} s time limit")
    if kind == "denied":
        return _refuse(f"not authorized: {message}", sql)
    if kind == "too_big":
        return DatabaseError(f"the result is larger than the {max_bytes:,}-byte budget ({message})")
    if kind == "memory":
        return DatabaseError(f"the query needed more than {QUERY_MEMORY_BYTES // 2**20} MiB of memory")
    return DatabaseError(f"query failed: {message}")
