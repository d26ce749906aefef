"""``structgen.apps.text_to_sql`` / ``verify_sql`` and the scoped fallback grammar."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import lark
import llguidance
import pytest

import structgen
from structgen.apps import SqlNotVerified, SqlResult, sqlite_db, text_to_sql, verify_sql
from structgen.apps.sql import extract_sql, sql_messages
from structgen.apps.sql_guard import check_select
from structgen.apps.sql_scope import scoped_grammar
from structgen.apps.sqlite_db import open_readonly, read_schema
from structgen.errors import DatabaseError, GrammarError, InvalidArgument, UnsafeSQL
from structgen.testing import RandomLogitsModel

from .conftest import digest
from .sql_attacks import STATEMENT_ATTACKS

# A database whose names need quoting: keywords, a space, mixed case, a self reference.
ODD_DB = """
CREATE TABLE "order" ("group" INTEGER PRIMARY KEY, "the name" TEXT, placed TEXT);
CREATE TABLE item (id INTEGER PRIMARY KEY, order_group INTEGER REFERENCES "order"("group"), "Qty" REAL,
                   parent INTEGER REFERENCES item(id));
CREATE TABLE note (id INTEGER PRIMARY KEY, item_id INTEGER REFERENCES item(id), body TEXT);
INSERT INTO "order" VALUES (1, 'first', '2024-01-02'), (2, 'second', '2023-05-06');
INSERT INTO item VALUES (1, 1, 2.5, NULL), (2, 1, 1.0, 1), (3, 2, 4.0, NULL);
INSERT INTO note VALUES (1, 1, 'fragile');
"""


@pytest.fixture
def odd_db(tmp_path: Path) -> Path:
    path = tmp_path / "odd.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(ODD_DB)
    conn.close()
    return path


# ---- the scoped grammar ----------------------------------------------------------------------------


def _scoped(db: Path) -> str:
    conn = open_readonly(db)
    try:
        return scoped_grammar(read_schema(conn))
    finally:
        conn.close()


@pytest.mark.parametrize("which", ["shop", "odd"])
def test_scoped_grammar_builds_in_both_engines(which: str, shop_copy: Path, odd_db: Path) -> None:
    text = _scoped(shop_copy if which == "shop" else odd_db)
    assert not llguidance.LLMatcher.validate_grammar(llguidance.LLMatcher.grammar_from_lark(text))
    lark.Lark(text, start="start", parser="earley", lexer="dynamic")


@pytest.mark.parametrize("which", ["shop", "odd"])
def test_scoped_grammar_only_yields_queries_that_compile(which: str, shop_copy: Path, odd_db: Path,
                                                         random_model: RandomLogitsModel) -> None:
    # Random logits explore the grammar far beyond what a model writes; every string must pass EXPLAIN.
    db = shop_copy if which == "shop" else odd_db
    grammar = structgen.Grammar(_scoped(db))
    conn = open_readonly(db)
    seen_join = False
    try:
        for seed in range(25):
            r = structgen.generate("q", grammar, model=random_model, seed=seed, temperature=1.0, max_tokens=640)
            check_select(r.text, conn)
            seen_join = seen_join or " JOIN " in r.text
    finally:
        conn.close()
    assert seen_join


def test_scoped_grammar_scopes_columns_to_the_from_clause(shop_copy: Path) -> None:
    text = _scoped(shop_copy)
    parser = lark.Lark(text, start="start", parser="earley", lexer="dynamic")
    parser.parse("SELECT name, price FROM products WHERE price > 20 ORDER BY price DESC LIMIT 3")
    parser.parse("SELECT customers.name, COUNT(*) FROM orders JOIN customers ON orders.customer_id = customers.id "
                 "GROUP BY customers.name ORDER BY COUNT(*) DESC")
    for wrong in ["SELECT price FROM customers",                                # column of another table
                  "SELECT name FROM products WHERE SUM(price) > 1",             # aggregate in WHERE
                  "SELECT name FROM products ORDER BY MAX(price)",              # aggregate order, no GROUP BY
                  "SELECT products.name FROM orders JOIN customers ON orders.customer_id = customers.id"]:
        with pytest.raises(lark.exceptions.LarkError):
            parser.parse(wrong)


# ---- verify_sql (a user's own query goes through the same guard) ------------------------------------


def test_verify_sql_checks_and_runs_only_on_request(shop_copy: Path) -> None:
    r = verify_sql("SELECT name FROM categories ORDER BY name;", shop_copy)
    assert isinstance(r, SqlResult) and r.explain_ok and r.sql == "SELECT name FROM categories ORDER BY name"
    assert r.tables == ["categories"] and not r.executed and "rows" not in r.to_dict()
    ran = verify_sql("SELECT c.name, COUNT(*) AS n FROM customers c JOIN orders o ON o.customer_id = c.id "
                     "GROUP BY c.name ORDER BY n DESC, c.name", shop_copy, execute=True, max_rows=3)
    assert ran.tables == ["customers", "orders"] and ran.columns == ["name", "n"]
    direct = sqlite3.connect(shop_copy).execute(
        "SELECT c.name, COUNT(*) AS n FROM customers c JOIN orders o ON o.customer_id = c.id "
        "GROUP BY c.name ORDER BY n DESC, c.name LIMIT 3").fetchall()
    assert ran.rows == direct
    assert ran.to_dict()["rows"] == [{"name": a, "n": b} for a, b in direct]
    counted = verify_sql("SELECT COUNT(*) FROM products", shop_copy, execute=True)
    assert counted.tables == ["products"]  # read without naming a column


def test_records_disambiguate_repeated_column_names(shop_copy: Path) -> None:
    r = verify_sql("SELECT name, name, id FROM categories WHERE id = 1", shop_copy, execute=True)
    assert r.records() == [{"name": "Books", "name_2": "Books", "id": 1}]


@pytest.mark.parametrize("template", STATEMENT_ATTACKS, ids=lambda s: repr(s)[:50])
def test_verify_sql_refuses_anything_but_one_select(template: str, shop_copy: Path, tmp_path: Path) -> None:
    before = digest(shop_copy)
    with pytest.raises(UnsafeSQL):
        verify_sql(template.replace("{tmp}", str(tmp_path)), shop_copy, execute=True)
    assert digest(shop_copy) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [shop_copy.name]


def test_verify_sql_refuses_an_empty_query(shop_copy: Path) -> None:
    for empty in ("", "   \n"):
        with pytest.raises(InvalidArgument, match="empty"):
            verify_sql(empty, shop_copy)


def test_verify_sql_reports_a_query_sqlite_cannot_compile(shop_copy: Path) -> None:
    with pytest.raises(DatabaseError, match="no such column"):
        verify_sql("SELECT price FROM customers", shop_copy)


# ---- database and argument errors -------------------------------------------------------------------


def test_database_errors_are_typed(tmp_path: Path, random_model: RandomLogitsModel) -> None:
    missing = tmp_path / "missing.sqlite"
    not_sqlite = tmp_path / "notes.sqlite"
    not_sqlite.write_text("just text, not a database\n" * 100)
    empty = tmp_path / "empty.sqlite"
    sqlite3.connect(empty).close()
    for path, message in [(missing, "not found"), (not_sqlite, "not an SQLite database"), (empty, "no tables"),
                          (tmp_path, "not a file")]:
        with pytest.raises(DatabaseError, match=message):
            text_to_sql("How many rows?", path, model=random_model)
        with pytest.raises(DatabaseError, match=message):
            verify_sql("SELECT 1", path)
    assert not missing.exists()  # a read-only open never creates the file


@pytest.mark.parametrize("question", ["", "   "])
def test_empty_question(question: str, shop_copy: Path, random_model: RandomLogitsModel) -> None:
    with pytest.raises(InvalidArgument, match="question is empty"):
        text_to_sql(question, shop_copy, model=random_model)


def test_unreadable_grammar_is_a_grammar_error(shop_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               random_model: RandomLogitsModel) -> None:
    monkeypatch.setattr(sqlite_db, "grammar_path", lambda: tmp_path)  # a directory: reading it fails
    with pytest.raises(GrammarError, match="cannot read the bundled grammar"):
        text_to_sql("How many customers are there?", shop_copy, model=random_model)


# ---- generation ------------------------------------------------------------------------------------


def test_prompt_carries_the_schema_and_few_shot_turns(shop_copy: Path) -> None:
    conn = open_readonly(shop_copy)
    schema_text = read_schema(conn).to_prompt()
    conn.close()
    messages = sql_messages("How many customers?", schema_text)
    assert messages[-1]["content"].endswith("Question: How many customers?")
    assert schema_text in messages[-1]["content"]
    assert "CREATE TABLE order_items" in schema_text
    assert len(messages) >= 5 and all(m["content"].startswith("SELECT") for m in messages[2:-1:2])


@pytest.mark.parametrize(("reply", "sql"), [
    ("SELECT COUNT(*) FROM customers", "SELECT COUNT(*) FROM customers"),
    ("Here you go:\n```sql\nSELECT name\nFROM products;\n```\nIt lists names.", "SELECT name\nFROM products"),
    ("The query is `SELECT 1` and that is it", "SELECT 1"),
    ("with x as (select 1) select * from x;\n\nExplanation", "with x as (select 1) select * from x"),
    ("I cannot help with that.", ""),
])
def test_extract_sql(reply: str, sql: str) -> None:
    assert extract_sql(reply) == sql


def test_random_logits_still_get_a_valid_query_through_the_fallback(shop_copy: Path,
                                                                    random_model: RandomLogitsModel) -> None:
    before = digest(shop_copy)
    used = set()
    for seed in range(3):
        r = text_to_sql("How many customers are there?", shop_copy, n=2, model=random_model, seed=seed, rounds=1,
                        execute=True, max_rows=5)
        conn = open_readonly(shop_copy)
        try:
            assert check_select(r.sql, conn) == r.sql
        finally:
            conn.close()
        chosen = next(c for c in r.candidates if c.sql == r.sql)
        assert chosen.explain_ok and chosen.grammar in ("schema", "scoped")
        used.add(chosen.grammar)
        assert r.executed and r.rows is not None and len(r.rows) <= 5
        assert set(r.tables) <= {"categories", "customers", "products", "orders", "order_items"}
    assert "scoped" in used  # random logits rarely pass EXPLAIN under the full grammar: the fallback ran
    assert digest(shop_copy) == before


def test_no_candidate_at_all_raises_sql_not_verified(shop_copy: Path, random_model: RandomLogitsModel) -> None:
    # Prompt-only (free text) from random logits: no SELECT can be extracted, and there is no fallback.
    with pytest.raises(SqlNotVerified) as info:
        text_to_sql("How many customers are there?", shop_copy, n=2, model=random_model, seed=0, rounds=1,
                    constrained=False, max_tokens=16)
    assert info.value.candidates and all(not c.explain_ok and c.error for c in info.value.candidates)
    assert info.value.to_dict()["explain_ok"] is False


def test_real_model_sql_end_to_end(shop_copy: Path, app_model: structgen.LlamaCpp) -> None:
    before = digest(shop_copy)
    r = text_to_sql("List the names of all categories.", shop_copy, n=1, execute=True, model=app_model, seed=0)
    conn = open_readonly(shop_copy)
    try:
        assert check_select(r.sql, conn) == r.sql
        expected = conn.execute(r.sql).fetchall()
    finally:
        conn.close()
    assert r.explain_ok and r.executed and r.rows == expected
    assert r.tables and set(r.tables) <= {"categories", "customers", "products", "orders", "order_items"}
    d = r.to_dict()
    assert list(d) == ["sql", "explain_ok", "tables", "rows", "candidates"]
    assert d["candidates"] and {"sql", "avg_logprob", "explain_ok", "error"} <= d["candidates"][0].keys()
    assert digest(shop_copy) == before
