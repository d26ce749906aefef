"""Selection by a verifier: ``generate(..., strategy="best_of", select=...)`` with a scoring function or a judge.

``select`` may be a callable ``value -> score`` (higher is better) or a ``Verifier`` such as ``structgen.Judge``
(``structgen.analysis.judge``: a model asked "Is this extraction correct for the text?" about each candidate,
scored by the exact probability of "yes", every candidate in one batch). ``best_of`` keeps the best-scored
candidate; ``self_consistency`` the most frequent value, ties broken by the score.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from .errors import InvalidArgument
from .result import Result
from .selection import pick

__all__ = ["Verifier", "reselect", "scorer_for"]

Scores = Callable[[Sequence[Any]], list[float]]
"""Scores all the candidate values of one request at once (a judge scores them in one batch)."""


@runtime_checkable
class Verifier(Protocol):
    """A ``select=`` that scores candidates with knowledge of the request (``structgen.Judge``)."""

    def scorer(self, prompt: Any, source: str | None, generator: Any) -> Scores:
        """A function from the candidate values of one request on model ``generator`` to their scores."""


def scorer_for(select: Any, prompt: Any, source: str | None, model: Any) -> Scores | None:
    """The score function ``select`` stands for (None for the built-in selections)."""
    if isinstance(select, str):
        return None
    if isinstance(select, Verifier):
        return select.scorer(prompt, source, model)
    if callable(select):
        return _checked(select)
    raise InvalidArgument(f"select must be 'logprob', 'first_valid', 'first_finished', a Judge or a callable, "
                          f"got {select!r}")


def reselect(result: Result[Any], strategy: str, score: Scores) -> Result[Any]:
    """``result`` with its candidates chosen again by ``score`` (a single answer is returned as it is)."""
    if len(result.candidates) < 2:
        return result
    scores = dict(zip((id(c) for c in result.candidates), score([c.value for c in result.candidates]), strict=True))
    kept = pick(result.candidates, strategy if strategy == "self_consistency" else "best_of", "logprob",
                value=lambda c: c.value, score=lambda c: scores[id(c)])
    if kept is result or (kept.text == result.text and kept.seed == result.seed):
        return result
    kept.timings, kept.attempts, kept.candidates = result.timings, result.attempts, result.candidates
    kept.model, kept.relaxed = result.model, result.relaxed
    return kept


def _checked(select: Callable[[Any], Any]) -> Scores:
    def one(value: Any) -> float:
        out = select(value)
        if isinstance(out, bool) or not isinstance(out, int | float):
            raise InvalidArgument(f"select returned {out!r}; it must return a number (higher is better)")
        return float(out)

    return lambda values: [one(v) for v in values]
