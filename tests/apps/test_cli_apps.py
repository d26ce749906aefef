"""``structgen regex`` and ``structgen sql`` through the real entry point (``cli.main.main``): output,
``--json`` fields, exit codes and one-line errors."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from structgen.testing import RandomLogitsModel

from .conftest import CliRun, digest
from .sql_attacks import STATEMENT_ATTACKS


def test_regex_json_output(run_cli: CliRun, random_model: RandomLogitsModel) -> None:
    # No examples: any candidate that compiles verifies (the real model runs in test_regex.py).
    code, out, err = run_cli("regex", "a word in capital letters", "--n", "2", "--seed", "3", "--json",
                             model=random_model)
    assert code == 0, err
    d = json.loads(out)
    assert list(d) == ["regex", "compiles", "examples", "counters", "verified", "candidates"]
    assert d["verified"] is True and d["compiles"] is True
    re.compile(d["regex"])
    assert d["candidates"] and all("error" in c and "avg_logprob" in c for c in d["candidates"])


def test_regex_failure_shows_every_candidate_and_exits_non_zero(run_cli: CliRun,
                                                                random_model: RandomLogitsModel) -> None:
    code, out, err = run_cli("regex", "a greeting", "--example", "hello world", "--counter", "hello there",
                             "--n", "3", "--seed", "5", model=random_model)
    assert code == 1
    assert "no candidate verified" in err and "why it failed" in err
    assert err.strip().splitlines()[-1].startswith("error: RegexNotVerified: no regex verified among")

    code, out, err = run_cli("regex", "a greeting", "-e", "hello world", "-c", "hello there", "--n", "3",
                             "--seed", "5", "--json", model=random_model)
    assert code == 1
    d = json.loads(out)
    assert d["verified"] is False and d["candidates"] and all(c["error"] for c in d["candidates"])
    assert set(d) == {"regex", "compiles", "examples", "counters", "verified", "candidates"}


def test_regex_input_errors_are_one_line(run_cli: CliRun, random_model: RandomLogitsModel) -> None:
    code, out, err = run_cli("regex", "  ", model=random_model)
    assert code == 2 and out == "" and err.strip() == "error: InvalidArgument: the description is empty"
    code, out, err = run_cli("regex", "x", "-e", "a", "-c", "a", model=random_model)
    assert code == 2 and out == "" and "both an example and a counter-example" in err and len(err.strip().splitlines()) == 1


def test_sql_given_query_executes_and_prints_a_table(run_cli: CliRun, shop_copy: Path) -> None:
    query = "SELECT name FROM categories ORDER BY name"
    code, out, err = run_cli("sql", "--db", str(shop_copy), "--sql", query, "--execute")
    assert code == 0, err
    names = [r[0] for r in sqlite3.connect(shop_copy).execute(query)]
    assert out.splitlines()[0] == query
    for name in names:
        assert name in out
    assert f"{len(names)} row(s)" in out

    code, out, err = run_cli("sql", "--db", str(shop_copy), "--sql", query, "--execute", "--json",
                             "--max-rows", "2")
    d = json.loads(out)
    assert list(d) == ["sql", "explain_ok", "tables", "rows", "candidates"]
    assert d["rows"] == [{"name": n} for n in names[:2]] and d["tables"] == ["categories"]

    code, out, err = run_cli("sql", "--db", str(shop_copy), "--sql", query, "--json")
    assert code == 0 and "rows" not in json.loads(out)  # checked, not run


@pytest.mark.parametrize("template", STATEMENT_ATTACKS, ids=lambda s: repr(s)[:50])
def test_sql_override_refuses_anything_but_one_select(template: str, run_cli: CliRun, shop_copy: Path,
                                                      tmp_path: Path) -> None:
    before = digest(shop_copy)
    code, out, err = run_cli("sql", "--db", str(shop_copy), "--execute", "--sql",
                             template.replace("{tmp}", str(tmp_path)))
    assert code == 2 and out == ""
    assert err.startswith("error: UnsafeSQL: unsafe SQL: ") and len(err.strip().splitlines()) == 1
    assert digest(shop_copy) == before


def test_sql_database_errors_are_one_line(run_cli: CliRun, tmp_path: Path, random_model: RandomLogitsModel) -> None:
    not_sqlite = tmp_path / "x.sqlite"
    not_sqlite.write_text("hello\n" * 200)
    empty = tmp_path / "empty.sqlite"
    sqlite3.connect(empty).close()
    for path, message in [(tmp_path / "nope.sqlite", "database file not found"),
                          (not_sqlite, "not an SQLite database"), (empty, "database has no tables")]:
        code, out, err = run_cli("sql", "How many?", "--db", str(path), model=random_model)
        assert code == 2 and out == "" and err.startswith("error: DatabaseError: ") and message in err
        assert len(err.strip().splitlines()) == 1


def test_sql_argument_errors(run_cli: CliRun, shop_copy: Path, random_model: RandomLogitsModel) -> None:
    code, _, err = run_cli("sql", "--db", str(shop_copy), model=random_model)
    assert code == 2 and err.strip() == "error: InvalidArgument: the question is empty"
    code, _, err = run_cli("sql", "How many?", "--sql", "SELECT 1", "--db", str(shop_copy))
    assert code == 2 and "either a question or --sql" in err


def test_sql_generates_with_the_fallback_and_default_db(run_cli: CliRun, random_model: RandomLogitsModel) -> None:
    # No --db: the bundled shop.sqlite. Random logits: the answer comes from the scoped fallback grammar.
    code, out, err = run_cli("sql", "How many customers are there?", "--n", "2", "--seed", "1", "--execute",
                             "--json", model=random_model)
    assert code == 0, err
    d = json.loads(out)
    assert d["explain_ok"] is True and isinstance(d["rows"], list) and d["tables"]
    assert any(c["explain_ok"] and c["sql"] == d["sql"] for c in d["candidates"])


def test_sql_failure_shows_every_candidate_and_exits_non_zero(run_cli: CliRun, shop_copy: Path,
                                                              random_model: RandomLogitsModel,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # The rendering of a failure: text_to_sql's own failure paths are tested in test_sql_app.py.
    import structgen.apps as apps
    from structgen.apps.sql import SqlCandidate, SqlNotVerified

    failed = [SqlCandidate("SELECT nope FROM customers", -0.25, False, "no such column: nope"),
              SqlCandidate("SELECT name FROM", None, False, "truncated")]

    def fail(*_a: Any, **_k: Any) -> None:
        raise SqlNotVerified("no query passed the checks among 2 candidate(s)", candidates=failed)

    monkeypatch.setattr(apps, "text_to_sql", fail)
    code, out, err = run_cli("sql", "Who?", "--db", str(shop_copy), model=random_model)
    assert code == 1 and out == ""
    assert "no candidate passed the checks" in err and "no such column: nope" in err and "-0.250" in err
    assert err.strip().splitlines()[-1].startswith("error: SqlNotVerified: no query passed the checks")
    code, out, _ = run_cli("sql", "Who?", "--db", str(shop_copy), "--json", model=random_model)
    assert code == 1 and [c["sql"] for c in json.loads(out)["candidates"]] == [c.sql for c in failed]


def test_installed_entry_point_refuses_and_reports_in_one_line(shop_copy: Path) -> None:
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    before = digest(shop_copy)
    for args, code, start in [
        (["sql", "--db", str(shop_copy), "--execute", "--sql", "SELECT 1; DROP TABLE customers"], 2,
         "error: UnsafeSQL: unsafe SQL: more than one statement"),
        (["sql", "--db", str(shop_copy.parent / "missing.sqlite"), "--sql", "SELECT 1"], 2,
         "error: DatabaseError: database file not found"),
        (["regex", ""], 2, "error: InvalidArgument: the description is empty"),
    ]:
        proc = subprocess.run([sys.executable, "-m", "cli", *args], cwd=repo, capture_output=True, text=True,
                              timeout=120, check=False)
        assert proc.returncode == code, proc.stderr
        assert proc.stderr.startswith(start) and len(proc.stderr.strip().splitlines()) == 1
        assert proc.stdout == ""
    assert digest(shop_copy) == before


def test_bench_apps_command_writes_json_table_and_plot(run_cli: CliRun, random_model: RandomLogitsModel,
                                                      tmp_path: Path) -> None:
    report, png = tmp_path / "apps.json", tmp_path / "apps.png"
    code, out, err = run_cli("bench", "apps", "--limit", "1", "--n", "2", "--modes", "constrained",
                             "--json", str(report), "--plot", str(png), model=random_model)
    assert code == 0, err
    assert "| text → regex |" in out and "| text → SQL |" in out
    d = json.loads(report.read_text())
    assert [(r["kind"], r["mode"]) for r in d["summary"]] == [("regex", "constrained"), ("sql", "constrained")]
    assert all(r["valid"] == 1.0 for r in d["summary"])  # constrained answers are valid even from random logits
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
