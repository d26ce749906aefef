"""Request priority on the engine (``generate(..., priority=N)``, lower first): admission order, and less urgent
work held while a more urgent request prefills (what keeps an interactive request's first token fast beside a
``/v1/batches`` job). Every check reads the engine's own order of events, not the clock."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import structgen
from structgen.generate import build_request

LONG_DOCUMENT = " ".join(f"Line {i}: the parcel left depot {i} at {i % 24:02d}:00 and reached the next one."
                         for i in range(30))
"""A prompt of several hundred tokens: more than three of the scheduler's prefill chunks."""
STEADY = structgen.Regex("[a-z ]{100}")
"""A background answer that cannot end early: a few dozen decode steps at least."""


class TimedSink:
    """A stream sink that notes when each token event arrived (called from the engine thread)."""

    def __init__(self) -> None:
        self.token_times: list[float] = []
        self.started = threading.Event()

    def put(self, item: Any) -> None:
        if item[0] == "tokens":
            self.token_times.append(time.perf_counter())
            if len(self.token_times) >= 3:
                self.started.set()


@pytest.fixture(scope="module")
def engine() -> Iterator[structgen.LlamaCpp]:
    m = structgen.LlamaCpp(n_ctx=4096, n_seq_max=4, prefix_cache=0)
    yield m
    m.close()


def _tokens_during_prefill(engine: structgen.LlamaCpp, background_priority: int) -> tuple[int, int]:
    """Start a streamed background request at ``background_priority``; once it is decoding, submit a
    long-prompt request at priority 0. How many background tokens arrived while that prompt was prefilled, and
    how many prompt tokens it had."""
    sink = TimedSink()
    background = engine.submit(build_request(engine, "Write about the sea.", STEADY, max_tokens=128, seed=1,
                                             priority=background_priority), stream=sink)
    assert sink.started.wait(60), "the background request never started decoding"
    urgent = engine.submit(build_request(engine, f"{LONG_DOCUMENT}\nWhich depot came first?",
                                         structgen.Choice(["depot 0", "depot 29"]), seed=1))
    urgent.result()
    background.result()   # held, not starved: it finishes once the urgent request is past its prefill
    start, end = urgent.t_admit, urgent.t_admit + urgent.prompt_ms / 1000
    return sum(start < t < end for t in sink.token_times), len(urgent.job.tokens)


def test_a_more_urgent_request_is_admitted_first() -> None:
    m = structgen.LlamaCpp(n_ctx=2048, n_seq_max=1, prefix_cache=0)
    try:
        first = m.submit(build_request(m, "Write about the sea.", STEADY, max_tokens=128, seed=1))
        background = m.submit(build_request(m, "Name a colour.", None, max_tokens=4, seed=1, priority=1))
        urgent = m.submit(build_request(m, "Name a fruit.", None, max_tokens=4, seed=1))
        for t in (first, background, urgent):
            t.result()
        # one sequence: they ran one after another, the urgent one before the background one queued before it
        assert first.t_admit < urgent.t_admit < background.t_admit
    finally:
        m.close()


def test_less_urgent_work_waits_while_a_request_prefills(engine: structgen.LlamaCpp) -> None:
    during, n_prompt = _tokens_during_prefill(engine, background_priority=1)
    assert n_prompt > 3 * 128   # more than three prefill chunks: see the control below
    assert during == 0


def test_equal_priorities_share_the_steps_of_a_long_prefill(engine: structgen.LlamaCpp) -> None:
    # The control for the test above: at equal priority a long prompt is prefilled in chunks beside the running
    # stream, which gets a token at every step (scheduler.PREFILL_CHUNK).
    during, _ = _tokens_during_prefill(engine, background_priority=0)
    assert during >= 2


def test_priority_must_be_an_integer(engine: structgen.LlamaCpp) -> None:
    with pytest.raises(structgen.InvalidArgument, match="priority"):
        structgen.generate("hi", model=engine, priority="high")  # type: ignore[arg-type]


def test_a_served_request_carries_its_priority_to_the_engine() -> None:
    from structgen.serve.openai_api import ChatRequest, chat_plan, parse_body
    from structgen.serve.responses_api import ResponsesRequest, responses_plan

    chat = parse_body(ChatRequest, b'{"messages": [{"role": "user", "content": "hi"}], "priority": 1}')
    assert chat_plan(chat, max_tokens_cap=64, timeout=None).options["priority"] == 1
    assert "priority" not in chat_plan(parse_body(ChatRequest, b'{"messages": [{"role": "user", "content": "hi"}]}'),
                                       max_tokens_cap=64, timeout=None).options
    responses = ResponsesRequest.model_validate({"input": "hi", "priority": -1})
    assert responses_plan(responses, max_tokens_cap=64, timeout=None).options["priority"] == -1
    with pytest.raises(structgen.InvalidArgument, match="priority"):
        parse_body(ChatRequest, b'{"messages": [{"role": "user", "content": "hi"}], "priority": "high"}')
