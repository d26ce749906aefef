"""Batch lines as ``generate`` plans, through the very translation ``structgen serve`` uses
(``structgen.serve.openai_api``), and the whole-file check that runs before a job's first request.

The check builds each line's ``Request`` as ``generate`` would (``build_request``) against a stand-in model, so a
body, schema, regex, choice, grammar or tool list that would fail at run time fails here, with its line number.
Schemas are compiled with the full check (a schema no value can satisfy is found here too); the compile caches are
keyed by the schema, so each distinct schema is compiled once however many lines use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pydantic

from ..compile.schema import compile_schema
from ..errors import InvalidArgument, StructgenError
from ..generate import build_request
from ..request import Request
from ..result import Result
from ..serve import openai_api
from .lines import BatchLine, LineProblem

__all__ = ["DEFAULT_MAX_TOKENS", "PlannedLine", "check_lines", "plan_line"]

DEFAULT_MAX_TOKENS = 2048
"""The cap (and default) of a line's ``max_tokens``, as in ``structgen serve``."""


@dataclass(frozen=True, slots=True)
class PlannedLine:
    """A line that passed the check, with its plan (prompt, schema, options, number of choices)."""

    line: BatchLine
    plan: openai_api.Plan


def plan_line(line: BatchLine, *, max_tokens_cap: int = DEFAULT_MAX_TOKENS,
              timeout: float | None = None) -> openai_api.Plan:
    """The plan for ``line``'s body, as ``structgen serve`` makes it for the same body; a body it would answer
    with 400 raises its typed error (``InvalidArgument`` naming the field, ``SchemaError``, ...)."""
    kind: type[openai_api.ChatRequest | openai_api.CompletionRequest] = (
        openai_api.ChatRequest if line.url == "/v1/chat/completions" else openai_api.CompletionRequest)
    try:
        body = kind.model_validate(line.body)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidArgument(f"body.{where}: {first['msg']}" if where else f"body: {first['msg']}") from None
    if body.stream:
        raise InvalidArgument("body.stream: a batch line's reply cannot be streamed")
    if isinstance(body, openai_api.ChatRequest):
        return openai_api.chat_plan(body, max_tokens_cap=max_tokens_cap, timeout=timeout)
    return openai_api.completion_plan(body, max_tokens_cap=max_tokens_cap, timeout=timeout)


def check_lines(lines: list[BatchLine], *, max_tokens_cap: int = DEFAULT_MAX_TOKENS,
                timeout: float | None = None) -> tuple[list[PlannedLine], list[LineProblem]]:
    """Plan and compile every line; the lines that would run, and the problems of those that would not."""
    planned: list[PlannedLine] = []
    problems: list[LineProblem] = []
    for line in lines:
        try:
            plan = _checked_plan(line, max_tokens_cap, timeout)
        except StructgenError as exc:
            problems.append(LineProblem(line.line, line.custom_id, type(exc).__name__, str(exc)))
            continue
        planned.append(PlannedLine(line, plan))
    return planned, problems


def _checked_plan(line: BatchLine, cap: int, timeout: float | None) -> openai_api.Plan:
    plan = plan_line(line, max_tokens_cap=cap, timeout=timeout)
    compile_schema(plan.schema)   # the full check, once per distinct schema (cached)
    build_request(_Checker(), plan.prompt, plan.schema, **plan.choice_options(0))
    return plan


class _Checker:
    """A model that serves nothing: ``build_request`` checks a request against it as against a hosted model
    (schemas get the fully checked compile)."""

    name = "check"

    def run(self, request: Request) -> Result[Any]:
        """Never called: the check only builds requests."""
        raise NotImplementedError
