"""What a local run does when an attempt runs out of tokens: loops are recognised, and the retry samples warm
with a frequency penalty; the last attempt's truncation is the error."""

from __future__ import annotations

import time

import pytest

import structgen
from structgen import generate
from structgen.compile.schema import compile_schema
from structgen.local import engine
from structgen.local.engine import RETRY_TEMPERATURE, Job, sampling
from structgen.local.repetition import LOOP_MIN_SPAN, REPEAT_MIN_SPAN, looping, periodic_tail, repeat_start
from structgen.request import LOOP_FREQUENCY_PENALTY, Request, SamplingParams

# A MaskBench schema whose values may be anything: greedy SmolLM2-135M echoes schema keywords into it forever.
ECHO_PRONE = {
    "type": "object",
    "properties": {"GeometryPresentation.createPresentation": {
        "type": "object", "properties": {"controller": {}, "parent": {}},
        "required": ["controller", "parent"], "additionalProperties": False}},
    "required": ["GeometryPresentation.createPresentation"],
    "additionalProperties": False,
}
ECHO_PROMPT = ("Extract the data from the text below as JSON.\n\nText:\n"
               "GeometryPresentation.createPresentation.controller: mapController\n"
               "GeometryPresentation.createPresentation.parent: mapArea")


@pytest.mark.parametrize("period", [1, 2, 7, 30, 64])
def test_a_repeated_block_at_the_end_is_a_loop(period: int) -> None:
    block = list(range(1000, 1000 + period))
    tokens = [5, 6, 7] + block * (LOOP_MIN_SPAN // period + 3)
    assert looping(tokens)


@pytest.mark.parametrize("tokens", [
    list(range(500)),                                  # no repetition
    [1, 2] * (LOOP_MIN_SPAN // 2 - 1),                 # periodic, but shorter than the minimum span
    list(range(100)) * 2,                              # a period longer than LOOP_MAX_PERIOD
    [1, 2, 3] * 40 + [9],                              # the repetition stopped before the end
])
def test_other_token_runs_are_not_loops(tokens: list[int]) -> None:
    assert not looping(tokens)


def _job(params: SamplingParams, truncations: int) -> Job:
    request = Request(prompt="x", schema=compile_schema(None), sampling=params, seed=0, max_tokens=8)
    return Job(request, "constrained", 1, [1], None, 0.0, time.perf_counter(), truncations=truncations)


def test_first_attempt_samples_as_asked() -> None:
    assert sampling(_job(SamplingParams(), truncations=0), 0) == SamplingParams()


def test_retries_sample_warm_and_penalise_repeats_after_truncation() -> None:
    greedy = SamplingParams()
    assert sampling(_job(greedy, truncations=0), 1) == SamplingParams(temperature=RETRY_TEMPERATURE)
    assert sampling(_job(greedy, truncations=1), 1).frequency_penalty == LOOP_FREQUENCY_PENALTY
    assert sampling(_job(greedy, truncations=2), 2).frequency_penalty == 2 * LOOP_FREQUENCY_PENALTY


def test_the_requests_own_penalties_are_kept() -> None:
    own = SamplingParams(temperature=1.0, repetition_penalty=1.1)
    assert sampling(_job(own, truncations=2), 2) == own


def test_a_greedy_loop_is_re_decided_where_it_began(model: structgen.LlamaCpp) -> None:
    r = generate(ECHO_PROMPT, schema=ECHO_PRONE, model=model, temperature=0.0, seed=3, max_tokens=256)
    assert set(r.value) == {"GeometryPresentation.createPresentation"}
    assert sum(a.discarded for a in r.attempts) > 0                  # taken back, not decoded to max_tokens
    assert r.timings.wasted_tokens == (sum(a.tokens for a in r.attempts if a.error is not None)
                                       + sum(a.discarded for a in r.attempts))


def test_a_greedy_loop_is_retried_and_ends_valid(model: structgen.LlamaCpp, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "MAX_BACK_OFFS", 0)    # no back-off: the loop is cut and the attempt retried
    r = generate(ECHO_PROMPT, schema=ECHO_PRONE, model=model, temperature=0.0, seed=3, max_tokens=256)
    first = r.attempts[0]
    assert first.error is not None and first.error.startswith("TruncatedOutput")
    assert "repetition loop" in first.error
    assert r.attempts[-1].error is None and len(r.attempts) >= 2
    assert set(r.value) == {"GeometryPresentation.createPresentation"}


def test_without_attempts_left_the_loop_is_the_error(model: structgen.LlamaCpp,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "MAX_BACK_OFFS", 0)
    with pytest.raises(structgen.TruncatedOutput) as info:
        generate(ECHO_PROMPT, schema=ECHO_PRONE, model=model, temperature=0.0, seed=3, max_tokens=256,
                 max_attempts=1)
    assert info.value.looped and len(info.value.tokens) == 256
    assert looping(info.value.tokens)


def _certainty(n: int, sure: float = -0.05) -> list[float]:
    return [sure] * n


def test_a_repeat_is_re_decided_at_the_least_sure_sampled_token_of_its_second_copy() -> None:
    block = [10, 11, 12, 13, 14]
    tokens = [1, 2, 3] + block * 3
    logprobs = _certainty(len(tokens))
    forced = [False] * len(tokens)
    second = 3 + len(block)                  # where the second copy starts
    logprobs[second + 2] = -1.5              # the model's least sure choice in it
    logprobs[3 + 2] = -3.0                   # less sure still, but in the first copy: that one is kept
    assert repeat_start(tokens, logprobs, forced) == second + 2
    forced[second + 2] = True                # a forced token is no choice: the next least sure one is taken
    logprobs[second + 4] = -0.9
    assert repeat_start(tokens, logprobs, forced) == second + 4


def test_no_back_off_without_a_repeat_or_without_an_alternative() -> None:
    assert repeat_start(list(range(40)), _certainty(40), [False] * 40) is None
    short = [1, 2, 3] + [7, 8] * 3          # too short a run (REPEAT_MIN_SPAN)
    assert repeat_start(short, _certainty(len(short)), [False] * len(short)) is None
    tokens = [1, 2, 3] + [7, 8, 9, 10] * 4
    assert repeat_start(tokens, [0.0] * len(tokens), [False] * len(tokens)) is None   # every choice was certain
    assert repeat_start(tokens, _certainty(len(tokens)), [True] * len(tokens)) is None  # every token forced


@pytest.mark.parametrize("period", [1, 3, 8])
def test_a_short_block_backs_off_after_three_copies(period: int) -> None:
    block = list(range(100, 100 + period))
    run = block * max(3, -(-REPEAT_MIN_SPAN // period))
    assert periodic_tail([1, 2, *run], REPEAT_MIN_SPAN, lambda p: 3 if p <= 8 else 2) == (2, period)
    assert repeat_start([1, 2, *run[:-1], 999], _certainty(len(run) + 2), [False] * (len(run) + 2)) is None
