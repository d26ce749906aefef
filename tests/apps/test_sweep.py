"""Slow sweep: every task of benchmarks/tasks with the real model, constrained — every answer is valid."""

from __future__ import annotations

import pytest

import structgen
from benchmarks.apps import run_apps_bench


@pytest.mark.slow
def test_every_constrained_answer_is_valid(app_model: structgen.LlamaCpp) -> None:
    report = run_apps_bench(app_model, modes=("constrained",), n=2, seed=0)
    bad = [(t["kind"], t["id"], t["error"]) for t in report["tasks"] if not t["valid"]]
    assert bad == []
    for row in report["summary"]:
        assert row["valid"] == 1.0 and row["errors"] == 0
