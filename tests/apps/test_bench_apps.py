"""``benchmarks/apps.py`` (``structgen bench apps``): result-set comparison, the report and its tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.apps import _top_level_order_by, format_apps_markdown, load_tasks, result_sets_equal, run_apps_bench
from structgen.apps.sql_guard import check_select
from structgen.apps.sqlite_db import open_readonly, shop_db_path
from structgen.testing import RandomLogitsModel


def test_result_sets_equal() -> None:
    assert result_sets_equal([(1, "a"), (2, "b")], [(2, "b"), (1, "a")], ordered=False)
    assert not result_sets_equal([(1, "a"), (2, "b")], [(2, "b"), (1, "a")], ordered=True)
    assert result_sets_equal([(3.0,)], [(3,)], ordered=True)
    assert result_sets_equal([(0.1 + 0.2,)], [(0.3,)], ordered=True)
    assert not result_sets_equal([(1, "a"), (1, "a")], [(1, "a")], ordered=False)  # multisets
    assert not result_sets_equal([(1, "a", 5)], [(1, "a")], ordered=False)         # an extra column differs
    assert not result_sets_equal([], [(1,)], ordered=False)


@pytest.mark.parametrize(("sql", "ordered"), [
    ("SELECT name FROM t ORDER BY name", True),
    ("SELECT name FROM t WHERE id IN (SELECT id FROM u ORDER BY id LIMIT 3)", False),
    ("SELECT 'ORDER BY' AS x FROM t", False),
    ("WITH s AS (SELECT 1 AS a) SELECT a FROM s order by a", True),
])
def test_top_level_order_by(sql: str, ordered: bool) -> None:
    assert _top_level_order_by(sql) is ordered


def test_task_files_meet_the_issue() -> None:
    regex, sql = load_tasks("regex"), load_tasks("sql")
    assert len(regex) >= 25 and len(sql) >= 25
    conn = open_readonly(shop_db_path())
    try:
        for t in sql:
            check_select(t["gold"], conn)
    finally:
        conn.close()


def test_bench_report_and_markdown(random_model: RandomLogitsModel) -> None:
    report = run_apps_bench(random_model, n=2, limit=2, seed=0)
    summary = {(r["kind"], r["mode"]): r for r in report["summary"]}
    assert set(summary) == {(k, m) for k in ("regex", "sql") for m in ("constrained", "prompt")}
    assert all(r["tasks"] == 2 for r in summary.values())
    # Even random logits give a valid answer under the grammars; free text from them never parses as SQL.
    assert summary[("regex", "constrained")]["valid"] == 1.0
    assert summary[("sql", "constrained")]["valid"] == 1.0
    assert summary[("sql", "prompt")]["valid"] == 0.0
    assert len(report["tasks"]) == 8 and all(t["error"] is None for t in report["tasks"])
    md = format_apps_markdown(report)
    assert "| text → regex |" in md and "| text → SQL |" in md and "| constrained | 2 | 100 %" in md
    assert report["settings"]["model"].startswith("random-logits")


def test_bench_rejects_unknown_modes(random_model: RandomLogitsModel, tmp_path: Path) -> None:
    from structgen.errors import InvalidArgument

    with pytest.raises(InvalidArgument):
        run_apps_bench(random_model, modes=("nope",))
    with pytest.raises(InvalidArgument):
        load_tasks("regex", tmp_path)
