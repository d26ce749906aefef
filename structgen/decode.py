"""The decode loop: logits → grammar mask → sampler → consume, for one or many sequences in one batch.

Each step, every live sequence either takes the tokens its grammar forces (fast-forward: no sampling,
probability 1, flagged ``forced``) or samples one token from the masked distribution; then all of them
go to the model in a single batched decode. The loop fails closed: a matcher error, an empty mask or a
token the grammar rejects raises a typed error instead of producing unconstrained text.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from .errors import GenerationError, TruncatedOutput
from .matchers import Matcher
from .sampler import SamplingParams, sample_token


class StepModel(Protocol):
    """What the loop needs from a model: batched decode of several sequences sharing one KV cache."""

    n_vocab: int
    eos_ids: tuple[int, ...]

    def prefill(self, tokens: Sequence[int]) -> NDArray[np.float32]:
        """Decode a prompt into sequence 0 (reusing any cached prefix); the last token's logits."""

    def fork(self, n_prompt: int, copies: int) -> None:
        """Share sequence 0's first ``n_prompt`` positions with sequences 1..copies-1."""

    def decode(self, items: Sequence[tuple[int, Sequence[int], int]]) -> list[NDArray[np.float32]]:
        """Decode ``(seq, tokens, start_pos)`` items in one batch; the last token's logits of each item."""

    def detokenize(self, tokens: Sequence[int]) -> str:
        """Token ids to text."""


@dataclass(eq=False)
class Sequence_:
    """The state of one sequence being generated."""

    seq: int
    matcher: Matcher | None
    rng: np.random.Generator
    seed: int
    pos: int
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    model_logprobs: list[float | None] = field(default_factory=list)
    forced: list[bool] = field(default_factory=list)
    counts: NDArray[np.int32] | None = None
    finish_reason: str | None = None
    error: Exception | None = None

    @property
    def live(self) -> bool:
        return self.finish_reason is None and self.error is None


@dataclass(slots=True)
class LoopStats:
    """Time spent in the loop."""

    decode_ms: float = 0.0
    mask_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class LoopOptions:
    """Knobs of the loop."""

    max_tokens: int = 512
    fast_forward: bool = True
    model_logprobs: bool = False
    one_sequence_per_decode: bool = False   # batch-invariant mode: never co-batch sequences
    max_batch: int = 512


def run(
    model: StepModel,
    seqs: list[Sequence_],
    first_logits: NDArray[np.float32] | Mapping[int, NDArray[np.float32]],
    params: SamplingParams,
    options: LoopOptions,
) -> LoopStats:
    """Generate every sequence to its end; results are left in each ``Sequence_``.

    ``first_logits``: the prompt's last logits, shared by all sequences (best-of-n over one prompt), or
    one array per sequence id (different prompts decoded into different sequences).
    """
    stats = LoopStats()
    n_vocab = model.n_vocab
    eos = frozenset(model.eos_ids)
    masks = np.empty((len(seqs), (n_vocab + 31) // 32), dtype=np.int32)
    logits_of: dict[int, NDArray[np.float32]] = (
        dict(first_logits) if isinstance(first_logits, Mapping) else {s.seq: first_logits for s in seqs})
    if params.has_penalties:
        for s in seqs:
            s.counts = np.zeros(n_vocab, dtype=np.int32)
    start = time.perf_counter()
    while True:
        pending: list[tuple[Sequence_, list[int]]] = []
        budget = options.max_batch
        for row, s in enumerate(seqs):
            if not s.live:
                continue
            try:
                nxt = _next_tokens(s, logits_of[s.seq], masks[row], params, options, eos, n_vocab, stats,
                                   budget - (len(seqs) - row - 1))
            except GenerationError as exc:
                s.error = exc
                continue
            if nxt:
                pending.append((s, nxt))
                budget -= len(nxt)
        if not pending:
            break
        groups = [pending] if not options.one_sequence_per_decode else [[p] for p in pending]
        for group in groups:
            outs = model.decode([(s.seq, toks, s.pos) for s, toks in group])
            for (s, toks), out in zip(group, outs, strict=True):
                s.pos += len(toks)
                logits_of[s.seq] = out
    stats.decode_ms = (time.perf_counter() - start) * 1000
    for s in seqs:
        if s.error is None and s.finish_reason == "truncated":
            s.error = TruncatedOutput(
                f"max_tokens={options.max_tokens} ran out before the output was complete",
                partial_text=model.detokenize(s.tokens), tokens=s.tokens)
    return stats


def _next_tokens(
    s: Sequence_,
    logits: NDArray[np.float32],
    mask: NDArray[np.int32],
    params: SamplingParams,
    options: LoopOptions,
    eos: frozenset[int],
    n_vocab: int,
    stats: LoopStats,
    budget: int,
) -> list[int]:
    """Choose the next token(s) of ``s``; marks it finished and returns [] when it ends."""
    m = s.matcher
    room = options.max_tokens - len(s.tokens)
    if m is not None:
        if m.is_stopped():
            return _finish_stopped(s, m)
        if options.fast_forward:
            forced = m.forced_tokens()
            if forced:
                forced = forced[: max(1, min(room, budget))]
                if m.consume_many(forced) != len(forced):
                    raise GenerationError(f"grammar engine rejected its own forced tokens: {m.error()}")
                s.tokens.extend(forced)
                s.logprobs.extend([0.0] * len(forced))
                s.model_logprobs.extend([None] * len(forced))
                s.forced.extend([True] * len(forced))
                if s.counts is not None:
                    np.add.at(s.counts, forced, 1)
                return _after_append(s, m, forced, options)
        t0 = time.perf_counter()
        m.fill_mask(mask)
        ids = np.flatnonzero(np.unpackbits(mask.view(np.uint8), count=n_vocab, bitorder="little"))
        stats.mask_ms += (time.perf_counter() - t0) * 1000
        if ids.size == 0:
            raise GenerationError(f"the grammar allows no next token: {m.error() or 'dead end'}")
        cand = logits[ids]
    else:
        ids = None
        cand = np.array(logits, dtype=np.float32, copy=True)
    if not np.all(np.isfinite(cand)):
        raise GenerationError("the model produced non-finite logits")
    model_lp: float | None = None
    if options.model_logprobs:
        top = float(logits.max())
        lse = top + float(np.log(np.exp(logits - top, dtype=np.float64).sum()))
    counts = s.counts[ids] if (s.counts is not None and ids is not None) else s.counts
    index, logprob = sample_token(cand, s.rng, params, counts)
    token = int(ids[index]) if ids is not None else index
    if options.model_logprobs:
        model_lp = float(logits[token]) - lse
    if token in eos:
        if m is None or m.is_accepting():
            s.finish_reason = "stop"
            return []
        raise GenerationError("EOS was sampled before the grammar was complete")
    if m is not None and not m.consume(token):
        raise GenerationError(f"the grammar rejected a token from its own mask: {m.error()}")
    s.tokens.append(token)
    s.logprobs.append(logprob)
    s.model_logprobs.append(model_lp)
    s.forced.append(False)
    if s.counts is not None:
        s.counts[token] += 1
    return _after_append(s, m, [token], options)


def _after_append(s: Sequence_, m: Matcher | None, new: list[int], options: LoopOptions) -> list[int]:
    if len(s.tokens) < options.max_tokens:
        return new
    # Out of room: a grammar that is complete ends cleanly; anything else is truncation, never "valid".
    if m is None:
        s.finish_reason = "length"
    elif m.is_accepting():
        s.finish_reason = "stop" if m.is_stopped() else "length"
    else:
        s.finish_reason = "truncated"
    return []


def _finish_stopped(s: Sequence_, m: Matcher) -> list[int]:
    err = m.error()
    if err:
        raise GenerationError(f"grammar engine error: {err.splitlines()[0]}")
    s.finish_reason = "stop"
    return []

