"""The dev split, the seeded sample, and the task builders (no model needed)."""

from __future__ import annotations

import json

from structgen_benchmarks import data as mb
from structgen_benchmarks import strategies

from ..conftest import MASKBENCH


def test_sample_is_fixed_and_spans_sources() -> None:
    files = mb.dev_split(MASKBENCH)
    first, again = mb.sample(files, 40), mb.sample(files, 40)
    assert first == again and len(set(first)) == 40
    assert len({p.name.split("_")[0].split("-")[0] for p in first}) > 2   # not just the first source alphabetically


def test_serialise_is_compact() -> None:
    assert mb.serialise({"a": [1, 2], "b": "é"}) == '{"a":[1,2],"b":"é"}'


def test_describe_flattens_nested_values() -> None:
    lines = strategies._describe({"name": "Ann", "tags": ["a", "b"], "address": {"city": "Oslo"},
                                  "items": [{"sku": 1}, {"sku": 2}], "ok": True, "none": None})
    assert lines == ["name: Ann", "tags: a, b", "address.city: Oslo", "items 1.sku: 1", "items 2.sku: 2",
                     "ok: true", "none: null"]


def test_json_task_uses_compilable_dev_split_schemas() -> None:
    import structgen

    task = strategies.json_task(MASKBENCH, 5)
    assert len(task.items) == 5
    for item in task.items:
        structgen.compile_schema(item.schema)
        assert item.prompt.startswith("Extract the data")
        assert item.check(item.reference) is None                     # the described instance is valid
        assert item.correct is not None and item.correct(json.loads(json.dumps(item.reference)))
    assert task.items[0].check({"surely-not-a-valid": object()}) is not None
