"""``structgen bench strategies``: rows per strategy × task; every item counted as valid or as an error."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from structgen.errors import InvalidArgument

from ..conftest import llama_server_children
from .conftest import is_png


def test_local_classification(bench: Any, tmp_path: Path) -> None:
    code, stdout, report = bench("strategies", "--task", "classification", "--limit", "3", "--strategies",
                                 "constrained,best_of,prompt", "--max-tokens", "8", "--threads", "1", "--plot", str(tmp_path / "s.png"))
    assert code == 0, stdout
    rows = {r["strategy"]: r for r in report["rows"]}
    assert list(rows) == ["constrained", "best_of", "prompt"]
    for r in rows.values():
        assert r["task"] == "classification" and r["n"] == 3
        assert r["valid"] + sum(r["errors"].values()) == 3, r    # nothing dropped
        assert r["mean_latency_ms"] > 0 and r["accuracy"] is not None
    assert rows["constrained"]["valid_rate"] == 1.0
    assert rows["best_of"]["valid_rate"] == 1.0
    assert rows["best_of"]["mean_tokens"] >= 4                   # four samples per item
    assert report["mode"] == "local" and report["versions"]["structgen"] and report["complete"] is True
    assert "| constrained | classification | 3 | 3 |" in stdout
    assert is_png(tmp_path / "s.png")


def test_partial_reports_after_every_item() -> None:
    from structgen_benchmarks import strategies as st

    seen: list[dict[str, Any]] = []
    options = st.Options(limit=2, tasks=["classification"], strategies=["constrained", "prompt"], max_tokens=8,
                         n_threads=1)
    final = st.run(options, on_partial=seen.append)
    assert len(seen) == 4                                         # 2 strategies × 2 items
    assert all(r["complete"] is False for r in seen) and final["complete"] is True
    shapes = [[(row["strategy"], row["n"], row.get("partial", False)) for row in r["rows"]] for r in seen]
    assert shapes == [[("constrained", 1, True)],
                      [("constrained", 2, False)],
                      [("constrained", 2, False), ("prompt", 1, True)],
                      [("constrained", 2, False), ("prompt", 2, False)]]
    assert seen[-1]["rows"] == final["rows"] and seen[-1]["machine"] == final["machine"]


def test_a_server_that_dies_is_counted_and_restarted() -> None:
    from structgen_benchmarks import strategies as st

    servers: list[int] = []                                       # the server after each item
    partials: list[dict[str, Any]] = []

    def kill_the_server_after_the_first_item(report: dict[str, Any]) -> None:
        partials.append(report)
        servers.append(_child_server())
        if len(servers) == 1:
            os.kill(servers[0], signal.SIGKILL)

    options = st.Options(serve=True, limit=3, tasks=["classification"], strategies=["prompt"], max_tokens=8,
                         n_threads=1)
    report = st.run(options, on_partial=kill_the_server_after_the_first_item)
    [row] = report["rows"]
    assert row["n"] == 3 and row["errors"].get("BackendError") == 1 and row["server_crashes"] == 1
    [crash] = report["server_crashes"]
    assert crash["strategy"] == "prompt" and crash["task"] == "classification" and crash["item"] == 1
    assert servers[1] == servers[2] != servers[0]                 # restarted after item 1, once
    assert "died on prompt × classification item 1" in st.markdown(report)
    assert "(partial)" not in st.markdown(report) and "stopped" not in st.markdown(report)
    first = st.markdown(partials[0])                              # as a stopped run leaves it
    assert "| prompt (partial) | classification | 1 |" in first and "stopped before it completed" in first


def _child_server() -> int:
    [pid] = llama_server_children(os.getpid())
    return pid


def test_constrained_is_local_only(bench: Any) -> None:
    with pytest.raises(InvalidArgument, match="not available hosted"):
        bench("strategies", "--base-url", "http://127.0.0.1:9/v1", "--strategies", "constrained", "--task",
              "classification")


@pytest.mark.slow
def test_hosted_against_a_real_llama_server(bench: Any) -> None:
    code, stdout, report = bench("strategies", "--serve", "--task", "classification", "--limit", "2",
                                 "--strategies", "server,repair", "--max-tokens", "16", "--threads", "1")
    assert code == 0, stdout
    assert report["mode"] == "hosted" and report["endpoint"].startswith("http://127.0.0.1:")
    for r in report["rows"]:
        assert r["n"] == 2 and r["valid"] + sum(r["errors"].values()) == 2


def test_limit_per_task_and_sql_under_the_scoped_grammar(bench: Any) -> None:
    code, stdout, report = bench("strategies", "--task", "sql,classification", "--limit", "1,sql=2",
                                 "--strategies", "constrained", "--max-tokens", "160", "--threads", "1")
    assert code == 0, stdout
    assert report["tasks"]["sql"]["items"] == 2 and report["tasks"]["classification"]["items"] == 1
    sql = next(r for r in report["rows"] if r["task"] == "sql")
    assert sql["valid"] == 2, sql            # every query of the scoped grammar passes EXPLAIN


@pytest.mark.parametrize("limit", ["0", "sql=x", "sql=-1", "nosuchtask=2"])
def test_bad_limits_are_refused(bench: Any, limit: str) -> None:
    with pytest.raises(InvalidArgument):
        bench("strategies", "--limit", limit, "--task", "classification")
