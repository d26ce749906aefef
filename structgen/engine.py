"""The local engine: a ``Request`` on a ``StepModel`` → a validated ``Result`` (or a typed error).

Strategies: ``constrained`` (one masked sample, resampled if the validator disagrees), ``best_of``
(n masked samples stepped in one batch from one prompt decode; keep the best average logprob) and
``self_consistency`` (n samples; majority over normalised values, ties by average logprob).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from . import decode
from .chat import Message
from .errors import GenerationError, TruncatedOutput, ValidationFailed
from .matchers import Backend, Vocab
from .request import Request
from .result import Attempt, Result, Timings
from .sampler import SamplingParams


class LocalModel(decode.StepModel, Protocol):
    """What the local engine needs: a StepModel plus its tokenizer, grammar backend and lock."""

    backend: Backend
    vocab: Vocab
    lock: Any  # a threading.RLock: one request at a time per model
    deterministic: bool

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


def run_local(model: LocalModel, request: Request) -> Result[Any]:
    """Serve ``request`` on a local model."""
    t_start = time.perf_counter()
    schema = request.schema
    t0 = time.perf_counter()
    factory = model.backend.compile(schema, model.vocab) if schema.grammar is not None else None
    compile_ms = (time.perf_counter() - t0) * 1000
    prompt = _with_hint(request)
    tokens = model.prompt_tokens(prompt, system=request.system, chat=request.chat)
    strategy = request.strategy if request.strategy in ("best_of", "self_consistency") else "constrained"
    n = request.n if strategy != "constrained" else 1
    options = decode.LoopOptions(max_tokens=request.max_tokens, fast_forward=request.fast_forward,
                                 model_logprobs=request.model_logprobs,
                                 one_sequence_per_decode=model.deterministic, max_batch=model.n_batch)
    attempts: list[Attempt] = []
    with model.lock:
        for attempt in range(request.max_attempts):
            params = request.sampling
            if attempt > 0 and params.temperature < RETRY_TEMPERATURE:
                params = _warmer(params)
            base_seed = request.seed + attempt * 1_000_003
            t1 = time.perf_counter()
            first_logits = model.prefill(tokens)
            prompt_ms = (time.perf_counter() - t1) * 1000
            if n > 1:
                model.fork(len(tokens), n)
            seqs = [
                decode.Sequence_(seq=i, matcher=factory.new_matcher() if factory else None,
                                 rng=np.random.Generator(np.random.PCG64(base_seed + i)), seed=base_seed + i,
                                 pos=len(tokens))
                for i in range(n)
            ]
            stats = decode.run(model, seqs, first_logits, params, options)
            candidates = [_candidate(model, request, s, attempts, strategy) for s in seqs]
            valid = [c for c in candidates if c is not None]
            timings = Timings(compile_ms=compile_ms, prompt_ms=prompt_ms, decode_ms=stats.decode_ms,
                              mask_ms=stats.mask_ms, prompt_tokens=len(tokens),
                              generated_tokens=sum(len(s.tokens) for s in seqs),
                              forced_tokens=sum(sum(s.forced) for s in seqs))
            if valid:
                best = _select(valid, strategy, request)
                best.timings = timings
                best.timings.total_ms = (time.perf_counter() - t_start) * 1000
                best.attempts = attempts
                best.candidates = candidates_list(candidates) if n > 1 else []
                best.model = model.name
                return best
            compile_ms = 0.0
            truncated = [s.error for s in seqs if isinstance(s.error, TruncatedOutput)]
            if truncated and len(truncated) == len(seqs):
                raise truncated[0]
    raise ValidationFailed(f"no valid output in {request.max_attempts} attempt(s): {attempts[-1].error}",
                           attempts=attempts)


def candidates_list(candidates: list[Result[Any] | None]) -> list[Result[Any]]:
    """The valid candidates, in sequence order."""
    return [c for c in candidates if c is not None]


def _candidate(model: LocalModel, request: Request, s: decode.Sequence_, attempts: list[Attempt],
               strategy: str) -> Result[Any] | None:
    text = model.detokenize(s.tokens)
    if s.error is not None:
        attempts.append(Attempt(text=text, error=f"{type(s.error).__name__}: {s.error}", strategy=strategy,
                                tokens=len(s.tokens)))
        return None
    try:
        value = request.schema.validate(text)
    except ValueError as exc:
        attempts.append(Attempt(text=text, error=f"validation: {exc}", strategy=strategy, tokens=len(s.tokens)))
        return None
    result: Result[Any] = Result(value=value, text=text, tokens=list(s.tokens), logprobs=list(s.logprobs),
                                 seed=s.seed, strategy=strategy, forced=list(s.forced),
                                 model_logprobs=list(s.model_logprobs), finish_reason=s.finish_reason or "stop")
    attempts.append(Attempt(text=text, error=None, strategy=strategy, tokens=len(s.tokens),
                            avg_logprob=result.avg_logprob))
    return result


def _select(valid: list[Result[Any]], strategy: str, request: Request) -> Result[Any]:
    if strategy == "self_consistency":
        keys = [normalise(r.value) for r in valid]
        counts = Counter(keys)
        top = max(counts.values())
        winners = [r for r, k in zip(valid, keys, strict=True) if counts[k] == top]
        return max(winners, key=lambda r: r.avg_logprob)
    if strategy == "best_of" and request.select == "logprob":
        return max(valid, key=lambda r: r.avg_logprob)
    return valid[0]


def normalise(value: Any) -> str:
    """A canonical string for voting: models dumped to JSON, keys sorted, strings stripped and casefolded."""
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")

    def canon(v: Any) -> Any:
        if isinstance(v, dict):
            return {str(k): canon(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [canon(x) for x in v]
        if isinstance(v, str):
            return " ".join(v.split()).casefold()
        if isinstance(v, float) and v.is_integer():
            return int(v)
        return v

    return json.dumps(canon(value), sort_keys=True, default=str)


def _warmer(params: SamplingParams) -> SamplingParams:
    import dataclasses

    return dataclasses.replace(params, temperature=RETRY_TEMPERATURE)


def _with_hint(request: Request) -> Any:
    # Raw mode sends the prompt exactly as given; the hint is for chat turns.
    hint = request.schema.prompt_hint if (request.schema_in_prompt and request.chat) else None
    if not hint:
        return request.prompt
    if isinstance(request.prompt, str):
        return f"{request.prompt}\n\n{hint}"
    messages = [dict(m) for m in request.prompt]
    messages[-1]["content"] = f"{messages[-1]['content']}\n\n{hint}"
    return messages


__all__ = ["GenerationError", "normalise", "run_local"]
