"""The part of a large database's schema a question needs, so that prompt and grammar fit the context.

A 300-table database is ~28,000 prompt tokens as ``CREATE TABLE`` lines; a small model has 4,096. When the
whole schema does not fit its budget, ``focus_schema`` keeps the tables whose names and columns share words
with the question (table-name matches count most), then the tables those reference or are referenced by
(a join needs both ends), in that order, until the budget is spent. The grammar is built from the same
subset, so the model can only name what it was shown; the guard still checks the query against the whole
database.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .sqlite_db import DbSchema, Table

__all__ = ["focus_schema", "words"]

_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_TABLE_WEIGHT = 3


def words(text: str) -> set[str]:
    """Lower-case word stems of ``text``: identifiers split on ``_``, digits and camelCase; plurals folded."""
    out = set()
    for w in _WORD.findall(text):
        w = w.lower()
        if len(w) > 4 and w.endswith("ies"):
            w = w[:-3] + "y"
        elif len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
            w = w[:-1]
        if len(w) > 1:
            out.add(w)
    return out


def _score(table: Table, asked: set[str]) -> int:
    column_words = set().union(*(words(c.name) for c in table.columns)) if table.columns else set()
    return _TABLE_WEIGHT * len(words(table.name) & asked) + len(column_words & asked)


def _neighbours(table: Table, by_name: dict[str, Table]) -> Iterable[str]:
    yield from (ref for _, ref, _ in table.foreign_keys if ref in by_name)
    yield from (t.name for t in by_name.values() if any(ref == table.name for _, ref, _ in t.foreign_keys))


def focus_schema(schema: DbSchema, question: str, max_chars: int) -> DbSchema:
    """``schema`` itself if its prompt text (``DbSchema.to_prompt``) fits in ``max_chars``; else the tables
    the question most likely needs, as many as fit (always at least one)."""
    if len(schema.to_prompt()) <= max_chars:
        return schema
    asked = words(question)
    by_name = {t.name: t for t in schema.tables}
    scored = sorted(((s, i, t.name) for i, t in enumerate(schema.tables) if (s := _score(t, asked)) > 0),
                    key=lambda x: (-x[0], x[1]))
    order = [name for _, _, name in scored]
    for name in list(order):
        order.extend(n for n in _neighbours(by_name[name], by_name) if n not in order)
    order.extend(t.name for t in schema.tables if t.name not in order)   # no word matched: schema order
    kept: list[str] = []
    used = 0
    for name in order:
        line = len(DbSchema([by_name[name]]).to_prompt()) + 1
        if kept and used + line > max_chars:
            continue
        kept.append(name)
        used += line
    keep = set(kept)
    return DbSchema([t for t in schema.tables if t.name in keep])
