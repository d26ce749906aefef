"""Hard bounds on SQL that structgen did not write: time (one long function call included), result bytes,
string length; names the guard would refuse are quoted; quoted function names are checked; large databases
fit the context."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

import structgen
from structgen.apps import text_to_sql, verify_sql
from structgen.apps.schema_focus import focus_schema, words
from structgen.apps.sql_guard import check_select, execute_select
from structgen.apps.sqlite_db import (
    keyword_free_name_regex,
    open_readonly,
    quote_identifier,
    read_schema,
    schema_grammar,
)
from structgen.compile._byte_tokenizer import grammar_accepts
from structgen.errors import DatabaseError, UnsafeSQL
from structgen.testing import RandomLogitsModel

from .conftest import CliRun

DOUBLING = ("WITH RECURSIVE r(s, n) AS (SELECT 'a', 0 UNION ALL SELECT s || s, n + 1 FROM r WHERE n < {n}) "
            "SELECT {what} FROM r WHERE n = {n}")


def test_one_long_function_call_is_stopped_at_the_deadline(shop_copy: Path) -> None:
    # One instr() over a 1 MB string never returns to SQLite's progress handler: ~6 s in-process before.
    sql = DOUBLING.format(n=20, what="instr(s, substr(s, 1, 524288) || 'b')")
    conn = open_readonly(shop_copy)
    start = time.monotonic()
    with pytest.raises(DatabaseError, match="time limit"):
        execute_select(sql, conn, timeout_s=1.0)
    assert time.monotonic() - start < 2.5
    conn.close()


@pytest.mark.parametrize("what", ["like(s, s || 'x')", "replace(s, 'a', 'aa')", "length(s)"])
def test_other_long_calls_are_bounded_too(shop_copy: Path, what: str) -> None:
    conn = open_readonly(shop_copy)
    start = time.monotonic()
    with pytest.raises(DatabaseError):
        execute_select(DOUBLING.format(n=24, what=what), conn, timeout_s=1.0, max_bytes=4_000_000)
    assert time.monotonic() - start < 2.5
    conn.close()


def test_results_are_bounded_in_bytes_not_only_rows(shop_copy: Path) -> None:
    # 40 rows of a 1 MB string: 40 MB in Python before; now the byte budget ends it with a typed error.
    sql = ("WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < 40), "
           "r(s, n) AS (SELECT 'a', 0 UNION ALL SELECT s || s, n + 1 FROM r WHERE n < 20) "
           "SELECT i, s FROM k, r WHERE n = 20")
    conn = open_readonly(shop_copy)
    with pytest.raises(DatabaseError, match="byte budget"):
        execute_select(sql, conn, max_bytes=5_000_000)
    columns, rows = execute_select(sql, conn, max_bytes=50_000_000)   # within budget: every row, whole
    assert columns == ["i", "s"] and len(rows) == 40 and len(rows[0][1]) == 2**20
    conn.close()


def test_a_string_longer_than_the_budget_cannot_even_be_built(shop_copy: Path) -> None:
    conn = open_readonly(shop_copy)
    with pytest.raises(DatabaseError, match=r"too big|byte budget"):
        execute_select(DOUBLING.format(n=26, what="length(s)"), conn, max_bytes=1_000_000)
    conn.close()


def test_values_come_back_with_their_types(shop_copy: Path) -> None:
    conn = open_readonly(shop_copy)
    columns, rows = execute_select("SELECT x'00ff', 1.5, NULL, 'é', 7", conn)
    assert rows == [(b"\x00\xff", 1.5, None, "é", 7)] and len(columns) == 5
    conn.close()


def test_the_cli_cuts_long_cells(run_cli: CliRun, shop_copy: Path) -> None:
    code, out, _ = run_cli("sql", "--db", str(shop_copy), "--execute",
                           "--sql", DOUBLING.format(n=14, what="s"))
    assert code == 0
    assert "(16,384 chars)" in out and len(out) < 5000


def _db(tmp_path: Path, ddl: str) -> Path:
    path = tmp_path / "names.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(ddl)
    conn.close()
    return path


@pytest.mark.parametrize("name", ["upsert", "pragma_x", "PRAGMA_table_info", "returning", "select", "replace",
                                  "into", "explain", "attach", "count"])
def test_names_the_guard_would_refuse_are_quoted(tmp_path: Path, name: str) -> None:
    path = _db(tmp_path, f'CREATE TABLE "{name}" ("{name}" INTEGER); INSERT INTO "{name}" VALUES (7);')
    conn = open_readonly(path)
    schema = read_schema(conn)
    q = quote_identifier(name)
    sql = f"SELECT {q} FROM {q}"
    assert check_select(sql, conn) == sql
    assert grammar_accepts(schema_grammar(schema), sql)
    conn.close()
    assert verify_sql(sql, path, execute=True).rows == [(7,)]


def test_the_question_about_upsert_is_answered(tmp_path: Path, random_model: RandomLogitsModel) -> None:
    path = _db(tmp_path, "CREATE TABLE upsert (id INTEGER PRIMARY KEY, pragma_note TEXT);"
                         "INSERT INTO upsert VALUES (1, 'a'), (2, 'b');")
    result = text_to_sql("How many rows are in upsert?", path, n=4, model=random_model, seed=3)
    assert result.explain_ok and '"upsert"' in result.sql


def test_aliases_cannot_be_keywords_in_any_case(shop_copy: Path) -> None:
    conn = open_readonly(shop_copy)
    grammar = schema_grammar(read_schema(conn))
    conn.close()
    assert grammar_accepts(grammar, "SELECT name AS label FROM customers")
    assert grammar_accepts(grammar, "SELECT name AS froms FROM customers")
    for alias in ("from", "fRoM", "where", "select", "order", "limit", "group"):
        assert not grammar_accepts(grammar, f"SELECT name AS {alias} FROM customers"), alias


def test_keyword_free_names_are_exactly_the_non_keywords() -> None:
    import re

    rx = re.compile(keyword_free_name_regex())
    for word in ("froms", "fro", "_from", "from_", "a1", "selected", "order2", "x"):
        assert rx.fullmatch(word), word
    for word in ("from", "select", "transaction", "current_timestamp", "nOt", "in"):
        assert not rx.fullmatch(word), word


@pytest.mark.parametrize("sql", ["SELECT \"load_extension\"('x')", "SELECT `load_extension`('x')",
                                 "SELECT [randomblob](5)", "SELECT * FROM \"pragma_table_info\"('orders')"])
def test_quoted_function_names_meet_the_allow_list(shop_copy: Path, sql: str) -> None:
    conn = open_readonly(shop_copy)
    with pytest.raises(UnsafeSQL, match=r"function .*\(\) is not allowed"):
        check_select(sql, conn)
    conn.close()


# ---- large databases ---------------------------------------------------------------------------------------

TOPICS = ["customer", "invoice", "shipment", "warehouse", "supplier", "product", "employee", "department",
          "payment", "refund", "carrier", "region", "campaign", "coupon", "review", "ticket"]


@pytest.fixture
def big_db(tmp_path: Path) -> Path:
    """300 tables (~28k prompt tokens as CREATE TABLE lines), with foreign keys between neighbours."""
    lines = []
    for i in range(300):
        topic = TOPICS[i % len(TOPICS)]
        ref = f", parent_id INTEGER REFERENCES {TOPICS[(i + 1) % len(TOPICS)]}_{i + 1}(id)" if i < 299 else ""
        lines.append(f"CREATE TABLE {topic}_{i} (id INTEGER PRIMARY KEY, {topic}_name TEXT, amount REAL, "
                     f"created_at TEXT, status TEXT, notes TEXT{ref});")
    lines.append("INSERT INTO refund_137 VALUES (1, 'r', 2.5, '2024-01-01', 'open', '', 1);")
    return _db(tmp_path, "\n".join(lines))


def test_a_schema_too_large_is_narrowed_to_the_tables_asked_about(big_db: Path) -> None:
    conn = open_readonly(big_db)
    schema = read_schema(conn)
    conn.close()
    assert len(schema.to_prompt()) > 40_000
    focused = focus_schema(schema, "How many rows are in refund_137?", 4000)
    names = focused.table_names()
    assert "refund_137" in names and len(focused.to_prompt()) <= 4000
    assert "carrier_138" in names   # its foreign-key neighbour comes along
    assert focus_schema(schema, "anything", 10**9) is schema
    assert words("OrderItems order_items2 Categories") >= {"order", "item", "category"}


def test_sql_on_a_300_table_database_fits_n_ctx(big_db: Path, model: structgen.LlamaCpp) -> None:
    # Before: "the prompt has 15,718 tokens; n_ctx is ..." (27,669 on the database). A small context keeps
    # the prefill short here; the budget comes from the model's own n_ctx.
    small = structgen.LlamaCpp(model.path, n_ctx=1536)
    result = text_to_sql("How many rows are in refund_137?", big_db, n=1, model=small, execute=True, rounds=1,
                         max_tokens=48)
    assert result.explain_ok and result.tables


def test_the_cli_takes_n_ctx(run_cli: CliRun, big_db: Path, random_model: RandomLogitsModel) -> None:
    code, _out, err = run_cli("sql", "--db", str(big_db), "--n-ctx", "2048", "How many refunds?",
                              model=random_model)
    assert "n_ctx" not in err and code in (0, 1)
