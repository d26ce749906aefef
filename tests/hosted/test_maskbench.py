"""The chain over MaskBench schemas on the real server: every returned value validates (checked again here,
independently, with jsonschema) and every failure is a typed error. Valid-output rates per strategy are
printed in the test summary.

The sample is fixed: MaskBench files shuffled with a fixed seed, keeping schemas that compile and whose
compact JSON fits the small model's context with room to answer (≤ 1,500 characters). The default run
takes the 6 shortest of the 50; the slow run all 50.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import jsonschema
import pytest
from jsonschema.validators import validator_for

import structgen
from structgen import BackendError, OpenAICompatible, ParseError, ValidationFailed

from ..conftest import maskbench_sample
from .conftest import SWEEP_COUNTS

SAMPLE = 50
DEFAULT_SUBSET = 6
MAX_SCHEMA_CHARS = 1500
STRATEGIES = ["prompt", "repair", "best_of", "server"]
PROMPT = "Generate an example JSON value for this schema."


SEED = 20260505
SCHEMAS = maskbench_sample(SAMPLE, seed=SEED, max_chars=MAX_SCHEMA_CHARS)
SHORTEST = sorted(SCHEMAS, key=lambda item: len(json.dumps(item[1])))[:DEFAULT_SUBSET]


def _check(model: OpenAICompatible, name: str, schema: dict[str, Any], strategy: str, seed: int,
           **options: Any) -> str:
    """One generation: "valid" (validated again here) or the name of the typed error it ended in."""
    try:
        r = structgen.generate(PROMPT, schema=schema, model=model, strategy=strategy, seed=seed, **options)
    except (ValidationFailed, ParseError, BackendError) as exc:
        # A transport failure is not an outcome of the chain: the server was up the whole time.
        assert not isinstance(exc, BackendError) or exc.status_code is not None, f"{name}: {exc}"
        return type(exc).__name__
    value = json.loads(r.text)
    validator = validator_for(schema, default=jsonschema.Draft202012Validator)
    errors = list(validator(schema, format_checker=validator.FORMAT_CHECKER).iter_errors(value))
    assert not errors, f"{name}: {strategy} returned an invalid value {r.text!r}: {errors[0].message}"
    assert value == r.value
    assert any(a.error is None for a in r.attempts)
    return "valid"


def _sweep(model: OpenAICompatible, schemas: list[tuple[str, dict[str, Any]]], strategies: list[str], label: str,
           **options: Any) -> dict[str, Counter[str]]:
    # Schema-major: the strategies send the same prompt, so the server's prompt cache serves all but the first.
    counts: dict[str, Counter[str]] = {s: Counter() for s in strategies}
    for i, (name, schema) in enumerate(schemas):
        for strategy in strategies:
            counts[strategy][_check(model, name, schema, strategy, i, **options)] += 1
    for strategy, c in counts.items():
        SWEEP_COUNTS[f"{strategy} ({label})"] = dict(c)
    return counts


def test_the_sample_is_fixed_and_large_enough() -> None:
    assert len(SCHEMAS) == SAMPLE
    assert [name for name, _ in SCHEMAS] == [name for name, _ in maskbench_sample(SAMPLE, seed=SEED, max_chars=MAX_SCHEMA_CHARS)]


def test_returned_values_validate_on_a_few_schemas(hosted: OpenAICompatible) -> None:
    # Default run: short answers, one attempt; best-of takes 2 samples and the first valid (no logprobs,
    # which this server computes slowly).
    counts = _sweep(hosted, SHORTEST, STRATEGIES, f"{DEFAULT_SUBSET} schemas, max_tokens=24", max_tokens=24,
                    max_attempts=1, n=2, select="first_valid")
    assert all(sum(c.values()) == DEFAULT_SUBSET for c in counts.values())


@pytest.mark.slow
def test_returned_values_validate_on_the_sample(hosted: OpenAICompatible) -> None:
    # Up to an hour on a shared 2-core machine: ~5 requests of up to 64 tokens per schema and strategy.
    counts = _sweep(hosted, SCHEMAS, STRATEGIES, f"{SAMPLE} schemas, max_tokens=64", max_tokens=64, max_attempts=2,
                    n=2, select="first_valid")
    assert all(sum(c.values()) == SAMPLE for c in counts.values())
