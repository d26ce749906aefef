"""``structgen bench serve``: a tiny run against structgen serve, every reply validated by the bench; the peers
(llama.cpp's llama-server, llama_cpp.server) in the slow run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from structgen_benchmarks import serve as sb

from structgen.errors import InvalidArgument

from .conftest import is_png


def test_a_small_run_reports_one_client_and_a_level(bench: Any) -> None:
    code, stdout, report = bench("serve", "--servers", "structgen", "--concurrency", "1", "--requests", "1",
                                 "--max-tokens", "128", "--single", "documents", "--documents", "1")
    assert code == 0, stdout
    (single,) = report["single"]
    assert single["set"] == "documents" and single["requests"] == 1 and single["invalid_200"] == 0
    assert single["valid_rate"] + single["errors"] / single["requests"] == 1.0
    assert 0.0 <= single["field_accuracy"] <= 1.0
    assert single["attempts"] >= single["valid_rate"] and single["wasted_tokens"] >= 0
    (row,) = report["rows"]
    assert row["server"] == "structgen" and row["concurrency"] == 1 and row["invalid_200"] == 0
    assert "| server |" in stdout and "one client" in stdout


@pytest.mark.slow   # every single-client set and a plot: ~2 minutes on 2 cores (the small run above is the default)
def test_tiny_run(bench: Any, tmp_path: Path) -> None:
    code, stdout, report = bench("serve", "--servers", "structgen", "--concurrency", "2", "--requests", "2",
                                 "--max-tokens", "200", "--single", "fresh,documents,grounded", "--fresh", "1",
                                 "--documents", "2", "--plot", str(tmp_path / "s.png"))
    assert code == 0, stdout
    single = {r["set"]: r for r in report["single"]}
    assert set(single) == {"fresh", "documents", "grounded"} and "one client" in stdout
    assert single["fresh"]["requests"] == 1 and single["documents"]["requests"] == 2
    assert all(r["invalid_200"] == 0 and r["valid_rate"] + r["errors"] / r["requests"] == 1.0
               for r in single.values())
    assert 0.0 <= single["grounded"]["field_accuracy"] <= 1.0 and "field_accuracy" not in single["fresh"]
    # structgen's replies say what they cost: at least one attempt each, wasted tokens counted (0 or more)
    assert all(r["attempts"] >= r["requests"] * r["valid_rate"] and r["wasted_tokens"] >= 0 for r in single.values())
    (row,) = report["rows"]
    assert row["server"] == "structgen" and row["concurrency"] == 2 and row["requests"] == 2
    assert row["invalid_200"] == 0 and row["tok_s"] > 0
    assert row["valid_rate"] + row["errors"] / row["requests"] == 1.0
    assert "| server |" in stdout and is_png(tmp_path / "s.png")


def test_an_unbuilt_llama_server_is_named_not_failed(bench: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sb, "llama_server_binary", lambda: None)
    code, stdout, report = bench("serve", "--servers", "llama-server", "--concurrency", "1", "--requests", "1",
                                 "--single", "none")
    assert code == 0 and report["rows"] == [] and report["single"] == []
    assert any("scripts/llama_server.sh" in n for n in report["notes"]) and "not built" in stdout


@pytest.mark.slow
def test_every_server(bench: Any) -> None:
    code, stdout, report = bench("serve", "--concurrency", "2", "--requests", "2", "--max-tokens", "200",
                                 "--fresh", "2", "--documents", "2")
    assert code == 0, stdout
    assert {r["server"] for r in report["single"]} == {r["server"] for r in report["rows"]}
    servers = {r["server"] for r in report["rows"]}
    assert {"structgen", "llama_cpp.server"} <= servers
    assert ("llama-server" in servers) == (sb.llama_server_binary() is not None)
    assert all(r["invalid_200"] == 0 for r in report["rows"] if r["server"] == "structgen")


def test_unknown_server_is_a_typed_error(bench: Any) -> None:
    with pytest.raises(InvalidArgument, match="unknown server"):
        bench("serve", "--servers", "vllm")
