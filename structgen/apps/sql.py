"""``text_to_sql``: a question about an SQLite database → one verified, read-only SELECT (run on request).

The database is opened read-only (:func:`~structgen.apps.sqlite_db.open_readonly`); its schema goes into
the prompt and into a schema-aware grammar (:func:`~structgen.apps.sqlite_db.schema_grammar`), so every
candidate is one SELECT that names only real tables and columns. Each candidate then passes
:func:`~structgen.apps.sql_guard.check_select` (a second, independent guard: one statement, no writes,
``EXPLAIN`` compiles on the read-only connection under an authorizer). The best candidate that passes, by
average logprob, is returned; with ``execute=True`` it runs with a row limit and a time limit.
"""

from __future__ import annotations

import math
import os
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .._unicode import check_text
from ..compile.kinds import Grammar
from ..errors import DatabaseError, GenerationError, GrammarError, InvalidArgument, UnsafeSQL
from ..generate import default_model
from ..request import resolve_seed
from . import sql_guard, sqlite_db
from ._sampling import Sample, sample_texts
from .schema_focus import focus_schema
from .sql_scope import scoped_grammar

__all__ = [
    "SqlCandidate",
    "SqlNotVerified",
    "SqlResult",
    "extract_sql",
    "sql_messages",
    "text_to_sql",
    "verify_sql",
]

SYSTEM_PROMPT = (
    "You write SQLite queries. Given a database schema and a question, reply with one SELECT statement "
    "that answers the question, and nothing else."
)

# Few-shot turns over a small schema of their own, so they cannot leak answers about the user's database.
SHOT_SCHEMA = (
    "CREATE TABLE authors (id INTEGER PRIMARY KEY, name TEXT NOT NULL, country TEXT);\n"
    "CREATE TABLE books (id INTEGER PRIMARY KEY, title TEXT NOT NULL, author_id INTEGER REFERENCES authors(id), "
    "year INTEGER, pages INTEGER);"
)
SHOTS: tuple[tuple[str, str], ...] = (
    ("How many books are there?", "SELECT COUNT(*) FROM books"),
    ("Which books were published after 2000, newest first?",
     "SELECT title, year FROM books WHERE year > 2000 ORDER BY year DESC"),
    ("How many books has each author written?",
     "SELECT a.name, COUNT(b.id) AS books FROM authors a JOIN books b ON b.author_id = a.id "
     "GROUP BY a.id, a.name ORDER BY books DESC"),
)


@dataclass(frozen=True, slots=True)
class SqlCandidate:
    """One generated query; ``explain_ok`` says it passed ``check_select`` (``error`` says why not)."""

    sql: str
    avg_logprob: float | None
    explain_ok: bool
    error: str | None = None
    grammar: str = "schema"   # "schema" (full grammar), "scoped" (the fallback) or "none" (prompt-only)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view."""
        return {"sql": self.sql, "avg_logprob": self.avg_logprob, "explain_ok": self.explain_ok, "error": self.error,
                "grammar": self.grammar}


@dataclass(frozen=True, slots=True)
class SqlResult:
    """The chosen query, the tables it reads, every candidate, and the rows when it was executed."""

    sql: str
    explain_ok: bool
    tables: list[str]
    candidates: list[SqlCandidate] = field(default_factory=list)
    columns: list[str] | None = None            # set when executed
    rows: list[tuple[Any, ...]] | None = None   # set when executed (at most max_rows)
    avg_logprob: float | None = None
    seed: int | None = None

    @property
    def executed(self) -> bool:
        """Whether the query was run (``columns`` and ``rows`` are set)."""
        return self.rows is not None

    def records(self) -> list[dict[str, Any]]:
        """The rows as objects keyed by column name (a repeated name gets a ``_2``, ``_3``... suffix)."""
        keys = _unique(self.columns or [])
        return [{k: _jsonable(v) for k, v in zip(keys, row, strict=True)} for row in self.rows or []]

    def to_dict(self) -> dict[str, Any]:
        """The ``structgen sql --json`` object (``rows`` only when executed)."""
        out: dict[str, Any] = {"sql": self.sql, "explain_ok": self.explain_ok, "tables": list(self.tables)}
        if self.executed:
            out["rows"] = self.records()
        out["candidates"] = [c.to_dict() for c in self.candidates]
        return out


class SqlNotVerified(GenerationError):
    """No candidate query passed ``check_select``; ``candidates`` holds each one with the reason."""

    def __init__(self, message: str, *, candidates: Sequence[SqlCandidate] = ()) -> None:
        self.candidates = list(candidates)
        super().__init__(message)

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` object for a failure: the most likely candidate, ``explain_ok: false``."""
        top = self.candidates[0].sql if self.candidates else ""
        return {"sql": top, "explain_ok": False, "tables": [], "candidates": [c.to_dict() for c in self.candidates]}


def _unique(names: Sequence[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def sql_messages(question: str, schema_text: str) -> list[dict[str, str]]:
    """The chat messages that ask for a query: instructions, few-shot turns, then schema and question."""
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    for q, answer in SHOTS:
        messages.append({"role": "user", "content": _request(q, SHOT_SCHEMA)})
        messages.append({"role": "assistant", "content": answer})
    messages.append({"role": "user", "content": _request(question, schema_text)})
    return messages


def _request(question: str, schema_text: str) -> str:
    return f"Schema:\n{schema_text}\n\nQuestion: {question.strip()}"


# ---- extraction (prompt-only baseline) -------------------------------------------------------------

_FENCE = re.compile(r"```[^\n`]*\n?(.*?)(?:```|\Z)", re.S)
_SQL_START = re.compile(r"\bSELECT\b|\bWITH\s+(RECURSIVE\s+)?[\w\"]+\s*(\([^)]*\)\s*)?AS\s*\(", re.I)


def extract_sql(reply: str) -> str:
    """The query in a free-text reply: from the first SELECT/WITH (inside a code fence if there is one)
    to the first ``;``, blank line or closing fence. Used by the prompt-only baseline."""
    text = reply.strip()
    fence = _FENCE.search(text)
    if fence:
        text = fence.group(1)
    start = _SQL_START.search(text)
    if start is None:
        return ""
    text = text[start.start():]
    for stop in (";", "\n\n", "`"):
        cut = text.find(stop)
        if cut >= 0:
            text = text[:cut]
    return text.strip()


# ---- verification ---------------------------------------------------------------------------------

def _check(sql: str, conn: sqlite3.Connection) -> tuple[str, str | None]:
    """``(normalised sql, None)`` if ``sql`` passes check_select, else ``(sql, reason)``."""
    try:
        return sql_guard.check_select(sql, conn), None
    except UnsafeSQL as exc:
        return sql, f"refused: {exc.reason}"
    except DatabaseError as exc:
        return sql, str(exc)


def _tables_read(sql: str, conn: sqlite3.Connection, known: Sequence[str]) -> list[str]:
    """The database tables ``sql`` reads, in order of first use (from the authorizer during EXPLAIN)."""
    by_name = {t.casefold(): t for t in known}
    seen: dict[str, None] = {}

    def authorize(action: int, arg1: str | None, _arg2: str | None, _db: str | None, _src: str | None) -> int:
        if action == sqlite3.SQLITE_READ and arg1 and arg1.casefold() in by_name:
            seen[by_name[arg1.casefold()]] = None
        return sqlite3.SQLITE_OK if action in sql_guard.ALLOWED_ACTIONS else sqlite3.SQLITE_DENY

    conn.set_authorizer(authorize)
    try:
        conn.execute("EXPLAIN " + sql).fetchall()
    except sqlite3.Error as exc:  # pragma: no cover - the statement already passed check_select
        raise DatabaseError(f"SQLite rejected the query: {exc}") from exc
    finally:
        conn.set_authorizer(None)
    return list(seen)


def _open(db: str | os.PathLike[str]) -> tuple[sqlite3.Connection, sqlite_db.DbSchema]:
    if not isinstance(db, str | os.PathLike) or not str(db):
        raise InvalidArgument(f"db must be a path to an SQLite file, got {db!r}")
    conn = sqlite_db.open_readonly(db)
    try:
        return conn, sqlite_db.read_schema(conn)
    except BaseException:
        conn.close()
        raise


def _finish(sql: str, conn: sqlite3.Connection, schema: sqlite_db.DbSchema, *, candidates: list[SqlCandidate],
            avg_logprob: float | None, seed: int | None, execute: bool, max_rows: int,
            timeout_s: float, max_bytes: int) -> SqlResult:
    tables = _tables_read(sql, conn, schema.table_names())
    columns: list[str] | None = None
    rows: list[tuple[Any, ...]] | None = None
    if execute:
        columns, rows = sql_guard.execute_select(sql, conn, max_rows=max_rows, timeout_s=timeout_s,
                                                 max_bytes=max_bytes)
    return SqlResult(sql=sql, explain_ok=True, tables=tables, candidates=candidates, columns=columns, rows=rows,
                     avg_logprob=avg_logprob, seed=seed)


def verify_sql(sql: str, db: str | os.PathLike[str], *, execute: bool = False, max_rows: int = 1000,
               timeout_s: float = 5.0, max_bytes: int = sql_guard.MAX_RESULT_BYTES) -> SqlResult:
    """Check a given query exactly as generated ones are checked, and run it only if ``execute``.

    Raises :class:`~structgen.errors.UnsafeSQL` for anything but one read-only SELECT and
    :class:`~structgen.errors.DatabaseError` for a query SQLite cannot compile or run.
    """
    if not isinstance(sql, str) or not sql.strip():
        raise InvalidArgument("the SQL is empty")
    conn, schema = _open(db)
    try:
        text = sql_guard.check_select(sql, conn)
        return _finish(text, conn, schema, candidates=[], avg_logprob=None, seed=None, execute=execute,
                       max_rows=max_rows, timeout_s=timeout_s, max_bytes=max_bytes)
    finally:
        conn.close()


# ---- the app --------------------------------------------------------------------------------------

SCOPED_MAX_TOKENS = 640
"""Token budget of the fallback round: above the longest string the bounded scoped grammar accepts."""


def _schema_grammar(schema: sqlite_db.DbSchema) -> Grammar:
    try:
        return Grammar(sqlite_db.schema_grammar(schema), name="sqlite_select.lark (schema-aware)")
    except (OSError, UnicodeDecodeError) as exc:
        raise GrammarError(f"cannot read the bundled grammar: {exc}", file="sqlite_select.lark") from exc


def _plan(schema: sqlite_db.DbSchema, constrained: bool, rounds: int, max_tokens: int) -> list[
        tuple[Grammar | None, str, int]]:
    """(grammar, its label, token budget) per round: the full grammar ``rounds`` times, then the scoped
    fallback once; prompt-only: free text ``rounds`` times."""
    if not constrained:
        return [(None, "none", max_tokens)] * rounds
    full = _schema_grammar(schema)
    scoped = Grammar(scoped_grammar(schema), name="scoped SELECT grammar")
    return [*[(full, "schema", max_tokens)] * rounds, (scoped, "scoped", max(max_tokens, SCOPED_MAX_TOKENS))]


def text_to_sql(
    question: str,
    db: str | os.PathLike[str],
    n: int = 4,
    execute: bool = False,
    model: Any = None,
    *,
    temperature: float | None = None,
    seed: int | None = None,
    max_tokens: int = 192,
    rounds: int = 2,
    constrained: bool = True,
    max_rows: int = 1000,
    timeout_s: float = 5.0,
    max_bytes: int = sql_guard.MAX_RESULT_BYTES,
    max_schema_chars: int | None = None,
) -> SqlResult:
    """Answer ``question`` about the SQLite file ``db`` with one verified, read-only SELECT.

    ``n`` candidates are sampled in one batch (``n == 1``: greedy; otherwise ``temperature``, default 0.7,
    seeded by ``seed``) under the schema-aware grammar; each must pass ``check_select`` (EXPLAIN on the
    read-only connection). The passing one with the best average logprob is returned. If none passes, up
    to ``rounds`` rounds are drawn, then one round under a narrower grammar whose every query compiles
    (each column belongs to a table in FROM; see ``sql_scope``). :class:`SqlNotVerified`, with every
    candidate, is raised only if even that yields nothing.
    ``execute=True`` runs it (at most ``max_rows`` rows and ``max_bytes`` bytes, stopped after ``timeout_s``
    seconds). ``constrained=False`` is the prompt-only baseline: free text, the query extracted from the reply.
    A schema too large for the prompt is narrowed to the tables the question needs (``schema_focus``), prompt
    and grammar alike: to ``max_schema_chars`` characters, or by default to what the local model's ``n_ctx``
    leaves after the instructions and the token budget.

    Raises :class:`~structgen.errors.DatabaseError` for a missing, non-SQLite or empty database and
    :class:`~structgen.errors.InvalidArgument` for an empty question.
    """
    if not isinstance(question, str) or not question.strip():
        raise InvalidArgument("the question is empty")
    check_text("the question", question)
    for name, value in (("n", n), ("rounds", rounds)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidArgument(f"{name} must be a positive integer, got {value!r}")
    temp = (0.0 if n == 1 else 0.7) if temperature is None else temperature
    base_seed = resolve_seed(seed)
    model = default_model() if model is None else model
    conn, full_schema = _open(db)
    try:
        budget_chars = max_schema_chars if max_schema_chars is not None else _schema_budget(
            model, question, full_schema, max(max_tokens, SCOPED_MAX_TOKENS))
        schema = focus_schema(full_schema, question, budget_chars) if budget_chars is not None else full_schema
        messages = sql_messages(question, schema.to_prompt())
        candidates: list[SqlCandidate] = []
        for k, (grammar, label, budget) in enumerate(_plan(schema, constrained, rounds, max_tokens)):
            samples = sample_texts(messages, grammar, model=model, n=n, temperature=temp, seed=base_seed,
                                   max_tokens=budget, round_index=k)
            candidates.extend(_check_samples(samples, conn, label, seen=candidates))
            if any(c.explain_ok for c in candidates):
                break
        candidates.sort(key=lambda c: c.avg_logprob if c.avg_logprob is not None else -math.inf, reverse=True)
        best = next((c for c in candidates if c.explain_ok), None)
        if best is None:
            top = candidates[0] if candidates else None
            why = f"; the most likely, {top.sql!r}: {top.error}" if top else ""
            raise SqlNotVerified(f"no query passed the checks among {len(candidates)} candidate(s){why}",
                                 candidates=candidates)
        return _finish(best.sql, conn, full_schema, candidates=candidates, avg_logprob=best.avg_logprob,
                       seed=base_seed, execute=execute, max_rows=max_rows, timeout_s=timeout_s, max_bytes=max_bytes)
    finally:
        conn.close()


def _schema_budget(model: Any, question: str, schema: sqlite_db.DbSchema, reserve: int) -> int | None:
    """Characters of schema text that fit in a local model's context (None: unknown, e.g. a hosted model)."""
    n_ctx = getattr(model, "n_ctx", None)
    prompt_tokens = getattr(model, "prompt_tokens", None)
    tokenize = getattr(model, "tokenize", None)
    if not isinstance(n_ctx, int) or prompt_tokens is None:
        return None
    text = schema.to_prompt()
    base = len(prompt_tokens(sql_messages(question, "")))
    per_char = len(tokenize(text)) / max(1, len(text)) if tokenize is not None else 1 / 3
    room = n_ctx - base - reserve - _CONTEXT_MARGIN
    if room <= 0:
        raise InvalidArgument(f"n_ctx={n_ctx} leaves no room for the schema after the instructions and "
                              f"{reserve} tokens of answer; raise n_ctx")
    return int(room / max(per_char, 1e-3))


_CONTEXT_MARGIN = 32   # tokens kept free: the estimate of characters per token is an average


def _check_samples(samples: Sequence[Sample], conn: sqlite3.Connection, grammar: str,
                   seen: Sequence[SqlCandidate]) -> list[SqlCandidate]:
    """Check each new query once (a duplicate keeps the better logprob); unfinished samples are reported.
    ``grammar`` labels the round ("none": prompt-only, so the query is extracted from the reply)."""
    known = {c.sql for c in seen}
    out: dict[str, SqlCandidate] = {}
    failed: list[SqlCandidate] = []
    for s in samples:
        text = extract_sql(s.text) if grammar == "none" else s.text
        if s.error is not None and grammar != "none":
            failed.append(SqlCandidate(text, None, False, f"generation failed: {s.error}", grammar))
            continue
        if not text:
            failed.append(SqlCandidate("", s.avg_logprob, False, "no SQL in the reply", grammar))
            continue
        sql, error = _check(text, conn)
        if sql in known or (sql in out and s.rank <= _rank(out[sql].avg_logprob)):
            continue
        out[sql] = SqlCandidate(sql, s.avg_logprob, error is None, error, grammar)
    return [*out.values(), *failed]


def _rank(avg_logprob: float | None) -> float:
    return avg_logprob if avg_logprob is not None else -math.inf
