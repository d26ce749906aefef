"""The fault matrix: the real server behind structgen's fault proxy. Every fault is retried with backoff or
ends as a typed ``BackendError``, within a bounded time; never a hang, never an invalid value."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

import structgen
from structgen import BackendError, Fault, FaultProxy, OpenAICompatible
from structgen.testing import free_port

from .conftest import elapsed

PROMPT = "Say hi."


def _client(proxy: FaultProxy, **kwargs: object) -> OpenAICompatible:
    options: dict[str, object] = {"timeout": 30.0, "max_retries": 0, "backoff": 0.05}
    options.update(kwargs)
    return OpenAICompatible(base_url=f"{proxy.url}/v1", **options)  # type: ignore[arg-type]


def _settled(proxy: FaultProxy, count: int) -> list[str | None]:
    """The faults of the first ``count`` requests, once their handlers have finished (they log at the end)."""
    deadline = time.monotonic() + 5
    while len(proxy.log) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return [r.fault for r in proxy.log]


def _fail(model: OpenAICompatible, **kwargs: object) -> BackendError:
    options: dict[str, object] = {"max_tokens": 2, **kwargs}
    with pytest.raises(BackendError) as info:
        structgen.generate(PROMPT, model=model, **options)  # type: ignore[arg-type]
    return info.value


@pytest.mark.parametrize(("fault", "status"), [
    (Fault.status(500), 500),
    (Fault.status(502), 502),
    (Fault.status(503), 503),
    (Fault.html(502), 502),
    (Fault.status(429, retry_after=0), 429),
])
def test_error_statuses_are_retryable_backend_errors(proxy: FaultProxy, fault: Fault, status: int) -> None:
    model = _client(proxy)
    proxy.inject(fault)
    with elapsed() as t:
        err = _fail(model)
    assert err.retryable and err.status_code == status
    assert [r.fault for r in proxy.log] == [fault.kind]  # max_retries=0: exactly one request
    assert t[0] < 5


def test_an_html_page_is_reported_as_such(proxy: FaultProxy) -> None:
    proxy.inject(Fault.html(502))
    err = _fail(_client(proxy))
    assert "502 Bad Gateway" in str(err)


@pytest.mark.parametrize("code", [400, 401, 404, 422])
def test_client_errors_are_not_retried(proxy: FaultProxy, code: int) -> None:
    proxy.always(Fault.status(code))
    err = _fail(_client(proxy, max_retries=3))
    assert not err.retryable and err.status_code == code
    assert len(proxy.log) == 1


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("fault", [Fault.cut(0.5), Fault.truncated_json(0.5), Fault.empty_choices(), Fault.reset()],
                         ids=["cut", "truncated_json", "empty_choices", "reset"])
def test_broken_bodies_are_retryable_backend_errors(proxy: FaultProxy, fault: Fault, stream: bool) -> None:
    proxy.inject(fault)
    with elapsed() as t:
        err = _fail(_client(proxy, stream=stream))
    assert err.retryable and err.status_code is None
    assert t[0] < 30


def test_a_body_cut_mid_json_is_not_a_completion(proxy: FaultProxy) -> None:
    proxy.inject(Fault.truncated_json(0.5))
    assert "not a chat completion" in str(_fail(_client(proxy)))


def test_an_empty_choice_list_is_named(proxy: FaultProxy) -> None:
    proxy.inject(Fault.empty_choices())
    assert "empty choices" in str(_fail(_client(proxy)))


def test_a_stream_cut_between_events_is_detected(proxy: FaultProxy) -> None:
    # The stream ends cleanly (matching Content-Length) but before the finish reason: a stream that stopped.
    proxy.inject(Fault.truncated_json(0.5))
    err = _fail(_client(proxy, stream=True), max_tokens=12)
    assert err.retryable and "stopped before" in str(err)


def test_a_stream_that_stops_times_out(proxy: FaultProxy) -> None:
    proxy.inject(Fault.stall(0.5))
    timeout = 2.5
    with elapsed() as t:
        err = _fail(_client(proxy, timeout=timeout, stream=True))
    assert err.retryable
    assert t[0] < timeout * 2 + 5  # reply time + one timeout, never a hang
    assert _settled(proxy, 1) == ["stall"]


def test_a_delay_beyond_the_timeout_is_a_timeout(proxy: FaultProxy) -> None:
    proxy.inject(Fault.delay(5))
    with elapsed() as t:
        err = _fail(_client(proxy, timeout=1.0))
    assert err.retryable and "timeout" in str(err)
    assert t[0] < 3
    assert _settled(proxy, 1) == ["delay"]  # the proxy dropped the request when the client hung up
    assert proxy.log[0].status_code is None


def test_a_delay_within_the_timeout_is_served(proxy: FaultProxy) -> None:
    proxy.inject(Fault.delay(0.5))
    with elapsed() as t:
        r = structgen.generate(PROMPT, model=_client(proxy, timeout=30), max_tokens=2)
    assert isinstance(r.value, str) and r.value
    assert t[0] >= 0.5


def test_connection_refused_is_retried_then_typed() -> None:
    model = OpenAICompatible(base_url=f"http://127.0.0.1:{free_port()}/v1", max_retries=2, backoff=0.1, timeout=5)
    with elapsed() as t:
        err = _fail(model)
    assert err.retryable and err.status_code is None and "connection failed" in str(err)
    assert 0.1 <= t[0] < 3  # two backoffs of 0.05–0.1 s and 0.1–0.2 s


def test_transient_faults_are_retried_with_backoff(proxy: FaultProxy) -> None:
    proxy.inject(Fault.status(503), Fault.html(502), Fault.reset(), Fault.empty_choices())
    model = _client(proxy, max_retries=4)
    with elapsed() as t:
        r = structgen.generate(PROMPT, model=model, max_tokens=2)
    assert isinstance(r.value, str)
    assert [rec.fault for rec in proxy.log] == ["status", "html", "reset", "empty_choices", None]
    assert t[0] < 30


def test_retries_are_bounded(proxy: FaultProxy) -> None:
    proxy.always(Fault.status(503))
    with elapsed() as t:
        err = _fail(_client(proxy, max_retries=3, backoff=0.05))
    assert err.retryable and err.status_code == 503
    assert len(proxy.log) == 4
    assert t[0] < 3


def test_retry_after_is_honoured(proxy: FaultProxy) -> None:
    proxy.inject(Fault.status(429, retry_after=1))
    with elapsed() as t:
        structgen.generate(PROMPT, model=_client(proxy, max_retries=1, backoff=0.0), max_tokens=2)
    assert t[0] >= 1.0
    assert [rec.status_code for rec in proxy.log] == [429, 200]


def test_a_retry_after_beyond_the_bound_fails_at_once(proxy: FaultProxy) -> None:
    proxy.inject(Fault.status(429, retry_after=120))
    with elapsed() as t:
        err = _fail(_client(proxy, max_retries=3, max_retry_after=5))
    assert err.status_code == 429 and err.retryable
    assert t[0] < 2 and len(proxy.log) == 1


def test_a_failed_sample_does_not_sink_best_of(proxy: FaultProxy) -> None:
    # The first request asks for n=3; this server answers one choice, so the other two go in parallel and
    # one of them meets a 400: it is recorded, the valid samples still decide.
    model = _client(proxy, concurrency=1)
    proxy.inject(Fault.content("yes"), Fault.status(400), Fault.content("no"))
    r = structgen.generate("Is water wet?", schema=structgen.Choice(["yes", "no"]), model=model,
                           strategy="best_of", n=3, max_tokens=2, select="first_valid")
    assert r.value == "yes"
    errors = [a.error for a in r.attempts]
    assert sum(1 for e in errors if e and e.startswith("backend:")) == 1
    assert json.loads(proxy.log[0].body)["n"] == 3
    assert model.caps.n is False


def test_async_faults_are_typed_too(proxy: FaultProxy) -> None:
    proxy.always(Fault.status(503))
    model = _client(proxy, max_retries=1)

    async def go() -> BackendError:
        try:
            await structgen.agenerate(PROMPT, model=model, max_tokens=2)
        except BackendError as exc:
            return exc
        finally:
            await model.aclose()
        raise AssertionError("no error")

    with elapsed() as t:
        err = asyncio.run(go())
    assert err.status_code == 503 and len(proxy.log) == 2
    assert t[0] < 3
