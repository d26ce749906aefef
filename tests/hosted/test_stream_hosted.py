"""``structgen.stream`` on a hosted model (the real ``llama_cpp.server``): each call of the chain streams as the
server sends it; the last event is the validated result."""

from __future__ import annotations

import time

import structgen

PERSON = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20},
                                           "age": {"type": "integer", "minimum": 0, "maximum": 120}},
          "required": ["name", "age"], "additionalProperties": False}


def test_a_hosted_reply_streams_and_ends_validated(hosted: structgen.OpenAICompatible) -> None:
    events = list(structgen.stream("Alice is 30 years old. Extract the person.", PERSON, model=hosted, seed=1,
                                   max_tokens=64))
    done = events[-1]
    assert isinstance(done, structgen.Done)
    assert set(done.result.value) == {"name", "age"}
    start = max((i for i, e in enumerate(events) if isinstance(e, structgen.Reset)), default=-1) + 1
    deltas = [e for e in events[start:] if isinstance(e, structgen.Delta)]
    assert len(deltas) >= 2 and all(d.text for d in deltas)
    assert deltas[-1].snapshot == "".join(d.text for d in deltas)
    assert deltas[-1].snapshot == done.result.attempts[-1].text
    assert all(d.partial is None and d.tokens == () for d in deltas)


def test_closing_a_hosted_stream_cancels_it(hosted: structgen.OpenAICompatible) -> None:
    request = structgen.generate("Write a long story about the sea.", model=_Capture(), max_tokens=300, seed=1)
    stream = hosted.open_stream(request)
    kind, _ = stream.sink.get(timeout=60)
    assert kind == "call"
    assert stream.sink.get(timeout=60)[0] == "text"
    stream.cancel()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        kind, payload = stream.sink.get(timeout=60)
        if kind == "done":
            assert isinstance(payload, structgen.Cancelled)
            return
    raise AssertionError("the stream did not end")


class _Capture:
    def run(self, request: object) -> object:
        return request
