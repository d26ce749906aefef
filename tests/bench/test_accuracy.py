"""``structgen bench accuracy``: the comparison rules, the task set, and a tiny run of two modes on the real model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from structgen_benchmarks.accuracy import MODES, field_correct, load_extraction_tasks

from .conftest import is_png


@pytest.mark.parametrize(("predicted", "gold", "right"), [
    ("ACME Tools Ltd", "Acme Tools Ltd.", True),       # case and punctuation do not count
    ("Acme  Tools", "Acme Tools Ltd.", False),
    (1200, 1200.0, True), (1200.5, 1200.0, False), ("1200", 1200, False),
    (True, True, True), (1, True, False),
    (["b", "A."], ["a", "b"], True), (["a"], ["a", "b"], False),
    (None, "x", False),
])
def test_field_comparison_rules(predicted: Any, gold: Any, right: bool) -> None:
    assert field_correct(predicted, gold) is right


def test_the_task_set_is_labelled_and_its_gold_values_are_valid() -> None:
    tasks = load_extraction_tasks()
    assert len(tasks) >= 40 and len({t["kind"] for t in tasks}) == 12
    for task in tasks:
        jsonschema.validate(task["gold"], task["schema"])
        for key, schema in task["schema"]["properties"].items():
            gold = task["gold"][key]
            if schema.get("type") == "string" and "format" not in schema:
                assert gold in task["text"], (task["id"], key)   # a right answer is always a span


def test_tiny_run(bench: Any, tmp_path: Path) -> None:
    code, stdout, report = bench("accuracy", "--modes", "constrained,grounded", "--limit", "2", "--plot",
                                 str(tmp_path / "a.png"))
    assert code == 0, stdout
    assert set(report["by_mode"]) == {"constrained", "grounded"} and "| grounded |" in stdout
    grounded = report["by_mode"]["grounded"]
    assert grounded["documents"] == 2 and grounded["valid_rate"] == 1.0 and grounded["absent_from_source"] == 0
    assert 0.0 <= grounded["field_accuracy"] <= 1.0 and is_png(tmp_path / "a.png")
    assert all(json.dumps(row["value"]) for row in report["rows"])
    assert MODES[0] == "prompt"
