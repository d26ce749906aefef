"""Several requests at once on one local model: ``run_batch`` (``structgen.generate_batch``'s engine).

A thin layer on the engine thread (``structgen.local.scheduler``): every masked request is submitted, and the
engine co-batches them as it would concurrent callers. On ``LlamaCpp(deterministic=True)`` entry i is byte for
byte what ``generate(prompts[i], ...)`` gives alone. Requests for the re-asking text chain (``prompt``,
``repair``) run one after another once the masked ones are done.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from ..errors import Overloaded, StructgenError
from ..request import Request
from ..result import Result
from .scheduler import Ticket

__all__ = ["SubmittingModel", "run_batch", "serve_or_error"]

class SubmittingModel(Protocol):
    """A model with an engine thread (``LlamaCpp``)."""

    def submit(self, request: Request, *, stream: bool = False) -> Ticket:
        """Queue a masked request."""

    def run(self, request: Request) -> Result[Any]:
        """Serve one request."""


def run_batch(model: SubmittingModel, requests: Sequence[Request]) -> list[Result[Any] | StructgenError]:
    """Serve ``requests`` together on ``model``; entry i is request i's ``Result`` or its typed error."""
    out: list[Result[Any] | StructgenError | None] = [None] * len(requests)
    tickets: list[tuple[int, Ticket]] = []
    for i, request in enumerate(requests):
        if request.reasks:
            continue
        while True:
            try:
                tickets.append((i, model.submit(request)))
                break
            except Overloaded:   # a full queue: wait for our oldest request, then offer this one again
                _collect(tickets.pop(0), out)
            except StructgenError as exc:
                out[i] = exc
                break
    for item in tickets:
        _collect(item, out)
    for i, request in enumerate(requests):
        if request.reasks:
            out[i] = serve_or_error(model, request)
    assert all(r is not None for r in out)
    return [r for r in out if r is not None]


def _collect(item: tuple[int, Ticket], out: list[Result[Any] | StructgenError | None]) -> None:
    i, ticket = item
    try:
        out[i] = ticket.result()
    except StructgenError as exc:
        out[i] = exc


def serve_or_error(model: Any, request: Request) -> Result[Any] | StructgenError:
    """``model.run(request)``, with a typed error returned in the result's place instead of raised."""
    try:
        result: Result[Any] = model.run(request)
    except StructgenError as exc:
        return exc
    return result
