"""The same call twice gives the same answer: on an idle model in the default mode, a request computes the same
numbers whether its prompt is prefilled cold, found whole in the prefix cache, or found cut back to its head after
other requests ran (the cold prefill is split where the cache keeps the head; a prompt found whole starts from
the logits the first call had)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import BaseModel

import structgen
from structgen import generate


class Invoice(BaseModel):
    number: str
    vendor: str
    total: float


FIRST = "Extract the invoice: ACME Corp, invoice INV-7 dated 2024-03-01, total 25.00 USD, paid by card."
OTHER = "Extract the invoice: Globex, invoice 99-A, total 12.50 EUR, due at the end of March."


@pytest.fixture(scope="module")
def fresh_model() -> Iterator[structgen.LlamaCpp]:
    m = structgen.LlamaCpp(n_ctx=1024, n_seq_max=2, prefix_cache=2)   # every other option as a user gets it
    yield m
    m.close()


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_the_same_request_gives_one_text_and_one_logprob_vector(fresh_model: structgen.LlamaCpp,
                                                                temperature: float) -> None:
    fresh_model.scheduler.cache.clear()
    runs = []
    for prompt in [FIRST, FIRST, OTHER, FIRST, FIRST, OTHER, OTHER, FIRST]:
        r = generate(prompt, Invoice, model=fresh_model, seed=7, temperature=temperature, max_tokens=64)
        if prompt is FIRST:
            runs.append(r)
    hits = [r.timings.prefix_hit_tokens for r in runs]
    assert hits[0] == 0 and hits[1] == runs[1].timings.prompt_tokens   # cold, then found whole
    assert any(0 < h < runs[0].timings.prompt_tokens for h in hits)    # and found cut back to its head
    assert len({r.text for r in runs}) == 1, [r.text for r in runs]
    assert len({tuple(r.logprobs) for r in runs}) == 1                  # bit for bit, not within a tolerance
