"""A local model without a mask: the text-model chain (``structgen.chain``) on free local generation,
for the strategies that prompt and re-ask (``prompt``, ``repair``)."""

from __future__ import annotations

from typing import Any

from ..chain.strategies import Call, Capabilities, Completion, Constraint, Reply, run_chain
from ..compile.schema import CompiledSchema, compile_schema
from ..errors import InvalidArgument, TruncatedOutput
from ..request import Request
from ..result import Result
from .engine import LocalModel, prepare, run_attempts

__all__ = ["LocalText", "run_local_chain"]


class LocalText:
    """A local model as a text model for the chain: unconstrained generation, one request at a time."""

    def __init__(self, model: LocalModel) -> None:
        self.model = model
        self.caps = Capabilities(json_schema=False, json_object=False, grammar=False, n=False, logprobs=True)

    @property
    def name(self) -> str:
        """The local model's name."""
        return self.model.name

    def constraints(self, schema: CompiledSchema) -> tuple[Constraint, ...]:
        """No forms: a local model is masked by the ``constrained`` strategy, not through the chain."""
        return ()

    def complete(self, call: Call) -> Reply:
        """Generate free text for the call's messages with structgen's own decode loop."""
        request = Request(prompt=call.messages, schema=compile_schema(None), sampling=call.sampling, seed=call.seed,
                          max_tokens=call.max_tokens, strategy="constrained", schema_in_prompt=False)
        try:
            result = run_attempts(self.model, prepare(self.model, request))
        except TruncatedOutput as exc:
            ids = tuple(exc.tokens)
            return Reply((Completion(exc.partial_text, "length", len(ids), None, ids),),
                         prompt_tokens=0, completion_tokens=len(ids))
        ids = tuple(result.tokens)
        return Reply((Completion(result.text, result.finish_reason, len(ids), tuple(result.logprobs), ids),),
                     prompt_tokens=result.timings.prompt_tokens, completion_tokens=len(ids))


def run_local_chain(model: LocalModel, request: Request) -> Result[Any]:
    """Serve a ``prompt`` / ``repair`` request on a local model through the chain."""
    if not request.chat:
        raise InvalidArgument(f"strategy {request.strategy!r} re-asks in chat turns: it needs chat=True")
    return run_chain(LocalText(model), request)
