"""Pieces of the hosted path that need no server: prompt shapes, Retry-After, the chain's plan."""

from __future__ import annotations

import email.utils
import os
import signal
import threading
import time
from typing import Literal

import pytest
from pydantic import BaseModel

import structgen
from structgen.chain.prompting import describe_schema
from structgen.chain.strategies import Call, Capabilities, Completion, Constraint, Reply, chain, run_chain
from structgen.hosted.openai_compatible import _retry_after
from structgen.request import Request, SamplingParams


class Address(BaseModel):
    street: str
    zip: str | None = None


class Person(BaseModel):
    name: str
    age: int
    address: Address
    tags: list[str] = []


def test_simple_schemas_are_described_in_words() -> None:
    text = describe_schema(structgen.compile_schema(Person).json_schema or {})
    assert text == ('a JSON object with these keys: "name" (string), "age" (integer), "address" (an object with '
                    'keys "street" (string), "zip" (string or null, optional)), "tags" (a list of string, optional)')
    enum = {"type": "object", "properties": {"a": {"enum": ["x", "y"]}, "b": {"type": "integer", "minimum": 1}},
            "required": ["a"]}
    assert describe_schema(enum) == 'a JSON object with these keys: "a" (one of "x", "y"), "b" (integer, at least 1, optional)'


def test_schemas_that_do_not_fit_in_words_are_sent_verbatim() -> None:
    assert describe_schema({"allOf": [{"type": "string"}]}) is None
    assert describe_schema({"type": "object", "patternProperties": {"^x": {"type": "integer"}}}) is None
    assert describe_schema({"type": "object", "properties": {"a": {"not": {"type": "null"}}}}) is None


def test_retry_after_reads_seconds_and_dates() -> None:
    assert _retry_after("2") == 2.0 and _retry_after("0.5") == 0.5
    assert _retry_after(None) is None and _retry_after("soon") is None
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 < (_retry_after(later) or 0) <= 31
    assert _retry_after(email.utils.formatdate(time.time() - 30, usegmt=True)) == 0.0


def _first_calls(strategy: str, caps: Capabilities, constraints: tuple[Constraint, ...] = (),
                 n: int = 1, select: Literal["logprob", "first_valid"] = "logprob") -> list[Call]:
    """The first batch of requests the chain asks for (no server needed: the chain is a generator)."""
    req = Request(prompt="hi", schema=structgen.compile_schema(Person), sampling=SamplingParams(), seed=1,
                  strategy=strategy, n=n, select=select)
    return next(chain(req, caps, constraints))


OPENAI_FORM = Constraint("json_schema", {"type": "json_schema"})
LLAMA_CPP_PYTHON_FORM = Constraint("json_object", {"type": "json_object", "schema": {}})
BOTH = (OPENAI_FORM, LLAMA_CPP_PYTHON_FORM)


def test_auto_skips_a_constraint_the_endpoint_refused_but_server_asks_again() -> None:
    assert _first_calls("auto", Capabilities(), (OPENAI_FORM,))[0].constraint == OPENAI_FORM
    refused = Capabilities(json_schema=False)
    assert _first_calls("auto", refused, (OPENAI_FORM,))[0].constraint is None
    assert _first_calls("server", refused, (OPENAI_FORM,))[0].constraint == OPENAI_FORM


def test_a_refused_form_is_skipped_for_the_next_one() -> None:
    assert _first_calls("auto", Capabilities(), BOTH)[0].constraint == OPENAI_FORM
    assert _first_calls("auto", Capabilities(json_schema=False), BOTH)[0].constraint == LLAMA_CPP_PYTHON_FORM
    assert _first_calls("auto", Capabilities(json_schema=False, json_object=False), BOTH)[0].constraint is None
    # server asks again when every form was refused, from the preferred one
    assert _first_calls("server", Capabilities(json_schema=False, json_object=False), BOTH)[0].constraint \
        == OPENAI_FORM


def test_refusal_of_the_first_form_sends_the_second_in_the_same_call() -> None:
    from structgen.errors import BackendError

    req = Request(prompt="hi", schema=structgen.compile_schema(Person), sampling=SamplingParams(), seed=1,
                  strategy="auto")
    caps = Capabilities()
    steps = chain(req, caps, BOTH)
    [first] = next(steps)
    [second] = steps.send([BackendError("422: response_format", status_code=422)])
    assert first.constraint == OPENAI_FORM and second.constraint == LLAMA_CPP_PYTHON_FORM
    assert caps.json_schema is False and caps.json_object is None


def test_best_of_asks_for_n_until_the_endpoint_is_known_to_ignore_it() -> None:
    calls = _first_calls("best_of", Capabilities(), n=4)
    assert len(calls) == 1 and calls[0].n == 4 and calls[0].want_logprobs
    calls = _first_calls("best_of", Capabilities(n=False), n=4)
    assert len(calls) == 4 and {c.n for c in calls} == {1} and len({c.seed for c in calls}) == 4
    assert all(c.sampling.temperature >= 0.7 for c in calls)  # n greedy samples would be one sample n times


def test_logprobs_are_asked_for_only_when_the_choice_ranks_by_them() -> None:
    for strategy in ("best_of", "self_consistency"):
        assert _first_calls(strategy, Capabilities(), n=4)[0].want_logprobs
        assert not _first_calls(strategy, Capabilities(), n=4, select="first_valid")[0].want_logprobs
    assert not _first_calls("repair", Capabilities())[0].want_logprobs


@pytest.mark.parametrize(("select", "winner"), [("logprob", "no"), ("first_valid", "yes")])
def test_self_consistency_breaks_a_tie_by_logprob_or_by_order(select: Literal["logprob", "first_valid"],
                                                              winner: str) -> None:
    req = Request(prompt="hi", schema=structgen.compile_schema(structgen.Choice(["yes", "no"])),
                  sampling=SamplingParams(), seed=1, strategy="self_consistency", n=4, select=select)
    steps = chain(req, Capabilities(n=False), ())
    calls = next(steps)
    assert len(calls) == 4
    texts = ["yes", "no", "yes", "no"]   # 2 against 2; "no" has the best logprobs (a server may send them unasked)
    logprobs = [(-2.0,), (-0.5,), (-1.5,), (-0.2,)]
    replies = [Reply((Completion(t, "stop", 1, lp),)) for t, lp in zip(texts, logprobs, strict=True)]
    with pytest.raises(StopIteration) as done:
        steps.send(replies)
    result = done.value.value
    assert result.value == winner and result.strategy == "self_consistency"
    assert [c.value for c in result.candidates] == texts


class _Hanging:
    """A text model whose requests hang until ``release`` is set (a slow server)."""

    name = "hanging"

    def __init__(self, expect: int = 0) -> None:
        self.caps = Capabilities(n=False)
        self.release = threading.Event()
        self.all_started = threading.Event()   # set once ``expect`` requests are in flight
        self.expect = expect
        self.started = 0
        self.finished = 0
        self._lock = threading.Lock()

    def constraints(self, schema: object) -> tuple[Constraint, ...]:
        return ()

    def complete(self, call: Call) -> Reply:
        with self._lock:
            self.started += 1
            if self.started == self.expect:
                self.all_started.set()
        self.release.wait(60)
        with self._lock:
            self.finished += 1
        return Reply((Completion('"x"', "stop", 1, (-0.1,)),))


@pytest.mark.parametrize("lands_on", ["any thread", "another thread"])
@pytest.mark.usefixtures("ctrl_c")
def test_an_interrupt_does_not_wait_for_requests_in_flight(lands_on: str) -> None:
    """Ctrl-C gets through while requests hang. No clock: the requests hang until the test releases them, so
    the interrupt surfaced in time exactly when none of them had finished by then."""
    model = _Hanging(expect=4)
    req = Request(prompt="hi", schema=structgen.compile_schema(str), sampling=SamplingParams(), seed=1,
                  strategy="best_of", n=4)
    sent = threading.Event()

    def interrupt() -> None:   # a real SIGINT, as Ctrl-C sends it, once all 4 requests are in flight
        if model.all_started.wait(60):
            sent.set()
            os.kill(os.getpid(), signal.SIGINT)

    sender = threading.Thread(target=interrupt, daemon=True)
    sender.start()
    # "another thread": the caller's thread blocks SIGINT (so do the workers it starts, which inherit the mask),
    # so the kernel must hand the signal to the sender, as it may on a busy machine; Python still raises it in
    # the main thread, but only once that thread runs bytecode again.
    masked = lands_on == "another thread"
    if masked:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        with pytest.raises(KeyboardInterrupt):
            run_chain(model, req, concurrency=4)
        finished_by_then = model.finished
        assert sent.is_set(), "the 4 requests never all started"
        assert model.started == 4
        assert finished_by_then == 0, "the interrupt waited for the requests in flight"
    finally:
        if masked:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        model.release.set()
        sender.join(5)
