"""``structgen bench concurrency``: a tiny run measures every level and the cold/warm pass, and reports ratios."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from structgen_benchmarks import concurrency as cc

from structgen.errors import InvalidArgument

from .conftest import is_png


def test_the_requests_are_eight_schemas_with_two_texts_each() -> None:
    assert len(cc.REQUESTS) == 16
    names = [e.name for e in cc.REQUESTS]
    assert names[0::2] == names[1::2] and len(set(names)) == 8
    assert all(a.text != b.text and a.schema == b.schema
               for a, b in zip(cc.REQUESTS[0::2], cc.REQUESTS[1::2], strict=True))


@pytest.mark.slow   # two levels, the cold/warm pass and a plot: ~45 s on 2 cores (the run below is the default)
def test_tiny_run(bench: Any, tmp_path: Path) -> None:
    code, stdout, report = bench("concurrency", "--concurrency", "1,2", "--limit", "4", "--max-tokens", "48",
                                 "--n-ctx", "4096", "--ttft-rounds", "1", "--plot", str(tmp_path / "c.png"))
    assert code == 0, stdout
    levels = report["levels"]
    assert [lv["concurrency"] for lv in levels] == [1, 2]
    for lv in levels:
        assert lv["calls"] == 4 and lv["tok_s"] > 0 and lv["wall_s"] > 0
        assert lv["valid"] + len(lv["errors"]) >= 1
    cold_warm = report["cold_vs_warm"]
    assert cold_warm["pairs"] <= 2 and len(cold_warm["each"]) == cold_warm["pairs"]   # two schemas, one round
    assert all(p["warm_hit_tokens"] > 0 for p in cold_warm["each"])   # the second text reused the first's prefix
    assert "tok_s_2_vs_1" in report["ratios"] and "latency_p99_2_vs_1" in report["ratios"]
    assert "| callers |" in stdout
    assert is_png(tmp_path / "c.png")


def test_requests_cycle_so_every_caller_stays_busy(bench: Any) -> None:
    code, stdout, report = bench("concurrency", "--concurrency", "2", "--limit", "2", "--requests", "5",
                                 "--max-tokens", "24", "--n-ctx", "4096", "--flash-attn", "on",
                                 "--ttft-rounds", "1")
    assert code == 0, stdout
    assert report["settings"]["requests"] == 5 and report["levels"][0]["calls"] == 5
    assert report["settings"]["flash_attn"] is True and "flash attention on" in stdout
    (level,) = report["levels"]
    assert level["concurrency"] == 2 and level["tok_s"] > 0 and level["valid"] + len(level["errors"]) >= 1
    assert report["cold_vs_warm"]["pairs"] <= 1 and "| callers |" in stdout


def test_bad_flash_attn_is_a_typed_error(bench: Any) -> None:
    with pytest.raises(InvalidArgument, match="--flash-attn takes on, off or default"):
        bench("concurrency", "--flash-attn", "maybe")


@pytest.mark.parametrize("levels", ["0,2", "x", ""])
def test_bad_levels_are_a_typed_error(bench: Any, levels: str) -> None:
    with pytest.raises(InvalidArgument, match="--concurrency"):
        bench("concurrency", "--concurrency", levels)
