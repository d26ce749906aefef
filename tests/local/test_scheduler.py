"""The engine thread (structgen.local.scheduler): concurrent callers on one model, limits, cancellation, fairness,
the prefix cache, loop-aware retries."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

import structgen
from structgen import generate
from structgen.generate import build_request
from structgen.local import engine

from .test_retries import ECHO_PROMPT, ECHO_PRONE

PEOPLE = [f"{name} is {age} years old and lives in {city}. Extract the person."
          for name, age, city in [("Alice", 31, "Paris"), ("Bob", 42, "Oslo"), ("Chen", 27, "Lima"),
                                  ("Dana", 55, "Rome"), ("Emil", 38, "Kyiv"), ("Farah", 23, "Cairo"),
                                  ("Goran", 61, "Zagreb"), ("Hana", 45, "Tokyo")]]


class Person(BaseModel):
    name: str
    age: int
    city: str


@pytest.fixture(scope="module")
def det_model() -> Iterator[structgen.LlamaCpp]:
    m = structgen.LlamaCpp(n_ctx=1024, n_threads=1, deterministic=True, n_seq_max=8)
    yield m
    m.close()


@pytest.fixture(scope="module")
def cached_model() -> Iterator[structgen.LlamaCpp]:
    m = structgen.LlamaCpp(n_ctx=4096, prefix_cache=2)
    yield m
    m.close()


def _threads(fn: Any, n: int) -> list[Any]:
    out: list[Any] = [None] * n

    def run(i: int) -> None:
        try:
            out[i] = fn(i)
        except Exception as exc:  # the test inspects it
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return out


def _names_read(results: list[Any]) -> int:
    """How many of ``results`` (one per prompt of ``PEOPLE``, in order) name that prompt's person, ignoring case:
    a check of meaning over several texts (a model that did not read them scores at most one), since what a 135M
    model writes may differ in a letter on another CPU."""
    return sum(r.value.name.strip().lower() == p.split()[0].lower() for r, p in zip(results, PEOPLE, strict=False))


def test_eight_threads_on_one_deterministic_model_match_sequential_runs_byte_for_byte(
        det_model: structgen.LlamaCpp) -> None:
    alone = [generate(p, Person, model=det_model, seed=7, max_tokens=48) for p in PEOPLE]
    together = _threads(lambda i: generate(PEOPLE[i], Person, model=det_model, seed=7, max_tokens=48), 8)
    for a, b in zip(alone, together, strict=True):
        assert isinstance(b, structgen.Result), b
        assert isinstance(b.value, Person)
        assert (b.text, b.tokens, b.logprobs) == (a.text, a.tokens, a.logprobs)


def test_eight_agenerate_calls_run_together_and_are_all_valid(model: structgen.LlamaCpp) -> None:
    async def main() -> list[Any]:
        return await asyncio.gather(*(structgen.agenerate(p, Person, model=model, seed=1, max_tokens=48)
                                      for p in PEOPLE))

    results = asyncio.run(main())
    assert all(isinstance(r.value, Person) for r in results)
    assert _names_read(results) >= 6, [r.value.name for r in results]


def test_a_cancelled_request_frees_its_sequences(model: structgen.LlamaCpp) -> None:
    ticket = model.submit(build_request(model, "Write a long story about the sea.", None, max_tokens=400, seed=1))
    deadline = time.monotonic() + 30
    while model.scheduler.live_sequences == 0 and not ticket.done.is_set() and time.monotonic() < deadline:
        time.sleep(0.01)
    ticket.cancel()
    with pytest.raises(structgen.Cancelled):
        ticket.result()
    assert model.scheduler.live_sequences == 0
    assert generate("Say yes or no.", structgen.Choice(["yes", "no"]), model=model, seed=1).value in ("yes", "no")


def test_an_async_caller_that_gives_up_cancels_its_request(model: structgen.LlamaCpp) -> None:
    async def main() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(structgen.agenerate("Write a long story.", model=model, max_tokens=400, seed=1),
                                   0.3)

    asyncio.run(main())
    deadline = time.monotonic() + 10
    while model.scheduler.live_sequences and time.monotonic() < deadline:
        time.sleep(0.01)
    assert model.scheduler.live_sequences == 0


def test_a_full_queue_is_overloaded_and_nothing_is_lost() -> None:
    small = structgen.LlamaCpp(n_ctx=1024, n_seq_max=1, max_queue=1, prefix_cache=0)
    try:
        first = small.submit(build_request(small, "Write a long story.", None, max_tokens=200, seed=1))
        deadline = time.monotonic() + 30
        while small.scheduler.queued and time.monotonic() < deadline:
            time.sleep(0.01)                      # the first is running; the queue is empty
        second = small.submit(build_request(small, "Say hi.", None, max_tokens=4, seed=1))
        with pytest.raises(structgen.Overloaded) as info:
            small.submit(build_request(small, "Say hi.", None, max_tokens=4, seed=1))
        assert info.value.retryable
        assert first.result().timings.generated_tokens > 0
        assert second.result().timings.generated_tokens > 0
    finally:
        small.close()


def test_a_request_past_its_timeout_is_deadline_exceeded(model: structgen.LlamaCpp) -> None:
    with pytest.raises(structgen.DeadlineExceeded):
        generate("Write a long story about the sea.", model=model, max_tokens=400, seed=1, timeout=0.2)
    assert model.scheduler.live_sequences == 0


def test_timeout_must_be_positive(model: structgen.LlamaCpp) -> None:
    with pytest.raises(structgen.InvalidArgument, match="timeout"):
        generate("hi", model=model, timeout=0)


def test_admission_is_first_come_first_served_so_a_wide_request_is_not_starved() -> None:
    m = structgen.LlamaCpp(n_ctx=2048, n_seq_max=4, prefix_cache=0)
    try:
        long_single = m.submit(build_request(m, "Write a long story.", None, max_tokens=60, seed=1))
        wide = m.submit(build_request(m, "Name a colour.", None, max_tokens=8, seed=1, strategy="best_of", n=4))
        late_single = m.submit(build_request(m, "Name a fruit.", None, max_tokens=8, seed=1))
        for t in (long_single, wide, late_single):
            t.result()
        # the late single request found free sequences while the wide one waited, yet did not jump it
        assert wide.t_admit <= late_single.t_admit
        assert len(wide.result().candidates) == 4
    finally:
        m.close()


def test_a_single_request_is_not_held_back_by_a_wide_one_running() -> None:
    m = structgen.LlamaCpp(n_ctx=4096, n_seq_max=8, prefix_cache=0)
    try:
        wide = m.submit(build_request(m, "Write a long story.", None, max_tokens=120, seed=1,
                                      strategy="self_consistency", n=6))
        single = m.submit(build_request(m, "Say yes or no.", structgen.Choice(["yes", "no"]), seed=1))
        assert single.result().value in ("yes", "no")
        assert not wide.done.is_set()   # the single one finished while the wide one was still generating
        wide.result()
    finally:
        m.close()


def test_the_prefix_cache_reuses_a_shared_prompt_start(cached_model: structgen.LlamaCpp) -> None:
    system = "You extract people from short texts. " * 12
    first = generate(PEOPLE[0], Person, model=cached_model, system=system, seed=1, max_tokens=48)
    second = generate(PEOPLE[1], Person, model=cached_model, system=system, seed=1, max_tokens=48)
    assert first.timings.prefix_hit_tokens < 20
    assert second.timings.prefix_hit_tokens > 80     # the template and the long system prompt
    assert second.timings.prefix_hit_tokens < second.timings.prompt_tokens
    assert isinstance(second.value, Person)
    assert len(cached_model.scheduler.cache.entries) <= 2
    out = [first, second]
    for p in PEOPLE[2:6]:   # more prompts than slots: the cache stays within its bound
        out.append(generate(p, Person, model=cached_model, system=system, seed=1, max_tokens=48))
    assert len(cached_model.scheduler.cache.entries) <= 2
    assert _names_read(out) >= 4, [r.value.name for r in out]   # a hit still reads the text after the prefix


def test_an_exclusive_user_waits_for_the_engine_and_the_engine_for_it(cached_model: structgen.LlamaCpp) -> None:
    options = structgen.Choice(["heads", "tails"])

    def work(i: int) -> Any:
        if i % 2:
            return structgen.probs("Flip a coin.", options, model=cached_model)
        return generate(PEOPLE[i], Person, model=cached_model, seed=1, max_tokens=48)

    out = _threads(work, 6)
    assert all(isinstance(r, structgen.Result) for r in out[0::2]), out
    assert all(abs(sum(r.probs.values()) - 1) < 1e-6 for r in out[1::2]), out


def test_a_loop_is_cut_as_it_forms_and_the_retry_ends_valid(model: structgen.LlamaCpp,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "MAX_BACK_OFFS", 0)   # no back-off: the cut and the retry
    r = generate(ECHO_PROMPT, schema=ECHO_PRONE, model=model, temperature=0.0, seed=3, max_tokens=256)
    first = r.attempts[0]
    assert first.error is not None and "repetition loop" in first.error
    assert first.tokens < 200                      # cut as the loop formed, not at max_tokens
    assert r.attempts[-1].error is None
    assert r.timings.wasted_tokens == sum(a.tokens for a in r.attempts[:-1])


@pytest.fixture(scope="module")
def stream_model() -> Iterator[structgen.LlamaCpp]:
    m = structgen.LlamaCpp(n_ctx=1024, n_seq_max=8, prefix_cache=2, kv_unified=False)
    yield m
    m.close()


def test_one_kv_stream_per_sequence_serves_concurrent_callers(stream_model: structgen.LlamaCpp) -> None:
    assert not stream_model.kv_unified and stream_model.n_ctx == 1024   # n_ctx is per sequence in this layout
    out = _threads(lambda i: generate(PEOPLE[i], Person, model=stream_model, seed=1, max_tokens=48), 8)
    assert all(isinstance(r, structgen.Result) for r in out), out
    names = [r.value.name for r in out]
    assert sum(name == p.split()[0] for name, p in zip(names, PEOPLE, strict=True)) >= 6, names
    # Three sequences copied from one prompt into three KV streams: greedy, they decode alike, and they read the
    # prompt (the city right in at least 3 of 4 texts, whatever the case the model writes it in).
    right = 0
    for text in PEOPLE[:4]:
        wide = generate(text, Person, model=stream_model, seed=2, n=3, strategy="best_of", max_tokens=48)
        assert len(wide.candidates) == 3 and len({c.text for c in wide.candidates}) == 1, wide.candidates
        right += wide.value.city.casefold() == text.split(".")[0].split()[-1].casefold()
    assert right >= 3


def test_a_prefix_copied_between_kv_streams_decodes_like_a_cold_prompt(stream_model: structgen.LlamaCpp) -> None:
    """llama.cpp copies a whole stream between sequences (and the cut is ours): the reply after a prefix hit must
    be the reply of the same prompt prefilled from nothing, token for token, its logprobs within the noise of a
    prompt decoded in other chunks (measured: at most 0.06, the same with a shared cache; a wrong KV is far off)."""
    system = "You extract people from short texts and answer in JSON. " * 10
    generate(PEOPLE[3], Person, model=stream_model, system=system, seed=1, max_tokens=48)   # fills the cache
    hit = generate(PEOPLE[4], Person, model=stream_model, system=system, seed=1, max_tokens=48)
    assert hit.timings.prefix_hit_tokens > 80
    cold_model = structgen.LlamaCpp(stream_model.path, n_ctx=1024, n_seq_max=1, prefix_cache=0, kv_unified=False)
    try:
        cold = generate(PEOPLE[4], Person, model=cold_model, system=system, seed=1, max_tokens=48)
    finally:
        cold_model.close()
    assert cold.timings.prefix_hit_tokens == 0
    assert hit.tokens == cold.tokens
    assert max(abs(a - b) for a, b in zip(hit.logprobs, cold.logprobs, strict=True)) < 0.1


def test_deterministic_mode_refuses_a_shared_kv_cache() -> None:
    with pytest.raises(structgen.InvalidArgument, match="kv_unified"):
        structgen.LlamaCpp(deterministic=True, kv_unified=True)
