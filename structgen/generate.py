"""``generate`` (and ``generate_batch``, several prompts co-batched): the entry point, for local and hosted
models alike."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol, cast, runtime_checkable

from .compile.grounding import ground, with_source
from .compile.kinds import SchemaLike
from .compile.number_bound import DEFAULT_DIGITS
from .compile.schema import JsonOptions, compile_for_decoding, compile_schema
from .compile.thinking import PLAIN_THINKING, compile_think
from .compile.tools import compile_tools, parse_tool_choice, parse_tools
from .errors import InvalidArgument, StructgenError
from .local.batch import run_batch, serve_or_error
from .local.llamacpp import LlamaCpp
from .request import Message, Request, SamplingParams, resolve_seed
from .result import Result
from .verify import Verifier, reselect, scorer_for


@runtime_checkable
class Model(Protocol):
    """Anything that can serve a ``Request`` (``LlamaCpp``, ``OpenAICompatible``)."""

    def run(self, request: Request) -> Result[Any]:
        """Serve one request."""


_default_lock = threading.Lock()
_default_model: Any = None


def default_model() -> Any:
    """The shared ``LlamaCpp`` over the bundled default model (loaded on first use)."""
    global _default_model
    with _default_lock:
        if _default_model is None:
            _default_model = LlamaCpp()
        return _default_model


def generate(
    prompt: str | Sequence[Message],
    schema: SchemaLike = None,
    *,
    model: Any = None,
    strategy: str = "auto",
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    min_p: float = 0.0,
    repetition_penalty: float = 1.0,
    frequency_penalty: float = 0.0,
    presence_penalty: float = 0.0,
    seed: int | None = None,
    max_tokens: int = 512,
    n: int = 1,
    select: Literal["logprob", "first_valid", "first_finished"] | Verifier | Callable[[Any], float] = "logprob",
    format: Literal["json", "yaml"] = "json",
    max_attempts: int = 3,
    system: str | None = None,
    chat: bool = True,
    schema_in_prompt: bool = True,
    fast_forward: bool = True,
    json_whitespace: str = "compact",
    number_digits: int | None = DEFAULT_DIGITS,
    extra_properties: bool = False,
    model_logprobs: bool = False,
    strict: bool = False,
    timeout: float | None = None,
    tools: Sequence[Any] | None = None,
    tool_choice: Any = "auto",
    parallel_tool_calls: bool = False,
    top_logprobs: int = 0,
    source: str | None = None,
    think: int = 0,
    priority: int = 0,
) -> Result[Any]:
    """Generate a value that is valid for ``schema`` — or raise a typed ``StructgenError``.

    ``schema``: a Pydantic model (or any type pydantic validates), a JSON Schema dict, ``Regex``,
    ``Choice``, ``Grammar``, or None for free text. ``model``: a ``LlamaCpp`` (default: the bundled
    SmolLM2-135M) or an ``OpenAICompatible`` endpoint. ``strategy``: "auto" (the strongest the model
    supports: grammar-constrained locally), "constrained", "server", "prompt", "repair", "best_of"
    (``n`` samples, best average logprob) or "self_consistency" (``n`` samples, majority vote; ties to the
    best average logprob). ``select="first_valid"`` keeps the first valid sample instead of ranking by logprob
    (a hosted endpoint is then not asked for logprobs, which some compute slowly).
    Sampling: ``temperature`` 0 is greedy; then top-k, top-p, min-p, penalties; ``seed`` makes it
    reproducible (a random one is drawn and reported in ``Result.seed`` when omitted).
    A JSON Schema the grammar cannot enforce in full is relaxed (``Result.relaxed`` lists what the grammar left
    to the validator; every value is still validated against the whole schema); ``strict=True`` refuses such a
    schema with a ``SchemaError`` instead. ``number_digits``: a local model writes JSON numbers with at most this
    many digits in a row (integer part, fraction; exponents 3) unless the schema's own numbers have more; None:
    unbounded. ``extra_properties``: let a local model write object properties the schema does not name where
    the schema allows them (no ``additionalProperties``); by default it writes only the named ones, as llama.cpp
    and xgrammar do. ``timeout``: seconds from the call (waiting included) after which a local request gives up
    with ``DeadlineExceeded``. ``priority``: on a local model, requests with a lower value
    are admitted first, and while one is prefilling its prompt the engine holds the requests of higher values
    (background work, e.g. ``/v1/batches``, runs at 1); equal values are served first come, first served.
    ``tools``: functions the model may call instead of answering (OpenAI function definitions or Pydantic models);
    ``tool_choice``: "auto", "required", "none" or a tool's name; a call comes back in ``Result.tool_calls`` (its
    arguments valid for the tool's parameters) and ``Result.value`` is then a ``ToolCalls``. One call per reply unless
    ``parallel_tool_calls``. Hosted endpoints are sent the tools natively; their calls are validated the same way.
    ``top_logprobs``: record the k likeliest tokens at each step in ``Result.top_logprobs`` (local models).
    ``source``: a document to extract from; every plain string of the value is then a verbatim span of it (see
    ``structgen.compile.grounding``; ``"x-source": "free"`` opts a field out), the source is added to the prompt
    when the prompt does not contain it, and ``Result.spans`` says where each value came from.
    ``think``: let the model reason for up to this many tokens before the answer (``Result.reasoning``); the
    closing delimiter is forced when the budget runs out.
    ``select`` (with ``n`` > 1): also ``"first_finished"`` (the first candidate that completes valid; the others
    are stopped), a callable ``value -> score``, or a ``Judge`` (a model's P("yes") that the extraction is
    correct; see ``structgen.verify``).
    """
    options = {name: value for name, value in locals().items() if name not in ("prompt", "schema", "model")}
    target = default_model() if model is None else model
    request = build_request(target, prompt, schema, **options)   # checks that target is a Model first
    result: Result[Any] = target.run(request)
    if not isinstance(result, Result):   # generate_batch's capture: it chooses after the batch has run
        return result
    score = scorer_for(select, prompt, source, target)
    return reselect(result, request.strategy, score) if score is not None else result


def build_request(target: Any, prompt: str | Sequence[Message], schema: SchemaLike = None,
                  **options: Any) -> Request:
    """Check ``generate``'s arguments for the model ``target`` and build the ``Request`` it will serve.

    ``options``: ``generate``'s keyword arguments (``model`` aside); those left out take ``generate``'s
    defaults. Raises ``InvalidArgument`` if ``target`` is not a ``Model`` and the compile errors of ``schema``.
    """
    unknown = options.keys() - _OPTION_DEFAULTS.keys()
    if unknown:
        raise TypeError(f"build_request() got unexpected option(s) {sorted(unknown)}")
    if not isinstance(target, Model):
        raise InvalidArgument(f"model must be a LlamaCpp or OpenAICompatible, got {type(target).__name__}")
    fields = {**_OPTION_DEFAULTS, **options}
    # A model with a matcher backend builds the matcher right away, and that build finds unsupported
    # schemas itself (see compile_for_decoding); a hosted one gets the fully checked schema.
    compile_fn = compile_for_decoding if getattr(target, "backend", None) is not None else compile_schema
    digits = fields.pop("number_digits")
    if digits is not None and (isinstance(digits, bool) or not isinstance(digits, int) or digits < 1):
        raise InvalidArgument(f"number_digits must be a positive integer or None, got {digits!r}")
    json_options = JsonOptions(whitespace=fields.pop("json_whitespace"), strict=fields.pop("strict"),
                               number_digits=digits, extra_properties=bool(fields.pop("extra_properties")))
    compiled = compile_fn(schema, json_options)
    tools, tool_choice, parallel = fields.pop("tools"), fields.pop("tool_choice"), fields.pop("parallel_tool_calls")
    source, think = fields.pop("source"), fields.pop("think")
    if source is not None:
        compiled = ground(compiled, source, json_options)
        prompt = with_source(prompt, source)
    if think:
        if getattr(target, "backend", None) is not None:
            delimiters = getattr(target, "think_delimiters", lambda: PLAIN_THINKING)()
            compiled = compile_think(compiled, think, delimiters)
        elif isinstance(think, bool) or not isinstance(think, int) or think < 0:
            raise InvalidArgument(f"think must be a number of tokens, got {think!r}")
        fields["max_tokens"] = fields["max_tokens"] + think
    if tools:
        parsed = parse_tools(tools)
        compiled = compile_tools(compiled, parsed, parse_tool_choice(tool_choice, parsed, parallel=parallel),
                                 json_options)
    elif tool_choice not in ("auto", "none", None):
        raise InvalidArgument(f"tool_choice {tool_choice!r} needs tools")
    if not isinstance(fields["select"], str):
        fields["select"] = "logprob"   # the candidates are ranked again by the verifier (structgen.verify)
    sampling = SamplingParams(**{name: fields.pop(name) for name in _SAMPLING_OPTIONS})
    if fields["strategy"] in ("best_of", "self_consistency") and fields["n"] == 1:
        fields["n"] = 4 if fields["strategy"] == "best_of" else 5
    # The rest are Request's fields under the same names.
    return Request(prompt=prompt, schema=compiled, sampling=sampling, seed=resolve_seed(fields.pop("seed")),
                   **fields)


_SAMPLING_OPTIONS = ("temperature", "top_k", "top_p", "min_p", "repetition_penalty", "frequency_penalty",
                     "presence_penalty")
# generate's keyword arguments and their defaults, read from its signature (the one place they are written).
_OPTION_DEFAULTS: dict[str, Any] = {
    p.name: p.default for p in inspect.signature(generate).parameters.values()
    if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "model"}


def generate_batch(
    prompts: Sequence[str | Sequence[Message]],
    schema: SchemaLike = None,
    *,
    model: Any = None,
    seed: int | Sequence[int] | None = None,
    return_exceptions: bool = False,
    **options: Any,
) -> list[Any]:
    """``generate`` for several prompts at once, co-batched on one local model.

    Entry i is what ``generate(prompts[i], schema, model=model, seed=seeds[i], **options)`` returns —
    byte-identical on ``LlamaCpp(deterministic=True)``. ``seed``: one seed for every prompt, one per
    prompt, or None (a random one each, reported in ``Result.seed``). ``options``: any other
    ``generate`` keyword. Errors are typed ``StructgenError``s: the first one is raised once every
    request has run, or, with ``return_exceptions=True``, each is returned in its request's place.
    A model that cannot batch (a hosted endpoint, the random-logits stand-in) serves the requests in turn.
    """
    if isinstance(seed, Sequence):
        if len(seed) != len(prompts):
            raise InvalidArgument(f"{len(seed)} seeds for {len(prompts)} prompts")
        seeds: list[int | None] = list(seed)
    else:
        seeds = [seed] * len(prompts)
    if model is None:
        model = default_model()
    # generate() itself builds and checks each Request, so the two can never disagree on a parameter; a
    # request that fails its checks is that entry's error.
    built = [_build(p, schema, s, options) for p, s in zip(prompts, seeds, strict=True)]
    requests = [r for r in built if isinstance(r, Request)]
    if callable(getattr(model, "submit", None)):
        served = iter(run_batch(model, requests))
    else:
        served = iter([serve_or_error(model, r) for r in requests])
    results = [next(served) if isinstance(r, Request) else r for r in built]
    select = options.get("select", "logprob")
    if not isinstance(select, str):
        results = [reselect(r, r.strategy, score) if isinstance(r, Result) and (
            score := scorer_for(select, p, options.get("source"), model)) is not None else r
            for r, p in zip(results, prompts, strict=True)]
    if not return_exceptions:
        for r in results:
            if isinstance(r, StructgenError):
                raise r
    return results


def _build(prompt: Any, schema: SchemaLike, seed: int | None, options: dict[str, Any]) -> Request | StructgenError:
    try:
        return cast(Request, generate(prompt, schema, model=_Capture(), seed=seed, **options))
    except StructgenError as exc:
        return exc


class _Capture:
    """A stand-in model for ``generate``: ``run`` hands back the ``Request`` it was given."""

    def run(self, request: Request) -> Request:
        """Return the request unchanged."""
        return request
