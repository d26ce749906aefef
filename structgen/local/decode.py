"""The decode loop: logits → grammar mask → sampler → consume, for one or many sequences in one batch.

Each step, every live sequence samples one token from its masked distribution, then appends the tokens
its grammar forces after it (fast-forward: not sampled, probability 1, flagged ``forced``); all of that
goes to the model in one batched decode, so forced text costs no extra model step. While the model runs
(llama.cpp decodes asynchronously on a GPU) the loop computes each sequence's next mask, which depends
only on the grammar state, not on the logits. The loop fails closed: a matcher error, an empty mask or a
token the grammar rejects is a typed error, never unconstrained text.

A lone sequence may also send a draft after its tokens (``Loop.draft``, ``structgen.local.lookup``), verified row by
row (``Loop.verify``); and a sequence that starts repeating itself is taken back and re-decided in place (the
back-offs).

Why it is long: sampling, forced tokens, drafts and back-offs all move the same sequence's tokens, positions, KV and
grammar state in one step, and each must leave the others' bookkeeping exact; split apart they would share that state
through a wider interface than the loop itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from ..compile.matchers import Matcher, Vocab
from ..compile.number_bound import NumberRuns
from ..errors import GenerationError, InvalidArgument, TruncatedOutput
from ..request import SamplingParams
from .lookup import MAX_PROPOSALS, PromptLookup
from .repetition import LOOP_CHECK_EVERY, looping, repeat_start
from .restrict import only as _only
from .restrict import without as _without
from .sampler import sample_token

DecodeItem = tuple[int, Sequence[int], int] | tuple[int, Sequence[int], int, int]
"""``(seq, tokens, start_pos)``, or ``(seq, tokens, start_pos, rows)``: one sequence's part of a batched decode."""


def logit_rows(item: DecodeItem) -> int:
    """How many of a ``DecodeItem``'s last tokens want logits: its ``rows`` field, 1 when it has none."""
    return item[3] if len(item) > 3 else 1


class StepModel(Protocol):
    """What the loop needs from a model: batched decode of several sequences sharing one KV cache."""

    n_vocab: int
    eos_ids: tuple[int, ...]
    vocab: Vocab

    def prefill(self, tokens: Sequence[int]) -> NDArray[np.float32]:
        """Decode a prompt into sequence 0 (reusing any cached prefix); the last token's logits."""

    def fork(self, n_prompt: int, copies: int) -> None:
        """Share sequence 0's first ``n_prompt`` positions with sequences 1..copies-1."""

    def decode(self, items: Sequence[DecodeItem]) -> list[NDArray[np.float32]]:
        """Decode ``(seq, tokens, start_pos)`` items in one batch; the last token's logits of each item. An item
        may carry a fourth field, ``rows`` > 1: its last ``rows`` tokens' logits, as a ``(rows, n_vocab)`` array
        (a speculative draft's)."""

    def decode_async(self, items: Sequence[DecodeItem]) -> Callable[[], list[NDArray[np.float32]]]:
        """Start ``decode``; the returned function waits for the model and returns the logits."""

    def detokenize(self, tokens: Sequence[int]) -> str:
        """Token ids to text."""

    def drop(self, seq: int, start: int = 0) -> None:
        """Forget positions ``start``.. of sequence ``seq`` (a back-off re-decides from there)."""


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
    top_logprobs: list[list[tuple[int, float]]] = field(default_factory=list)   # when asked for (LoopOptions)
    counts: NDArray[np.int32] | None = None
    finish_reason: str | None = None
    error: Exception | None = None
    pending: list[int] = field(default_factory=list)      # tokens to decode next
    looped: bool = False                                  # cut short by the loop detector
    allowed: NDArray[np.intp] | None = None               # next mask as token ids, computed ahead...
    blocked: NDArray[np.intp] | None = None               # ...or, when most tokens are allowed, the others
    validated: bool = False                               # its finished text was checked (select="first_finished")
    numbers: NumberRuns | None = None                     # JSON output: where its digit runs stand (the bound)
    origin: int = -1                                      # the prompt's length: position of tokens[0]
    bans: dict[int, set[int]] = field(default_factory=dict)   # position -> tokens a back-off ruled out there
    ends: set[int] = field(default_factory=set)           # positions where a JSON string is to end if it may
    backoffs: int = 0                                     # back-offs from a repetition loop so far
    discarded: int = 0                                    # tokens decoded, then dropped by back-offs
    rewound: bool = False                                 # a back-off dropped tokens not yet streamed out
    next_check: int = 0                                   # token count at which the loop test runs next
    params: SamplingParams | None = None                  # its own sampling settings after a back-off
    context: Sequence[int] = ()                           # the prompt's tokens (where drafts are looked up)
    lookup: PromptLookup | None = None                    # the n-gram index of context + tokens, made on first use
    draft: list[int] = field(default_factory=list)        # tokens decoded after ``pending`` on speculation

    @property
    def live(self) -> bool:
        """Still generating."""
        return self.finish_reason is None and self.error is None


@dataclass(slots=True)
class LoopStats:
    """Time spent in the loop."""

    decode_ms: float = 0.0
    mask_ms: float = 0.0
    drafted: int = 0              # tokens decoded on speculation (``Loop.draft``)
    accepted: int = 0             # of those, kept: the sampler picked them


@dataclass(frozen=True, slots=True)
class LoopOptions:
    """Knobs of the loop."""

    max_tokens: int = 512
    fast_forward: bool = True
    model_logprobs: bool = False
    one_sequence_per_decode: bool = False   # batch-invariant mode: never co-batch sequences
    max_batch: int = 512
    cut_loops: bool = False                 # end a sequence as soon as it falls into a repetition loop
    back_off: int = 0                       # re-decide up to this many repetition loops where they began
    top_logprobs: int = 0                   # alternatives recorded per sampled token (0: none)
    number_digits: int = 0                  # JSON output: bound on digit runs of numbers (0: none; number_bound)
    speculate: int = 0                      # draft tokens verified in a lone sequence's step (0: none; lookup)


class Loop:
    """The per-token moves of one set of sequences sharing sampling settings (one attempt of one request).

    ``run`` drives it for a lone request; the scheduler drives one ``Loop`` per admitted request and batches
    their model steps together.
    """

    def __init__(self, model: StepModel, seqs: list[Sequence_], params: SamplingParams,
                 options: LoopOptions) -> None:
        self.model = model
        self.seqs = seqs
        self.params = params
        self.options = options
        self.n_vocab = model.n_vocab
        self.eos = frozenset(model.eos_ids)
        self.mask = np.empty((model.n_vocab + 31) // 32, dtype=np.int32)
        # Forced tokens of all sequences share one batch; each gets an equal slice of it.
        self.forced_cap = max(0, options.max_batch // max(1, len(seqs)) - 1)
        self.stats = LoopStats()
        for s in seqs:
            if s.origin < 0:
                s.origin = s.pos
            s.next_check = len(s.tokens) + LOOP_CHECK_EVERY
        if params.has_penalties:
            for s in seqs:
                s.counts = np.zeros(model.n_vocab, dtype=np.int32)
        self.texts: Sequence[bytes] = ()
        self.lead = np.zeros(0, dtype=np.int16)
        self.closers = self.enders = np.zeros(0, dtype=np.intp)
        if options.number_digits:
            self.texts, self.lead = model.vocab.texts(), model.vocab.leading_digits()
            if options.back_off:
                self.closers, self.enders = model.vocab.string_closers(), model.vocab.string_enders()
            for s in seqs:
                s.numbers = NumberRuns(options.number_digits)

    def start(self, s: Sequence_, logits: NDArray[np.float32]) -> None:
        """First move after the prompt: take forced tokens if the grammar begins with some, else sample."""
        m = s.matcher
        if m is not None and self.options.fast_forward:
            if m.is_stopped():
                self._finish_stopped(s, m)
                return
            forced = self._take_forced(s, m)
            if forced:
                s.pending = forced
                self._check_room(s, m)
                return
        self.step(s, logits)

    def draft(self, s: Sequence_) -> list[int]:
        """Up to ``options.speculate`` tokens to decode after ``s.pending`` in the same model step, guessed from
        ``s``'s own context (``lookup``) and cut where the grammar (if any) would refuse them; [] for none.
        ``verify`` then reads the step's logits row by row."""
        m = s.matcher
        k = min(self.options.speculate, self.options.max_tokens - len(s.tokens))
        n_ctx = getattr(self.model, "n_ctx", None)   # a draft past the context would fail the whole step
        if isinstance(n_ctx, int):
            k = min(k, n_ctx - s.pos - len(s.pending))
        if k <= 0 or not s.live or not s.pending or (m is not None and m.is_stopped()):
            return []
        if s.lookup is None:
            tokenize = getattr(self.model, "tokenize", None)
            s.lookup = PromptLookup(s.context, texts=self.model.vocab.texts() if tokenize else None,
                                    tokenize=(lambda text: tokenize(text, special=False)) if tokenize else None)
        best: list[int] = []
        # Text the grammar forces but leaves the tokens of to the model (a key's ``":"``) first: spelled as before.
        forced = m.forced_bytes() if m is not None else b""
        guesses = s.lookup.proposals(s.tokens, k, s.backoffs, limit=1 if m is None else MAX_PROPOSALS)
        if forced:
            guesses = chain([s.lookup.spelling(forced, s.tokens, k, s.backoffs)], guesses)
        for guess in guesses:
            for i, token in enumerate(guess):
                if token in self.eos:
                    del guess[i:]
                    break
            if m is not None:
                del guess[m.valid_prefix(guess):]
            if len(guess) > len(best):
                best = guess
                if len(best) == k:
                    break
        return best

    def verify(self, s: Sequence_, rows: NDArray[np.float32]) -> None:
        """``step`` over a speculative model step: ``rows[0]`` are the logits after ``s.pending``'s last token,
        ``rows[j]`` after the draft's ``j``-th. Each row is sampled exactly as a step of its own would sample it;
        drafted tokens are kept while the picks (and the tokens the grammar forces after them) agree with them, and
        the KV of the rest is dropped. From the same logits, the same picks as without the draft."""
        draft, s.draft = s.draft, []
        base = s.pos - len(draft)       # the draft's first position: ``s.pos`` was advanced past the whole step
        kept = 0
        while True:
            s.pos = base + kept
            backoffs = s.backoffs
            self.step(s, rows[kept])
            if not s.live or s.backoffs != backoffs:
                break                   # ended, failed, or taken back (the back-off has set the KV and pending)
            new = s.pending
            same = 0
            while same < len(new) and kept + same < len(draft) and new[same] == draft[kept + same]:
                same += 1
            kept += same
            if same < len(new):         # the pick, or what the grammar forced after it, left the draft
                s.pending = new[same:]
                break
            s.pending = []              # all of it already in the KV: the next row says what follows
        self.stats.drafted += len(draft)
        self.stats.accepted += kept
        if s.backoffs == backoffs:
            s.pos = base + kept
            if kept < len(draft):
                self.model.drop(s.seq, s.pos)

    def wants_mask(self, s: Sequence_) -> bool:
        """True if ``s`` samples again and so needs its next mask."""
        m = s.matcher
        return m is not None and s.live and not m.is_stopped()

    def prepare(self, s: Sequence_) -> None:
        """Compute the next mask ahead of the logits (called while the model step runs)."""
        m = s.matcher
        if m is None or not self.wants_mask(s):
            return
        t0 = time.perf_counter()
        m.fill_mask(self.mask)
        s.allowed, s.blocked = candidates(self.mask, self.n_vocab)
        self.stats.mask_ms += (time.perf_counter() - t0) * 1000

    def step(self, s: Sequence_, logits: NDArray[np.float32]) -> None:
        """Sample one token, then take what the grammar forces after it; sets ``s.pending``."""
        m = s.matcher
        if m is not None and m.is_stopped():
            self._finish_stopped(s, m)
            return
        if m is not None and s.allowed is None and s.blocked is None:
            self.prepare(s)
        ids, blocked = s.allowed, s.blocked
        s.allowed = s.blocked = None
        room = s.numbers.room() if s.numbers is not None else None
        if room is not None:
            ids, blocked = self._bound_digits(ids, blocked, room)
        if s.bans:
            ids, blocked = _without(ids, blocked, s.bans.get(len(s.tokens)))
        if len(s.tokens) in s.ends:
            ids, blocked = _only(ids, blocked, self.enders)
        if blocked is not None:
            cand = np.array(logits, copy=True)   # most tokens allowed: mask the few others in place
            cand[blocked] = -np.inf
        elif m is not None:
            assert ids is not None
            if ids.size == 0:
                raise GenerationError(f"the grammar allows no next token: {m.error() or 'dead end'}")
            cand = logits[ids]
        else:
            cand = np.array(logits, copy=True) if self.options.model_logprobs else logits
        lse = _logsumexp(logits) if self.options.model_logprobs else 0.0
        counts = s.counts if (s.counts is None or ids is None) else s.counts[ids]
        try:
            index, logprob = sample_token(cand, s.rng, s.params or self.params, counts)
        except InvalidArgument as exc:
            raise GenerationError(f"the model produced unusable logits: {exc}") from exc
        token = int(ids[index]) if ids is not None else index
        if self.options.top_logprobs:
            s.top_logprobs.append(_top(cand, ids, self.options.top_logprobs))
        if token in self.eos:
            if m is None or m.is_accepting():
                s.finish_reason = "stop"
                return
            raise GenerationError("EOS was sampled before the grammar was complete")
        if m is not None and not m.consume(token):
            raise GenerationError(f"the grammar rejected a token from its own mask: {m.error()}")
        s.tokens.append(token)
        if s.numbers is not None:
            s.numbers.feed(self.texts[token])
        s.logprobs.append(logprob)
        s.model_logprobs.append(float(logits[token]) - lse if self.options.model_logprobs else None)
        s.forced.append(False)
        if s.counts is not None:
            s.counts[token] += 1
        s.pending = [token]
        if (s.numbers is not None and s.numbers.stray and s.backoffs < self.options.back_off
                and self._stray_closer(s)):
            return
        if self._repeated_item(s):
            return
        if self._check_room(s, m) and m is not None and self.options.fast_forward:
            s.pending += self._take_forced(s, m)
            if self._repeated_item(s):
                return
            self._check_room(s, m)
        if s.live and m is not None and m.is_stopped():
            self._finish_stopped(s, m)  # complete: what is pending need not be decoded
        elif s.live and len(s.tokens) >= s.next_check:
            s.next_check = len(s.tokens) + LOOP_CHECK_EVERY
            if s.backoffs < self.options.back_off and self._back_off(s):
                return
            if self.options.cut_loops and looping(s.tokens):
                s.finish_reason = "truncated"   # a loop forming: end this attempt now, not at max_tokens
                s.looped = True

    def _back_off(self, s: Sequence_) -> bool:
        """If ``s`` is starting to repeat itself, take its text back to the least sure token of the first repeat and
        rule that token out there: the loop is re-decided where it began, the text before it kept (no new attempt).
        From there on it decodes as a retry would (a frequency penalty per back-off). False (nothing changed) when
        there is no repeat, or no token of it that had an alternative."""
        r = repeat_start(s.tokens, s.logprobs, s.forced)
        if r is None or not self._rewind(s, r, {s.tokens[r]}):
            return False
        self._penalise(s)
        return True

    def _penalise(self, s: Sequence_) -> None:
        """After a back-off from a repeat, ``s`` decodes as a retry would: with a frequency penalty per back-off."""
        s.params = self.params.after_cut(s.backoffs)
        if s.params.has_penalties and s.counts is None:
            s.counts = np.bincount(np.asarray(s.tokens, dtype=np.intp), minlength=self.n_vocab).astype(np.int32)

    def _repeated_item(self, s: Sequence_) -> bool:
        """If the text just written closed an array item that repeats an earlier item of the same array
        (``NumberRuns.repeated``), take ``s`` back to the last sampled token at or before the one that opened the
        copy (the choice to write another item: a ``,`` or ``","``), rule that token out there and go on as after a
        repeat. False (nothing changed) when there is no such item or no back-off left."""
        back = s.numbers.repeated if s.numbers is not None else 0
        if not back or s.backoffs >= self.options.back_off:
            return False
        r, covered = len(s.tokens), 0
        while r > 0 and covered < back:
            r -= 1
            covered += len(self.texts[s.tokens[r]])
        while r > 0 and s.forced[r]:
            r -= 1
        if r <= 0 or not self._rewind(s, r, {s.tokens[r]}):
            return False
        self._penalise(s)
        return True

    def _stray_closer(self, s: Sequence_) -> bool:
        """Take back the token just sampled if it closed a bracket inside a JSON string that the string never
        opened: the model writing ``}}`` as if the value had ended (it would then write prose into the string
        until max_tokens). There the string ends instead, if the grammar lets it; else every token that would close
        a bracket the same way is ruled out."""
        r = len(s.tokens) - 1
        if r <= 0 or not self._rewind(s, r, self.closers):
            return False
        s.ends.add(r)
        return True

    def _rewind(self, s: Sequence_, r: int, banned: set[int] | NDArray[np.intp]) -> bool:
        """Take ``s`` back to ``r`` tokens and rule ``banned`` out at position ``r`` (one back-off)."""
        m = s.matcher
        dropped = len(s.tokens) - r
        if m is not None and not m.rollback(dropped):
            return False
        if s.counts is not None:
            np.subtract.at(s.counts, s.tokens[r:], 1)
        del s.tokens[r:], s.logprobs[r:], s.model_logprobs[r:], s.forced[r:], s.top_logprobs[r:]
        if s.numbers is not None:
            s.numbers = NumberRuns(self.options.number_digits)
            s.numbers.feed(b"".join(self.texts[token] for token in s.tokens))
        s.bans = {p: b for p, b in s.bans.items() if p < r}
        s.ends = {p for p in s.ends if p < r}
        s.bans[r] = s.bans.get(r, set()) | {int(t) for t in banned}
        s.backoffs += 1
        s.discarded += dropped
        s.rewound = True
        s.next_check = r + LOOP_CHECK_EVERY
        # The KV keeps what was decoded before token r-1; that token is decoded again for the logits at r.
        kept = min(r - 1, s.pos - s.origin)
        self.model.drop(s.seq, s.origin + kept)
        s.pos = s.origin + kept
        s.pending = s.tokens[kept:r]
        s.allowed = s.blocked = None
        return True

    def _bound_digits(self, ids: NDArray[np.intp] | None, blocked: NDArray[np.intp] | None,
                      room: int) -> tuple[NDArray[np.intp] | None, NDArray[np.intp] | None]:
        """Drop the tokens that would make the current digit run longer than the bound, unless none would be left
        (the grammar then needs those digits: a schema's own literal, say)."""
        if ids is not None:
            keep = self.lead[ids] <= room
            return (ids[keep] if keep.any() else ids), blocked
        if blocked is None:
            return ids, blocked
        over = np.flatnonzero(self.lead > room)
        if over.size == 0:
            return ids, blocked
        more = np.union1d(blocked, over)
        return ids, (more if more.size < self.n_vocab else blocked)

    def _take_forced(self, s: Sequence_, m: Matcher) -> list[int]:
        forced = m.forced_tokens()
        if not forced:
            return []
        forced = forced[: max(0, min(self.options.max_tokens - len(s.tokens), self.forced_cap))]
        if not forced:
            return []
        if m.consume_many(forced) != len(forced):
            raise GenerationError(f"grammar engine rejected its own forced tokens: {m.error()}")
        s.tokens.extend(forced)
        if s.numbers is not None:
            s.numbers.feed(b"".join(self.texts[token] for token in forced))
        s.logprobs.extend([0.0] * len(forced))
        s.model_logprobs.extend([None] * len(forced))
        s.forced.extend([True] * len(forced))
        if self.options.top_logprobs:
            s.top_logprobs.extend([[(t, 0.0)] for t in forced])
        if s.counts is not None:
            np.add.at(s.counts, forced, 1)
        return forced

    def _check_room(self, s: Sequence_, m: Matcher | None) -> bool:
        """True if ``s`` may go on; at max_tokens, a complete grammar ends cleanly, anything else is truncated."""
        if len(s.tokens) < self.options.max_tokens:
            return True
        if m is None:
            s.finish_reason = "length"
        elif m.is_accepting():
            s.finish_reason = "stop" if m.is_stopped() else "length"
        else:
            s.finish_reason = "truncated"
        return False

    @staticmethod
    def _finish_stopped(s: Sequence_, m: Matcher) -> None:
        err = m.error()
        if err:
            raise GenerationError(f"grammar engine error: {err.splitlines()[0]}")
        s.finish_reason = "stop"


def candidates(mask: NDArray[np.int32], n_vocab: int) -> tuple[NDArray[np.intp] | None, NDArray[np.intp] | None]:
    """A token bitmask as ``(allowed ids, None)``, or as ``(None, blocked ids)`` when most words are all ones (a
    string's body): the shorter list. When few words are mixed (neither all zeros nor all ones) only those are
    read, so the cost follows the mask's edges, not the vocabulary; when they are everywhere (a length-bounded
    string, a number), the whole mask is unpacked at once, which is then cheaper than indexing word by word.
    Ids ascend, so samplers see candidates in token order."""
    full = mask == -1
    dense = 2 * int(np.count_nonzero(full)) >= mask.size
    words = np.flatnonzero(~full if dense else mask)
    if words.size * WHOLE_MASK_FROM > mask.size:
        every = np.unpackbits(mask.view(np.uint8), bitorder="little", count=n_vocab)
        return (None, np.flatnonzero(every == 0)) if dense else (np.flatnonzero(every), None)
    bits = np.unpackbits(mask[words].view(np.uint8).reshape(-1, 4), axis=1, bitorder="little")
    rows, cols = np.nonzero(bits == 0 if dense else bits)
    ids = words[rows] * 32 + cols
    ids = ids[ids < n_vocab]    # the last word's padding bits
    return (None, ids) if dense else (ids, None)


WHOLE_MASK_FROM = 8
"""``candidates`` unpacks the whole mask once the words it would read pass 1/8 of the mask (measured on masks of the
concurrency bench's schemas: 35 µs a mask on average, against 83 µs reading the words one by one)."""


def prepare_many(work: Sequence[tuple[Loop, Sequence_]]) -> None:
    """``Loop.prepare`` for many sequences (of any loops) at once. Matchers whose class can fill a batch of
    masks in one call (``fill_masks``: llguidance's, in parallel without the GIL) do so, which on a many-core
    host keeps the per-sequence cost of a batched step low; the others, or a batch that fails, go one by one."""
    batches: dict[type, list[tuple[Loop, Sequence_]]] = {}
    for loop, s in work:
        if not loop.wants_mask(s):
            continue
        if len(work) > 1 and hasattr(type(s.matcher), "fill_masks"):
            batches.setdefault(type(s.matcher), []).append((loop, s))
        else:
            guarded(s, loop.prepare)
    for kind, group in batches.items():
        if len(group) == 1 or not _fill_batch(kind, group):
            for loop, s in group:
                guarded(s, loop.prepare)


def _fill_batch(kind: type, group: list[tuple[Loop, Sequence_]]) -> bool:
    t0 = time.perf_counter()
    first = group[0][0]
    rows = np.empty((len(group), first.mask.size), dtype=np.int32)
    try:
        kind.fill_masks([s.matcher for _, s in group], rows)  # type: ignore[attr-defined]
    except Exception:  # one bad matcher must not fail the others: redo them one by one
        return False
    for i, (_, s) in enumerate(group):
        s.allowed, s.blocked = candidates(rows[i], first.n_vocab)
    share = (time.perf_counter() - t0) * 1000 / len(group)
    for loop, _ in group:
        loop.stats.mask_ms += share
    return True


def run(
    model: StepModel,
    seqs: list[Sequence_],
    first_logits: NDArray[np.float32] | Mapping[int, NDArray[np.float32]],
    params: SamplingParams,
    options: LoopOptions,
) -> LoopStats:
    """Generate every sequence to its end; results (or a typed error) are left in each ``Sequence_``.

    ``first_logits``: the prompt's last logits, shared by all sequences (best-of-n over one prompt), or
    one array per sequence id (different prompts decoded into different sequences).
    """
    loop = Loop(model, seqs, params, options)
    start = time.perf_counter()
    for s in seqs:
        logits = first_logits[s.seq] if isinstance(first_logits, Mapping) else first_logits
        guarded(s, loop.start, logits)
    while True:
        ready = [s for s in seqs if s.live and s.pending]
        if not ready:
            break
        groups = [[s] for s in ready] if options.one_sequence_per_decode else [ready]
        for group in groups:
            if len(group) == 1:
                group[0].draft = loop.draft(group[0])
            wait = model.decode_async([(s.seq, s.pending + s.draft, s.pos, 1 + len(s.draft)) for s in group])
            for s in group:
                s.pos += len(s.pending) + len(s.draft)
                s.pending = []
            prepare_many([(loop, s) for s in group])  # overlaps the model step
            for s, logits in zip(group, wait(), strict=True):
                guarded(s, loop.verify if s.draft else loop.step, logits)
    loop.stats.decode_ms = (time.perf_counter() - start) * 1000
    close_truncated(model, seqs, options)
    return loop.stats


def close_truncated(model: StepModel, seqs: Sequence[Sequence_], options: LoopOptions) -> None:
    """Turn every sequence that ended without completing its grammar into a ``TruncatedOutput`` error."""
    for s in seqs:
        if s.error is None and s.finish_reason == "truncated":
            looped = s.looped or looping(s.tokens)
            if s.looped:
                message = f"cut after {len(s.tokens)} tokens: the output fell into a repetition loop"
            else:
                message = f"max_tokens={options.max_tokens} ran out before the output was complete"
                if looped:
                    message += "; it ends in a repetition loop"
            s.error = TruncatedOutput(message, partial_text=model.detokenize(s.tokens), tokens=s.tokens,
                                      looped=looped)


def guarded(s: Sequence_, action: Callable[..., None], *args: NDArray[np.float32]) -> None:
    """Run one action for ``s``; a typed generation error ends that sequence only."""
    try:
        action(s, *args)
    except GenerationError as exc:
        s.error = exc
        s.pending = []


def _logsumexp(x: NDArray[np.float32]) -> float:
    top = float(x.max())
    return top + float(np.log(np.exp(x - top, dtype=np.float64).sum()))


def _top(cand: NDArray[np.float32], ids: NDArray[np.intp] | None, k: int) -> list[tuple[int, float]]:
    """The ``k`` likeliest candidates (token id, logprob at temperature 1 of the penalised, masked logits), best
    first: the alternatives OpenAI's ``top_logprobs`` reports."""
    k = min(k, cand.size)
    best = np.argpartition(-cand, k - 1)[:k] if k < cand.size else np.arange(cand.size)
    best = best[np.argsort(-cand[best], kind="stable")]
    lse = _logsumexp(cand)
    return [(int(ids[i]) if ids is not None else int(i), float(cand[i]) - lse) for i in best]
