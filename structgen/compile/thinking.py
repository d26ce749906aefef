"""Think, then answer: a bounded stretch of free reasoning before the constrained answer.

``compile_think(answer, budget, delimiters)`` wraps any ``CompiledSchema`` in the grammar
*open delimiter + at most ``budget`` tokens of free text + close delimiter + the answer*. When the budget runs
out the close delimiter is forced, so a reasoning model can neither think forever nor leak its reasoning into the
answer. Models whose vocabulary has thinking tokens (``<think>``/``</think>`` and the like, found by
``LlamaCpp.think_delimiters``) use them; every other model gets the same shape as a plain-text scratchpad. The
validator sees only the answer; ``Result.reasoning`` gets the thinking and ``Result.text`` the answer.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgument
from ._locations import first_line
from .schema import CompiledSchema, _Invalid, check_llguidance, named_grammars

if TYPE_CHECKING:
    from ..result import Result

__all__ = ["MAX_THINK_TOKENS", "PLAIN_THINKING", "THINK_TOKEN_PAIRS", "ThinkDelimiters", "compile_think",
           "split_reasoning"]

MAX_THINK_TOKENS = 32_768
"""Largest thinking budget ``think=`` takes."""


@dataclass(frozen=True, slots=True)
class ThinkDelimiters:
    """How a model opens and closes its thinking: ``open``/``close`` as text, ``special`` when they are special
    tokens of its vocabulary (referred to by name in the grammar, as llguidance writes ``<name>``), and
    ``opened`` when the chat template already wrote the open delimiter at the end of the prompt."""

    open: str = "<think>"
    close: str = "</think>"
    special: bool = False
    opened: bool = False


PLAIN_THINKING = ThinkDelimiters()
"""The scratchpad for models without thinking tokens: ``<think>`` and ``</think>`` written as text."""

THINK_TOKEN_PAIRS = (("<think>", "</think>"), ("<thinking>", "</thinking>"),
                     ("<|begin_of_thought|>", "<|end_of_thought|>"), ("<|START_THINKING|>", "<|END_THINKING|>"))
"""Thinking delimiters of known reasoning models, looked for as single tokens of a vocabulary."""

THINK_HINT = ("First think step by step, briefly, between <think> and </think>; then write the answer.")


def compile_think(answer: CompiledSchema, budget: int, delimiters: ThinkDelimiters = PLAIN_THINKING) -> CompiledSchema:
    """``answer`` preceded by at most ``budget`` tokens of reasoning between ``delimiters``."""
    if isinstance(budget, bool) or not isinstance(budget, int) or not 0 < budget <= MAX_THINK_TOKENS:
        raise InvalidArgument(f"think must be a number of tokens in [1, {MAX_THINK_TOKENS}], got {budget!r}")
    if answer.kind == "tools":
        raise InvalidArgument("think= cannot be combined with tools")
    return _compile(answer, budget, delimiters)


@functools.lru_cache(maxsize=256)
def _compile(answer: CompiledSchema, budget: int, delimiters: ThinkDelimiters) -> CompiledSchema:
    checked = answer.checked()
    grammars: list[dict[str, Any]] = [{}]
    if checked.grammar is None:
        answer_rule = r"answer: /(.|\n)*/"
    else:
        grammars.extend(named_grammars(checked.grammar, "answer"))
        answer_rule = "answer: @answer"
    if delimiters.special:
        opening = "" if delimiters.opened else f"<{delimiters.open.strip('<>')}> "
        lines = [f"start: {opening}think <{delimiters.close.strip('<>')}> /\\n*/ answer",
                 f"think[max_tokens={budget}]: /(.|\\n)*/"]
    else:
        # The thinking text may not contain "<": then it cannot run into its closing delimiter, and when the budget
        # is spent the delimiter is the only way on (a lazy lexeme with a suffix is not forced that way).
        opening = "" if delimiters.opened else f"{json.dumps(delimiters.open)} "
        lines = [f"start: {opening}think {json.dumps(delimiters.close + chr(10))} answer",
                 f"think[max_tokens={budget}]: /[^<]*/"]
    grammars[0] = {"name": "think", "lark_grammar": "\n".join([*lines, answer_rule]) + "\n"}
    grammar = json.dumps({"grammars": grammars})
    check_llguidance(grammar, lambda msg: InvalidArgument(f"think= cannot be combined with this schema: "
                                                          f"{first_line(msg)}"))
    close = delimiters.close

    def validate(text: str) -> Any:
        _, rest = split_reasoning(text, close)
        if rest is None:
            raise _Invalid(f"no {close} before the answer")
        return checked.validator(rest)

    def annotate(result: Result[Any]) -> None:
        reasoning, rest = split_reasoning(result.text, close)
        if rest is not None:
            result.reasoning, result.text = reasoning, rest
        if checked.annotate is not None:
            checked.annotate(result)

    hint = checked.prompt_hint
    return CompiledSchema(kind=checked.kind, grammar=grammar, validator=validate, json_schema=checked.json_schema,
                          regex=None, relaxations=checked.relaxations, annotate=annotate,
                          hint=f"{THINK_HINT}\n{hint}" if hint else THINK_HINT, warnings=checked.warnings,
                          source=checked.source)


def split_reasoning(text: str, close: str = PLAIN_THINKING.close) -> tuple[str, str | None]:
    """``(reasoning, answer)`` of a reply that thinks first: the text before ``close`` (its open delimiter removed)
    and what follows it (leading newlines removed); ``answer`` is None when ``close`` does not occur."""
    head, found, tail = text.partition(close)
    if not found:
        return "", None
    reasoning = head.strip()
    for opener in ("<think>", "<thinking>", "<|begin_of_thought|>"):
        if reasoning.startswith(opener):
            reasoning = reasoning[len(opener):].strip()
    return reasoning, tail.lstrip("\n")
