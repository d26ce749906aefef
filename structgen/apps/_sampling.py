"""Drawing candidate texts for the apps: n samples in one batch, failures kept with their reason.

``generate`` returns the best valid candidate; the apps need every sample (valid or not) because they
verify each one on their own terms (``re.compile`` and examples, ``EXPLAIN``) and report why each failed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..compile.kinds import SchemaLike
from ..errors import TruncatedOutput, ValidationFailed
from ..generate import generate
from ..request import Message

ROUND_SEED_STRIDE = 1_000_003
"""Seed offset between rounds, so a new round never repeats an earlier round's samples."""

MIN_RETRY_TEMPERATURE = 0.7
"""A retry round samples at least this warm: a greedy retry would repeat the greedy failure."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One generated text; ``error`` says why generation did not finish it (None: it finished cleanly)."""

    text: str
    avg_logprob: float | None
    error: str | None = None

    @property
    def rank(self) -> float:
        """Sort key: the average logprob, unfinished samples last."""
        return self.avg_logprob if self.avg_logprob is not None else -math.inf


def sample_texts(
    messages: Sequence[Message],
    schema: SchemaLike,
    *,
    model: Any,
    n: int,
    temperature: float,
    seed: int,
    max_tokens: int,
    round_index: int = 0,
) -> list[Sample]:
    """``n`` samples of ``messages`` under ``schema`` (None: free text) in one batch; every sample returned.

    ``n == 1`` at ``temperature == 0`` is greedy. Round ``k > 0`` shifts the seed and samples at least
    ``MIN_RETRY_TEMPERATURE`` warm. Samples the grammar could not finish (``max_tokens`` ran out) come back
    with their partial text and the reason; typed errors other than these propagate.
    """
    if round_index > 0:
        temperature = max(temperature, MIN_RETRY_TEMPERATURE)
    round_seed = seed + round_index * ROUND_SEED_STRIDE
    try:
        result = generate(messages, schema, model=model, strategy="best_of" if n > 1 else "constrained", n=n,
                          temperature=temperature, seed=round_seed, max_tokens=max_tokens, max_attempts=1)
    except TruncatedOutput as exc:  # raised when every sample ran out of tokens; the first one's text is kept
        return [Sample(exc.partial_text, None, f"truncated: {exc}")]
    except ValidationFailed as exc:
        return [Sample(a.text, None, a.error or "invalid") for a in exc.attempts]
    return [Sample(a.text, a.avg_logprob, a.error) for a in result.attempts]
