"""A built-in verifier for ``generate(..., select=Judge())``: a model asked whether each candidate is right.

The judge (the generating model, or another local model) sees the text and one candidate and is asked
``question``; the candidate's score is the exact probability of "yes" against "no" (``structgen.probs``: nothing
is sampled). ``best_of`` then keeps the candidate the judge believes most; ``self_consistency`` breaks ties by it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidArgument
from ..request import Message
from .probs import probs

__all__ = ["JUDGE_QUESTION", "Judge"]

JUDGE_QUESTION = "Is this extraction correct and complete for the text? Answer yes or no."


@dataclass(frozen=True)
class Judge:
    """A verifier model: ``model`` (a local ``LlamaCpp``; None: the model that generated) answers ``question``
    about the text and one candidate; the candidate's score is P("yes") normalised over yes/no."""

    model: Any = None
    question: str = JUDGE_QUESTION

    def scorer(self, prompt: str | Sequence[Message], source: str | None, generator: Any) -> Callable[[Any], float]:
        """A ``value -> P(yes)`` function for candidates of one request."""
        judge_model = self.model if self.model is not None else generator
        if not hasattr(judge_model, "decode_rows"):
            raise InvalidArgument("a judge needs a local model (LlamaCpp): pass Judge(model=LlamaCpp(...))")
        context = source if source is not None else _prompt_text(prompt)

        def score(value: Any) -> float:
            shown = json.dumps(_plain(value), ensure_ascii=False)
            question = f"Text:\n\"\"\"\n{context}\n\"\"\"\n\nExtraction:\n{shown}\n\n{self.question}"
            return probs(question, ["yes", "no"], model=judge_model, schema_in_prompt=False)["yes"]

        return score


def _plain(value: Any) -> Any:
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else value


def _prompt_text(prompt: str | Sequence[Message]) -> str:
    if isinstance(prompt, str):
        return prompt
    return "\n".join(str(m.get("content", "")) for m in prompt if m.get("role") == "user")
