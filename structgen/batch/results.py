"""OpenAI Batch result lines, and running one planned line to its line.

A success is ``{"id", "custom_id", "response": {"status_code": 200, "request_id", "body"}, "error": null}`` whose
body is the completion ``structgen serve`` returns for the same request body (built by
``structgen.serve.responses``: the validated value as content, or ``tool_calls``). A failure is ``{"id",
"custom_id", "response": null, "error": {"code": <structgen's typed error>, "message"}}``.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..agenerate import agenerate
from ..errors import StructgenError
from ..result import Result
from ..serve import responses
from .lines import LineProblem
from .plans import PlannedLine

__all__ = ["Outcome", "error_line", "problem_line", "run_line", "success_line"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """One finished line: its result ``record`` (the JSON line), whether it ``ok`` (a success), and the tokens it
    used (prompt, completion)."""

    custom_id: str | None
    record: dict[str, Any]
    ok: bool
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def code(self) -> str | None:
        """The error's code for a failure; None for a success."""
        return None if self.ok else str(self.record["error"]["code"])


def success_line(custom_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """The result line of a success."""
    return {"id": f"batch_req_{secrets.token_hex(12)}", "custom_id": custom_id,
            "response": {"status_code": 200, "request_id": f"req_{secrets.token_hex(12)}", "body": body},
            "error": None}


def error_line(custom_id: str | None, code: str, message: str, **extra: Any) -> dict[str, Any]:
    """The result line of a failure (``code``: the typed error's name)."""
    return {"id": f"batch_req_{secrets.token_hex(12)}", "custom_id": custom_id, "response": None,
            "error": {"code": code, "message": message}, **extra}


def problem_line(problem: LineProblem) -> dict[str, Any]:
    """The error line of an input line that could not run; ``line`` records its input line number."""
    return error_line(problem.custom_id, problem.code, f"line {problem.line}: {problem.reason}", line=problem.line)


async def run_line(model: Any, item: PlannedLine, *, name: str, extra: dict[str, Any] | None = None,
                   priority: int | None = None) -> Outcome:
    """Run one planned line on ``model`` (its ``n`` choices together, as ``structgen serve`` does) and make its
    result line; a typed error becomes an error line, never an exception. ``extra``: fields added to the body's
    ``structgen`` object (e.g. the Ray node that ran it). ``priority``: the engine priority of the line's requests
    (``generate``'s; None: the line's own)."""
    plan, cid = item.plan, item.line.custom_id
    override = {} if priority is None else {"priority": priority}
    tasks = [asyncio.ensure_future(agenerate(plan.prompt, plan.schema, model=model,
                                             **{**plan.choice_options(i), **override}))
             for i in range(plan.n)]
    try:
        results = list(await asyncio.gather(*tasks))
    except StructgenError as exc:
        return Outcome(cid, error_line(cid, type(exc).__name__, str(exc)), ok=False)
    except Exception as exc:   # not a typed error (a bug): still this line's failure, never the job's
        return Outcome(cid, error_line(cid, type(exc).__name__, f"unexpected error: {exc}"), ok=False)
    finally:
        for t in tasks:
            t.cancel()
    body = completion_body(model, item, results, name)
    if extra:
        body["structgen"].update(extra)
    usage = body["usage"]
    return Outcome(cid, success_line(cid, body), ok=True, prompt_tokens=usage["prompt_tokens"],
                   completion_tokens=usage["completion_tokens"])


def completion_body(model: Any, item: PlannedLine, results: list[Result[Any]], name: str) -> dict[str, Any]:
    """The body ``structgen serve`` answers for this line's request with these results."""
    plan = item.plan
    token_bytes: Callable[[int], bytes] = getattr(model, "token_bytes", _no_bytes)
    if item.line.url == "/v1/chat/completions":
        return responses.chat_completion(name, plan.stops, plan.logprobs, results, token_bytes)
    echo = plan.prompt if item.line.body.get("echo") and isinstance(plan.prompt, str) else ""
    return responses.text_completion(name, plan.stops, plan.logprobs, results, token_bytes, echo=echo)


def _no_bytes(token: int) -> bytes:
    return b""

