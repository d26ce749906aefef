"""structgen.sampler against hand-computed distributions, the penalty formulas, ordering, determinism,
empirical frequencies and every InvalidArgument case."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from structgen.errors import InvalidArgument
from structgen.local.sampler import (
    apply_penalties,
    apply_temperature,
    log_softmax,
    min_p_filter,
    sample_token,
    top_k_filter,
    top_p_filter,
)
from structgen.request import SamplingParams

INF = math.inf


def f32(*values: float) -> NDArray[np.float32]:
    return np.array(values, dtype=np.float32)


def logits_of(*probs: float) -> NDArray[np.float32]:
    """Logits whose softmax is ``probs`` (which sum to 1)."""
    return np.log(np.array(probs, dtype=np.float64)).astype(np.float32)


def kept(filtered: NDArray[np.float32]) -> list[int]:
    """Indices a filter left finite."""
    return np.flatnonzero(np.isfinite(filtered)).tolist()


def draws(logits: NDArray[np.float32], params: SamplingParams, n: int, seed: int = 0,
          counts: NDArray[np.int32] | None = None) -> list[int]:
    """n sampled indices from one seeded generator (fresh copies of logits each time)."""
    rng = np.random.default_rng(seed)
    return [sample_token(logits.copy(), rng, params, counts)[0] for _ in range(n)]


def reference_draws(probs: list[float], n: int, seed: int = 0) -> list[int]:
    """The documented draw rule, by hand: u = rng.random(), first index whose CDF exceeds u."""
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(np.array(probs) / sum(probs))
    return [int(np.searchsorted(cdf, rng.random(), side="right")) for _ in range(n)]


def assert_frequencies(picks: list[int], probs: list[float]) -> None:
    """Empirical frequency of each index within 5 binomial sigmas of its probability."""
    n = len(picks)
    counts = np.bincount(picks, minlength=len(probs))
    assert counts.size == len(probs)
    for i, p in enumerate(probs):
        sigma = math.sqrt(n * p * (1 - p))
        assert abs(counts[i] - n * p) <= 5 * sigma + 1e-9, (i, counts[i], n * p, sigma)


# ----------------------------------------------------------------------------------------------------
# SamplingParams
# ----------------------------------------------------------------------------------------------------


def test_params_defaults_are_greedy_and_off() -> None:
    p = SamplingParams()
    assert p.greedy
    assert (p.top_k, p.top_p, p.min_p) == (0, 1.0, 0.0)
    assert (p.repetition_penalty, p.frequency_penalty, p.presence_penalty) == (1.0, 0.0, 0.0)
    assert not SamplingParams(temperature=0.7).greedy


def test_params_are_frozen_and_normalised_to_python_numbers() -> None:
    numpy_scalars: dict[str, Any] = {"top_k": np.int64(5), "top_p": np.float32(0.5)}
    p = SamplingParams(temperature=1, **numpy_scalars)
    assert type(p.temperature) is float and type(p.top_k) is int and type(p.top_p) is float
    assert p.top_p == 0.5
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.temperature = 2.0  # type: ignore[misc]


@pytest.mark.parametrize("kwargs", [
    {"top_p": 1.0}, {"top_p": 1e-9}, {"min_p": 0.0}, {"min_p": 0.999}, {"top_k": 0}, {"top_k": 10**6},
    {"frequency_penalty": -2.0}, {"frequency_penalty": 2.0}, {"presence_penalty": -2},
    {"presence_penalty": 2}, {"repetition_penalty": 1e-3}, {"repetition_penalty": 100.0},
    {"temperature": 0}, {"temperature": 1e-300},
])
def test_params_accept_range_boundaries(kwargs: dict[str, Any]) -> None:
    SamplingParams(**kwargs)


@pytest.mark.parametrize(("field", "value"), [
    ("temperature", -0.1), ("temperature", math.nan), ("temperature", math.inf), ("temperature", "1"),
    ("temperature", None),
    ("top_k", -1), ("top_k", 1.5), ("top_k", True), ("top_k", "3"),
    ("top_p", 0.0), ("top_p", 2), ("top_p", -0.5), ("top_p", math.nan), ("top_p", True),
    ("min_p", -0.1), ("min_p", 1.0), ("min_p", math.nan),
    ("repetition_penalty", 0.0), ("repetition_penalty", -1.0), ("repetition_penalty", math.nan),
    ("repetition_penalty", math.inf),
    ("frequency_penalty", 2.5), ("frequency_penalty", -2.01), ("frequency_penalty", math.nan),
    ("presence_penalty", 3), ("presence_penalty", -math.inf), ("presence_penalty", math.nan),
])
def test_params_reject_out_of_range(field: str, value: Any) -> None:
    with pytest.raises(InvalidArgument) as exc:
        SamplingParams(**{field: value})
    # The message names the field and the offending value.
    assert field in str(exc.value)
    assert repr(value) in str(exc.value)


# ----------------------------------------------------------------------------------------------------
# Penalties
# ----------------------------------------------------------------------------------------------------

BASE = (2.0, -1.0, 3.0, 0.5, 0.0)
COUNTS = np.array([1, 2, 0, 3, 4], dtype=np.int32)


@pytest.mark.parametrize(("params", "expected"), [
    # repetition 2: positive seen logits halved, negative ones doubled, 0 stays 0, unseen (3.0) untouched.
    (SamplingParams(repetition_penalty=2.0), [1.0, -2.0, 3.0, 0.25, 0.0]),
    # repetition 0.5 (< 1 encourages repeats): 2/0.5, -1*0.5, 0.5/0.5.
    (SamplingParams(repetition_penalty=0.5), [4.0, -0.5, 3.0, 1.0, 0.0]),
    # frequency 0.5: logit -= 0.5 * count -> 2-0.5, -1-1, 3, 0.5-1.5, 0-2.
    (SamplingParams(frequency_penalty=0.5), [1.5, -2.0, 3.0, -1.0, -2.0]),
    # presence 0.25: logit -= 0.25 once seen.
    (SamplingParams(presence_penalty=0.25), [1.75, -1.25, 3.0, 0.25, -0.25]),
    # negative frequency encourages: logit += count.
    (SamplingParams(frequency_penalty=-1.0), [3.0, 1.0, 3.0, 3.5, 4.0]),
    # all three, in llama.cpp order: repetition, then frequency, then presence.
    # 2/2-0.5-0.25, -1*2-1-0.25, 3, 0.5/2-1.5-0.25, 0*2-2-0.25
    (SamplingParams(repetition_penalty=2.0, frequency_penalty=0.5, presence_penalty=0.25),
     [0.25, -3.25, 3.0, -1.5, -2.25]),
])
def test_penalty_formulas(params: SamplingParams, expected: list[float]) -> None:
    x = f32(*BASE)
    counts = COUNTS.copy()
    apply_penalties(x, counts, params)                       # in place
    np.testing.assert_allclose(x, expected, rtol=1e-6)
    assert x.dtype == np.float32
    np.testing.assert_array_equal(counts, COUNTS)           # counts are only read


def test_penalties_off_or_nothing_seen_is_a_no_op() -> None:
    x = f32(*BASE)
    nothing_seen = np.zeros(5, dtype=np.int64)
    apply_penalties(x, nothing_seen, SamplingParams(repetition_penalty=1.3, presence_penalty=1))
    apply_penalties(x, COUNTS, SamplingParams(temperature=1.0))
    np.testing.assert_array_equal(x, BASE)


@pytest.mark.parametrize(("logits", "counts", "match"), [
    (f32(1, 2, 3), np.array([1, 0]), "shape"),
    (f32(1, 2, 3), np.array([1, -1, 0]), ">= 0"),
    (f32(1, 2, 3), np.array([1.0, 0.0, 0.0]), "integers"),
    (np.array([1, 2, 3]), np.array([1, 0, 0]), "float"),
    (np.ones((2, 2), dtype=np.float32), np.ones((2, 2), dtype=np.int32), "1-D"),
])
def test_penalty_input_errors(logits: Any, counts: Any, match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        apply_penalties(logits, counts, SamplingParams(presence_penalty=0.5))


# ----------------------------------------------------------------------------------------------------
# Temperature and the filters
# ----------------------------------------------------------------------------------------------------


def test_apply_temperature() -> None:
    x = f32(2, 1, 0)
    np.testing.assert_array_equal(apply_temperature(x, 0.5), [4, 2, 0])
    np.testing.assert_array_equal(apply_temperature(x, 2.0), [1, 0.5, 0])
    np.testing.assert_array_equal(x, [2, 1, 0])              # a new array
    assert apply_temperature(x, 0.5).dtype == np.float32


@pytest.mark.parametrize("t", [0.0, -1.0, math.nan, math.inf])
def test_apply_temperature_rejects(t: float) -> None:
    with pytest.raises(InvalidArgument, match="temperature"):
        apply_temperature(f32(1, 2), t)


@pytest.mark.parametrize(("logits", "k", "expected"), [
    ((1, 3, 2, 3), 2, [1, 3]),
    ((1, 3, 2, 3), 3, [1, 2, 3]),
    ((1, 2, 2, 2), 2, [1, 2]),          # tie at the boundary: lowest indices first
    ((5, 5, 5, 5, 5), 2, [0, 1]),       # all equal
    ((4, -INF, 1), 2, [0, 2]),
    ((1, 3, 2, 3), 1, [1]),
    ((1, 3, 2), 0, [0, 1, 2]),          # 0 = off
    ((1, 3, 2), 10, [0, 1, 2]),         # k larger than the array
    ((7,), 1, [0]),
])
def test_top_k_filter(logits: tuple[float, ...], k: int, expected: list[int]) -> None:
    x = f32(*logits)
    out = top_k_filter(x, k)
    assert kept(out) == expected
    np.testing.assert_array_equal(out[expected], x[expected])   # survivors keep their logits


def test_top_k_matches_a_stable_sort_with_many_ties() -> None:
    x = np.random.default_rng(3).integers(0, 6, size=3000).astype(np.float32)
    for k in (1, 7, 500, 1499, 2999):
        reference = np.sort(np.argsort(-x, kind="stable")[:k])
        assert kept(top_k_filter(x, k)) == reference.tolist()


@pytest.mark.parametrize(("probs", "p", "expected"), [
    # probs 0.1 0.6 0.3 -> descending 0.6 (idx 1), 0.3 (idx 2), 0.1: running mass 0.6, 0.9, 1.0
    ((0.1, 0.6, 0.3), 0.5, [1]),
    ((0.1, 0.6, 0.3), 0.6001, [1, 2]),
    ((0.1, 0.6, 0.3), 0.8, [1, 2]),
    ((0.1, 0.6, 0.3), 0.95, [0, 1, 2]),
    ((0.1, 0.6, 0.3), 1.0, [0, 1, 2]),
    ((0.1, 0.6, 0.3), 1e-6, [1]),        # always keeps the top token
    # ties 0.4 / 0.4: stable order takes index 0 first
    ((0.4, 0.2, 0.4), 0.3, [0]),
    ((0.4, 0.2, 0.4), 0.5, [0, 2]),
    ((0.4, 0.2, 0.4), 0.85, [0, 1, 2]),
])
def test_top_p_filter(probs: tuple[float, ...], p: float, expected: list[int]) -> None:
    assert kept(top_p_filter(logits_of(*probs), p)) == expected


def test_top_p_filter_on_raw_logits() -> None:
    # softmax([2, 1, 0]) = e^2, e, 1 over 11.107 = 0.6652, 0.2447, 0.0900; running 0.6652, 0.9100, 1
    x = f32(2, 1, 0)
    assert kept(top_p_filter(x, 0.6)) == [0]
    assert kept(top_p_filter(x, 0.7)) == [0, 1]
    assert kept(top_p_filter(x, 0.95)) == [0, 1, 2]
    # -inf candidates have probability 0 and stay -inf
    assert kept(top_p_filter(f32(0, -INF, 0), 0.9)) == [0, 2]


def test_top_p_matches_a_full_stable_sort_on_a_flat_distribution() -> None:
    # A flat 20k-entry distribution: the nucleus needs thousands of entries, so the filter has to widen
    # its first look at the 1024 largest; the result must equal the textbook full-sort definition.
    x = (np.random.default_rng(5).standard_normal(20_000) * 0.5).astype(np.float32)
    probs = np.exp(x.astype(np.float64) - x.max())
    probs /= probs.sum()
    for p in (0.3, 0.9, 0.999):
        order = np.argsort(-probs, kind="stable")
        c = int(np.searchsorted(np.cumsum(probs[order]), p)) + 1
        assert kept(top_p_filter(x, p)) == np.sort(order[:c]).tolist()


@pytest.mark.parametrize(("p", "expected"), [
    (0.0, [0, 1, 2, 3]),      # off
    (0.1, [0, 1, 3]),         # threshold 0.1 * 0.5 = 0.05: drops 0.04
    (0.5, [0, 1]),            # threshold 0.25: keeps 0.5, 0.3
    (0.9, [0]),               # threshold 0.45
])
def test_min_p_filter(p: float, expected: list[int]) -> None:
    assert kept(min_p_filter(logits_of(0.5, 0.3, 0.04, 0.16), p)) == expected


def test_log_softmax() -> None:
    # log(e^2 + e + 1) = log(11.10733) = 2.407606
    out = log_softmax(f32(2, 1, 0))
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, [-0.407606, -1.407606, -2.407606], atol=1e-6)
    np.testing.assert_allclose(np.exp(out).sum(), 1.0)
    # -inf stays -inf, huge logits do not overflow
    np.testing.assert_allclose(log_softmax(f32(0, -INF, 0)), [-math.log(2), -INF, -math.log(2)])
    np.testing.assert_allclose(log_softmax(f32(1000, 1000)), [-math.log(2)] * 2)
    assert log_softmax(f32(3)).tolist() == [0.0]


@pytest.mark.parametrize("bad", [f32(), f32(1, math.nan), f32(1, INF), f32(-INF, -INF),
                                 np.ones((2, 2), dtype=np.float32)])
@pytest.mark.parametrize("fn", [
    lambda x: apply_temperature(x, 1.0), lambda x: top_k_filter(x, 1), lambda x: top_p_filter(x, 0.5),
    lambda x: min_p_filter(x, 0.5), log_softmax,
])
def test_steps_reject_bad_logits(fn: Any, bad: NDArray[np.float32]) -> None:
    with pytest.raises(InvalidArgument):
        fn(bad)


@pytest.mark.parametrize(("fn", "arg"), [
    (top_k_filter, -1), (top_k_filter, 1.5), (top_p_filter, 0.0), (top_p_filter, 1.5),
    (top_p_filter, math.nan), (min_p_filter, 1.0), (min_p_filter, -0.1),
])
def test_steps_reject_bad_parameters(fn: Any, arg: Any) -> None:
    with pytest.raises(InvalidArgument):
        fn(f32(1, 2, 3), arg)


# ----------------------------------------------------------------------------------------------------
# sample_token
# ----------------------------------------------------------------------------------------------------


def test_greedy_ties_to_lowest_index_and_draws_no_random_number() -> None:
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    index, lp = sample_token(f32(1, 3, 3, 0), rng, SamplingParams())
    assert index == 1
    # log softmax at index 1: 3 - log(e + 2e^3 + 1) = -log(2 + e^-2 + e^-3) = -0.7826
    assert lp == pytest.approx(-math.log(2 + math.exp(-2) + math.exp(-3)), abs=1e-6)
    assert rng.bit_generator.state == state
    # filters never remove the argmax, so they do not change the greedy choice
    assert sample_token(f32(1, 3, 3, 0), rng, SamplingParams(top_k=1, top_p=0.1, min_p=0.9))[0] == 1
    assert sample_token(f32(2, 2, 2, 2), rng, SamplingParams())[0] == 0


def test_greedy_uses_penalised_logits() -> None:
    # [3, 2.5] with the first seen once: repetition 2 -> 1.5, so index 1 wins; logprob at T=1 of
    # [1.5, 2.5]: 2.5 - log(e^1.5 + e^2.5) = -log(1 + e^-1) = -0.3133
    index, lp = sample_token(f32(3, 2.5), np.random.default_rng(0), SamplingParams(repetition_penalty=2.0),
                             np.array([1, 0]))
    assert index == 1
    assert lp == pytest.approx(-math.log(1 + math.exp(-1)), abs=1e-6)


def test_single_candidate() -> None:
    rng = np.random.default_rng(0)
    for params in (SamplingParams(), SamplingParams(temperature=1.3, top_k=5, top_p=0.5, min_p=0.5)):
        assert sample_token(f32(-4.2), rng, params) == (0, 0.0)


def test_draw_follows_the_documented_inverse_cdf() -> None:
    # T = 0.5 on [2, 1, 0]: weights e^4, e^2, e^0 = 54.598, 7.389, 1 over 62.987 -> 0.86681 0.11731 0.01588
    probs = [0.866813, 0.117310, 0.015876]
    params = SamplingParams(temperature=0.5)
    for seed in (0, 1, 2):
        assert draws(f32(2, 1, 0), params, 300, seed) == reference_draws(probs, 300, seed)


def test_seed_reproducibility() -> None:
    x = (np.random.default_rng(9).standard_normal(500) * 2).astype(np.float32)
    params = SamplingParams(temperature=1.0, top_k=40, top_p=0.95)
    a, b, c = draws(x, params, 50, seed=7), draws(x, params, 50, seed=7), draws(x, params, 50, seed=8)
    assert a == b
    assert a != c


def test_empirical_frequencies_match_temperature() -> None:
    # probs as in test_draw_follows_the_documented_inverse_cdf
    assert_frequencies(draws(f32(2, 1, 0), SamplingParams(temperature=0.5), 20_000, seed=11),
                       [0.866813, 0.117310, 0.015876])


def test_empirical_frequencies_after_top_k_and_top_p() -> None:
    # probs 0.4 0.3 0.2 0.1; top-k 3 -> 4/9 3/9 2/9; top-p 0.7 -> running 0.444, 0.778 -> keeps 2 -> 4/7 3/7
    params = SamplingParams(temperature=1.0, top_k=3, top_p=0.7)
    assert_frequencies(draws(logits_of(0.4, 0.3, 0.2, 0.1), params, 20_000, seed=12), [4 / 7, 3 / 7, 0, 0])


def test_top_k_is_applied_before_top_p() -> None:
    # probs 0.5 0.3 0.2, top_k 2, top_p 0.6. Top-k first renormalises to 0.625 0.375, and 0.625 >= 0.6
    # keeps only index 0. (Top-p first would keep 0.5 + 0.3 and sample index 1 too.)
    params = SamplingParams(temperature=1.0, top_k=2, top_p=0.6)
    assert set(draws(logits_of(0.5, 0.3, 0.2), params, 200)) == {0}


def test_top_p_is_applied_before_min_p() -> None:
    # probs 0.5 0.3 0.2, top_p 0.6 keeps 0.5 + 0.3; min_p 0.5 (threshold 0.25) keeps both -> 5/8 3/8.
    # (Min-p first would renormalise 0.5 0.3 to 0.625 0.375 and top-p 0.6 would keep index 0 only.)
    params = SamplingParams(temperature=1.0, top_p=0.6, min_p=0.5)
    expected = reference_draws([0.625, 0.375], 300, seed=4)
    assert draws(logits_of(0.5, 0.3, 0.2), params, 300, seed=4) == expected


def test_penalties_are_applied_before_temperature() -> None:
    # [2, 1], index 0 seen once, frequency penalty 1, T 0.5. Penalty first: [1, 1] -> 1/2 1/2 at any T.
    # (Temperature first would give [4, 2] - 1 = [3, 2] -> 0.73 0.27.)
    params = SamplingParams(temperature=0.5, frequency_penalty=1.0)
    counts = np.array([1, 0], dtype=np.int32)
    assert draws(f32(2, 1), params, 300, seed=5, counts=counts) == reference_draws([0.5, 0.5], 300, seed=5)


def test_penalties_need_counts() -> None:
    # counts=None means no penalties even when they are configured: T 1 on [1, 0] -> e/(e+1) = 0.7311
    params = SamplingParams(temperature=1.0, repetition_penalty=5.0)
    assert draws(f32(1, 0), params, 300, seed=6) == reference_draws([0.731059, 0.268941], 300, seed=6)


def test_returned_logprob_is_log_softmax_of_the_penalised_logits() -> None:
    gen = np.random.default_rng(21)
    for trial in range(30):
        n = int(gen.integers(1, 200))
        x = (gen.standard_normal(n) * 3).astype(np.float32)
        counts = gen.integers(0, 3, size=n).astype(np.int32)
        params = SamplingParams(temperature=[0.0, 0.3, 1.0, 1.7][trial % 4], top_k=[0, 5, 50][trial % 3],
                                top_p=[1.0, 0.9][trial % 2], min_p=[0.0, 0.05][trial % 2],
                                repetition_penalty=1.2, frequency_penalty=0.3, presence_penalty=-0.2)
        penalised = x.copy()
        apply_penalties(penalised, counts, params)
        index, lp = sample_token(x.copy(), np.random.default_rng(trial), params, counts)
        assert lp == pytest.approx(log_softmax(penalised)[index], abs=1e-5)


def test_sampled_tokens_respect_the_filters() -> None:
    x = (np.random.default_rng(8).standard_normal(1000)).astype(np.float32)
    top5 = set(np.argsort(-x)[:5].tolist())
    assert set(draws(x, SamplingParams(temperature=2.0, top_k=5), 300)) <= top5
    # -inf candidates are never drawn
    assert set(draws(f32(0, -INF, 0), SamplingParams(temperature=1.0), 300)) == {0, 2}


def test_top_k_larger_than_the_array_and_all_equal_logits() -> None:
    x = f32(0.5, 0.5, 0.5, 0.5)
    off = draws(x, SamplingParams(temperature=0.8), 300, seed=3)
    assert draws(x, SamplingParams(temperature=0.8, top_k=50), 300, seed=3) == off
    assert off == reference_draws([0.25] * 4, 300, seed=3)


def test_extreme_temperatures() -> None:
    x = f32(1, 3, 2, 3)
    # T -> 0+: uniform over the tied maxima, never anything else (and no overflow warning)
    assert set(draws(x, SamplingParams(temperature=1e-300), 200)) == {1, 3}
    # huge T: uniform over everything
    assert draws(x, SamplingParams(temperature=1e30), 200, seed=1) == reference_draws([0.25] * 4, 200, seed=1)


def test_large_vocabulary() -> None:
    # 262k candidates, flat enough that the nucleus has thousands of members
    x = (np.random.default_rng(2).standard_normal(262_000) * 0.5).astype(np.float32)
    index, lp = sample_token(x.copy(), np.random.default_rng(0), SamplingParams(temperature=1.0, top_p=0.9))
    assert 0 <= index < x.size
    assert lp == pytest.approx(log_softmax(x)[index], abs=1e-4)


def test_logits_are_converted_not_required_float32() -> None:
    assert sample_token(np.array([0.0, 5.0, 1.0]), np.random.default_rng(0), SamplingParams())[0] == 1


@pytest.mark.parametrize("params", [SamplingParams(), SamplingParams(temperature=1.0, top_k=2, top_p=0.9)])
@pytest.mark.parametrize(("logits", "match"), [
    (f32(), "empty"),
    (f32(1, math.nan, 2), "NaN"),
    (f32(math.nan), "NaN"),
    (f32(1, INF), r"\+inf"),
    (f32(-INF, -INF), "-inf"),
    (np.zeros((2, 3), dtype=np.float32), "1-D"),
])
def test_sample_token_rejects_bad_logits(params: SamplingParams, logits: NDArray[np.float32],
                                         match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        sample_token(logits, np.random.default_rng(0), params)


def test_sample_token_rejects_misaligned_counts() -> None:
    with pytest.raises(InvalidArgument, match="shape"):
        sample_token(f32(1, 2, 3), np.random.default_rng(0), SamplingParams(presence_penalty=1.0),
                     np.array([0, 1]))


def test_nan_introduced_by_nothing_but_the_backend_is_caught_after_penalties() -> None:
    # a NaN on a seen token stays NaN through the penalties and is still refused
    with pytest.raises(InvalidArgument, match="NaN"):
        sample_token(f32(1, math.nan), np.random.default_rng(0), SamplingParams(repetition_penalty=1.5),
                     np.array([0, 1]))


def test_large_vocabulary_draws_follow_the_same_inverse_cdf() -> None:
    # Over 4096 survivors the CDF is walked in two levels (block masses, then one block): it must pick
    # what one long cumsum picks.
    x = (np.random.default_rng(13).standard_normal(20_000) * 2).astype(np.float32)
    probs = np.exp(x.astype(np.float64) - x.max())
    expected = reference_draws(probs.tolist(), 200, seed=2)
    assert draws(x, SamplingParams(temperature=1.0), 200, seed=2) == expected


def test_float32_extremes_do_not_warn() -> None:
    # Some backends mask with finfo.min instead of -inf; x - max overflows to -inf, which is fine
    # (pytest turns any RuntimeWarning into an error here).
    lowest = float(np.finfo(np.float32).min)
    for params in (SamplingParams(), SamplingParams(temperature=0.5, top_p=0.9),
                   SamplingParams(temperature=1e-30, top_k=2)):
        index, lp = sample_token(f32(lowest, 5.0, lowest), np.random.default_rng(0), params)
        assert (index, lp) == (1, 0.0)


def _naive(x: NDArray[np.float32], counts: NDArray[np.int64], prm: SamplingParams,
           u: float) -> tuple[int, float]:
    """Textbook float64 reference: full stable sorts, boolean masks, one long CDF."""
    z = x.astype(np.float64)
    seen = counts > 0
    z[seen] = np.where(z[seen] > 0, z[seen] / prm.repetition_penalty, z[seen] * prm.repetition_penalty)
    z[seen] -= prm.frequency_penalty * counts[seen] + prm.presence_penalty
    logprobs = z - z.max() - np.log(np.exp(z - z.max()).sum())
    if prm.greedy:
        i = int(np.argmax(z))
        return i, float(logprobs[i])
    z = z / prm.temperature
    alive = np.ones(z.size, dtype=bool)

    def probs() -> NDArray[np.float64]:
        q: NDArray[np.float64] = np.where(alive, np.exp(z - z[alive].max()), 0.0)
        normalised: NDArray[np.float64] = q / q.sum()
        return normalised

    if 0 < prm.top_k < z.size:
        alive[:] = False
        alive[np.argsort(-z, kind="stable")[: prm.top_k]] = True
    if prm.top_p < 1.0:
        q = probs()
        order = np.argsort(-q, kind="stable")
        nucleus = np.zeros_like(alive)
        nucleus[order[: int(np.searchsorted(np.cumsum(q[order]), prm.top_p)) + 1]] = True
        alive &= nucleus
    if prm.min_p > 0.0:
        q = probs()
        alive &= q >= prm.min_p * q.max()
    i = int(np.searchsorted(np.cumsum(probs()), u, side="right"))
    return i, float(logprobs[i])


def test_agrees_with_a_naive_reference_on_random_settings() -> None:
    # Logits on a 0.5 grid so that ties are everywhere; sizes up to 9000 reach the two-level draw and
    # the widening top-p search.
    gen = np.random.default_rng(17)
    for trial in range(150):
        n = int(gen.integers(1, 300)) if trial % 10 else int(gen.integers(4000, 9000))
        x = (np.round(gen.standard_normal(n) * 4) / 2).astype(np.float32)
        counts = gen.integers(0, 3, n) * (gen.random(n) < 0.2)
        prm = SamplingParams(
            temperature=float(gen.choice([0, 0.5, 1, 1.5])), top_k=int(gen.choice([0, 1, 3, 20, 500])),
            top_p=float(gen.choice([1, 0.3, 0.9, 0.97])), min_p=float(gen.choice([0, 0.05, 0.3])),
            repetition_penalty=float(gen.choice([1, 1.3])), frequency_penalty=float(gen.choice([0, 0.5])),
            presence_penalty=float(gen.choice([0, -0.4])))
        index, lp = sample_token(x.copy(), np.random.default_rng(trial), prm, counts)
        expected, expected_lp = _naive(x, counts, prm, float(np.random.default_rng(trial).random()))
        assert index == expected, (trial, prm)
        assert lp == pytest.approx(expected_lp, abs=1e-4)
