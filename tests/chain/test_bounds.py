"""A hosted endpoint chooses the reply: it must not be able to stall the client. The defensive parse is linear
(and capped), and every regex match of a reply is bounded in time. The time limits asserted here are hang
detectors, several times the bound, not performance figures (those come from ``structgen bench``)."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator

import pytest

import structgen
from structgen.chain.parse import MAX_REPLY_CHARS, parse_json, parse_structured, parse_yaml
from structgen.compile import regex_match
from structgen.errors import ParseError
from structgen.testing import Fault, FaultProxy

from ..conftest import completion_body

HANG_S = 10.0


@pytest.mark.parametrize("reply", [
    "{" * 100_000,                                                   # 35 s before: each brace tried as a start
    '{"a": [1, {"b": ' * 5_000,
    "\n".join("Sure, here it is" for _ in range(6_000)) + '\n{"a": 1}',   # chatter lines: quadratic before
    "\n".join(f"Note: line {i} of prose, see: above" for i in range(4_000)),
], ids=["open braces", "nested opens", "chatter then JSON", "prose with colons"])
def test_the_defensive_parse_is_linear_in_the_reply(reply: str) -> None:
    for parse in (parse_structured, parse_json, parse_yaml):
        start = time.monotonic()
        with contextlib.suppress(ParseError):
            parse(reply)
        assert time.monotonic() - start < HANG_S, parse.__name__


def test_a_reply_past_the_cap_is_a_parse_error_at_once() -> None:
    start = time.monotonic()
    with pytest.raises(ParseError, match="longer than the parser reads"):
        parse_structured('{"a": "' + "x" * MAX_REPLY_CHARS + '"}')
    assert time.monotonic() - start < 1.0


def test_a_catastrophic_pattern_is_bounded_in_time() -> None:
    compiled = structgen.compile_schema(structgen.Regex(r"(a|aa)+b"))
    start = time.monotonic()
    with pytest.raises(ValueError, match="catastrophic backtracking"):
        compiled.validate("a" * 60)
    assert time.monotonic() - start < HANG_S
    assert compiled.validate("aab") == "aab"


def test_json_schema_patterns_are_bounded_too() -> None:
    schema = {"type": "object", "properties": {"s": {"type": "string", "pattern": "^(a|aa)+$"}},
              "patternProperties": {"^(x|xx)+$": {"type": "integer"}}}
    compiled = structgen.compile_schema(schema)
    start = time.monotonic()
    for value in ({"s": "a" * 60 + "!"}, {"x" * 60 + "!": 1}):
        with pytest.raises(ValueError, match="catastrophic backtracking"):
            compiled.validate(json.dumps(value))
    assert time.monotonic() - start < 2 * HANG_S
    assert compiled.validate(json.dumps({"s": "aaa", "xx": 3})) == {"s": "aaa", "xx": 3}
    with pytest.raises(ValueError, match="is not of type 'integer'"):
        compiled.validate(json.dumps({"xx": "three"}))


def test_search_all_shares_one_budget() -> None:
    assert regex_match.search_all(r"\d+", "a1b22c333", limit=2) == ["1", "22"]
    with pytest.raises(regex_match.MatchTimeout):
        regex_match.search_all(r"(a|aa)+b", "a" * 60 + " " + "a" * 60, timeout_s=0.2)


@pytest.fixture(scope="module")
def canned() -> Iterator[FaultProxy]:
    """The fault proxy answering every request itself (nothing listens upstream)."""
    with FaultProxy("http://127.0.0.1:9") as proxy:
        yield proxy


@pytest.mark.parametrize("strategy", ["repair", "auto", "best_of"])
def test_a_hosted_reply_cannot_stall_the_regex_validator(canned: FaultProxy, strategy: str) -> None:
    # 24 a's took 10 s in the validator before; 30 would have taken minutes.
    canned.always(Fault.status(200, body=completion_body("a" * 60)))
    model = structgen.OpenAICompatible(f"{canned.url}/v1", timeout=10, max_retries=0)
    start = time.monotonic()
    with pytest.raises(structgen.ValidationFailed) as info:
        structgen.generate("Answer.", structgen.Regex(r"(a|aa)+b"), model=model, strategy=strategy,
                           max_attempts=2, n=2)
    assert time.monotonic() - start < 3 * HANG_S
    assert any("catastrophic" in (a.error or "") for a in info.value.attempts)
    model.close()


def test_a_huge_hosted_reply_is_refused_not_parsed(canned: FaultProxy) -> None:
    canned.always(Fault.status(200, body=completion_body("{" * (MAX_REPLY_CHARS + 10))))
    model = structgen.OpenAICompatible(f"{canned.url}/v1", timeout=10, max_retries=0)
    with pytest.raises(structgen.ValidationFailed) as info:
        structgen.generate("Answer.", {"type": "object"}, model=model, strategy="repair", max_attempts=1)
    assert "longer than the parser reads" in (info.value.attempts[-1].error or "")
    model.close()


@pytest.mark.parametrize("content", [1, [1, 2], {"a": 1}, True])
def test_a_reply_whose_content_is_not_text_is_a_backend_error(canned: FaultProxy, content: object) -> None:
    body = completion_body(content)
    canned.always(Fault.status(200, body=body))
    model = structgen.OpenAICompatible(f"{canned.url}/v1", timeout=10, max_retries=0)
    with pytest.raises(structgen.BackendError, match="where text belongs"):
        structgen.generate("Answer.", {"type": "object"}, model=model, strategy="prompt")
    model.close()
