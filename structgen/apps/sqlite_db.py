"""SQLite pieces of ``structgen sql``: a read-only connection, the schema, a schema-aware grammar and a
guard that lets nothing but one read-only SELECT run.

The feature generates a SELECT with a model constrained by :func:`schema_grammar`, checks it with
:func:`check_select` and runs it (only on request) with :func:`execute_select`. The grammar is the first
line of defence; :func:`check_select` is the second and does not rely on it. It refuses (``UnsafeSQL``)
anything that is not exactly one read-only SELECT, in independent layers:

1. text: a length bound; no control, invisible, private-use or unassigned characters; no non-ASCII
   character outside quotes (homoglyph keywords, full-width semicolons);
2. tokens (a tokenizer that follows SQLite's quoting rules): no comments, unterminated quotes or second
   statement (also checked with ``sqlite3.complete_statement``); the statement starts with SELECT or
   WITH; no write, schema, transaction or PRAGMA keyword; only functions from an allow-list;
3. SQLite itself: ``EXPLAIN <sql>`` is compiled on the read-only connection under an authorizer that
   denies every action except reading (see :data:`ALLOWED_ACTIONS`), and the bytecode is audited for
   write operations (``VACUUM INTO`` has no authorizer action; it is caught here);
4. the connection: :func:`open_readonly` opens the file with ``mode=ro``, sets ``query_only`` and
   ``trusted_schema=OFF`` and allows no attached databases.

:func:`execute_select` runs the checked statement again under the same authorizer, with a time limit (a
progress handler) and a row limit.
"""

from __future__ import annotations

import importlib.resources
import math
import os
import re
import sqlite3
import tempfile
import time
import unicodedata
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import llguidance

from ..errors import DatabaseError, GrammarError, InvalidArgument, SchemaError, UnsafeSQL

__all__ = [
    "ALLOWED_ACTIONS",
    "ALLOWED_FUNCTIONS",
    "MAX_SQL_CHARS",
    "Column",
    "DbSchema",
    "Table",
    "build_shop_db",
    "check_select",
    "execute_select",
    "grammar_path",
    "open_readonly",
    "quote_identifier",
    "read_schema",
    "schema_grammar",
    "shop_db_path",
    "shop_sql_path",
]

MAX_SQL_CHARS = 20_000
"""Longest SQL text :func:`check_select` looks at; anything longer is refused."""

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

# SQLite's keywords (https://sqlite.org/lang_keywords.html): a name that is one of them is quoted.
def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


SQLITE_KEYWORDS = _words(
    """ABORT ACTION ADD AFTER ALL ALTER ALWAYS ANALYZE AND AS ASC ATTACH AUTOINCREMENT BEFORE BEGIN
    BETWEEN BY CASCADE CASE CAST CHECK COLLATE COLUMN COMMIT CONFLICT CONSTRAINT CREATE CROSS CURRENT
    CURRENT_DATE CURRENT_TIME CURRENT_TIMESTAMP DATABASE DEFAULT DEFERRABLE DEFERRED DELETE DESC DETACH
    DISTINCT DO DROP EACH ELSE END ESCAPE EXCEPT EXCLUDE EXCLUSIVE EXISTS EXPLAIN FAIL FILTER FIRST
    FOLLOWING FOR FOREIGN FROM FULL GENERATED GLOB GROUP GROUPS HAVING IF IGNORE IMMEDIATE IN INDEX
    INDEXED INITIALLY INNER INSERT INSTEAD INTERSECT INTO IS ISNULL JOIN KEY LAST LEFT LIKE LIMIT MATCH
    MATERIALIZED NATURAL NO NOT NOTHING NOTNULL NULL NULLS OF OFFSET ON OR ORDER OTHERS OUTER OVER
    PARTITION PLAN PRAGMA PRECEDING PRIMARY QUERY RAISE RANGE RECURSIVE REFERENCES REGEXP REINDEX RELEASE
    RENAME REPLACE RESTRICT RETURNING RIGHT ROLLBACK ROW ROWS SAVEPOINT SELECT SET TABLE TEMP TEMPORARY
    THEN TIES TO TRANSACTION TRIGGER UNBOUNDED UNION UNIQUE UPDATE USING VACUUM VALUES VIEW VIRTUAL WHEN
    WHERE WINDOW WITH WITHOUT"""
)

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

_GRAMMAR_FILE = "sqlite_select.lark"
_NAMES_BEGIN = "// ==== BEGIN NAMES"
_NAMES_END = "// ==== END NAMES ===="
_DATA_DIR = Path(__file__).resolve().parent.parent / "data"
_BARE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MAX_LENGTH_LIMIT = 10_000_000  # SQLITE_LIMIT_LENGTH on connections from open_readonly: largest value


# --------------------------------------------------------------------------------------------------
# Connection


def open_readonly(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """Open the SQLite file ``path`` read-only (``mode=ro``, ``query_only``, no ATTACH).

    Also sets ``trusted_schema=OFF`` and bounds the length of strings, blobs and SQL text. Raises
    :class:`DatabaseError` naming the path if the file is missing, is not an SQLite database or holds no
    tables.
    """
    p = Path(path)
    if not p.exists():
        raise DatabaseError(f"database file not found: {p}", path=str(p))
    if not p.is_file():
        raise DatabaseError(f"database path is not a file: {p}", path=str(p))
    uri = f"file:{urllib.parse.quote(str(p.resolve()))}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True)
    except sqlite3.Error as exc:
        raise DatabaseError(f"cannot open database {p}: {exc}", path=str(p)) from exc
    try:
        conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, _MAX_LENGTH_LIMIT)
        conn.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, 4 * MAX_SQL_CHARS + 100)  # UTF-8, EXPLAIN
        conn.execute("PRAGMA query_only = ON")
        conn.execute("PRAGMA trusted_schema = OFF")
        (tables,) = conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite^_%' ESCAPE '^'"
        ).fetchone()
    except sqlite3.Error as exc:
        conn.close()
        raise DatabaseError(f"not an SQLite database: {p} ({exc})", path=str(p)) from exc
    if not tables:
        conn.close()
        raise DatabaseError(f"database has no tables: {p}", path=str(p))
    return conn


# --------------------------------------------------------------------------------------------------
# Schema


@dataclass(frozen=True)
class Column:
    """One column: its name, declared type ("" if none), and whether it is in the primary key / NOT NULL."""

    name: str
    type: str = ""
    pk: bool = False
    notnull: bool = False


@dataclass
class Table:
    """One table: its columns in order and its foreign keys as ``(column, ref_table, ref_column)``."""

    name: str
    columns: list[Column] = field(default_factory=list)
    foreign_keys: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass
class DbSchema:
    """The tables of one database (SQLite's internal ``sqlite_*`` tables left out)."""

    tables: list[Table] = field(default_factory=list)

    def table_names(self) -> list[str]:
        """The table names, in the order of the schema."""
        return [t.name for t in self.tables]

    def column_names(self) -> list[str]:
        """Every column name of every table, each once, in order of first appearance."""
        return list(dict.fromkeys(c.name for t in self.tables for c in t.columns))

    def to_prompt(self) -> str:
        """Compact ``CREATE TABLE``-like text for a prompt: one line per table, foreign keys inline."""
        lines = []
        for table in self.tables:
            refs = {col: (rt, rc) for col, rt, rc in table.foreign_keys}
            pk = [c.name for c in table.columns if c.pk]
            parts = []
            for col in table.columns:
                text = quote_identifier(col.name)
                if col.type:
                    text += f" {col.type}"
                if col.pk and len(pk) == 1:
                    text += " PRIMARY KEY"
                if col.notnull and not col.pk:
                    text += " NOT NULL"
                if col.name in refs:
                    ref_table, ref_col = refs[col.name]
                    text += f" REFERENCES {quote_identifier(ref_table)}({quote_identifier(ref_col)})"
                parts.append(text)
            if len(pk) > 1:
                parts.append(f"PRIMARY KEY ({', '.join(map(quote_identifier, pk))})")
            lines.append(f"CREATE TABLE {quote_identifier(table.name)} ({', '.join(parts)});")
        return "\n".join(lines)


def read_schema(conn: sqlite3.Connection) -> DbSchema:
    """Read the tables, columns and foreign keys of ``conn``'s main database (``sqlite_*`` tables skipped)."""
    try:
        names = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite^_%' ESCAPE '^'"
                " ORDER BY rowid"
            )
        ]
        tables = []
        for name in names:
            info = conn.execute('SELECT name, type, "notnull", pk FROM pragma_table_info(?)', (name,)).fetchall()
            columns = [Column(str(n), str(t or ""), bool(pk), bool(nn)) for n, t, nn, pk in info]
            fks = conn.execute(
                'SELECT "from", "table", "to" FROM pragma_foreign_key_list(?) ORDER BY id, seq', (name,)
            ).fetchall()
            tables.append((name, columns, fks))
    except sqlite3.Error as exc:
        raise DatabaseError(f"cannot read the schema: {exc}") from exc
    primary = {name: [c.name for c in cols if c.pk] for name, cols, _ in tables}
    result = []
    for name, columns, fks in tables:
        foreign = []
        for col, ref_table, ref_col in fks:
            if ref_col is None:  # REFERENCES t without a column: the referenced table's primary key
                ref_col = (primary.get(ref_table) or ["rowid"])[0]
            foreign.append((str(col), str(ref_table), str(ref_col)))
        result.append(Table(str(name), columns, foreign))
    return DbSchema(result)


def quote_identifier(name: str) -> str:
    """``name`` as SQLite text: bare if it is a plain identifier and no keyword, else double-quoted."""
    if _BARE_NAME.fullmatch(name) and name.upper() not in SQLITE_KEYWORDS:
        return name
    return '"' + name.replace('"', '""') + '"'


# --------------------------------------------------------------------------------------------------
# Grammar


def grammar_path() -> Path:
    """The bundled ``sqlite_select.lark`` (installed package first, then the source tree)."""
    candidates: list[Traversable] = [importlib.resources.files("structgen") / "grammars" / _GRAMMAR_FILE]
    candidates.append(Path(__file__).resolve().parents[2] / "grammars" / _GRAMMAR_FILE)
    for candidate in candidates:
        if candidate.is_file():
            return Path(str(candidate))
    raise GrammarError("the bundled grammar is missing", file=_GRAMMAR_FILE)


def _lark_literal(sql_name: str) -> str:
    return '"' + sql_name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _usable(name: str) -> bool:
    """Whether ``name`` can be written in a query that check_select accepts (no control characters)."""
    return bool(name) and not any(unicodedata.category(ch) in _BAD_CATEGORIES for ch in name)


def _alternatives(rule: str, names: Iterable[str]) -> str:
    literals = [_lark_literal(quote_identifier(n)) for n in dict.fromkeys(names) if _usable(n)]
    if not literals:
        raise SchemaError(f"the schema has no usable {rule.replace('_', ' ')}s")
    lines = [f"{rule}: {literals[0]}"] + [f"    | {lit}" for lit in literals[1:]]
    return "\n".join(lines)


def schema_grammar(schema: DbSchema) -> str:
    """The Lark text of ``sqlite_select.lark`` with ``table_name`` / ``column_name`` replaced by the
    names of exactly this database (quoted where SQLite needs it), for llguidance and ``lark`` alike.

    Raises :class:`SchemaError` for a schema without tables or columns, and :class:`GrammarError` if the
    result does not compile in llguidance.
    """
    text = grammar_path().read_text(encoding="utf-8")
    begin, end = text.find(_NAMES_BEGIN), text.find(_NAMES_END)
    if begin < 0 or end < begin:
        raise GrammarError("the replaceable names block is missing", file=_GRAMMAR_FILE)
    block = "\n".join(
        [
            "// ==== BEGIN NAMES (generated by structgen.apps.sqlite_db.schema_grammar) ====",
            _alternatives("table_name", schema.table_names()),
            _alternatives("column_name", schema.column_names()),
        ]
    )
    grammar = text[:begin] + block + "\n" + text[end:]
    error = llguidance.LLMatcher.validate_grammar(llguidance.LLMatcher.grammar_from_lark(grammar))
    if error:
        raise GrammarError(f"the schema-aware grammar does not compile: {error}", file=_GRAMMAR_FILE)
    return grammar


# --------------------------------------------------------------------------------------------------
# check_select

_BAD_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
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
        if category in _BAD_CATEGORIES:
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


# --------------------------------------------------------------------------------------------------
# The bundled demo database


def shop_sql_path() -> Path:
    """The bundled ``shop.sql`` script."""
    return _DATA_DIR / "shop.sql"


def shop_db_path() -> Path:
    """The bundled ``shop.sqlite`` (built from ``shop.sql`` by :func:`build_shop_db`)."""
    return _DATA_DIR / "shop.sqlite"


def build_shop_db(
    dest: str | os.PathLike[str] | None = None, *, script: str | os.PathLike[str] | None = None
) -> Path:
    """(Re)build the demo database at ``dest`` (default: the bundled ``shop.sqlite``) from ``script``
    (default: the bundled ``shop.sql``). The file is written next to ``dest`` and moved into place, so a
    reader never sees half a database. Returns ``dest``.
    """
    target = Path(dest) if dest is not None else shop_db_path()
    source = Path(script) if script is not None else shop_sql_path()
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise DatabaseError(f"cannot read {source}: {exc}", path=str(source)) from exc
    fd, tmp_name = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        conn = sqlite3.connect(tmp)
        try:
            conn.executescript(text)
            conn.execute("VACUUM")
        finally:
            conn.close()
        tmp.chmod(0o644)  # mkstemp makes the file private; the database is package data
        os.replace(tmp, target)
    except sqlite3.Error as exc:
        raise DatabaseError(f"cannot build {target} from {source}: {exc}", path=str(target)) from exc
    finally:
        tmp.unlink(missing_ok=True)
    return target
