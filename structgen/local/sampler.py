"""Token sampling for the decode loop: penalties, temperature, top-k / top-p / min-p, one seeded draw.

Pure numpy, called once per generated token on the candidate logits the grammar mask allows (1 to ~262k
entries), so every step is vectorised and the expensive ones are skipped when they are switched off::

    penalties -> temperature (0 = greedy) -> top-k -> top-p -> min-p -> renormalise -> draw

``sample_token`` is what the decode loop calls; the other public functions expose the individual steps
(each returns a new array with dropped candidates set to ``-inf``) and share their kernels with it.

Determinism: ties are always broken towards the lowest candidate index, the only randomness is one
``rng.random()`` per sampled token, and the draw is an inverse CDF over the surviving candidates in
ascending index order, so a given seed picks the same token on every platform.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import InvalidArgument
from ..request import SamplingParams, in_range, non_negative_int

__all__ = [
    "apply_penalties",
    "apply_temperature",
    "log_softmax",
    "min_p_filter",
    "sample_token",
    "top_k_filter",
    "top_p_filter",
]

# Smallest positive float32 normal: temperatures below it are clamped to it (T -> 0+ is the same limit).
_TINY_TEMPERATURE = float(np.finfo(np.float32).tiny)
# How many of the largest weights top-p looks at first; grown 16x until they hold the requested mass.
_NUCLEUS_PROBE = 1024
# Above this many survivors the inverse CDF goes in two levels: block masses, then one block.
_DRAW_BLOCK = 4096


# ----------------------------------------------------------------------------------------------------
# Individual steps
# ----------------------------------------------------------------------------------------------------


def apply_penalties(logits: NDArray[np.float32], counts: NDArray[np.integer[Any]],
                    params: SamplingParams) -> None:
    """Penalise, in place, the candidates already generated (``counts > 0``); the others are untouched.

    ``logits`` and ``counts`` are aligned 1-D arrays over the same candidate tokens. For each candidate
    with count c > 0, in this order (as llama.cpp does):

    * repetition: ``logit / repetition_penalty`` if logit > 0 else ``logit * repetition_penalty``;
    * frequency:  ``logit -= frequency_penalty * c``;
    * presence:   ``logit -= presence_penalty``.

    >>> x = np.array([2.0, -1.0, 3.0], dtype=np.float32)
    >>> apply_penalties(x, np.array([1, 2, 0]), SamplingParams(repetition_penalty=2.0, frequency_penalty=0.5))
    >>> x.tolist()      # 2/2 - 0.5*1, -1*2 - 0.5*2, untouched
    [0.5, -3.0, 3.0]
    """
    # Nothing switched on: not even the counts are read.
    if not params.has_penalties:
        return
    counts = np.asarray(counts)
    _check_penalty_inputs(logits, counts)
    # Work on the seen candidates only: usually a few hundred among tens of thousands.
    seen = counts.nonzero()[0]
    if seen.size == 0:
        return
    c = counts[seen]
    if np.any(c < 0):
        raise InvalidArgument("counts must be >= 0")
    x = logits[seen]
    # Repetition penalty: pushes a seen logit towards (if positive) or further below (if negative) zero.
    if params.repetition_penalty != 1.0:
        x = np.where(x > 0, x / params.repetition_penalty, x * params.repetition_penalty)
    # Frequency penalty: grows with the number of occurrences.
    if params.frequency_penalty != 0.0:
        x = x - params.frequency_penalty * c
    # Presence penalty: a flat amount once a token has occurred at all.
    if params.presence_penalty != 0.0:
        x = x - params.presence_penalty
    logits[seen] = x


def _check_penalty_inputs(logits: NDArray[Any], counts: NDArray[Any]) -> None:
    """InvalidArgument unless logits is a 1-D float array and counts an integer array of its shape."""
    if not isinstance(logits, np.ndarray) or logits.dtype.kind != "f" or logits.ndim != 1:
        raise InvalidArgument("logits must be a 1-D float numpy array (penalties are applied in place)")
    if counts.dtype.kind not in "iu":
        raise InvalidArgument(f"counts must be integers, got dtype {counts.dtype}")
    if counts.shape != logits.shape:
        raise InvalidArgument(f"counts has shape {counts.shape} but logits has shape {logits.shape}")


def apply_temperature(logits: NDArray[np.float32], temperature: float) -> NDArray[np.float32]:
    """``logits / temperature`` as a new float32 array; ``temperature`` must be > 0 (0 means greedy,
    which ``sample_token`` handles without dividing).

    Temperatures below float32's smallest normal (~1.2e-38) are clamped to it; values that overflow
    become +-inf. ``sample_token`` subtracts the maximum first, so it never overflows upwards.

    >>> apply_temperature(np.array([2.0, 1.0, 0.0], dtype=np.float32), 0.5).tolist()
    [4.0, 2.0, 0.0]
    """
    t = in_range("temperature", temperature, 0.0, math.inf, lo_open=True, hi_open=True)
    x = _as_logits(logits)
    _checked_max(x)
    with np.errstate(over="ignore"):
        return _scale(x.copy(), t)


def top_k_filter(logits: NDArray[np.float32], k: int) -> NDArray[np.float32]:
    """Keep the ``k`` largest logits, set the others to -inf; ``k`` = 0 or >= len keeps everything.

    Ties at the boundary are kept lowest index first, so exactly k candidates survive.

    >>> top_k_filter(np.array([1.0, 3.0, 2.0, 3.0], dtype=np.float32), 2).tolist()
    [-inf, 3.0, -inf, 3.0]
    >>> top_k_filter(np.array([1.0, 2.0, 2.0, 2.0], dtype=np.float32), 2).tolist()  # tie: lowest first
    [-inf, 2.0, 2.0, -inf]
    """
    k = non_negative_int("top_k", k)
    x = _as_logits(logits)
    _checked_max(x)
    if k == 0 or k >= x.size:
        return x.copy()
    return _keep_only(x, _top_k_indices(x, k))


def top_p_filter(logits: NDArray[np.float32], p: float) -> NDArray[np.float32]:
    """Nucleus filter: keep the smallest set of candidates, taken by descending probability (ties lowest
    index first), whose probability mass is >= ``p``; the others become -inf. The most probable
    candidate is always kept; ``p`` = 1 keeps everything.

    >>> x = np.log(np.array([0.1, 0.6, 0.3], dtype=np.float32))
    >>> np.isfinite(top_p_filter(x, 0.8)).tolist()    # 0.6 < 0.8 <= 0.6 + 0.3
    [False, True, True]
    """
    p = in_range("top_p", p, 0.0, 1.0, lo_open=True)
    x = _as_logits(logits)
    _, top = _checked_max(x)
    if p == 1.0:
        return x.copy()
    with np.errstate(over="ignore"):
        w = _weights(x, top, 1.0)
    c, kth = _nucleus(w, p)
    return _keep_only(x, _top_k_indices(w, c, kth))


def min_p_filter(logits: NDArray[np.float32], p: float) -> NDArray[np.float32]:
    """Set to -inf every candidate whose probability is < ``p`` times the largest probability
    (i.e. whose logit is more than ``-log(p)`` below the maximum); ``p`` = 0 keeps everything.

    >>> x = np.log(np.array([0.5, 0.3, 0.04, 0.16], dtype=np.float32))
    >>> np.isfinite(min_p_filter(x, 0.1)).tolist()     # threshold 0.1 * 0.5 = 0.05
    [True, True, False, True]
    """
    p = in_range("min_p", p, 0.0, 1.0, hi_open=True)
    x = _as_logits(logits)
    _, top = _checked_max(x)
    if p == 0.0:
        return x.copy()
    with np.errstate(over="ignore"):
        w = _weights(x, top, 1.0)
    return _keep_only(x, (w >= p).nonzero()[0])


def log_softmax(logits: NDArray[np.float32]) -> NDArray[np.float64]:
    """Numerically stable ``log(softmax(logits))`` in float64; -inf entries stay -inf.

    Computed as ``x - max - log(sum(exp(x - max)))``, which never overflows.

    >>> np.round(log_softmax(np.array([0.0, 0.0], dtype=np.float32)), 6).tolist()   # log(1/2)
    [-0.693147, -0.693147]
    """
    x = np.asarray(logits, dtype=np.float64)
    _check_shape(x)
    _, top = _checked_max(x)
    with np.errstate(over="ignore"):
        shifted = x - top
    return shifted - math.log(float(np.exp(shifted).sum()))


# ----------------------------------------------------------------------------------------------------
# The sampler
# ----------------------------------------------------------------------------------------------------


def sample_token(
    logits: NDArray[np.float32],
    rng: np.random.Generator,
    params: SamplingParams,
    counts: NDArray[np.integer[Any]] | None = None,
) -> tuple[int, float]:
    """Choose one candidate; returns ``(index into logits, its logprob)``.

    ``logits``: 1-D candidate logits (the grammar mask already removed forbidden tokens); penalties are
    applied to it in place (to a float32 copy if it is of another dtype). ``counts``: how often each
    candidate was already generated, aligned with ``logits`` (None = no penalties). ``rng``: the
    sequence's generator, read once per sampled token.

    Steps: penalties -> temperature (0 = greedy argmax, ties to the lowest index; no random number is
    drawn) -> top-k -> top-p -> min-p -> renormalise -> draw. The draw takes ``u = rng.random()`` and
    returns the first surviving candidate, in ascending index order, whose cumulative probability
    (``np.cumsum``, ``np.searchsorted``) exceeds u, so a seed gives the same token on every platform
    (short of a u that falls within float rounding of a CDF step).

    The returned logprob is the log-softmax **at temperature 1 of the penalised logits**, i.e. of the
    model's constrained distribution *before* temperature and truncation, at the chosen index. It is
    what best-of-n selection averages, is comparable across sampling settings, and is meaningful at
    temperature 0 too (it is not the log of the probability the token was drawn with).

    Raises InvalidArgument for empty or non-1-D logits, NaN or +inf logits (a backend bug must not be
    sampled silently), all -inf logits, and counts that do not match.

    >>> rng = np.random.default_rng(0)
    >>> i, lp = sample_token(np.array([1.0, 3.0, 3.0], dtype=np.float32), rng, SamplingParams())
    >>> i, round(lp, 4)         # greedy, tie -> index 1; -log(2 + e^-2) = -0.7586
    (1, -0.7586)
    """
    x = _as_logits(logits)
    # 1. Penalties, in place (the logprob is taken after them).
    if counts is not None:
        apply_penalties(x, counts, params)
    # 2. The first maximum; this pass also rejects NaN, +inf and all -inf.
    best, top = _checked_max(x)
    # Logits near the float32 limits (some backends mask with finfo.min) or a tiny temperature can
    # overflow to -inf below; exp(-inf) = 0 is the right limit, so the warning is silenced.
    with np.errstate(over="ignore"):
        if params.greedy:
            # T = 0: the argmax (ties -> lowest index) and one logsumexp; no random number is drawn.
            return best, -math.log(float(_weights(x, top, 1.0).sum()))
        return _sample(x, top, rng, params)


def _sample(x: NDArray[np.float32], top: float, rng: np.random.Generator,
            params: SamplingParams) -> tuple[int, float]:
    """The T > 0 part of ``sample_token`` on penalised logits ``x`` whose maximum is ``top``."""
    # 3. Top-k on the unscaled logits: dividing by T > 0 keeps the order, so it keeps the same set.
    #    ``idx`` maps positions of the working set ``v`` back to candidates (None = all, in order).
    idx: NDArray[np.intp] | None = None
    v = x
    if 0 < params.top_k < x.size:
        idx = _top_k_indices(x, params.top_k)
        v = x[idx]
    # The weights at T = 1 over every candidate: their sum normalises the returned logprob.
    w = _weights(x, top, 1.0)
    lse = top + math.log(float(w.sum()))
    # 4. Temperature (and top-k): the working set's weights exp((v - max) / T), largest exactly 1,
    #    written over the T = 1 weights (one buffer for both); at T = 1 without top-k they are the same.
    if idx is not None or params.temperature != 1.0:
        w = _weights(v, top, params.temperature, out=w[: v.size])
    # 5. Top-p, then min-p: ascending positions of the working set that survive (None = all).
    keep = _truncate(w, params.top_p, params.min_p)
    # 6. Renormalise and draw among the survivors, then map back to a candidate index.
    pos = _draw(w if keep is None else w[keep], rng.random())
    pos = pos if keep is None else int(keep[pos])
    index = pos if idx is None else int(idx[pos])
    return index, float(x[index]) - lse


# ----------------------------------------------------------------------------------------------------
# Kernels shared by the steps and the sampler (callers silence float overflow where it can happen)
# ----------------------------------------------------------------------------------------------------


def _as_logits(logits: NDArray[Any]) -> NDArray[np.float32]:
    """The logits as a 1-D float32 array (no copy when they already are one)."""
    x = np.asarray(logits, dtype=np.float32)
    _check_shape(x)
    return x


def _check_shape(x: NDArray[Any]) -> None:
    """InvalidArgument unless ``x`` is 1-D and non-empty."""
    if x.ndim != 1:
        raise InvalidArgument(f"logits must be 1-D, got shape {x.shape}")
    if x.size == 0:
        raise InvalidArgument("logits is empty: there is no candidate to choose from")


def _checked_max(x: NDArray[np.floating[Any]]) -> tuple[int, float]:
    """(index, value) of the first maximum; InvalidArgument if it is NaN, +inf or -inf.

    ``argmax`` returns the first NaN when there is one, so this single pass also finds NaNs.
    """
    best = int(x.argmax())
    top = float(x[best])
    if math.isnan(top):
        raise InvalidArgument("logits contain NaN (a backend bug?): refusing to sample from them")
    if top == math.inf:
        raise InvalidArgument("logits contain +inf: refusing to sample from them")
    if top == -math.inf:
        raise InvalidArgument("every logit is -inf: there is no candidate to choose from")
    return best, top


def _scale(z: NDArray[np.float32], temperature: float) -> NDArray[np.float32]:
    """``z / temperature`` in place, T clamped to float32's smallest normal (a float32 T must not be 0)."""
    return np.divide(z, max(temperature, _TINY_TEMPERATURE), out=z)


def _weights(v: NDArray[np.float32], top: float, temperature: float,
             out: NDArray[np.float32] | None = None) -> NDArray[np.float32]:
    """Unnormalised probabilities ``exp((v - top) / T)`` (``top`` = max of the logits): in [0, 1],
    exactly 1 where ``v == top``, 0 for -inf. Written to ``out`` if given, else to a new array.

    >>> w = _weights(np.array([2.0, 1.0, 0.0], dtype=np.float32), 2.0, 0.5)   # T = 0.5: (x - 2) / 0.5
    >>> bool(np.allclose(w, [1.0, np.exp(-2.0), np.exp(-4.0)]))
    True
    """
    # Subtract the maximum first, so nothing can overflow upwards; then scale and exponentiate in place.
    z = np.subtract(v, np.float32(top), out=out)
    if temperature != 1.0:
        _scale(z, temperature)
    return np.exp(z, out=z)


def _top_k_indices(x: NDArray[np.floating[Any]], k: int, kth: float | None = None) -> NDArray[np.intp]:
    """Ascending indices of the ``k`` (>= 1) largest entries; ties at the boundary lowest index first.

    One O(n) partition finds the k-th largest value (skipped when the caller passes it as ``kth``);
    no full sort.

    >>> _top_k_indices(np.array([5.0, 1.0, 5.0, 7.0, 5.0]), 3).tolist()  # 7, then two of the three 5s
    [0, 2, 3]
    """
    n = x.size
    if k >= n:
        return np.arange(n)
    # The k-th largest value (np.partition works on a copy).
    if kth is None:
        kth = float(np.partition(x, n - k)[n - k])
    keep = x >= kth
    # More entries equal to the k-th value than places left: drop the highest-index ties.
    surplus = int(np.count_nonzero(keep)) - k
    if surplus:
        keep[(x == kth).nonzero()[0][-surplus:]] = False
    indices: NDArray[np.intp] = keep.nonzero()[0]
    return indices


def _nucleus(w: NDArray[np.float32], p: float) -> tuple[int, float]:
    """Top-p's cut: (c, the c-th largest weight), c the smallest count of largest weights whose mass
    is >= p * sum(w).

    Looks at the 1024 largest weights first (partition + small sort) and widens 16x only while they
    hold less than the requested mass; the answer does not depend on how far it had to look, and tied
    weights are interchangeable here (which of them are kept is ``_top_k_indices``'s business).

    >>> _nucleus(np.array([0.1, 0.6, 0.3]), 0.8)   # 0.6, then 0.6 + 0.3 >= 0.8: two, the smaller 0.3
    (2, 0.3)
    """
    n = w.size
    target = p * float(w.sum())
    m = min(n, _NUCLEUS_PROBE)
    while True:
        # The m largest weights, in descending order, and their running mass (float64: no drift).
        largest = (np.sort(w) if m == n else np.sort(np.partition(w, n - m)[n - m:]))[::-1]
        mass = largest.astype(np.float64)
        mass.cumsum(out=mass)
        if mass[-1] >= target or m == n:
            # First count reaching the target; never more than m (float rounding at p close to 1).
            c = min(int(mass.searchsorted(target, side="left")) + 1, m)
            return c, float(largest[c - 1])
        m = min(n, m * 16)


def _truncate(w: NDArray[np.float32], top_p: float, min_p: float) -> NDArray[np.intp] | None:
    """Ascending positions of ``w`` that survive top-p then min-p; None when every position does.

    Both filters keep a prefix of the descending order, so min-p (relative to the largest weight, 1,
    which top-p always keeps) can be applied to what top-p left.
    """
    keep: NDArray[np.intp] | None = None
    # Top-p: the nucleus is the c largest weights, ties at the boundary lowest index first.
    if top_p < 1.0:
        c, kth = _nucleus(w, top_p)
        keep = _top_k_indices(w, c, kth) if c < w.size else None
    # Min-p: weights are probabilities divided by the largest, so the threshold is min_p itself.
    if min_p > 0.0:
        keep = (w >= min_p).nonzero()[0] if keep is None else keep[w[keep] >= min_p]
    return keep


def _draw(w: NDArray[np.float32], u: float) -> int:
    """Inverse CDF: the first position whose cumulative weight exceeds ``u * sum(w)``, u in [0, 1).

    Scaling u by the total is the renormalisation; zero-weight positions are never chosen. Over
    ``_DRAW_BLOCK`` entries the CDF is walked in two levels (block masses, then inside the block the
    point fell in), which picks the same position without materialising a float64 CDF of every entry.

    >>> _draw(np.array([0.2, 0.0, 0.5, 0.3], dtype=np.float32), 0.5)   # cdf .2 .2 .7 1.0: > 0.5 at 2
    2
    """
    if w.size <= _DRAW_BLOCK:
        return _inverse_cdf(w, u)[0]
    starts = np.arange(0, w.size, _DRAW_BLOCK)
    # Block masses in float32 (pairwise sums of <= 4096 weights in [0, 1]: ~1e-7 relative error).
    block, frac = _inverse_cdf(np.add.reduceat(w, starts), u)
    start = int(starts[block])
    return start + _inverse_cdf(w[start:start + _DRAW_BLOCK], frac)[0]


def _inverse_cdf(w: NDArray[np.floating[Any]], u: float) -> tuple[int, float]:
    """(j, f): j the first position whose cumulative weight exceeds ``u * sum(w)``, f how far into
    w[j]'s own share that point lies (in [0, 1), up to rounding), for a second-level draw inside j.

    >>> _inverse_cdf(np.array([1.0, 3.0]), 0.5)     # cdf 1, 4; target 2 lies 1/3 into entry 1
    (1, 0.3333333333333333)
    """
    cdf = w.astype(np.float64)
    cdf.cumsum(out=cdf)
    total = float(cdf[-1])
    target = u * total
    # u * total can round up to total: clamp to the last position that carries weight.
    j = min(int(cdf.searchsorted(target, side="right")), int(cdf.searchsorted(total, side="left")))
    below = float(cdf[j - 1]) if j else 0.0
    return j, (target - below) / (float(cdf[j]) - below)


def _keep_only(x: NDArray[np.float32], keep: NDArray[np.intp]) -> NDArray[np.float32]:
    """A copy of ``x`` with every index outside ``keep`` set to -inf."""
    out = np.full_like(x, -np.inf)
    out[keep] = x[keep]
    return out
