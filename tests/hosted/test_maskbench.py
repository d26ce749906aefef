"""The chain over MaskBench schemas on the real server: every returned value validates (checked again here,
independently, with jsonschema) and every failure is a typed error. Valid-output rates per strategy are
printed in the test summary.

The sample is fixed: MaskBench files shuffled with a fixed seed, keeping schemas that compile and whose
compact JSON fits the small model's context with room to answer (≤ 1,500 characters). The default run
takes the 6 shortest of the 50; the slow run all 50.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from typing import Any

import jsonschema
import pytest
from jsonschema.validators import validator_for

import structgen
from structgen import BackendError, OpenAICompatible, ParseError, ValidationFailed

from ..conftest import MASKBENCH
from .conftest import SWEEP_COUNTS

SAMPLE = 50
DEFAULT_SUBSET = 6
MAX_SCHEMA_CHARS = 1500
STRATEGIES = ["prompt", "repair", "best_of", "server"]
PROMPT = "Generate an example JSON value for this schema."


def _sample(n: int = SAMPLE, seed: int = 20260505) -> list[tuple[str, dict[str, Any]]]:
    files = sorted(MASKBENCH.glob("*.json"))
    if len(files) < n:
        pytest.fail(f"MaskBench data not found at {MASKBENCH} (set STRUCTGEN_MASKBENCH)")
    random.Random(seed).shuffle(files)
    picked: list[tuple[str, dict[str, Any]]] = []
    for path in files:
        schema = json.loads(path.read_text())["schema"]
        if len(json.dumps(schema, separators=(",", ":"))) > MAX_SCHEMA_CHARS:
            continue
        try:
            structgen.compile_schema(schema)
        except structgen.StructgenError:
            continue
        picked.append((path.name, schema))
        if len(picked) == n:
            break
    return picked


SCHEMAS = _sample()
SHORTEST = sorted(SCHEMAS, key=lambda item: len(json.dumps(item[1])))[:DEFAULT_SUBSET]


def _sweep(model: OpenAICompatible, schemas: list[tuple[str, dict[str, Any]]], strategy: str, label: str,
           **options: Any) -> Counter[str]:
    counts: Counter[str] = Counter()
    for i, (name, schema) in enumerate(schemas):
        try:
            r = structgen.generate(PROMPT, schema=schema, model=model, strategy=strategy, seed=i, **options)
        except (ValidationFailed, ParseError, BackendError) as exc:
            assert not isinstance(exc, BackendError) or exc.status_code is not None, f"{name}: transport: {exc}"
            counts[type(exc).__name__] += 1
            continue
        value = json.loads(r.text)
        validator = validator_for(schema, default=jsonschema.Draft202012Validator)
        errors = list(validator(schema, format_checker=validator.FORMAT_CHECKER).iter_errors(value))
        assert not errors, f"{name}: returned an invalid value {r.text!r}: {errors[0].message}"
        assert value == r.value
        assert r.attempts and r.attempts[-1].error is None
        counts["valid"] += 1
    SWEEP_COUNTS[label] = dict(counts)
    return counts


def test_the_sample_is_fixed_and_large_enough() -> None:
    assert len(SCHEMAS) == SAMPLE
    assert [name for name, _ in SCHEMAS] == [name for name, _ in _sample()]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_returned_values_validate_on_a_few_schemas(hosted: OpenAICompatible, strategy: str) -> None:
    # Default run: short answers, one attempt (best-of: 2 samples, first valid; no logprobs, which this
    # server computes slowly).
    counts = _sweep(hosted, SHORTEST, strategy, f"{strategy} ({DEFAULT_SUBSET} schemas, max_tokens=24)",
                    max_tokens=24, max_attempts=1, n=2, select="first_valid")
    assert sum(counts.values()) == DEFAULT_SUBSET


@pytest.mark.slow
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_returned_values_validate_on_the_sample(hosted: OpenAICompatible, strategy: str) -> None:
    counts = _sweep(hosted, SCHEMAS, strategy, f"{strategy} ({SAMPLE} schemas, max_tokens=96)",
                    max_tokens=96, max_attempts=2, n=3)
    assert sum(counts.values()) == SAMPLE
