"""The local engine: a ``Request`` on a ``StepModel`` → a validated ``Result`` (or a typed error).

Strategies: ``constrained`` (one masked sample, resampled if the validator disagrees), ``best_of``
(n masked samples stepped in one batch from one prompt decode; keep the best average logprob) and
``self_consistency`` (n samples; majority over normalised values, ties by average logprob).

A request becomes a ``Job`` (``prepare``); each attempt is fresh ``sequences`` run by ``decode.run`` and
judged by ``conclude``. ``structgen.batch`` uses the same pieces to run several jobs in one batch.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np

from ..compile.matchers import Backend, MatcherFactory, Vocab
from ..compile.schema import CompiledSchema
from ..errors import Cancelled, GenerationError, InvalidArgument, TruncatedOutput, ValidationFailed
from ..request import Message, Request, SamplingParams
from ..result import Attempt, Result, Timings
from ..selection import pick
from . import decode
from .prefix_cache import common_prefix

C = TypeVar("C")


class LocalModel(decode.StepModel, Protocol):
    """What the local engine needs: a StepModel plus its tokenizer, grammar backend and lock."""

    backend: Backend
    vocab: Vocab
    lock: Any  # a threading.RLock: one request at a time per model
    deterministic: bool
    speculate: int  # draft tokens a lone sequence verifies per step (0: none)

    @property
    def n_batch(self) -> int:
        """Most tokens one decode call takes."""

    @property
    def name(self) -> str:
        """A name for results."""

    def prompt_tokens(self, prompt: str | Sequence[Message], *, system: str | None = None,
                      chat: bool = True) -> list[int]:
        """The prompt as token ids."""

RETRY_TEMPERATURE = 0.7  # a greedy retry would repeat itself; retries sample at least this warm


@dataclass(eq=False)
class Job:
    """One request made ready for the decode loop (``structgen.batch`` runs several side by side)."""

    request: Request
    strategy: str                      # "constrained", "best_of" or "self_consistency"
    n: int                             # sequences per attempt
    tokens: list[int]                  # the prompt, schema hint included
    factory: MatcherFactory | None     # None: free text
    compile_ms: float
    t_start: float
    attempts: list[Attempt] = field(default_factory=list)
    truncations: int = 0               # attempts that ran out of tokens
    compiling: Future[tuple[MatcherFactory, float]] | None = None   # a first compile, run beside the prefill
    shared: int = 0                    # leading prompt tokens before the last message's own text (``shared_head``)

    def wait_compiled(self) -> None:
        """Take the grammar compiled in the background, or raise its error (again on every call)."""
        if self.compiling is not None:
            self.factory, self.compile_ms = self.compiling.result()
            self.compiling = None


def prepare(model: LocalModel, request: Request) -> Job:
    """Compile the grammar and tokenise the prompt of ``request``."""
    t_start = time.perf_counter()
    schema = request.schema
    factory: MatcherFactory | None = None
    compiling = None
    if schema.grammar is not None:
        if model.backend.warm(model.vocab):
            factory = model.backend.compile(schema, model.vocab)
        else:   # the model's first compile builds the backend's tables (~0.3 s): do it while the prompt prefills
            compiling = model.vocab.background(lambda: _timed_compile(model.backend, schema, model.vocab))
    compile_ms = (time.perf_counter() - t_start) * 1000
    tokens = model.prompt_tokens(_with_hint(request), system=request.system, chat=request.chat)
    strategy = request.strategy if request.strategy in ("best_of", "self_consistency") else "constrained"
    n = request.n if strategy != "constrained" else 1
    return Job(request, strategy, n, tokens, factory, compile_ms, t_start, compiling=compiling)


_STAND_IN = "\x01"   # a last text that no real one starts like


def shared_head(model: LocalModel, request: Request, tokens: list[int]) -> int:
    """How many leading ``tokens`` of the request's prompt come before the last message's own text: the chat
    template, the system prompt, earlier turns and the schema hint, which other requests of the same conversation
    or schema share (0 in raw mode). What the prefix cache keeps of a prompt; it costs a second render and
    tokenisation, so only a model with a prefix cache asks."""
    if not request.chat:
        return 0
    prompt = request.prompt
    if isinstance(prompt, str):
        stand_in: Any = _STAND_IN
    else:
        stand_in = [dict(m) for m in prompt]
        stand_in[-1]["content"] = _STAND_IN
    hint = request.schema.prompt_hint if request.schema_in_prompt else None
    try:
        head = model.prompt_tokens(with_hint(stand_in, hint), system=request.system, chat=True)
    except InvalidArgument:   # a template that refuses the stand-in: the head stays unknown, nothing breaks
        return 0
    return common_prefix(np.asarray(head, dtype=np.int32), np.asarray(tokens, dtype=np.int32))


def _timed_compile(backend: Backend, schema: CompiledSchema, vocab: Vocab) -> tuple[MatcherFactory, float]:
    t0 = time.perf_counter()
    factory = backend.compile(schema, vocab)
    return factory, (time.perf_counter() - t0) * 1000


def sampling(job: Job, attempt: int) -> SamplingParams:
    """The sampling parameters of one attempt: retries sample at least ``RETRY_TEMPERATURE`` warm, and after
    attempts that ran out of tokens, with a frequency penalty (unless the request chose its own penalties)."""
    params = job.request.sampling
    if attempt == 0:
        return params
    if params.temperature < RETRY_TEMPERATURE:
        params = dataclasses.replace(params, temperature=RETRY_TEMPERATURE)
    return params.after_cut(job.truncations)


def sequences(job: Job, attempt: int, seq_ids: Sequence[int]) -> list[decode.Sequence_]:
    """Fresh sequences for one attempt: candidate i lives in llama.cpp sequence ``seq_ids[i]`` and is
    seeded with ``seed + i`` (plus a per-attempt offset), wherever it runs."""
    job.wait_compiled()
    base_seed = job.request.seed + attempt * 1_000_003
    return [
        decode.Sequence_(seq=seq, matcher=job.factory.new_matcher() if job.factory else None,
                         rng=np.random.Generator(np.random.PCG64(base_seed + i)), seed=base_seed + i,
                         pos=len(job.tokens), context=job.tokens)
        for i, seq in enumerate(seq_ids)
    ]


MAX_BACK_OFFS = 4
"""Repetition loops one sequence may re-decide in place before the loop is cut (and the attempt retried)."""


def loop_options(model: LocalModel, request: Request, n_seqs: int, attempt: int = 0,
                 rewindable: bool = True) -> decode.LoopOptions:
    """Loop settings for ``n_seqs`` sequences of requests like ``request`` in attempt ``attempt``.

    A sequence that starts repeating a block of tokens is taken back to where the repeat began and re-decided
    there (``decode.repeat_start``), up to ``MAX_BACK_OFFS`` times, unless its text is already on its way to a
    reader that cannot take it back (``rewindable`` False: a stream with a single attempt). Past that, every
    attempt but the last cuts a sequence as soon as it falls into a repetition loop (a greedy small model
    repeating a URL or a number would otherwise decode to ``max_tokens`` before its retry); the last attempt
    runs to ``max_tokens``, so a value that merely repeats itself for a while can still finish.
    """
    # The loop splits max_batch evenly among the sequences for forced tokens. In the batch-invariant mode
    # each sequence is decoded alone, so each gets what a lone run gets: a full n_batch.
    max_batch = model.n_batch * n_seqs if model.deterministic else model.n_batch
    return decode.LoopOptions(max_tokens=request.max_tokens, fast_forward=request.fast_forward,
                              model_logprobs=request.model_logprobs,
                              one_sequence_per_decode=model.deterministic, max_batch=max_batch,
                              cut_loops=attempt + 1 < request.max_attempts, top_logprobs=request.top_logprobs,
                              back_off=MAX_BACK_OFFS if rewindable else 0,
                              number_digits=request.schema.number_digits, speculate=model.speculate)


def conclude(model: LocalModel, job: Job, seqs: list[decode.Sequence_], attempt: int, prompt_ms: float,
             stats: decode.LoopStats) -> Result[Any] | None:
    """The selected result of one finished attempt, or None if no candidate was valid.

    Raises the ``TruncatedOutput`` of the first sequence when every sequence ran out of tokens in the last
    attempt; before that, the next attempt samples with a frequency penalty (a small model that runs out of
    tokens is nearly always looping or rambling, not writing a long valid value).
    """
    candidates = [_candidate(model, job.request, s, job.attempts, job.strategy) for s in seqs]
    valid = [c for c in candidates if c is not None]
    if not valid:
        truncated = [s.error for s in seqs if isinstance(s.error, TruncatedOutput)]
        if truncated and len(truncated) == len(seqs):
            if attempt + 1 < job.request.max_attempts:
                job.truncations += 1
                return None
            raise truncated[0]
        return None
    best = choose(valid, job.strategy, job.request.select)
    best.timings = Timings(compile_ms=job.compile_ms if attempt == 0 else 0.0, prompt_ms=prompt_ms,
                           decode_ms=stats.decode_ms, mask_ms=stats.mask_ms, prompt_tokens=len(job.tokens),
                           generated_tokens=sum(len(s.tokens) for s in seqs),
                           forced_tokens=sum(sum(s.forced) for s in seqs),
                           draft_tokens=stats.drafted, draft_accepted=stats.accepted,
                           wasted_tokens=sum(a.tokens if a.error is not None else 0 for a in job.attempts)
                           + sum(a.discarded for a in job.attempts),
                           total_ms=(time.perf_counter() - job.t_start) * 1000)
    best.attempts = job.attempts
    best.candidates = candidates_list(candidates) if job.n > 1 else []
    best.model = model.name
    best.relaxed = list(getattr(job.factory, "relaxations", job.request.schema.relaxations))
    return best


def run_attempts(model: LocalModel, job: Job, first_attempt: int = 0) -> Result[Any]:
    """Run the attempts ``first_attempt``.. of ``job`` on its own until one gives a valid result."""
    request = job.request
    with model.lock:
        for attempt in range(first_attempt, request.max_attempts):
            options = loop_options(model, request, job.n, attempt)
            t1 = time.perf_counter()
            first_logits = model.prefill(job.tokens)
            prompt_ms = (time.perf_counter() - t1) * 1000
            if job.n > 1:
                model.fork(len(job.tokens), job.n)
            seqs = sequences(job, attempt, range(job.n))
            stats = decode.run(model, seqs, first_logits, sampling(job, attempt), options)
            result = conclude(model, job, seqs, attempt, prompt_ms, stats)
            if result is not None:
                return result
    last = job.attempts[-1].error if job.attempts else "no attempt ran"
    raise ValidationFailed(f"no valid output in {request.max_attempts} attempt(s): {last}", attempts=job.attempts)


def stop_after_first_valid(model: LocalModel, job: Job, seqs: Sequence[decode.Sequence_]) -> None:
    """``select="first_finished"``: once one candidate has finished with a valid value, stop the others (their
    tokens count as wasted; the finished one is kept by ``conclude``)."""
    for s in seqs:
        if s.finish_reason == "stop" and s.error is None and not s.validated:
            s.validated = True
            try:
                job.request.schema.validate(model.detokenize(s.tokens))
            except ValueError:
                continue
            for other in seqs:
                if other.live:
                    other.error = Cancelled("another candidate finished first (select='first_finished')")
            return


def candidates_list(candidates: list[Result[Any] | None]) -> list[Result[Any]]:
    """The valid candidates, in sequence order."""
    return [c for c in candidates if c is not None]


def _candidate(model: LocalModel, request: Request, s: decode.Sequence_, attempts: list[Attempt],
               strategy: str) -> Result[Any] | None:
    text = model.detokenize(s.tokens)
    if s.error is not None:
        attempts.append(Attempt(text=text, error=f"{type(s.error).__name__}: {s.error}", strategy=strategy,
                                tokens=len(s.tokens), discarded=s.discarded))
        return None
    try:
        value = request.schema.validate(text)
    except ValueError as exc:
        attempts.append(Attempt(text=text, error=f"validation: {exc}", strategy=strategy, tokens=len(s.tokens),
                                discarded=s.discarded))
        return None
    result: Result[Any] = Result(value=value, text=text, tokens=list(s.tokens), logprobs=list(s.logprobs),
                                 seed=s.seed, strategy=strategy, forced=list(s.forced),
                                 model_logprobs=list(s.model_logprobs), finish_reason=s.finish_reason or "stop",
                                 top_logprobs=list(s.top_logprobs))
    if request.schema.annotate is not None:
        request.schema.annotate(result)
    attempts.append(Attempt(text=text, error=None, strategy=strategy, tokens=len(s.tokens),
                            avg_logprob=result.avg_logprob, discarded=s.discarded))
    return result


def choose(valid: Sequence[Result[Any]], strategy: str, select: str = "logprob") -> Result[Any]:
    """The candidate a strategy keeps among local results (see ``pick``)."""
    return pick(valid, strategy, select, value=lambda r: r.value, score=lambda r: r.avg_logprob)


def _with_hint(request: Request) -> Any:
    return with_hint(request.prompt, request.schema.prompt_hint if request.schema_in_prompt else None,
                     chat=request.chat)


def with_hint(prompt: str | Sequence[Message], hint: str | None, *, chat: bool = True) -> Any:
    """The prompt with the schema's format hint at the start of the last user turn (chat mode only).

    At the start, not the end: requests for the same schema then share the chat template, the system prompt
    and the hint as one prefix, which the prefix cache serves (on the 16 requests of ``bench concurrency``,
    greedy SmolLM2-135M was valid 16/16 either way, 15 on the first attempt).
    """
    # Raw mode sends the prompt exactly as given; the hint is for chat turns.
    if not hint or not chat:
        return prompt
    if isinstance(prompt, str):
        return f"{hint}\n\n{prompt}"
    messages = [dict(m) for m in prompt]
    messages[-1]["content"] = f"{hint}\n\n{messages[-1]['content']}"
    return messages


__all__ = ["GenerationError", "Job", "choose", "conclude", "loop_options", "prepare", "run_attempts",
           "sampling", "sequences", "shared_head", "stop_after_first_valid", "with_hint"]
