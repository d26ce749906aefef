"""A narrow SELECT grammar in which every column belongs to a table in the FROM clause.

The schema-aware grammar (``sqlite_db.schema_grammar``) admits any real column anywhere, so a model can
still write ``SELECT price FROM customers`` and fail ``EXPLAIN``: a context-free grammar cannot see which
tables the FROM clause names. This grammar fixes the FROM clause first, as one alternative per *scope*
(a single table, or two or three tables joined along their foreign keys), and offers only that scope's
columns, table-qualified when there is a join. Clauses are few and bounded (at most five result
columns, three conditions, short literals), so every string it accepts is a query SQLite compiles, and
a sample always ends well inside a small token budget. ``text_to_sql`` falls back to it when no
candidate from the full grammar passes ``EXPLAIN``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .sqlite_db import DbSchema, quote_identifier

__all__ = ["MAX_SCOPES", "scoped_grammar"]

MAX_SCOPES = 48
"""At most this many FROM clauses (single tables first, then 2- and 3-table joins) keep the grammar small."""


@dataclass(frozen=True, slots=True)
class _Scope:
    from_sql: str
    columns: tuple[str, ...]  # as written in SQL (qualified when joined)


def _lit(sql: str) -> str:
    """A Lark string literal for ``sql``."""
    return '"' + sql.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _scopes(schema: DbSchema) -> list[_Scope]:
    tables = {t.name: t for t in schema.tables if t.columns}
    scopes = [_Scope(quote_identifier(t.name), tuple(quote_identifier(c.name) for c in t.columns))
              for t in tables.values()]
    # Foreign-key edges (child, column, parent, parent column) between two different known tables.
    edges = [(t.name, col, ref, rcol) for t in tables.values() for col, ref, rcol in t.foreign_keys
             if ref in tables and ref != t.name and any(c.name == rcol for c in tables[ref].columns)]

    def qualified(names: list[str]) -> tuple[str, ...]:
        return tuple(f"{quote_identifier(n)}.{quote_identifier(c.name)}" for n in names for c in tables[n].columns)

    def on(edge: tuple[str, str, str, str]) -> str:
        child, col, parent, pcol = (quote_identifier(x) for x in edge)
        return f"{child}.{col} = {parent}.{pcol}"

    for e in edges:
        scopes.append(_Scope(f"{quote_identifier(e[0])} JOIN {quote_identifier(e[2])} ON {on(e)}",
                             qualified([e[0], e[2]])))
    for i, a in enumerate(edges):  # two edges that share a table make a three-table join
        for b in edges[i + 1:]:
            first = {a[0], a[2]}
            new = [x for x in (b[0], b[2]) if x not in first]
            if len(new) != 1 or len(first | {b[0], b[2]}) != 3:
                continue
            names = [a[0], a[2], new[0]]
            scopes.append(_Scope(f"{quote_identifier(a[0])} JOIN {quote_identifier(a[2])} ON {on(a)} "
                                 f"JOIN {quote_identifier(new[0])} ON {on(b)}", qualified(names)))
    return scopes[:MAX_SCOPES]


_COMMON = r"""
agg: "SUM" | "AVG" | "MIN" | "MAX" | "COUNT"
cmp: " = " | " != " | " < " | " <= " | " > " | " >= "
value: NUMBER | STRING
limit: " LIMIT " INT
direction: " DESC" | " ASC"
NUMBER: /[0-9]{1,9}(\.[0-9]{1,4})?/
INT: /[1-9][0-9]{0,3}/
STRING: /'[^'\x00-\x1f\x7f]{0,40}'/
"""


def _scope_rules(k: int, scope: _Scope) -> str:
    s = f"s{k}"
    cols = " | ".join(_lit(c) for c in scope.columns)
    item = f"{s}_expr"
    items = f'{item} (", " {item})? (", " {item})? (", " {item})? (", " {item})?'
    cond = f"{s}_cond"
    return "\n".join([
        f'{s}: "SELECT " ("DISTINCT ")? {s}_select " FROM " {_lit(scope.from_sql)} {s}_where? '
        f"({s}_group {s}_order? | {s}_order_plain?) limit?",
        f'{s}_select: "*" | {items}',
        f"{s}_col: {cols}",
        # Aggregates only where SQLite allows them: the result columns, HAVING, and ORDER BY after GROUP BY.
        f'{s}_scalar: {s}_col | "strftime(\'%Y\', " {s}_col ")"',
        f'{s}_expr: {s}_scalar | agg "(" {s}_col ")" | "COUNT" "(" "*" ")" | "ROUND(" agg "(" {s}_col "), 2)"',
        f'{s}_where: " WHERE " {cond} (" AND " {cond})? (" AND " {cond})?',
        f"{cond}: {s}_scalar cmp value | {s}_col \" IS NULL\" | {s}_col \" IS NOT NULL\" "
        f'| {s}_col " LIKE " STRING | {s}_col " BETWEEN " value " AND " value',
        f'{s}_group: " GROUP BY " {s}_scalar (", " {s}_scalar)? (" HAVING " {s}_expr cmp value)?',
        f'{s}_order: " ORDER BY " {s}_expr direction? (", " {s}_expr direction?)?',
        f'{s}_order_plain: " ORDER BY " {s}_scalar direction? (", " {s}_scalar direction?)?',
    ])


def scoped_grammar(schema: DbSchema) -> str:
    """The Lark text of the scoped grammar for ``schema`` (llguidance and ``lark`` both accept it)."""
    scopes = _scopes(schema)
    start = "start: " + " | ".join(f"s{k}" for k in range(len(scopes)))
    return "\n".join([start, *(_scope_rules(k, sc) for k, sc in enumerate(scopes)), _COMMON])
