"""``structgen bench serve``: a tiny run against structgen serve and llama.cpp's llama-server (or the note that
it is not built), every reply validated by the bench."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from structgen_benchmarks import serve as sb

from structgen.errors import InvalidArgument

from .conftest import is_png


def test_tiny_run(bench: Any, tmp_path: Path) -> None:
    code, stdout, report = bench("serve", "--servers", "structgen,llama-server", "--concurrency", "2",
                                 "--requests", "2", "--max-tokens", "200", "--plot", str(tmp_path / "s.png"))
    assert code == 0, stdout
    ours = [r for r in report["rows"] if r["server"] == "structgen"]
    assert [r["concurrency"] for r in ours] == [2]
    for r in ours:
        assert r["requests"] == 2 and r["invalid_200"] == 0 and r["tok_s"] > 0
        assert r["valid_rate"] + r["errors"] / r["requests"] == 1.0
    peer = [r for r in report["rows"] if r["server"] == "llama-server"]
    if sb.llama_server_binary() is None:
        assert not peer and any("not built" in n for n in report["notes"]) and "not built" in stdout
    else:
        assert [r["concurrency"] for r in peer] == [2] and "tok_s_2_vs_llama_server" in report["ratios"]
    assert "| server |" in stdout and is_png(tmp_path / "s.png")


def test_unknown_server_is_a_typed_error(bench: Any) -> None:
    with pytest.raises(InvalidArgument, match="unknown server"):
        bench("serve", "--servers", "vllm")
