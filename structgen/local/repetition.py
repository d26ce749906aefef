"""Repetition in a sequence being generated: the loops a small model falls into (``"JYMJYMJYM..."``, a schema echoed
forever, an array item written again and again), found at the end of its tokens.

Two tests on the same scan (``periodic_tail``): ``repeat_start``, early, says where the decode loop should take a
sequence back to and re-decide (``decode.Loop``'s back-off); ``looping``, later, says the attempt is lost (it is cut
and retried, or reported as ``TruncatedOutput(looped=True)``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

__all__ = ["LOOP_CHECK_EVERY", "LOOP_MAX_PERIOD", "LOOP_MIN_SPAN", "REPEAT_MIN_SPAN", "REPEAT_SHORT", "looping",
           "periodic_tail", "repeat_start"]

LOOP_MIN_SPAN = 48
"""A loop is one block of tokens repeated over at least this many tokens (and at least three times)."""
LOOP_MAX_PERIOD = 64
LOOP_CHECK_EVERY = 4
"""The loop tests run once this many more tokens are written (each costs ~30 µs)."""
REPEAT_MIN_SPAN = 12
"""A back-off starts once one block repeats over this many tokens: earlier than a cut, as it keeps the text before
the repeat. The block must be written three times if it is short (``REPEAT_SHORT``), twice if longer."""
REPEAT_SHORT = 8


def periodic_tail(tokens: Sequence[int], min_span: int, copies: int | Callable[[int], int]) -> tuple[int, int] | None:
    """``(start, period)`` when ``tokens`` ends in one block of at most ``LOOP_MAX_PERIOD`` tokens written
    ``copies`` times or more (a number, or a function of the block's length) over at least ``min_span`` tokens;
    ``start`` is where the repeated run begins (its first copy), ``period`` the block's length. None otherwise."""
    n = len(tokens)
    for period in range(1, LOOP_MAX_PERIOD + 1):
        span = max(min_span, (copies(period) if callable(copies) else copies) * period)
        if span > n:
            continue
        tail = tokens[-span:]
        if tail[period:] == tail[:-period]:
            start = n - span
            while start > 0 and tokens[start - 1] == tokens[start - 1 + period]:
                start -= 1
            return start, period
    return None


def looping(tokens: Sequence[int]) -> bool:
    """True when ``tokens`` ends in one block of at most ``LOOP_MAX_PERIOD`` tokens repeated over at least
    ``LOOP_MIN_SPAN`` tokens: a model caught in a loop (``"JYMJYMJYM..."``, a schema echoed forever)."""
    return periodic_tail(tokens, LOOP_MIN_SPAN, 3) is not None


def repeat_start(tokens: Sequence[int], logprobs: Sequence[float], forced: Sequence[bool]) -> int | None:
    """Where to re-decide a repeat that ``tokens`` ends in: of the tokens of its second copy (one of each position
    in the block, whatever the phase), the sampled one the model was least sure of. None when there is no repeat
    of at least ``REPEAT_MIN_SPAN`` tokens, or every token of the copy was forced or certain."""
    found = periodic_tail(tokens, REPEAT_MIN_SPAN, lambda period: 3 if period <= REPEAT_SHORT else 2)
    if found is None:
        return None
    start, period = found
    best, best_lp = None, -1e-6
    for i in range(start + period, start + 2 * period):
        if not forced[i] and logprobs[i] < best_lp:
            best, best_lp = i, logprobs[i]
    return best
