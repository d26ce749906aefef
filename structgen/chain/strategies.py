"""The text-model chain: for models that cannot be masked, still a valid value or a typed error.

Steps, in the order ``strategy`` picks them::

    server            the endpoint's own constraint: for JSON kinds OpenAI's json_schema
                      ``response_format``, then (refused) the ``json_object`` + ``schema`` form that
                      llama-cpp-python's server takes; for the rest a GBNF ``grammar``. Every form
                      refused, or an accepted one's reply invalid → next step
    prompt            the schema in the prompt, a strict parse, one request
    repair            the schema in the prompt, a defensive parse, then re-ask with the validation
                      errors (field paths and messages), at most ``max_attempts`` requests
    best_of           n samples, defensive parse, the valid one with the best average logprob
                      (``select="first_valid"``, or no logprobs from the server: the first valid one)
    self_consistency  n samples, majority over normalised valid values (ties: best average logprob;
                      ``select="first_valid"``: the earliest sample, and no logprobs are asked for)

``auto`` is server then repair (a constraint form the endpoint has refused is not sent again; with none
left, server is skipped); ``server`` is the same but asks again when every form was refused. Every value
returned has passed ``schema.validate`` on its final text: JSON kinds are serialised back to compact JSON
first, so ``Result.text`` is the validated text and the raw replies are in ``Result.attempts``.
``Result.timings`` reports the total token use of every request made.

The chain is written once, as a generator that yields batches of ``Call``s and is sent back each call's
``Reply`` (or the ``BackendError`` it ended in). Drivers perform the calls: ``run_chain`` (threads) and
``arun_chain`` (asyncio). ``LocalText`` adapts a local model to the chain (free text, no mask).

Why it is long: the steps share one run's bookkeeping (``_Run``: messages, attempts, token use, the accepted
reply) and one generator protocol; split into modules they would pass that state back and forth.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import re
import time
from collections.abc import Generator, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from ..compile import regex_match
from ..compile.schema import CompiledSchema
from ..compile.thinking import split_reasoning
from ..errors import BackendError, InvalidArgument, ParseError, ValidationFailed
from ..request import Message, Request, SamplingParams, as_messages
from ..result import Attempt, Result, Timings
from ..selection import pick
from .coerce import coerce_to_schema
from .parse import check_reply_length, parse_structured
from .prompting import feedback, instruction

__all__ = [
    "AsyncTextModel",
    "Call",
    "Capabilities",
    "Completion",
    "Constraint",
    "Reply",
    "TextModel",
    "arun_chain",
    "chain",
    "run_chain",
]

CHAIN_STRATEGIES = ("auto", "server", "prompt", "repair", "best_of", "self_consistency")
WARM_TEMPERATURE = 0.7  # n samples or a re-ask at temperature 0 would repeat one reply; they sample this warm


@dataclass(slots=True)
class Capabilities:
    """What an endpoint was seen to accept (None = not tried yet); learnt from replies, kept per model."""

    json_schema: bool | None = None
    json_object: bool | None = None
    grammar: bool | None = None
    tools: bool | None = None
    n: bool | None = None
    logprobs: bool | None = None
    # Constraints (``Constraint.key``) whose request ended in a transport failure: the server may have died on
    # them. They are never sent to this endpoint again.
    unsafe: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class Constraint:
    """A server-side constraint: a ``response_format`` (OpenAI's json_schema, or llama-cpp-python's
    json_object with a schema), a llama.cpp GBNF ``grammar``, or native ``tools`` (``{"tools", "tool_choice"}``).
    ``kind`` names its ``Capabilities`` flag."""

    kind: Literal["json_schema", "json_object", "grammar", "tools"]
    payload: Any

    @property
    def key(self) -> str:
        """A fingerprint of this exact constraint (kind and payload)."""
        text = json.dumps([self.kind, self.payload], sort_keys=True, default=str)
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Call:
    """One chat-completion request the chain wants made."""

    messages: tuple[Message, ...]
    sampling: SamplingParams
    seed: int
    max_tokens: int
    n: int = 1
    constraint: Constraint | None = None
    want_logprobs: bool = False   # the chain selects by logprob: ask for them where they cost extra


@dataclass(frozen=True, slots=True)
class Completion:
    """One reply text with its finish reason, token count and (where the server gives them) logprobs."""

    text: str
    finish_reason: str
    tokens: int = 0
    logprobs: tuple[float, ...] | None = None
    token_ids: tuple[int, ...] = ()
    reasoning: str | None = None   # the server's separate reasoning (``reasoning_content``), if it sent one

    @property
    def avg_logprob(self) -> float | None:
        """Mean token logprob, or None without logprobs."""
        return sum(self.logprobs) / len(self.logprobs) if self.logprobs else None


@dataclass(frozen=True, slots=True)
class Reply:
    """What one ``Call`` returned: one completion per choice, and the request's token usage."""

    completions: tuple[Completion, ...]
    prompt_tokens: int = 0
    completion_tokens: int = 0


class _ChainModel(Protocol):
    caps: Capabilities

    @property
    def name(self) -> str:
        """A name for results."""

    def constraints(self, schema: CompiledSchema) -> tuple[Constraint, ...]:
        """The server-side forms of ``schema``, the preferred first; empty where the endpoint has none."""


class TextModel(_ChainModel, Protocol):
    """A model the chain can drive synchronously."""

    def complete(self, call: Call) -> Reply:
        """Make one request; raise ``BackendError`` when it fails."""


class AsyncTextModel(_ChainModel, Protocol):
    """A model the chain can drive with asyncio."""

    async def acomplete(self, call: Call) -> Reply:
        """Make one request; raise ``BackendError`` when it fails."""


Outcome = Reply | BackendError
Chain = Generator[list[Call], list[Outcome], Result[Any]]


# ---- drivers ---------------------------------------------------------------------------------------

def run_chain(model: TextModel, request: Request, *, concurrency: int = 1) -> Result[Any]:
    """Serve ``request`` through the chain, making each batch of calls with up to ``concurrency`` threads."""
    steps = chain(request, model.caps, model.constraints(request.schema), model.name)
    outcomes: list[Outcome] | None = None
    pool = ThreadPoolExecutor(max_workers=max(1, concurrency))
    try:
        while True:
            try:
                calls = next(steps) if outcomes is None else steps.send(outcomes)
            except StopIteration as done:
                result: Result[Any] = done.value
                return result
            if len(calls) == 1 or concurrency <= 1:
                outcomes = [_attempt(model, c) for c in calls]
            else:
                futures = [pool.submit(_attempt, model, c) for c in calls]
                outcomes = [_await(f) for f in futures]
    finally:
        # Not ``with``: on Ctrl-C / SIGTERM that would wait for every request still in flight (minutes on a
        # slow server) before the interrupt got through. Those requests end on their own.
        pool.shutdown(wait=False, cancel_futures=True)


_POLL_S = 0.1


def _await(future: Future[Outcome]) -> Outcome:
    """The future's outcome, waited for in short slices so that a Ctrl-C gets through while it runs."""
    # The kernel may hand a process-wide SIGINT to any thread (a worker, or the caller's own); Python then
    # raises KeyboardInterrupt in the main thread only once it runs bytecode again, which an untimed wait on
    # the future's lock never does until the request ends.
    while True:
        try:
            return future.result(timeout=_POLL_S)
        except TimeoutError:
            continue


def _attempt(model: TextModel, call: Call) -> Outcome:
    try:
        return model.complete(call)
    except BackendError as exc:
        return exc


async def arun_chain(model: AsyncTextModel, request: Request, *, concurrency: int = 1) -> Result[Any]:
    """Serve ``request`` through the chain with asyncio, at most ``concurrency`` requests in flight."""
    steps = chain(request, model.caps, model.constraints(request.schema), model.name)
    gate = asyncio.Semaphore(max(1, concurrency))

    async def attempt(call: Call) -> Outcome:
        async with gate:
            try:
                return await model.acomplete(call)
            except BackendError as exc:
                return exc

    outcomes: list[Outcome] | None = None
    while True:
        try:
            calls = next(steps) if outcomes is None else steps.send(outcomes)
        except StopIteration as done:
            result: Result[Any] = done.value
            return result
        outcomes = list(await asyncio.gather(*(attempt(c) for c in calls)))


# ---- the chain -------------------------------------------------------------------------------------

def chain(request: Request, caps: Capabilities, constraints: Sequence[Constraint], model_name: str = "") -> Chain:
    """The chain for ``request`` as a generator of call batches (see the module docstring)."""
    if request.strategy not in CHAIN_STRATEGIES:
        raise InvalidArgument(f"strategy {request.strategy!r} needs a local model; for a text model use one of "
                              f"{', '.join(CHAIN_STRATEGIES)}")
    run = _Run(request, model_name)
    strategy = request.strategy
    safe = [c for c in constraints if c.key not in caps.unsafe]
    forms = [c for c in safe if getattr(caps, c.kind) is not False]
    if strategy == "server" and not forms:
        forms = safe
    steps = [strategy]
    if strategy in ("auto", "server"):
        steps = ["server", "repair"] if forms else ["repair"]
    for step in steps:
        if step == "server":
            found = yield from _server(run, caps, forms)
        elif step in ("prompt", "repair"):
            found = yield from _prompted(run, defensive=step == "repair")
        else:
            found = yield from _sampled(run, caps, step)
        if found is not None:
            return found
    raise ValidationFailed(f"no valid output after {len(run.attempts)} attempt(s) ({', '.join(steps)}): "
                           f"{run.attempts[-1].error if run.attempts else 'no attempt'}", attempts=run.attempts)


@dataclass(eq=False)
class _Valid:
    value: Any
    text: str
    completion: Completion
    seed: int
    repaired: bool
    reasoning: str | None = None


@dataclass(eq=False)
class _Run:
    """The bookkeeping of one chain run: attempts, token usage, time."""

    request: Request
    model_name: str
    attempts: list[Attempt] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    wait_ms: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    def messages(self) -> tuple[Message, ...]:
        """The prompt with the format instruction appended to its last turn."""
        req = self.request
        messages = as_messages(req.prompt, req.system)
        hint = instruction(req.schema, req.format, req.schema_in_prompt)
        if hint:
            messages[-1] = {**messages[-1], "content": f"{messages[-1]['content']}\n\n{hint}"}
        return tuple(messages)

    def call(self, messages: Sequence[Message], *, seed: int, warm: bool = False, n: int = 1,
             constraint: Constraint | None = None, want_logprobs: bool = False, loop_penalty: int = 0) -> Call:
        """A call for these messages at the request's sampling settings (``warm``: at least WARM_TEMPERATURE;
        ``loop_penalty``: replies cut at the length limit so far, each adding a frequency penalty unless the
        request set its own penalties)."""
        sampling = self.request.sampling
        if warm and sampling.temperature < WARM_TEMPERATURE:
            sampling = dataclasses.replace(sampling, temperature=WARM_TEMPERATURE)
        sampling = sampling.after_cut(loop_penalty)
        return Call(messages=tuple(messages), sampling=sampling, seed=seed % 2**63,
                    max_tokens=self.request.max_tokens, n=n, constraint=constraint, want_logprobs=want_logprobs)

    def send(self, calls: list[Call]) -> Generator[list[Call], list[Outcome], list[Outcome]]:
        """Yield ``calls`` to the driver; account for their token use and time."""
        t0 = time.perf_counter()
        outcomes = yield calls
        self.wait_ms += (time.perf_counter() - t0) * 1000
        for o in outcomes:
            if isinstance(o, Reply):
                self.prompt_tokens += o.prompt_tokens
                self.completion_tokens += o.completion_tokens
        return outcomes

    def accept(self, completion: Completion, seed: int, step: str, *, defensive: bool,
               strict_text: bool = False) -> _Valid | None:
        """The validated value of a reply, or None (the reason recorded as an attempt)."""
        # A reasoning model's thinking is never part of the payload: a <think>...</think> block is cut off first.
        reasoning, answer = split_reasoning(completion.text)
        try:
            text, value, repaired = _extract(completion.text if answer is None else answer, self.request.schema,
                                             self.request.format,
                                             defensive=defensive, exact=strict_text)
        except (ParseError, ValueError) as exc:
            error = str(exc)
            if completion.finish_reason == "length":
                error = f"truncated at max_tokens={self.request.max_tokens}; {error}"
            self.attempts.append(Attempt(text=completion.text, error=error, strategy=step, tokens=completion.tokens,
                                         avg_logprob=completion.avg_logprob))
            return None
        self.attempts.append(Attempt(text=completion.text, error=None, strategy=step, repaired=repaired,
                                     tokens=completion.tokens, avg_logprob=completion.avg_logprob))
        return _Valid(value, text, completion, seed, repaired, completion.reasoning or reasoning or None)

    def result(self, best: _Valid, step: str, candidates: Sequence[_Valid] = ()) -> Result[Any]:
        """The ``Result`` for the chosen value."""
        total_ms = (time.perf_counter() - self.started) * 1000
        timings = Timings(decode_ms=self.wait_ms, total_ms=total_ms, prompt_tokens=self.prompt_tokens,
                          generated_tokens=self.completion_tokens)
        out = _as_result(best, step, self.model_name, self.request.schema)
        out.timings = timings
        out.attempts = self.attempts
        out.candidates = [_as_result(c, step, self.model_name, self.request.schema) for c in candidates]
        out.relaxed = list(self.request.schema.relaxations)   # what a server-side or local grammar left out
        return out


def _as_result(v: _Valid, step: str, model_name: str, schema: CompiledSchema) -> Result[Any]:
    c = v.completion
    out: Result[Any] = Result(value=v.value, text=v.text, tokens=list(c.token_ids), logprobs=list(c.logprobs or ()),
                              seed=v.seed, strategy=step, finish_reason=c.finish_reason, model=model_name,
                              reasoning=v.reasoning)
    if schema.annotate is not None:
        schema.annotate(out)
    return out


def _server(run: _Run, caps: Capabilities, forms: Sequence[Constraint]) -> Generator[list[Call], list[Outcome],
                                                                                     Result[Any] | None]:
    """The endpoint's own constraint. A form it accepts is asked again, warm and told what was wrong (with a
    frequency penalty after a reply cut at the length limit: a small model loops), up to ``max_attempts`` times:
    a constrained reply is well-formed, and what fails it (a pattern or format left to the client, a loop) a
    retry under the same constraint fixes far more often than an unconstrained re-ask."""
    for constraint in forms:
        base = messages = run.messages()
        truncated = 0
        for k in range(run.request.max_attempts):
            call = run.call(messages, seed=run.request.seed + k * 1_000_003, constraint=constraint, warm=k > 0,
                            loop_penalty=truncated)
            [outcome] = yield from run.send([call])
            if isinstance(outcome, BackendError):
                _refused(run, caps, constraint, outcome)
                break
            setattr(caps, constraint.kind, True)
            completion = outcome.completions[0]
            valid = run.accept(completion, call.seed, "server", defensive=False, strict_text=True)
            if valid is not None:
                return run.result(valid, "server")
            truncated += completion.finish_reason == "length"
            reask = feedback(run.attempts[-1].error or "", run.request, completion.finish_reason)
            messages = (*base, {"role": "assistant", "content": completion.text}, {"role": "user", "content": reask})
        else:
            return None     # accepted, but no valid reply: on to the next step
        if k > 0:
            return None     # accepted at first, then failed: the endpoint's trouble, not this form's
    return None


def _refused(run: _Run, caps: Capabilities, constraint: Constraint, outcome: BackendError) -> None:
    """Record a constrained request that failed. An HTTP error status (not a transport failure) is a refusal of
    this form: the next one is tried. A transport failure with no status may be the server dying on this very
    constraint: it is never sent again, and the chain goes on without it (a dead server then fails the next step
    too). Other retryable failures (exhausted retries) are the endpoint's, and raised."""
    if outcome.status_code is None:
        caps.unsafe.add(constraint.key)
        run.attempts.append(Attempt(text="", error=f"the endpoint failed on {constraint.kind}: {outcome}",
                                    strategy="server"))
        return
    if outcome.retryable:
        raise outcome
    setattr(caps, constraint.kind, False)
    run.attempts.append(Attempt(text="", error=f"refused: the endpoint rejected {constraint.kind} "
                                               f"(HTTP {outcome.status_code}): {outcome}", strategy="server"))


def _prompted(run: _Run, *, defensive: bool) -> Generator[list[Call], list[Outcome], Result[Any] | None]:
    step = "repair" if defensive else "prompt"
    base = run.messages()
    messages = base
    tries = run.request.max_attempts if defensive else 1
    for k in range(tries):
        call = run.call(messages, seed=run.request.seed + k * 1_000_003, warm=k > 0)
        [outcome] = yield from run.send([call])
        if isinstance(outcome, BackendError):
            raise outcome
        completion = outcome.completions[0]
        valid = run.accept(completion, call.seed, step, defensive=defensive)
        if valid is not None:
            return run.result(valid, step)
        reask = feedback(run.attempts[-1].error or "", run.request, completion.finish_reason)
        messages = (*base, {"role": "assistant", "content": completion.text}, {"role": "user", "content": reask})
    return None


def _sampled(run: _Run, caps: Capabilities, step: str) -> Generator[list[Call], list[Outcome], Result[Any] | None]:
    req = run.request
    messages = run.messages()
    logprobs = req.select == "logprob"   # best_of ranks by them, self_consistency breaks ties with them
    for round_ in range(req.max_attempts):
        base_seed = req.seed + round_ * 1_000_003
        pairs: list[tuple[Completion, int]] = []
        errors: list[BackendError] = []
        if req.n > 1 and caps.n is not False:
            # One request with n=; a server that ignores n answers one choice, and the rest go in parallel.
            [outcome] = yield from run.send([run.call(messages, seed=base_seed, warm=True, n=req.n,
                                                      want_logprobs=logprobs)])
            if isinstance(outcome, BackendError):
                errors.append(outcome)
            else:
                caps.n = len(outcome.completions) >= req.n
                pairs.extend((c, base_seed) for c in outcome.completions[:req.n])
        calls = [run.call(messages, seed=base_seed + i, warm=req.n > 1, want_logprobs=logprobs)
                 for i in range(len(pairs), req.n)]
        if calls:
            outcomes = yield from run.send(calls)
            for call, o in zip(calls, outcomes, strict=True):
                if isinstance(o, BackendError):
                    errors.append(o)
                else:
                    pairs.append((o.completions[0], call.seed))
        if not pairs and errors:
            raise errors[0]
        for e in errors:
            run.attempts.append(Attempt(text="", error=f"backend: {e}", strategy=step))
        valid = [v for c, seed in pairs if (v := run.accept(c, seed, step, defensive=True)) is not None]
        if valid:
            return run.result(_select(valid, step, req.select), step, candidates=valid)
    return None


def _select(valid: list[_Valid], step: str, select: str) -> _Valid:
    return pick(valid, step, select, value=lambda v: v.value, score=lambda v: v.completion.avg_logprob)


# ---- parse and validate ----------------------------------------------------------------------------

def _extract(raw: str, schema: CompiledSchema, fmt: str, *, defensive: bool,
             exact: bool = False) -> tuple[str, Any, bool]:
    """(validated text, value, repaired) for a reply; raises ``ParseError`` or ``ValueError`` with the reason."""
    if schema.kind == "json":
        return _extract_json(raw, schema, "json" if exact else fmt, defensive=defensive, exact=exact)
    first_error: ValueError | None = None
    tried: set[str] = set()
    for text in _text_candidates(raw, schema, defensive=defensive, exact=exact):
        if text in tried:
            continue
        tried.add(text)
        try:
            return text, schema.validate(text), text != raw.strip()
        except regex_match.MatchTimeout as exc:   # the pattern backtracks on this reply: its other cuts would too
            raise ValueError(f"validation: {exc}") from None
        except ValueError as exc:
            first_error = first_error or exc
    raise ValueError(f"validation: {first_error}")


def _extract_json(raw: str, schema: CompiledSchema, fmt: str, *, defensive: bool,
                  exact: bool) -> tuple[str, Any, bool]:
    if exact:
        check_reply_length(raw)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ParseError(f"parse: not JSON: {exc.msg}", text=raw, line=exc.lineno, column=exc.colno) from None
        except (ValueError, RecursionError) as exc:
            raise ParseError(f"parse: not usable JSON: {exc}", text=raw[:1000]) from None
        repaired = False
    else:
        try:
            parsed = parse_structured(raw, format="yaml" if fmt == "yaml" else "json", repair=defensive)
        except ParseError as exc:
            raise ParseError(f"parse: {exc}", text=raw) from None
        value, repaired = parsed.value, parsed.repaired
        if defensive and schema.json_schema is not None:
            value = coerce_to_schema(value, schema.json_schema)
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"validation: the value is not JSON-serialisable: {exc}") from None
    try:
        return text, schema.validate(text), repaired
    except ValueError as exc:
        raise ValueError(f"validation: {exc}") from None


_FENCE = re.compile(r"^```[\w+-]*[ \t]*\n?(.*?)\n?```\s*$", re.DOTALL)


def _text_candidates(raw: str, schema: CompiledSchema, *, defensive: bool, exact: bool) -> Iterator[str]:
    """Texts to try against a regex / choice / grammar / free-text schema, most literal first."""
    if exact or schema.kind == "text":
        yield raw
        return
    stripped = raw.strip()
    yield stripped
    if not defensive:
        return
    fenced = _FENCE.match(stripped)
    inner = fenced.group(1).strip() if fenced else stripped
    yield inner
    yield inner.strip("\"'`").strip()
    first_line = inner.splitlines()[0].strip() if inner else ""
    yield first_line
    if schema.kind == "choice" and isinstance(schema.source, tuple):
        options: tuple[str, ...] = schema.source
        lowered = inner.casefold()
        found = [o for o in options if re.search(rf"(?<!\w){re.escape(o.casefold())}(?!\w)", lowered)]
        if len(found) == 1:
            yield found[0]
    elif schema.kind == "regex" and schema.regex is not None:
        with contextlib.suppress(ValueError):   # MatchTimeout: no candidate from here
            yield from regex_match.search_all(schema.regex, inner, limit=1)
