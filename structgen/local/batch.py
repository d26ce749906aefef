"""Several different requests in one llama.cpp batch: ``run_batch`` (``structgen.generate_batch``'s engine).

Each request's prompt goes into its own llama.cpp sequence (best-of-n requests get n of them, sharing
their prompt's KV), and every step advances all live sequences of all requests together, as a serving
engine batches its users. On a default ``LlamaCpp`` this is where batch-dependent floating point shows:
one request's logprobs can change with its neighbours. On ``LlamaCpp(deterministic=True)`` entry i is
byte for byte what ``generate(prompts[i], ...)`` gives alone: each sequence then has its own KV stream
and its own model steps (the batch still shares the loop and the grammar work, not the matmuls).

Requests with different sampling settings are batched in separate groups; a request whose first attempt
yields no valid value is retried on its own, exactly as ``generate`` would retry it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from ..errors import InvalidArgument, StructgenError
from ..request import Request
from ..result import Result
from . import decode
from .engine import Job, LocalModel, conclude, loop_options, prepare, run_attempts, sampling, sequences

__all__ = ["BatchModel", "run_batch", "serve_or_error"]


class BatchModel(LocalModel, Protocol):
    """A local model that can hold several prompts at once (``LlamaCpp``)."""

    @property
    def n_seq_max(self) -> int:
        """Most sequences one batch may hold."""

    def prefill_many(self, prompts: Sequence[Sequence[int]]) -> dict[int, NDArray[np.float32]]:
        """Decode prompt i into sequence i from an empty cache; the last logits of each."""

    def share(self, src: int, dst: int, n_prompt: int) -> None:
        """Let sequence ``dst`` start from the first ``n_prompt`` positions of ``src``."""


def run_batch(model: BatchModel, requests: Sequence[Request]) -> list[Result[Any] | StructgenError]:
    """Serve ``requests`` together on ``model``; entry i is request i's ``Result`` or its typed error."""
    out: list[Result[Any] | StructgenError | None] = [None] * len(requests)
    groups: dict[tuple[Any, ...], list[tuple[int, Job]]] = {}
    for i, request in enumerate(requests):
        if request.strategy in ("prompt", "repair"):  # the re-asking text chain: one conversation at a time
            out[i] = serve_or_error(model, request)
            continue
        try:
            job = prepare(model, request)
            if job.n > model.n_seq_max:
                raise InvalidArgument(f"n={job.n} exceeds this model's n_seq_max={model.n_seq_max}")
        except StructgenError as exc:
            out[i] = exc
            continue
        key = (request.sampling, request.max_tokens, request.fast_forward, request.model_logprobs)
        groups.setdefault(key, []).append((i, job))
    retry: list[tuple[int, Job]] = []
    for group in groups.values():
        for wave in _waves(group, model.n_seq_max):
            retry += _run_wave(model, wave, out)
    for i, job in retry:
        out[i] = _serve_job(model, job)
    assert all(r is not None for r in out)
    return [r for r in out if r is not None]


def _waves(group: list[tuple[int, Job]], n_seq_max: int) -> list[list[tuple[int, Job]]]:
    """Consecutive slices of ``group`` holding at most ``n_seq_max`` sequences each."""
    waves: list[list[tuple[int, Job]]] = [[]]
    used = 0
    for item in group:
        if used + item[1].n > n_seq_max:
            waves.append([])
            used = 0
        waves[-1].append(item)
        used += item[1].n
    return [w for w in waves if w]


def _run_wave(model: BatchModel, wave: list[tuple[int, Job]],
              out: list[Result[Any] | StructgenError | None]) -> list[tuple[int, Job]]:
    """First attempt of every job in ``wave``, in one batch; returns the jobs to retry alone."""
    request = wave[0][1].request
    jobs = [job for _, job in wave]
    try:
        with model.lock:
            t0 = time.perf_counter()
            first = model.prefill_many([job.tokens for job in jobs])   # job k's prompt in sequence k
            prompt_ms = (time.perf_counter() - t0) * 1000
            spare = iter(range(len(jobs), model.n_seq_max))            # best-of candidates beyond the first
            seqs_of: list[list[decode.Sequence_]] = []
            first_logits: dict[int, NDArray[np.float32]] = {}
            for k, job in enumerate(jobs):
                ids = [k] + [next(spare) for _ in range(job.n - 1)]
                for dst in ids[1:]:
                    model.share(k, dst, len(job.tokens))
                first_logits.update(dict.fromkeys(ids, first[k]))
                seqs_of.append(sequences(job, 0, ids))
            every = [s for seqs in seqs_of for s in seqs]
            stats = decode.run(model, every, first_logits, sampling(jobs[0], 0),
                               loop_options(model, request, len(every)))
    except StructgenError as exc:
        for i, _ in wave:
            out[i] = exc
        return []
    retry: list[tuple[int, Job]] = []
    for (i, job), seqs in zip(wave, seqs_of, strict=True):
        try:
            result = conclude(model, job, seqs, 0, prompt_ms, stats)
        except StructgenError as exc:
            out[i] = exc
            continue
        if result is None:
            retry.append((i, job))
        else:
            out[i] = result
    return retry


def _serve_job(model: LocalModel, job: Job) -> Result[Any] | StructgenError:
    """Attempts 1.. of a job whose batched first attempt failed, alone (as ``generate`` would retry)."""
    try:
        return run_attempts(model, job, first_attempt=1)
    except StructgenError as exc:
        return exc


def serve_or_error(model: Any, request: Request) -> Result[Any] | StructgenError:
    """``model.run(request)``, with a typed error returned in the result's place instead of raised."""
    try:
        result: Result[Any] = model.run(request)
    except StructgenError as exc:
        return exc
    return result
