"""SQLite pieces of ``structgen sql``: a read-only connection, the schema, and a schema-aware grammar (the
first line of defence; :mod:`structgen.apps.sql_guard` is the second), plus the bundled demo database."""

from __future__ import annotations

import functools
import importlib.resources
import os
import re
import sqlite3
import string
import tempfile
import unicodedata
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import llguidance

from ..errors import DatabaseError, GrammarError, SchemaError

__all__ = [
    "FORBIDDEN_WORDS",
    "MAX_SQL_CHARS",
    "SQLITE_KEYWORDS",
    "UNSAFE_CATEGORIES",
    "Column",
    "DbSchema",
    "Table",
    "build_shop_db",
    "grammar_path",
    "keyword_free_name_regex",
    "open_readonly",
    "quote_identifier",
    "read_schema",
    "schema_grammar",
    "shop_db_path",
    "shop_sql_path",
]

MAX_SQL_CHARS = 20_000
"""Longest SQL text the guard (:func:`~structgen.apps.sql_guard.check_select`) looks at; anything longer is
refused, and connections from :func:`open_readonly` take no longer statement."""

UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
"""Unicode categories no SQL text or name may contain: controls, invisible format characters, surrogates,
private-use and unassigned code points, line and paragraph separators."""

# SQLite's keywords (https://sqlite.org/lang_keywords.html): a name that is one of them is quoted.
SQLITE_KEYWORDS = frozenset(
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
    WHERE WINDOW WITH WITHOUT""".split()  # noqa: SIM905
)

FORBIDDEN_WORDS = frozenset(
    """INSERT UPDATE DELETE REPLACE UPSERT CREATE DROP ALTER ATTACH DETACH PRAGMA VACUUM REINDEX ANALYZE
    BEGIN COMMIT ROLLBACK SAVEPOINT RELEASE TRANSACTION RETURNING INTO EXPLAIN TRIGGER""".split()  # noqa: SIM905
)
"""Words that never belong in a read-only SELECT, bare (REPLACE only as the function replace(...)): the guard
refuses them, so :func:`quote_identifier` quotes a name spelt like one."""

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
            # PRAGMA statements, not the pragma_table_info() functions: a user table of that name shadows them.
            quoted = '"' + str(name).replace('"', '""') + '"'
            info = conn.execute(f"PRAGMA main.table_info({quoted})").fetchall()
            columns = [Column(str(row[1]), str(row[2] or ""), bool(row[5]), bool(row[3])) for row in info]
            fks = [(row[3], row[2], row[4]) for row in sorted(
                conn.execute(f"PRAGMA main.foreign_key_list({quoted})").fetchall(), key=lambda r: (r[0], r[1]))]
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
    """``name`` as SQLite text: bare if it is a plain identifier that neither SQLite nor the guard reads as
    something else (a keyword, a forbidden word, a ``pragma_`` table), else double-quoted."""
    upper = name.upper()
    if (_BARE_NAME.fullmatch(name) and upper not in SQLITE_KEYWORDS and upper not in FORBIDDEN_WORDS
            and not upper.startswith("PRAGMA_")):
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
    return bool(name) and not any(unicodedata.category(ch) in UNSAFE_CATEGORIES for ch in name)


def _alternatives(rule: str, names: Iterable[str]) -> str:
    literals = [_lark_literal(quote_identifier(n)) for n in dict.fromkeys(names) if _usable(n)]
    if not literals:
        raise SchemaError(f"the schema has no usable {rule.replace('_', ' ')}s")
    lines = [f"{rule}: {literals[0]}"] + [f"    | {lit}" for lit in literals[1:]]
    return "\n".join(lines)


_NAME_RULE = "NAME: /[a-z_][A-Za-z0-9_]*/"
_IDENT_CHARS = frozenset(string.ascii_letters + string.digits + "_")


def _char_class(chars: Iterable[str]) -> str:
    """A regex character class for ``chars``, consecutive runs written as ranges."""
    ordered = sorted(set(chars))
    parts, i = [], 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ord(ordered[j + 1]) == ord(ordered[j]) + 1:
            j += 1
        parts.append(ordered[i] if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return "[" + "".join(parts) + "]"


@functools.cache
def keyword_free_name_regex() -> str:
    """A regex for the grammar's bare ``NAME`` (``[a-z_][A-Za-z0-9_]*``) less every SQLite keyword in any case,
    without look-arounds (llguidance has none): the complement of the keyword trie, node by node. An alias
    such as ``AS from`` would only fail EXPLAIN and waste a candidate."""
    trie: dict[str, Any] = {}
    for word in SQLITE_KEYWORDS:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node["$"] = {}
    tail = "[A-Za-z0-9_]*"

    def below(node: dict[str, Any]) -> str:
        kids = sorted(k for k in node if k != "$")
        alts = [_char_class(_IDENT_CHARS - {c for k in kids for c in (k, k.lower())}) + tail]
        alts += [_char_class({k, k.lower()}) + below(node[k]) for k in kids]
        group = "(?:" + "|".join(alts) + ")"
        return group if "$" in node else group + "?"   # a keyword must go on; any other prefix may stop

    kids = sorted(k for k in trie if k != "$")
    first = (set(string.ascii_lowercase) | {"_"}) - {k.lower() for k in kids}
    return "(?:" + "|".join([_char_class(first) + tail] + [k.lower() + below(trie[k]) for k in kids]) + ")"


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
    if _NAME_RULE not in grammar:
        raise GrammarError("the NAME rule is missing", file=_GRAMMAR_FILE)
    grammar = grammar.replace(_NAME_RULE, f"NAME: /{keyword_free_name_regex()}/")
    error = llguidance.LLMatcher.validate_grammar(llguidance.LLMatcher.grammar_from_lark(grammar))
    if error:
        raise GrammarError(f"the schema-aware grammar does not compile: {error}", file=_GRAMMAR_FILE)
    return grammar


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
