"""Choosing among valid candidates: ``pick`` (best_of, self_consistency, first valid) and ``normalise``
(the canonical form a majority vote counts). Local results and the hosted chain's replies both choose here."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

from .errors import InvalidArgument

C = TypeVar("C")

__all__ = ["normalise", "pick"]


def pick(candidates: Sequence[C], strategy: str, select: str, *, value: Callable[[C], Any],
         score: Callable[[C], float | None]) -> C:
    """The candidate a strategy keeps: ``self_consistency`` the most frequent ``normalise``d value (ties
    to the best score, an average logprob), ``best_of`` the best score, anything else the first.
    ``select="first_valid"``, or a candidate without a score: the first instead (in a tie, the earliest).
    Local results and the hosted chain's replies both choose through here."""
    if not candidates:
        raise InvalidArgument("no candidate to choose from")
    ranked = select == "logprob" and all(score(c) is not None for c in candidates)
    pool: Sequence[C] = candidates
    if strategy == "self_consistency":
        keys = [normalise(value(c)) for c in candidates]
        counts = Counter(keys)
        top = max(counts.values())
        pool = [c for c, k in zip(candidates, keys, strict=True) if counts[k] == top]
    elif strategy != "best_of":
        return candidates[0]
    return max(pool, key=lambda c: cast(float, score(c))) if ranked else pool[0]   # ranked: no None


def normalise(value: Any) -> str:
    """A canonical string for voting: models dumped to JSON, keys sorted, strings stripped and casefolded."""
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")

    def canon(v: Any) -> Any:
        if isinstance(v, dict):
            return {str(k): canon(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [canon(x) for x in v]
        if isinstance(v, str):
            return " ".join(v.split()).casefold()
        if isinstance(v, float) and v.is_integer():
            return int(v)
        return v

    return json.dumps(canon(value), sort_keys=True, default=str)
