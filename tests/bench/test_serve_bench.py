"""``structgen bench serve``: a tiny run against structgen serve, every reply validated by the bench; the peers
(llama.cpp's llama-server, llama_cpp.server) in the slow run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from structgen_benchmarks import serve as sb

from structgen.errors import InvalidArgument

from .conftest import is_png


def test_tiny_run(bench: Any, tmp_path: Path) -> None:
    code, stdout, report = bench("serve", "--servers", "structgen", "--concurrency", "2", "--requests", "2",
                                 "--max-tokens", "200", "--plot", str(tmp_path / "s.png"))
    assert code == 0, stdout
    (row,) = report["rows"]
    assert row["server"] == "structgen" and row["concurrency"] == 2 and row["requests"] == 2
    assert row["invalid_200"] == 0 and row["tok_s"] > 0
    assert row["valid_rate"] + row["errors"] / row["requests"] == 1.0
    assert "| server |" in stdout and is_png(tmp_path / "s.png")


def test_an_unbuilt_llama_server_is_named_not_failed(bench: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sb, "llama_server_binary", lambda: None)
    code, stdout, report = bench("serve", "--servers", "llama-server", "--concurrency", "1", "--requests", "1")
    assert code == 0 and report["rows"] == []
    assert any("scripts/llama_server.sh" in n for n in report["notes"]) and "not built" in stdout


@pytest.mark.slow
def test_every_server(bench: Any) -> None:
    code, stdout, report = bench("serve", "--concurrency", "2", "--requests", "2", "--max-tokens", "200")
    assert code == 0, stdout
    servers = {r["server"] for r in report["rows"]}
    assert {"structgen", "llama_cpp.server"} <= servers
    assert ("llama-server" in servers) == (sb.llama_server_binary() is not None)
    assert all(r["invalid_200"] == 0 for r in report["rows"] if r["server"] == "structgen")


def test_unknown_server_is_a_typed_error(bench: Any) -> None:
    with pytest.raises(InvalidArgument, match="unknown server"):
        bench("serve", "--servers", "vllm")
