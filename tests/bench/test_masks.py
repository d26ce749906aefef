"""``structgen bench masks``: MaskBench counting on hand-made files, the real data, and the per-step deadline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from structgen_benchmarks import maskbench

from ..conftest import MASKBENCH
from .conftest import is_png

INT_AT_MOST_5 = {"type": "integer", "maximum": 5}


def _write(folder: Path, name: str, schema: Any, tests: list[tuple[Any, bool]]) -> None:
    body = {"description": name, "meta": {}, "schema": schema,
            "tests": [{"description": "", "data": d, "valid": v} for d, v in tests]}
    (folder / name).write_text(json.dumps(body))


def _engine(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(e for e in report["engines"] if e["name"] == name)


def test_counts_follow_maskbench_terms(bench: Any, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _write(data, "exact.json", INT_AT_MOST_5, [(3, True), (7, False), ("x", False)])
    _write(data, "loose.json", INT_AT_MOST_5, [(3, False)])      # mislabelled: accepting it is "too loose"
    _write(data, "strict.json", INT_AT_MOST_5, [(7, True)])      # mislabelled: rejecting it is "too strict"
    # llguidance refuses `not` strictly; structgen compiles a relaxed grammar and validates afterwards.
    _write(data, "relaxed.json", {"type": "integer", "not": {"const": 3}}, [(4, True), (3, False)])
    _write(data, "no_tests.json", {"type": "string"}, [])
    code, stdout, report = bench("masks", "--data", str(data), "--plot", str(tmp_path / "m.png"))
    assert code == 0, stdout
    ours, raw = _engine(report, "structgen"), _engine(report, "llguidance")
    assert report["files"] == 5
    assert {k: ours[k] for k in maskbench.STATUSES} == {
        "passing": 3, "compile_errors": 0, "validation_errors": 1, "invalidation_errors": 1, "timeouts": 0,
        "crashes": 0}
    assert {k: raw[k] for k in maskbench.STATUSES} == {
        "passing": 2, "compile_errors": 1, "validation_errors": 1, "invalidation_errors": 1, "timeouts": 0,
        "crashes": 0}
    assert ours["relaxed"] == 1 and raw["relaxed"] == 0
    # The relaxed grammar lets 3 through; post-validation rejects it, so structgen never returns it.
    assert ours["tests"]["grammar_invalidation_errors"] == 2
    assert ours["tests"]["invalidation_errors"] == 1
    assert report["comparison"]["passing_beyond_llguidance_files"] == ["relaxed.json"]
    # The wrapper's cost is compared on the files both walked (relaxed.json only by structgen; no_tests.json
    # has nothing to walk).
    same = report["comparison"]["same_files"]
    assert same["files_walked"] == 3 and same["files_compiled"] == 4
    assert report["comparison"]["tbm_p99_ratio"] == round(same["tbm_us"]["structgen"]["p99"]
                                                          / same["tbm_us"]["llguidance"]["p99"], 3)
    assert report["comparison"]["tbm_p99_ratio_all"] == round(ours["tbm_us"]["p99"] / raw["tbm_us"]["p99"], 3)
    assert ours["masks"] > 0 and ours["tbm_us"]["p50"] > 0 and ours["ttfm_us"]["p50"] > 0
    assert raw["masks"] > 0 and raw["ttfm_us"]["p99"] >= raw["ttfm_us"]["p50"] > 0
    assert report["machine"]["cpu"] and report["versions"]["llguidance"]
    assert ours["usable"] == 5 and raw["usable"] == 4
    assert "| structgen | 5 | 5 | 3 |" in stdout and "| llguidance | 5 | 4 | 2 |" in stdout
    assert is_png(tmp_path / "m.png")


def test_a_value_written_another_way_is_told_apart_from_a_rejected_value(bench: Any, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    pair = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"},
                                             "c": {"type": "object", "properties": {"x": {"type": "integer"},
                                                                                    "y": {"type": "integer"}}}},
            "required": ["a", "b"], "additionalProperties": False}
    # The grammar writes a, b, c (and x, y) in that order; these valid values list them otherwise.
    _write(data, "order.json", pair, [({"b": "s", "a": 1}, True), ({"c": {"y": 2, "x": 1}, "b": "t", "a": 2}, True)])
    # allOf merges two property lists (llguidance: the first's keys, then the second's); the value lists the
    # second's keys first, each list backwards: the search must find the merged order among 12! orders.
    first, second = ([f"{p}{i}" for i in range(6)] for p in ("p", "q"))
    merged = {"allOf": [{"properties": {k: {"type": "integer"} for k in first}},
                        {"properties": {k: {"type": "integer"} for k in second}}]}
    _write(data, "merged.json", merged, [({k: 1 for k in second[::-1] + first[::-1]}, True)])
    # MaskBench serialises 2.0 as "2.0"; the grammar of const 2 writes "2": the same JSON value.
    _write(data, "integral.json", {"type": "object", "properties": {"n": {"const": 2}}}, [({"n": 2.0}, True)])
    _write(data, "strict.json", INT_AT_MOST_5, [(7, True)])      # rejected in any order: a real validation error
    _write(data, "float.json", INT_AT_MOST_5, [(7.0, True)])     # as an integer too: still rejected
    code, stdout, report = bench("masks", "--data", str(data))
    assert code == 0, stdout
    for name in ("structgen", "llguidance"):
        engine = _engine(report, name)
        assert engine["validation_errors"] == 5, name                  # MaskBench's count: as serialised
        assert engine["value_validation_errors"] == 2, name            # strict.json and float.json only
        assert engine["tests"]["validation_errors"] == 6 and engine["tests"]["value_validation_errors"] == 2
    assert "| as values |" in stdout


def test_real_data_sample(bench: Any) -> None:
    code, stdout, report = bench("masks", "--data", str(MASKBENCH), "--limit", "5")
    assert code == 0, stdout
    assert report["files"] == 5 and report["limit"] == 5
    for engine in report["engines"]:
        counted = sum(engine[k] for k in maskbench.STATUSES)
        assert counted == 5, engine
    assert set(report["comparison"]["targets"]) == {
        "zero_invalidation_errors", "ttfm_p50_le_1.1ms", "tbm_p99_le_1.1x_llguidance", "passing_ge_llguidance",
        "usable_ge_98pct", "validation_errors_le_llguidance_plus_10", "value_validation_errors_le_llguidance_plus_10",
        "ttfm_p50_le_1.1x_llguidance"}
