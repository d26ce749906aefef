"""``structgen bench batch``: its batch file passes the batch check; a tiny run reports every path (slow)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from structgen_benchmarks import batch

from structgen.batch import read_batch_file
from structgen.batch.plans import check_lines

from .conftest import is_png


def test_the_bench_file_is_a_valid_batch_over_every_schema(tmp_path: Path) -> None:
    lines = batch.batch_lines(20, 64)
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    parsed, problems = read_batch_file(tmp_path / "in.jsonl")
    planned, bad = check_lines(parsed)
    assert not problems and not bad and len(planned) == 20
    assert len({json.dumps(p.plan.schema, sort_keys=True) for p in planned}) == 8


@pytest.mark.slow
def test_a_tiny_run_reports_every_path(bench: Any, tmp_path: Path) -> None:
    code, stdout, report = bench("batch", "--records", "2", "--max-tokens", "200", "--n-seq-max", "2",
                                 "--ttft-probes", "2", "--plot", str(tmp_path / "b.png"))
    assert code == 0, stdout
    paths = [r["path"] for r in report["rows"]]
    assert paths == ["bare engine (agenerate)", "batch run (local)", "batch run --endpoint serve"]
    assert all(r["docs"] == 2 for r in report["rows"]) and report["rows"][0]["vs_bare"] == 1.0
    assert is_png(tmp_path / "b.png") and "| bare engine (agenerate) |" in stdout
    ttft = report["ttft"]
    assert len(ttft["idle_s"]) == len(ttft["busy_s"]) == 2 and ttft["idle_p50_s"] > 0 and ttft["ratio"] > 0
    assert "Interactive TTFT" in stdout
