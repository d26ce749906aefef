"""How a request is served on a local model: masked decoding (``constrained``, ``best_of``,
``self_consistency``) in the engine, or the text-model chain on free generation (``prompt``, ``repair``)."""

from __future__ import annotations

from typing import Any

from ..request import Request
from ..result import Result
from .engine import LocalModel, prepare, run_attempts

__all__ = ["run_local"]


def run_local(model: LocalModel, request: Request) -> Result[Any]:
    """Serve ``request`` on a local model."""
    if request.reasks:
        from .unmasked import run_local_chain  # the text-model chain loads on first use

        return run_local_chain(model, request)
    return run_attempts(model, prepare(model, request))
