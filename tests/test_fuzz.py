"""Validity fuzz: ≥ 200 MaskBench schemas, real model at temperature 1 and a random-logits stand-in.

Every returned value must validate against its schema (checked here again, independently, with
jsonschema); every failure must be a typed StructgenError. Counts are printed in the test summary.
The random-logits model runs all 200 in the default run; the real model runs a quarter of them there (every 4th)
and the other three quarters under ``-m slow`` (``make test-slow``): together the 200, while the default run stays
within its time budget.
"""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jsonschema
import pytest
from jsonschema.validators import validator_for

import structgen
from structgen.testing import RandomLogitsModel

from .conftest import maskbench_sample

SAMPLE = 200
SUMMARY: dict[str, Counter[str]] = {}


@pytest.fixture(scope="module")
def schemas() -> list[tuple[str, dict[str, Any]]]:
    return maskbench_sample(SAMPLE, seed=20261123)


def _check(model: Any, schemas: list[tuple[str, dict[str, Any]]], label: str, **kwargs: Any) -> Counter[str]:
    """Generate for every schema; a model with an engine thread serves 8 callers at once (co-batched: the
    validity guarantee must hold whatever the batch), the random-logits stand-in one at a time."""
    def one(item: tuple[int, tuple[str, dict[str, Any]]]) -> str:
        i, (name, schema) = item
        try:
            r = structgen.generate("Generate an example JSON value for this schema.", schema=schema,
                                   model=model, seed=i, schema_in_prompt=False, **kwargs)
        except structgen.StructgenError as exc:
            return type(exc).__name__
        value = json.loads(r.text)
        validator = validator_for(schema, default=jsonschema.Draft202012Validator)
        errors = list(validator(schema, format_checker=validator.FORMAT_CHECKER).iter_errors(value))
        assert not errors, f"{name}: returned an invalid value {r.text!r}: {errors[0].message}"
        assert value == r.value
        return "valid"

    callers = 8 if hasattr(model, "submit") else 1
    with ThreadPoolExecutor(max_workers=callers) as pool:
        counts = Counter(pool.map(one, enumerate(schemas)))
    SUMMARY[label] = counts
    return counts


def test_schema_sample_is_large_enough(schemas: list[tuple[str, dict[str, Any]]]) -> None:
    assert len(schemas) == SAMPLE


@pytest.mark.parametrize("quarter", [0, pytest.param(1, marks=pytest.mark.slow), pytest.param(2, marks=pytest.mark.slow),
                                     pytest.param(3, marks=pytest.mark.slow)])
def test_real_model_at_temperature_one(model: structgen.LlamaCpp, schemas: list[tuple[str, dict[str, Any]]],
                                       quarter: int) -> None:
    # Two attempts, not the default three: a quarter of these schemas run out of 64 tokens at T=1 every time,
    # and the third attempt added a minute to the suite without reaching any new code.
    part = schemas[quarter::4]
    counts = _check(model, part, f"SmolLM2-135M, T=1.0, max_tokens=64, max_attempts=2, quarter {quarter}",
                    temperature=1.0, max_tokens=64, max_attempts=2)
    assert sum(counts.values()) == len(part) == SAMPLE // 4
    assert counts["valid"] >= len(part) // 4, counts


def test_random_logits_model(random_model: RandomLogitsModel,
                             schemas: list[tuple[str, dict[str, Any]]]) -> None:
    counts = _check(random_model, schemas, "random logits, T=1.0, max_tokens=256", temperature=1.0,
                    max_tokens=256)
    assert sum(counts.values()) == SAMPLE
    # Random logits wander into long strings and deep nesting, so many runs truncate; enough must finish
    # for the check above to have looked at a real sample of returned values.
    assert counts["valid"] >= SAMPLE // 10, counts
