"""``structgen bench start``: fresh processes, each timed from ``import structgen`` to a first short answer."""

from __future__ import annotations

from typing import Any

from structgen_benchmarks import start


def test_one_run_reports_every_stage(bench: Any) -> None:
    code, stdout, report = bench("start", "--runs", "2")
    assert code == 0, stdout
    assert len(report["samples"]) == 2
    for sample in report["samples"]:
        assert sample["value"] in ("yes", "no")
        parts = sample["import_s"] + sample["load_s"] + sample["first_answer_s"]
        assert abs(parts - sample["in_process_s"]) < 1e-6 and sample["process_s"] > sample["in_process_s"]
    assert set(report["stages"]) == set(start.STAGES)
    assert report["met"] == (report["stages"]["in_process_s"]["p50"] <= start.TARGET_S)
    assert "| import |" in stdout and "target ≤ 1.0 s" in stdout
