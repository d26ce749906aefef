"""A built-in verifier for ``generate(..., select=Judge())``: a model asked whether each candidate is right.

The judge (the generating model, or another local model) sees the text and one candidate and is asked
``question``; the candidate's score is the exact probability of "yes" against "no" (``structgen.probs``: nothing
is sampled). ``best_of`` then keeps the candidate the judge believes most; ``self_consistency`` breaks ties by it.
"""

from __future__ import annotations

import json
import math
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
    """A verifier model: ``model`` (a local ``LlamaCpp``; None: the model that generated) is shown the text, writes
    each candidate and then answers ``question``; a candidate's score is P("yes") / (P("yes") + P("no")) after it.
    Every candidate is scored from one prompt in one batched ``probs`` call (shared tokens decoded once)."""

    model: Any = None
    question: str = JUDGE_QUESTION

    def scorer(self, prompt: str | Sequence[Message], source: str | None,
               generator: Any) -> Callable[[Sequence[Any]], list[float]]:
        """A function from the candidate values of one request to their P(yes)."""
        judge_model = self.model if self.model is not None else generator
        if not hasattr(judge_model, "decode_rows"):
            raise InvalidArgument("a judge needs a local model (LlamaCpp): pass Judge(model=LlamaCpp(...))")
        context = source if source is not None else _prompt_text(prompt)
        ask = (f"Text:\n\"\"\"\n{context}\n\"\"\"\n\nWrite an extraction of this text as JSON. Then, on a new "
               f"line, answer: {self.question}")

        def scores(values: Sequence[Any]) -> list[float]:
            shown = [json.dumps(_plain(v), ensure_ascii=False) for v in values]
            options = sorted({f"{s}{SEP}{a}" for s in shown for a in ("yes", "no")})
            lp = probs(ask, options, model=judge_model, schema_in_prompt=False, complete=False).logprobs
            return [1.0 / (1.0 + math.exp(min(700.0, lp[f"{s}{SEP}no"] - lp[f"{s}{SEP}yes"]))) for s in shown]

        return scores


SEP = "\nCorrect? "
"""Between a candidate and the judge's answer."""


def _plain(value: Any) -> Any:
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else value


def _prompt_text(prompt: str | Sequence[Message]) -> str:
    if isinstance(prompt, str):
        return prompt
    return "\n".join(str(m.get("content", "")) for m in prompt if m.get("role") == "user")
