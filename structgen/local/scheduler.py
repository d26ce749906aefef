"""Continuous batching on one local model: the ``Scheduler`` and its ``Ticket``s.

One engine thread owns the llama.cpp context. Callers ``submit`` requests from any thread (``generate`` from
many threads, ``agenerate`` from asyncio, ``stream``) and get a ``Ticket``. Each engine step decodes, in one
llama.cpp batch, the next tokens of every live sequence of every admitted request (each with its own grammar
state, sampler, penalties and seed) together with a chunk of each prompt still being prefilled. New requests
join at the next step; a finished one leaves at once and frees its sequences and KV cells.

Admission, the fairness policy: first come, first served within a priority (``Request.priority``, lower
first). The first queued request of the most urgent priority is admitted when enough sequences and KV cells are
free for it (its prompt plus n × max_tokens cells); no later request of its priority jumps it, so a request with
n=8 is never starved by a stream of single ones, and once admitted every live sequence advances by one sampled
token per step, so single requests are never starved by an n=8 one. While a request is prefilling its prompt,
admitted requests of a less urgent priority are held (neither decoded nor prefilled): background work (a
``/v1/batches`` job) then costs an interactive request's first token at most the step already running. The
queue is bounded (``max_queue``): when full, ``submit`` raises ``Overloaded`` at once. Each request may carry
a deadline (``timeout``), checked every step, and may be cancelled; either way its sequences are freed at the
next step.

A request whose attempt yields no valid value (a validator rejection, a truncation, a repetition loop cut short)
retries warm: its prompt's KV stays, only the generated positions are dropped. A stream sees the retry as a
``reset`` event.

Prompts: in the default mode a long prompt is prefilled in chunks that share each step with the running
streams (so it does not freeze them), and its KV is offered to the ``PrefixCache`` for later requests. The
deterministic mode keeps its promise instead (see ``LlamaCpp``): each prompt is decoded alone from an empty
stream in fixed ``n_batch`` chunks and each sequence is decoded alone every step, so a request's bytes do not
depend on what else runs; it has no prefix cache, and under load every live sequence costs its own model step.

Why it is long: admission, prefix sharing, chunked prefill, attempts and streaming all act on the same ticket
state inside one step; split apart they would pass that state around instead of keeping it in one place.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from ..errors import Cancelled, DeadlineExceeded, InvalidArgument, Overloaded, StructgenError, ValidationFailed
from ..result import Result
from . import decode
from .context_lock import ContextLock
from .engine import Job, LocalModel, conclude, loop_options, sampling, sequences, stop_after_first_valid
from .prefix_cache import CacheEntry, KvSequences, PrefixCache, common_prefix

__all__ = ["PREFILL_CHUNK", "Event", "Scheduler", "Sink", "Ticket"]

PREFILL_CHUNK = 128
"""Most prompt tokens one step prefills while other requests are generating (a full ``n_batch`` when none are):
on CPU a 512-token chunk would hold every running stream for the time of ~10 of their tokens."""

IDLE_COMPACT_S = 0.2
"""How long the engine stays idle before it compacts a shared KV cache (``Scheduler._compact``): longer than the
gap between one client's requests in a row, so a busy client never waits for it."""

SHARE_WAIT_MIN = 32
"""A request waits for an earlier one still prefilling their shared prompt start when that start is at least this
many tokens longer than what it holds already (shorter ones are cheaper to decode again than to wait for)."""

Event = tuple[str, Any]
"""What a ticket's stream receives: ``("tokens", (ids, logprobs, forced))``, ``("reset", reason)`` or
``("done", Result | StructgenError)``."""


class Sink(Protocol):
    """Where a streamed ticket's events go (a ``queue.SimpleQueue``, an adapter onto an event loop)."""

    def put(self, item: Event) -> None:
        """Accept one event, from the engine thread: must not block."""


class SchedulableModel(LocalModel, Protocol):
    """A local model the scheduler can drive (``LlamaCpp``)."""

    lock: ContextLock

    @property
    def n_ctx(self) -> int:
        """KV cells of the context (one sequence's positions, and in the default mode all sequences' cells)."""

    @property
    def n_seq_max(self) -> int:
        """Sequences available to requests."""

    @property
    def kv_unified(self) -> bool:
        """Whether all sequences share one KV cache of ``n_ctx`` cells (else each has its own)."""

    @property
    def min_prefill(self) -> int:
        """Prompt tokens below which a prefill batch costs as much as this many (1: none)."""

    def kv(self) -> KvSequences:
        """The KV-cache sequence operations."""

    def clear(self) -> None:
        """Forget every sequence."""

    def share(self, src: int, dst: int, n_prompt: int) -> None:
        """Let sequence ``dst`` start from the first ``n_prompt`` positions of ``src``."""

    def drop(self, seq: int, start: int = 0) -> None:
        """Forget positions ``start``.. of sequence ``seq``."""

    def compact(self, keep: Sequence[int]) -> list[int]:
        """Forget every sequence but ``keep`` and lay those at the start of the KV; the ones put back."""


@dataclass(eq=False)
class Ticket:
    """One submitted request: wait on it with ``result``, read its stream with ``events``, or ``cancel`` it."""

    job: Job
    deadline: float | None
    sink: Sink | None = None
    outcome: Result[Any] | StructgenError | None = None
    done: threading.Event = field(default_factory=threading.Event)
    cancelled: bool = False
    callbacks: list[Callable[[], None]] = field(default_factory=list)
    # engine state
    seq_ids: list[int] = field(default_factory=list)
    filled: int = 0                       # prompt tokens in the KV so far
    decoding: bool = False
    attempt: int = 0
    seqs: list[decode.Sequence_] = field(default_factory=list)
    loop: decode.Loop | None = None
    first_logits: NDArray[np.float32] | None = None
    cells: int = 0                        # KV cells reserved
    pin: CacheEntry | None = None
    prefix_hit: int = 0
    split: int = 0                        # a prefill chunk never crosses this prompt position (0: none)
    t_submit: float = field(default_factory=time.perf_counter)
    t_admit: float = 0.0
    t_decode: float = 0.0
    t_first_token: float = 0.0
    prompt_ms: float = 0.0
    emitted: int = 0

    def result(self) -> Result[Any]:
        """Wait for the validated ``Result``; raises the request's typed error. A Ctrl-C while waiting cancels
        the request and propagates."""
        try:
            # In slices: the kernel may hand Ctrl-C's SIGINT to the engine thread, and Python raises it in this
            # (main) thread only once it runs bytecode again, which an untimed wait never does before the end.
            while not self.done.wait(0.1):
                pass
        except BaseException:
            self.cancel()
            raise
        if isinstance(self.outcome, StructgenError):
            raise self.outcome
        assert self.outcome is not None
        return self.outcome

    def cancel(self) -> None:
        """Ask the engine to drop this request at its next step (no effect once it is done)."""
        self.cancelled = True

    def on_done(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (from the engine thread) once the ticket is done; at once if it already is."""
        self.callbacks.append(callback)
        if self.done.is_set():
            callback()


class Scheduler:
    """The engine thread of one ``LlamaCpp``: admission, batched steps, retries, prefix cache."""

    def __init__(self, model: SchedulableModel, *, cache_slots: Sequence[int] = (), max_queue: int = 256) -> None:
        self.model = model
        self.max_queue = max_queue
        self._queue: collections.deque[Ticket] = collections.deque()
        self._live: list[Ticket] = []
        self._free = list(range(model.n_seq_max))
        self._cond = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._epoch = -1
        self.last_error: BaseException | None = None   # the last unexpected engine failure (for diagnosis)
        self._deterministic = model.deterministic
        self.cache = PrefixCache(model.kv(), [] if model.deterministic else cache_slots)
        self._since_compact = 0   # requests finished since the KV was last compacted

    # ---- callers' side ------------------------------------------------------------------------------

    def submit(self, job: Job, *, timeout: float | None = None, stream: bool | Sink = False) -> Ticket:
        """Queue ``job``; raises ``Overloaded`` when the wait queue is full. ``stream``: True for a ticket whose
        ``sink`` is a new queue of its events, or the ``Sink`` to send them to."""
        if job.n > self.model.n_seq_max:
            raise InvalidArgument(f"n={job.n} exceeds this model's n_seq_max={self.model.n_seq_max}")
        ticket = Ticket(job, None if timeout is None else job.t_start + timeout,   # from the call: compile counts
                        sink=queue.SimpleQueue() if stream is True else None if stream is False else stream)
        with self._cond:
            if self._closing:
                raise InvalidArgument("the model is closed")
            if len(self._queue) >= self.max_queue:
                raise Overloaded(f"the engine's wait queue is full ({self.max_queue} requests); retry shortly")
            self._queue.append(ticket)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="structgen-engine", daemon=True)
                self._thread.start()
            self._cond.notify()
        return ticket

    def close(self) -> None:
        """Fail what is queued, finish nothing more, and stop the engine thread."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    @property
    def queued(self) -> int:
        """Requests waiting for admission."""
        return len(self._queue)

    @property
    def live_sequences(self) -> int:
        """Sequences in use by admitted requests."""
        return self.model.n_seq_max - len(self._free)

    # ---- the engine thread --------------------------------------------------------------------------

    def _run(self) -> None:
        lock = self.model.lock
        while True:
            compact = False
            with self._cond:
                while not self._queue and not self._live and not self._closing:
                    if not self._compact_due():
                        self._cond.wait()
                    elif not self._cond.wait(IDLE_COMPACT_S) and not self._queue and not self._closing:
                        compact = True    # idle for a while: a good time to tidy the KV
                        break
                if self._closing:
                    break
                if lock.waiting and not self._live:
                    self._cond.wait(0.005)     # let an exclusive user in first
                    continue
            lock.acquire_for_engine()
            try:
                if lock.epoch != self._epoch:   # someone else used the context: it holds nothing of ours
                    self.cache.clear()
                    self.model.clear()
                    self._epoch = lock.epoch
                elif compact:
                    self._compact()
                while True:
                    self._admit()
                    if not self._live:
                        break
                    self._step()
            except BaseException as exc:  # never leave a caller waiting on a dead engine
                self.last_error = exc
                self._fail_all(exc)
            finally:
                lock.release_for_engine()
        self._fail_all(InvalidArgument("the model was closed"))

    def _compact_due(self) -> bool:
        return (self.model.kv_unified and not self._deterministic and self._since_compact > 0
                and bool(self.cache.entries))

    def _compact(self) -> None:
        """Move the prefix cache's entries to the start of the shared KV cache, while no request runs.

        Why: llama.cpp puts new cells in free cells from a moving head, and every step attends over all cells up to
        the highest one in use (rounded up to 256), whoever holds it. An entry prefilled while many requests ran
        sits high and, kept for its shared head (a system prompt every request reuses), stays there for good:
        after a burst of clients every later step attends over the burst's span."""
        self._since_compact = 0
        entries = list(self.cache.entries)
        try:
            kept = set(self.model.compact([e.seq for e in entries]))
        except Exception:
            kept = set()
        if len(kept) < len(entries):   # some were not put back (never expected): an empty cache is a true one
            self.cache.clear()
            self.model.clear()

    def _fail_all(self, exc: BaseException) -> None:
        error = exc if isinstance(exc, StructgenError) else StructgenError(f"engine failure: {exc!r}")
        error.__cause__ = None if error is exc else exc
        for t in list(self._live):
            self._finish(t, error)
        with self._cond:
            waiting = list(self._queue)
            self._queue.clear()
        for t in waiting:
            self._finish(t, error)

    def _admit(self) -> None:
        now = time.perf_counter()
        while True:
            with self._cond:
                if not self._queue:
                    return
                t = min(self._queue, key=_priority)   # the first of the most urgent (min keeps the first)
                error = self._expired(t, now)
                if error is None and (self.model.lock.waiting or t.job.n > len(self._free)
                                      or not self._room_for(t)):
                    return
                self._queue.remove(t)
            if error is not None:
                self._finish(t, error)
                continue
            self._live.append(t)     # first: whatever happens next, the engine knows of the ticket
            self._start(t, now)

    def _expired(self, t: Ticket, now: float) -> StructgenError | None:
        if t.cancelled:
            return Cancelled("the request was cancelled")
        if t.deadline is not None and now > t.deadline:
            return DeadlineExceeded(f"the request's timeout passed after {now - t.t_submit:.2f} s")
        return None

    def _cells_for(self, t: Ticket, hit: int) -> int:
        n_prompt = len(t.job.tokens)
        room = max(0, self.model.n_ctx - n_prompt)
        return n_prompt - hit + t.job.n * min(t.job.request.max_tokens, room)

    def _room_for(self, t: Ticket) -> bool:
        """True if ``t``'s KV cells fit, evicting idle cache entries as needed (alone it gets what there is)."""
        if not self.model.kv_unified:   # each sequence has its own n_ctx cells
            return True
        reserved = sum(x.cells for x in self._live)
        while True:
            _, hit = self.cache.lookup(t.job.tokens)   # again after each eviction: it may have held the hit
            if reserved + self.cache.cells + self._cells_for(t, hit) <= self.model.n_ctx:
                return True
            if not self.cache.evict_one():
                return not self._live

    def _start(self, t: Ticket, now: float) -> None:
        self._free.sort()
        t.seq_ids = [self._free.pop(0) for _ in range(t.job.n)]
        t.t_admit = now
        if not self._deterministic:
            n = len(t.job.tokens)
            t.split = self._split(t)
            entry, hit = self.cache.lookup(t.job.tokens)
            if entry is not None and hit == n == len(entry.tokens) and entry.logits is not None:   # asked again
                self.cache.reuse(entry, t.seq_ids[0], n)
                t.pin, t.filled, t.prefix_hit = entry, n, n
                t.first_logits = entry.logits.copy()
                t.cells = self._cells_for(t, n)
                self._prompt_done(t)
                return
            hit = min(hit, n - 1)    # at least one token to decode: its logits start the answer
            if t.split and hit > t.split:
                hit = t.split
            floor = self.model.min_prefill
            if floor // 2 <= n - hit < floor < n:   # a batch this short costs more than one of `floor` tokens
                hit = n - floor
            if entry is not None and hit > 0:
                self.cache.reuse(entry, t.seq_ids[0], hit)
                t.pin, t.filled, t.prefix_hit = entry, hit, hit
        t.cells = self._cells_for(t, t.prefix_hit)

    def _split(self, t: Ticket) -> int:
        """Where ``t``'s prefill is cut in two: at the end of its shared head (template, system prompt, hint: what
        the prefix cache keeps of it), or where the scheduler's ``min_prefill`` rule starts the rest. A later call
        with the same prompt reuses the head and decodes the rest in one batch of the same rows, so on an idle
        model it computes the same numbers as this one: llama.cpp's results for a row depend on the batch it was
        decoded in (on CPU, a batch under 64 rows takes another flash-attention path), not only on its inputs."""
        n, head, floor = len(t.job.tokens), t.job.shared, self.model.min_prefill
        if not 0 < head < n:
            return 0
        if floor // 2 <= n - head < floor < n:
            return n - floor
        return head

    def _step(self) -> None:
        now = time.perf_counter()
        for t in list(self._live):
            error = self._expired(t, now)
            if error is not None:
                self._finish(t, error)
        items = self._step_items()
        for group in self._groups(items):
            self._run_group(group)
        for t in list(self._live):
            if t.decoding and t.job.request.select == "first_finished" and t.job.n > 1:
                stop_after_first_valid(self.model, t.job, t.seqs)
            if t.decoding and not any(s.live for s in t.seqs):
                self._attempt_done(t)
            elif t.decoding and t.sink is not None and t.job.n == 1:
                self._emit(t)

    def _step_items(self) -> list[tuple[Ticket, decode.Sequence_ | None, list[int], int]]:
        """This step's work: every live sequence's pending tokens, then a prompt chunk per prefilling request;
        while a request is prefilling, those of a less urgent priority wait."""
        n_ctx = self.model.n_ctx
        items: list[tuple[Ticket, decode.Sequence_ | None, list[int], int]] = []
        used = 0
        urgent = min((_priority(t) for t in self._live if not t.decoding), default=None)
        live = self._live if urgent is None else [t for t in self._live if _priority(t) <= urgent]
        for t in live:
            if not t.decoding:
                continue
            for s in t.seqs:
                if s.live and s.pending:
                    if s.pos + len(s.pending) > n_ctx:
                        s.error = InvalidArgument(f"generation reached n_ctx={n_ctx} tokens; raise n_ctx or "
                                                  "lower max_tokens")
                        s.pending = []
                        continue
                    items.append((t, s, s.pending, s.pos))
                    used += len(s.pending)
        if len(items) == 1 and all(t.decoding for t in live):
            items[0] = self._speculate(*items[0])
        n_batch = self.model.n_batch
        budget = PREFILL_CHUNK if used else n_batch * len(live)
        for t in live:
            if t.decoding or budget <= 0:
                continue
            tokens = t.job.tokens
            if self._deterministic:
                chunk = tokens[t.filled : t.filled + n_batch]   # the lone run's fixed chunks
            else:
                if self._share_in_flight(t):
                    continue    # an earlier request is prefilling the start of this prompt: copy it when done
                end = t.filled + min(budget, n_batch)
                chunk = tokens[t.filled : min(end, t.split) if t.filled < t.split else end]
                budget -= len(chunk)
            if chunk:
                items.append((t, None, chunk, t.filled))
        return items

    def _speculate(self, t: Ticket, s: decode.Sequence_ | None, tokens: list[int], pos: int
                   ) -> tuple[Ticket, decode.Sequence_ | None, list[int], int]:
        """The step of a lone decoding sequence, with a draft after its pending tokens (``decode.Loop.draft``): one
        sequence leaves the model's batch nearly empty, and a drafted token costs less than a step of its own.
        With more sequences (or a prompt) in the step, the batch is already doing that work."""
        assert t.loop is not None and s is not None
        s.draft = t.loop.draft(s)
        return (t, s, tokens + s.draft, pos) if s.draft else (t, s, tokens, pos)

    def _share_in_flight(self, t: Ticket) -> bool:
        """Take the longest start of ``t``'s prompt that another live request already holds in its KV (requests
        for one schema arriving together share template and hint before either is in the prefix cache). True if
        ``t`` should wait: an earlier request is still prefilling a longer shared start."""
        mine = np.asarray(t.job.tokens, dtype=np.int32)
        wait = False
        earlier = True      # _live is in admission order: only an earlier request is waited for (no cycles)
        for other in self._live:
            if other is t:
                earlier = False
                continue
            if not other.seq_ids:
                continue
            common = common_prefix(np.asarray(other.job.tokens[: len(mine) - 1], dtype=np.int32), mine)
            if common <= t.filled:
                continue
            held = min(common, other.filled)
            if held > t.filled:
                self.model.kv().seq_copy(other.seq_ids[0], t.seq_ids[0], t.filled, held)
                t.prefix_hit += held - t.filled
                t.filled = held
            if earlier and not other.decoding and _priority(other) <= _priority(t) \
                    and common - t.filled >= SHARE_WAIT_MIN:   # never wait on a request this one holds
                wait = True
        return wait

    def _groups(self, items: list[Any]) -> list[list[Any]]:
        """Split ``items`` into model calls of at most ``n_batch`` tokens (one item per call when deterministic)."""
        if self._deterministic:
            return [[item] for item in items]
        groups: list[list[Any]] = [[]]
        used = 0
        for item in items:
            size = len(item[2])
            if groups[-1] and used + size > self.model.n_batch:
                groups.append([])
                used = 0
            groups[-1].append(item)
            used += size
        return [g for g in groups if g]

    def _run_group(self, group: list[tuple[Ticket, decode.Sequence_ | None, list[int], int]]) -> None:
        try:
            wait = self.model.decode_async([(t.seq_ids[0] if s is None else s.seq, toks, pos,
                                             1 + len(s.draft) if s is not None else 1)
                                            for t, s, toks, pos in group])
        except StructgenError as exc:
            for t, *_ in group:
                if t in self._live:
                    self._finish(t, exc)
            return
        work: list[tuple[decode.Loop, decode.Sequence_]] = []
        for t, s, toks, _ in group:
            if s is not None:
                s.pos += len(toks)
                s.pending = []
                assert t.loop is not None
                work.append((t.loop, s))
        decode.prepare_many(work)   # overlaps the model step
        all_logits = wait()
        for (t, s, toks, _), logits in zip(group, all_logits, strict=True):
            if s is not None:
                assert t.loop is not None
                decode.guarded(s, t.loop.verify if s.draft else t.loop.step, logits)
                if not t.t_first_token and s.tokens:
                    t.t_first_token = time.perf_counter()
                continue
            t.filled += len(toks)
            if t.filled == len(t.job.tokens):
                t.first_logits = np.array(logits, copy=True)
                self._prompt_done(t)

    def _prompt_done(self, t: Ticket) -> None:
        now = time.perf_counter()
        t.prompt_ms = (now - t.t_admit) * 1000
        seq0 = t.seq_ids[0]
        n_prompt = len(t.job.tokens)
        if not self._deterministic:
            self.cache.insert(t.job.tokens, seq0, shared=t.job.shared, logits=t.first_logits)
        for dst in t.seq_ids[1:]:
            self.model.share(seq0, dst, n_prompt)
        self._begin_attempt(t)

    def _begin_attempt(self, t: Ticket) -> None:
        job = t.job
        try:
            job.wait_compiled()    # a model's first compile ran beside this prefill
        except Exception as exc:  # the caller gets the compile's error, as from a compile before submitting
            self._finish(t, exc if isinstance(exc, StructgenError) else
                         StructgenError(f"compiling the grammar failed: {exc!r}"))
            return
        t.seqs = sequences(job, t.attempt, t.seq_ids)
        rewindable = t.sink is None or job.request.max_attempts > 1   # a stream can then show a Reset
        t.loop = decode.Loop(self.model, t.seqs, sampling(job, t.attempt),
                             loop_options(self.model, job.request, job.n, t.attempt, rewindable))
        t.decoding = True
        t.t_decode = time.perf_counter()
        t.emitted = 0
        assert t.first_logits is not None
        for s in t.seqs:
            decode.guarded(s, t.loop.start, t.first_logits)
        if not t.t_first_token and any(s.tokens for s in t.seqs):
            t.t_first_token = time.perf_counter()

    def _attempt_done(self, t: Ticket) -> None:
        job, loop = t.job, t.loop
        assert loop is not None
        if t.sink is not None and job.n == 1:
            self._emit(t)
        loop.stats.decode_ms = (time.perf_counter() - t.t_decode) * 1000
        decode.close_truncated(self.model, t.seqs, loop.options)
        try:
            result = conclude(self.model, job, t.seqs, t.attempt, t.prompt_ms, loop.stats)
        except StructgenError as exc:
            self._finish(t, exc)
            return
        if result is not None:
            timings = result.timings
            timings.queue_ms = (t.t_admit - t.t_submit) * 1000
            timings.prefix_hit_tokens = t.prefix_hit
            timings.first_token_ms = (t.t_first_token - job.t_start) * 1000 if t.t_first_token else 0.0
            timings.prompt_ms = t.prompt_ms
            self._finish(t, result)
            return
        t.attempt += 1
        if t.attempt >= job.request.max_attempts:
            last = job.attempts[-1].error if job.attempts else "no attempt ran"
            self._finish(t, ValidationFailed(f"no valid output in {job.request.max_attempts} attempt(s): {last}",
                                             attempts=job.attempts))
            return
        n_prompt = len(job.tokens)
        for seq in t.seq_ids:       # keep the prompt's KV: the retry starts warm
            self.model.drop(seq, n_prompt)
        if t.sink is not None:
            t.sink.put(("reset", job.attempts[-1].error if job.attempts else "retry"))
        self._begin_attempt(t)

    def _emit(self, t: Ticket) -> None:
        """Send the first sequence's new tokens to the ticket's stream."""
        assert t.sink is not None
        s = t.seqs[0]
        if s.rewound:   # a back-off took back text already sent: the reader starts over from the kept text
            s.rewound = False
            t.sink.put(("reset", "a repetition loop was re-decided where it began"))
            t.emitted = 0
        end = len(s.tokens)
        if end > t.emitted:
            t.sink.put(("tokens", (s.tokens[t.emitted:end], s.logprobs[t.emitted:end], s.forced[t.emitted:end])))
            t.emitted = end

    def _finish(self, t: Ticket, outcome: Result[Any] | StructgenError) -> None:
        try:
            if t in self._live:
                self._since_compact += 1
                self._live.remove(t)
                seqs, t.seq_ids = t.seq_ids, []
                self._free.extend(seqs)
                if t.pin is not None:
                    self.cache.unpin(t.pin)
                    t.pin = None
                for seq in seqs:
                    self.model.drop(seq, 0)
        finally:   # the caller is never left waiting
            t.outcome = outcome
            if t.sink is not None:
                t.sink.put(("done", outcome))
            t.done.set()
            for callback in t.callbacks:
                try:
                    callback()
                except Exception as exc:   # a caller's callback must not take the engine down
                    self.last_error = exc


def _priority(t: Ticket) -> int:
    return t.job.request.priority
