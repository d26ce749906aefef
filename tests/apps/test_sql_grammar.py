"""The SQL pieces: grammars/sqlite_select.lark, structgen.apps.sqlite_db and benchmarks/tasks/sql.jsonl.

* The grammar builds in llguidance and in the ``lark`` package (Earley, dynamic lexer), and the two agree
  on a labelled corpus (every attack below among the rejected strings) and on strings sampled byte by
  byte from llguidance. Every accepted corpus statement is also a valid query on shop.sqlite.
* The schema-aware grammar accepts exactly the real table and column names.
* ``check_select`` refuses every attack with ``UnsafeSQL`` and leaves the database file untouched; its
  SQLite layer (authorizer + bytecode audit) refuses them on its own too.
* ``open_readonly`` / ``read_schema`` / ``execute_select`` (row limit, time limit) and the bundled data.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import random
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import lark
import llguidance
import pytest

from structgen.apps import sql_guard, sqlite_db
from structgen.apps.sql_guard import check_select, execute_select
from structgen.apps.sqlite_db import DbSchema, open_readonly, read_schema, schema_grammar
from structgen.compile._byte_tokenizer import byte_tokenizer, grammar_accepts
from structgen.errors import DatabaseError, InvalidArgument, StructgenError, UnsafeSQL

from .sql_attacks import ATTACKS

# The checker's attack list, less the two only the checker stops (valid SELECTs in the grammar).
CHECKER_ONLY = {"SELECT '\u202e; DROP TABLE customers'", "SELECT " + "1 + " * 6000 + "1"}
GRAMMAR_ATTACKS = list(dict.fromkeys(a.format(tmp="/tmp") for a in ATTACKS if a not in CHECKER_ONLY))

REPO = Path(__file__).resolve().parents[2]
GRAMMAR = REPO / "grammars" / "sqlite_select.lark"
SQL_TASKS = REPO / "benchmarks" / "tasks" / "sql.jsonl"


# --------------------------------------------------------------------------------------------------
# Helpers (parsers are cached: lark's Earley parser is the slow part of this file)


@functools.cache
def _generic_source() -> str:
    return GRAMMAR.read_text(encoding="utf-8")


@functools.cache
def _shop_source() -> str:
    with open_readonly(sqlite_db.shop_db_path()) as conn:
        schema = read_schema(conn)
    conn.close()
    return schema_grammar(schema)


def _source(which: str) -> str:
    return _generic_source() if which == "generic" else _shop_source()


@functools.cache
def _llg(which: str) -> str:
    return llguidance.LLMatcher.grammar_from_lark(_source(which))


@functools.cache
def _lark(which: str) -> lark.Lark:
    return lark.Lark(_source(which), start="start", parser="earley", lexer="dynamic")


@functools.cache
def lark_accepts(which: str, text: str) -> bool:
    try:
        _lark(which).parse(text)
    except lark.exceptions.LarkError:
        return False
    return True


def llg_accepts(which: str, text: str) -> bool:
    return grammar_accepts(_llg(which), text)


def both(which: str, text: str) -> dict[str, bool]:
    return {"llguidance": llg_accepts(which, text), "lark": lark_accepts(which, text)}


@pytest.fixture(scope="module")
def shop() -> Any:
    conn = open_readonly(sqlite_db.shop_db_path())
    yield conn
    conn.close()


@pytest.fixture()
def shop_copy(tmp_path: Path) -> Path:
    """A private copy of shop.sqlite (so that a failure here cannot damage the bundled file)."""
    path = tmp_path / "shop copy #1.sqlite"  # a space and a '#' exercise the URI quoting
    path.write_bytes(sqlite_db.shop_db_path().read_bytes())
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------------------------------
# Corpus: accepted statements use shop.sqlite's names, so each must also compile there.

ACCEPT = [
    "SELECT * FROM customers",
    "SELECT COUNT(*) FROM customers;",
    "SELECT count(*) FROM orders ;",
    "SELECT DISTINCT country FROM customers",
    "SELECT name AS customer_name, email FROM customers",
    "SELECT c.* FROM customers c",
    "SELECT customers.name FROM customers",
    "SELECT c.name FROM customers AS c WHERE c.country = 'UK'",
    "SELECT name FROM customers WHERE phone IS NULL",
    "SELECT name FROM customers WHERE phone IS NOT NULL AND NOT country = 'USA'",
    "SELECT name FROM products WHERE price BETWEEN 10 AND 20.5",
    "SELECT name FROM products WHERE price NOT BETWEEN 10 AND 20 OR stock = 0",
    "SELECT name FROM customers WHERE name LIKE 'A%'",
    "SELECT name FROM customers WHERE name NOT LIKE '%son' AND email GLOB '*@example.com'",
    "SELECT name FROM customers WHERE city IN ('Paris', 'Berlin')",
    "SELECT name FROM customers WHERE id NOT IN (SELECT customer_id FROM orders)",
    "SELECT name FROM products p WHERE EXISTS (SELECT 1 FROM order_items oi WHERE oi.product_id = p.id)",
    "SELECT name FROM products p WHERE NOT EXISTS(SELECT 1 FROM order_items oi WHERE oi.product_id = p.id)",
    "SELECT name, price FROM products WHERE price > (SELECT AVG(price) FROM products)",
    "SELECT CASE WHEN price < 20 THEN 'cheap' WHEN price < 100 THEN 'mid' ELSE 'premium' END AS band FROM products",
    "SELECT CASE status WHEN 'delivered' THEN 1 ELSE 0 END FROM orders",
    "SELECT CAST(price AS INTEGER), CAST(stock AS TEXT) FROM products",
    "SELECT 1+2*3-4/2%3, 'a'||'b' || name, (price + 1) * 2 FROM products",
    "SELECT 1<2, 1<=2, 1>2, 1>=2, 1=1, 1==1, 1!=2, 1<>2",
    "SELECT 'it''s', NULL, 1.5, 0, CURRENT_DATE, CURRENT_TIMESTAMP",
    "SELECT 'a;b -- c /* d */' AS s",
    "SELECT ROUND(AVG(price), 2), MIN(price), MAX(price), SUM(stock), TOTAL(stock) FROM products",
    "SELECT COUNT(DISTINCT customer_id), sum(DISTINCT customer_id) FROM orders",
    "SELECT LENGTH(name), LOWER(name), UPPER(city), SUBSTR(email, 1, 3), TRIM(name), INSTR(name, 'a') FROM customers",
    "SELECT COALESCE(phone, 'none'), IFNULL(phone, '-'), NULLIF(city, country), ABS(0 - 3) FROM customers",
    "SELECT replace(name, ' ', '_'), group_concat(city, ', ') FROM customers",
    "SELECT strftime('%Y', order_date) AS year, date(order_date), datetime(order_date), julianday(order_date) FROM orders",
    "SELECT c.name, o.order_date FROM customers c JOIN orders o ON o.customer_id = c.id",
    "SELECT c.name, o.id FROM customers c INNER JOIN orders o ON o.customer_id = c.id",
    "SELECT c.name, o.id FROM customers c LEFT JOIN orders o ON o.customer_id = c.id WHERE o.id IS NULL",
    "SELECT c.name FROM customers c LEFT OUTER JOIN orders o ON o.customer_id = c.id",
    "SELECT p.name, cat.name FROM products p, categories cat WHERE p.category_id = cat.id",
    "SELECT p.name FROM products p CROSS JOIN categories cat",
    "SELECT o.id FROM orders o JOIN order_items USING (id)",
    "SELECT status, COUNT(*) AS n FROM orders GROUP BY status HAVING COUNT(*) > 1 ORDER BY n DESC",
    "SELECT country, city, COUNT(*) FROM customers GROUP BY country, city ORDER BY country ASC, city DESC",
    "SELECT name FROM products ORDER BY price DESC LIMIT 5",
    "SELECT name FROM products ORDER BY name LIMIT 5 OFFSET 10",
    "SELECT city FROM customers UNION SELECT country FROM customers",
    "SELECT city FROM customers UNION ALL SELECT name FROM categories ORDER BY 1 LIMIT 3",
    "SELECT id FROM customers INTERSECT SELECT customer_id FROM orders EXCEPT SELECT 1",
    "SELECT s.name FROM (SELECT name FROM customers WHERE country = 'UK') AS s",
    "SELECT name FROM (SELECT name, city FROM customers) t WHERE t.city = 'Paris'",
    "WITH t AS (SELECT customer_id, COUNT(*) AS n FROM orders GROUP BY customer_id) "
    "SELECT c.name, t.n FROM t JOIN customers c ON c.id = t.customer_id WHERE t.n > 2",
    "WITH a AS (SELECT 1 AS x), b(y) AS (SELECT x + 1 FROM a) SELECT y FROM b",
    "SELECT \"name\" FROM \"customers\"",
    "SELECT\n    c.name,\n    COUNT(o.id) AS orders\nFROM customers c\nLEFT JOIN orders o ON o.customer_id = c.id\n"
    "GROUP BY c.id\nORDER BY orders DESC;",
    "SELECT name\n FROM customers\n  WHERE id = 1",
]

# Every attack from the brief is here, plus broken or out-of-grammar SQL.
REJECT = [
    *GRAMMAR_ATTACKS,
    ";",
    " SELECT 1",
    "SELECT 1 ",
    "SELECT 1;\n",
    "select * from customers",
    "Select 1",
    "SELECT  1",
    "SELECT\n         1",
    "SELECT 1 /* hidden */",
    "SELECT price--1 FROM products",
    "SELECT price - -1 FROM products",
    "SELECT price/*2 FROM products",
    "BEGIN",
    "SELECT 'a\x00b'",
    "SELECT 1\uff1bDROP TABLE customers",
    "SELECT\u00a01",
    "SELECT 1\u2028",
    "SELECT name\u202e FROM customers",
    "SELECT 1" + " " * 5000 + "; DROP TABLE customers",
    "SELECT",
    "SELECT * FROM",
    "SELECT name FROM customers WHERE",
    "SELECT name FROM customers WHERE name = 'open",
    "SELECT name FROM customers c WHERE",
    "SELECT * FROM customers WHERE WHERE",
    "SELECT 1 FROM customers ORDER BY",
    "SELECT name FROM customers LIMIT -1",
    "SELECT name FROM customers LIMIT 1.5",
    "SELECT -1",
    "SELECT name AS FROM customers",
    "SELECT name Alias FROM customers",
    "SELECT * FROM customers AS WHERE",
    "SELECT * FROM Customers",
    "SELECT COUNT() FROM customers",
    "SELECT foo(1)",
    "SELECT 1 UNION",
    "SELECT (1",
    "SELECT 1)",
    "SELECT a.",
    "SELECT 'x' 'y'",
    "SELECT 1.",
    "SELECT .5",
    "SELECT x'00'",
    "SELECT ?",
    "SELECT * FROM customers WHERE id = :id",
    "SELECT 1 IS 2",
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c",
    "SELECT 1; SELECT 2",
]


def test_grammar_builds_in_both_engines() -> None:
    for which in ("generic", "shop"):
        is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(_llg(which))
        assert (is_error, messages) == (False, []), messages
        assert _lark(which).options.start == ["start"]


def test_corpus_sizes() -> None:
    assert len(ACCEPT) >= 30 and len(REJECT) >= 30
    assert not set(ACCEPT) & set(REJECT)


@pytest.mark.parametrize("text", ACCEPT)
def test_accepted_in_both_engines_and_valid_sqlite(text: str, shop: sqlite3.Connection) -> None:
    assert both("generic", text) == {"llguidance": True, "lark": True}, text
    assert check_select(text, shop)  # valid in SQLite and passes every safety layer


@pytest.mark.parametrize("text", REJECT, ids=lambda s: repr(s)[:60])
def test_rejected_in_both_engines(text: str) -> None:
    assert both("generic", text) == {"llguidance": False, "lark": False}, text


def _unchecked_copy(checked: str) -> str:
    """The WITH branch of the grammar: every checked rule again, prefixed w_, names unchecked."""
    lines = [ln for ln in checked.splitlines() if ln.strip() and not ln.lstrip().startswith("//")]
    names = {m.group(1) for ln in lines if (m := re.match(r"(\w+):", ln))} | {"table_name", "column_name"}
    pattern = re.compile(r"\b(" + "|".join(sorted(names, key=len, reverse=True)) + r")\b")
    return "\n".join(pattern.sub(lambda m: "w_" + m.group(1), ln) for ln in lines)


def test_unchecked_rules_are_the_generated_copy() -> None:
    text = _generic_source()
    checked = text.split("// ==== BEGIN CHECKED RULES")[1].split("// ==== END CHECKED RULES")[0]
    unchecked = text.split("// ==== BEGIN UNCHECKED RULES")[1].split("// ==== END UNCHECKED RULES")[0]
    body = "\n".join(ln for ln in unchecked.splitlines()[1:] if ln.strip())
    assert body == _unchecked_copy(checked.split("\n", 1)[1])


def test_names_block_is_last_and_replaceable() -> None:
    text = _generic_source()
    block = text[text.index("// ==== BEGIN NAMES"):]
    assert block.rstrip().endswith("// ==== END NAMES ====")
    assert re.search(r"^table_name:", block, re.M) and re.search(r"^column_name:", block, re.M)
    assert not re.search(r"^%ignore", text, re.M)


def _sample(which: str, rng: random.Random, max_bytes: int = 400) -> str | None:
    """Walk the llguidance grammar byte by byte (ASCII only); None if it did not finish."""
    matcher = llguidance.LLMatcher(byte_tokenizer(), _llg(which), log_level=0)
    out = bytearray()
    for _ in range(max_bytes):
        mask = matcher.compute_bitmask()
        allowed = [t for t in range(257) if mask[t // 8] >> (t % 8) & 1]
        if 256 in allowed and (len(allowed) == 1 or rng.random() < 0.5):
            return out.decode("ascii")
        choices = [t for t in allowed if t < 128]
        closers = [t for t in choices if chr(t) in ")'\""]
        token = rng.choice(closers if closers and rng.random() < 0.3 else choices)
        assert matcher.consume_token(token)
        out.append(token)
    return None


@pytest.mark.parametrize("which", ["generic", "shop"])
def test_llguidance_samples_are_accepted_by_lark_and_never_unsafe(which: str, shop: sqlite3.Connection) -> None:
    rng = random.Random(f"sql-{which}")
    finished = 0
    for _ in range(25):
        text = _sample(which, rng)
        if text is None:
            continue
        finished += 1
        assert lark_accepts(which, text), text
        with contextlib.suppress(DatabaseError):  # an unknown alias, say: invalid, but never UnsafeSQL
            check_select(text, shop)
    assert finished >= 10


# --------------------------------------------------------------------------------------------------
# Schema-aware grammar


@pytest.mark.parametrize(
    "text",
    [
        "SELECT name, email FROM customers",
        "SELECT o.order_date, o.status FROM orders o",
        "SELECT orders.status FROM orders",
        "SELECT oi.quantity * oi.unit_price FROM order_items oi JOIN products p ON p.id = oi.product_id",
        "SELECT cat.name FROM categories cat ORDER BY cat.name",
        "SELECT country, COUNT(*) AS n FROM customers GROUP BY country ORDER BY n DESC",
    ],
)
def test_schema_grammar_accepts_real_names(text: str) -> None:
    assert both("shop", text) == {"llguidance": True, "lark": True}, text


@pytest.mark.parametrize(
    "text",
    [
        "SELECT * FROM invoices",
        'SELECT * FROM "Customers"',
        "SELECT * FROM customer",
        "SELECT total FROM orders",
        "SELECT o.total FROM orders o",
        "SELECT orders.total FROM orders",
        "SELECT name FROM customers WHERE nickname = 'x'",
        "SELECT c.name FROM customers c JOIN invoices i ON i.customer_id = c.id",
        "SELECT SUM(amount) FROM order_items",
        "SELECT name FROM products WHERE category = 'Books'",
    ],
)
def test_schema_grammar_rejects_unknown_names(text: str) -> None:
    assert both("generic", text) == {"llguidance": True, "lark": True}, text  # fine without a schema
    assert both("shop", text) == {"llguidance": False, "lark": False}, text


def test_schema_grammar_leaves_names_after_with_unchecked(shop: sqlite3.Connection) -> None:
    """CTE names and their columns cannot be known to a grammar: after WITH only EXPLAIN checks names."""
    text = "WITH spend AS (SELECT customer_id, COUNT(*) AS n FROM orders GROUP BY customer_id) SELECT n FROM spend"
    assert both("shop", text) == {"llguidance": True, "lark": True}
    assert check_select(text, shop) == text
    with pytest.raises(DatabaseError, match="no such table"):
        check_select("WITH x AS (SELECT 1) SELECT * FROM invoices", shop)


def test_schema_grammar_quotes_awkward_names(tmp_path: Path) -> None:
    path = tmp_path / "odd.sqlite"
    with sqlite3.connect(path) as conn:
        conn.executescript(
            'CREATE TABLE "order" ("select" INTEGER PRIMARY KEY, "unit price" REAL, "say ""hi""" TEXT,'
            ' "back\\slash" TEXT, "prénom" TEXT, Mixed TEXT);'
            'CREATE TABLE items (id INTEGER PRIMARY KEY AUTOINCREMENT, order_id INTEGER REFERENCES "order");'
            "INSERT INTO items (order_id) VALUES (1);"
        )
    conn.close()
    conn = open_readonly(path)
    try:
        schema = read_schema(conn)
        assert schema.table_names() == ["order", "items"]  # sqlite_sequence is skipped
        assert schema.tables[1].foreign_keys == [("order_id", "order", "select")]
        prompt = schema.to_prompt()
        assert 'CREATE TABLE "order" ("select" INTEGER PRIMARY KEY, "unit price" REAL,' in prompt
        assert 'order_id INTEGER REFERENCES "order"("select")' in prompt
        grammar = schema_grammar(schema)
        llg = llguidance.LLMatcher.grammar_from_lark(grammar)
        parser = lark.Lark(grammar, start="start", parser="earley", lexer="dynamic")
        good = 'SELECT o."select", o."unit price", "say ""hi""", "back\\slash", "prénom", Mixed FROM "order" o'
        for text, expected in [
            (good, True),
            ('SELECT "select" FROM "order"', True),
            ("SELECT id FROM items", True),
            ("SELECT select FROM order", False),
            ('SELECT "nope" FROM "order"', False),
            ("SELECT mixed FROM items", False),
        ]:
            try:
                parser.parse(text)
                lark_ok = True
            except lark.exceptions.LarkError:
                lark_ok = False
            assert (grammar_accepts(llg, text), lark_ok) == (expected, expected), text
        assert check_select(good, conn) == good
    finally:
        conn.close()


def test_schema_grammar_needs_tables() -> None:
    with pytest.raises(StructgenError):
        schema_grammar(DbSchema([]))


# --------------------------------------------------------------------------------------------------
# check_select



def _attack(template: str, tmp: Path) -> str:
    return template.replace("{tmp}", str(tmp))


@pytest.mark.parametrize("template", ATTACKS, ids=lambda s: repr(s)[:60])
def test_check_select_refuses_attacks(template: str, shop_copy: Path, tmp_path: Path) -> None:
    before = _digest(shop_copy)
    sql = _attack(template, tmp_path)
    conn = open_readonly(shop_copy)
    try:
        with pytest.raises(UnsafeSQL) as info:
            check_select(sql, conn)
        assert info.value.reason
        with pytest.raises(UnsafeSQL):
            execute_select(sql, conn)
        assert conn.execute("SELECT COUNT(*) FROM orders").fetchone() == (56,)
    finally:
        conn.close()
    assert _digest(shop_copy) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [shop_copy.name]  # no journal, copy or new file


ENGINE_ATTACKS = [
    "DELETE FROM orders",
    "DROP TABLE orders",
    "UPDATE products SET price = 0",
    "INSERT INTO categories (name) SELECT name FROM customers",
    "REPLACE INTO categories (id, name) VALUES (1, 'x')",
    "WITH x AS (SELECT 1) DELETE FROM orders",
    "CREATE TEMP TABLE t AS SELECT 1",
    "ATTACH DATABASE '{tmp}/evil.db' AS evil",
    "PRAGMA query_only = OFF",
    "VACUUM INTO '{tmp}/copy.db'",
    "BEGIN",
    "SELECT load_extension('x')",
    "SELECT * FROM pragma_table_info('customers')",
    "SELECT 1; DROP TABLE orders",
]


@pytest.mark.parametrize("template", ENGINE_ATTACKS)
def test_sqlite_layer_alone_refuses_attacks(template: str, shop_copy: Path, tmp_path: Path) -> None:
    """Without the text and token checks, the authorizer and bytecode audit still refuse."""
    before = _digest(shop_copy)
    conn = open_readonly(shop_copy)
    try:
        with pytest.raises(UnsafeSQL):
            sql_guard._engine_check(_attack(template, tmp_path), conn)
    finally:
        conn.close()
    assert _digest(shop_copy) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [shop_copy.name]


def test_connection_alone_refuses_writes(shop_copy: Path, tmp_path: Path) -> None:
    """Without any check, the read-only connection still refuses to write, even to temp or a new file."""
    before = _digest(shop_copy)
    conn = open_readonly(shop_copy)
    try:
        for sql in ("DELETE FROM orders", "CREATE TEMP TABLE t (x)", f"VACUUM INTO '{tmp_path}/copy.db'",
                    f"ATTACH DATABASE '{tmp_path}/evil.db' AS evil"):
            with pytest.raises(sqlite3.Error):
                conn.execute(sql)
    finally:
        conn.close()
    assert _digest(shop_copy) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [shop_copy.name]


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT 1", "SELECT 1"),
        ("  SELECT 1 ;  \n", "SELECT 1"),
        ("select name from customers;", "select name from customers"),
        ("SELECT 'a;b -- c /* d */' AS s", "SELECT 'a;b -- c /* d */' AS s"),
        ('SELECT "name", [city], `country` FROM customers', 'SELECT "name", [city], `country` FROM customers'),
        ("SELECT replace(name, 'a', 'b') FROM customers", "SELECT replace(name, 'a', 'b') FROM customers"),
        ("SELECT 'Müller \u00e9 \u4e2d'", "SELECT 'Müller \u00e9 \u4e2d'"),
        ("SELECT\tname\r\nFROM customers", "SELECT\tname\r\nFROM customers"),
        ("SELECT 1e3, 0x10, .5", "SELECT 1e3, 0x10, .5"),
        ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 5) SELECT x FROM c",
         "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 5) SELECT x FROM c"),
        ("SELECT * FROM sqlite_master", "SELECT * FROM sqlite_master"),
    ],
)
def test_check_select_accepts_and_normalises(sql: str, expected: str, shop: sqlite3.Connection) -> None:
    assert check_select(sql, shop) == expected


def test_check_select_invalid_sql_is_a_database_error(shop: sqlite3.Connection) -> None:
    with pytest.raises(DatabaseError, match="no such column: nope"):
        check_select("SELECT nope FROM customers", shop)
    with pytest.raises(DatabaseError, match="syntax error"):
        check_select("SELECT FROM", shop)
    with pytest.raises(InvalidArgument):
        check_select(b"SELECT 1", shop)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# open_readonly, read_schema, execute_select


def test_database_errors_name_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "missing.sqlite"
    text = tmp_path / "notes.sqlite"
    text.write_text("this is not a database, just some text that is long enough " * 20)
    empty = tmp_path / "empty.sqlite"
    empty.write_bytes(b"")
    no_tables = tmp_path / "no_tables.sqlite"
    with sqlite3.connect(no_tables) as conn:
        conn.execute("PRAGMA user_version = 7")  # a valid header, but no table
    conn.close()
    for path, message in [
        (missing, "not found"),
        (tmp_path, "not a file"),
        (text, "not an SQLite database"),
        (empty, "no tables"),
        (no_tables, "no tables"),
    ]:
        with pytest.raises(DatabaseError, match=message) as info:
            open_readonly(path)
        assert str(path) in str(info.value) and info.value.path == str(path)


def test_read_schema_of_shop(shop: sqlite3.Connection) -> None:
    schema = read_schema(shop)
    assert schema.table_names() == ["categories", "customers", "products", "orders", "order_items"]
    orders = schema.tables[3]
    assert [c.name for c in orders.columns] == ["id", "customer_id", "order_date", "status"]
    assert orders.columns[0].pk and not orders.columns[1].pk and orders.columns[1].notnull
    assert orders.columns[1].type == "INTEGER"
    assert orders.foreign_keys == [("customer_id", "customers", "id")]
    assert set(schema.tables[4].foreign_keys) == {("order_id", "orders", "id"), ("product_id", "products", "id")}
    prompt = schema.to_prompt()
    assert prompt.splitlines()[3] == (
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id),"
        " order_date TEXT NOT NULL, status TEXT NOT NULL);"
    )
    assert "phone TEXT," in prompt


def test_execute_select_returns_columns_and_rows(shop: sqlite3.Connection) -> None:
    columns, rows = execute_select("SELECT id, name FROM customers ORDER BY id LIMIT 2;", shop)
    assert columns == ["id", "name"]
    assert rows == [(1, "Alice Smith"), (2, "Bob Jones")]


def test_execute_select_row_limit(shop: sqlite3.Connection) -> None:
    columns, rows = execute_select(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c", shop, max_rows=7
    )
    assert columns == ["x"] and rows == [(i,) for i in range(1, 8)]
    _, rows = execute_select("SELECT * FROM order_items", shop, max_rows=1000)
    assert len(rows) == 106
    _, rows = execute_select("SELECT * FROM order_items", shop, max_rows=10)
    assert len(rows) == 10


def test_execute_select_time_limit(shop: sqlite3.Connection) -> None:
    forever = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT COUNT(*) FROM c"
    start = time.monotonic()
    with pytest.raises(DatabaseError, match="time limit"):
        execute_select(forever, shop, timeout_s=0.3)
    assert time.monotonic() - start < 5
    assert execute_select("SELECT COUNT(*) FROM customers", shop) == (["COUNT(*)"], [(30,)])  # still usable


@pytest.mark.parametrize(("max_rows", "timeout_s"), [(0, 1.0), (-1, 1.0), (True, 1.0), (1.5, 1.0),
                                                      (10, 0), (10, -1.0), (10, float("nan")), (10, "5")])
def test_execute_select_argument_checks(max_rows: Any, timeout_s: Any, shop: sqlite3.Connection) -> None:
    with pytest.raises(InvalidArgument):
        execute_select("SELECT 1", shop, max_rows=max_rows, timeout_s=timeout_s)


# --------------------------------------------------------------------------------------------------
# Bundled data


def test_shop_db_is_built_from_shop_sql(tmp_path: Path, shop: sqlite3.Connection) -> None:
    rebuilt = sqlite_db.build_shop_db(tmp_path / "rebuilt.sqlite")
    with sqlite3.connect(rebuilt) as fresh:
        assert list(fresh.iterdump()) == list(shop.iterdump())
    fresh.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rebuilt.sqlite"]  # no temporary file left


def test_shop_data_shape(shop: sqlite3.Connection) -> None:
    counts = {t: shop.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
              for t in ("categories", "customers", "products", "orders", "order_items")}
    assert counts == {"categories": 6, "customers": 30, "products": 24, "orders": 56, "order_items": 106}
    years = [r[0] for r in shop.execute("SELECT DISTINCT substr(order_date, 1, 4) FROM orders ORDER BY 1")]
    assert years == ["2023", "2024", "2025"]
    assert shop.execute("PRAGMA foreign_key_check").fetchall() == []
    assert shop.execute(
        "SELECT COUNT(*) FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.order_date < c.signup_date"
    ).fetchone() == (0,)


def test_grammar_path_is_the_repository_file() -> None:
    assert sqlite_db.grammar_path().read_text(encoding="utf-8") == _generic_source()


# --------------------------------------------------------------------------------------------------
# benchmarks/tasks/sql.jsonl


def _sql_tasks() -> list[dict[str, Any]]:
    lines = SQL_TASKS.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_sql_tasks_file_shape() -> None:
    tasks = _sql_tasks()
    assert len(tasks) >= 25
    ids = [t["id"] for t in tasks]
    assert len(set(ids)) == len(ids)
    for task in tasks:
        assert set(task) == {"id", "question", "gold"}, task
        assert re.fullmatch(r"[a-z0-9_]+", task["id"]) and task["question"].endswith(("?", "."))


@pytest.mark.parametrize("task", _sql_tasks(), ids=lambda t: t["id"])
def test_sql_task_gold(task: dict[str, Any], shop: sqlite3.Connection) -> None:
    gold = task["gold"]
    assert both("shop", gold) == {"llguidance": True, "lark": True}, gold
    assert check_select(gold, shop) == gold
    columns, rows = execute_select(gold, shop)
    assert columns and rows, task["id"]
