"""``structgen.apps.text_to_regex``: verification, extraction, typed errors, and the real model end to end."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

import structgen
from structgen.apps import RegexNotVerified, RegexResult, text_to_regex, verify_regex
from structgen.apps.regex import extract_regex, regex_messages
from structgen.errors import GrammarError, InvalidArgument
from structgen.testing import RandomLogitsModel

# ---- verify_regex ----------------------------------------------------------------------------------


def test_verify_regex_checks_compile_examples_and_counters() -> None:
    ok = verify_regex(r"\d{5}(-\d{4})?", ["12345", "12345-6789"], ["1234", "12345-678"])
    assert ok.verified and ok.compiles and ok.error is None
    assert ok.examples == {"12345": True, "12345-6789": True}
    assert ok.counters == {"1234": False, "12345-678": False}

    loose = verify_regex(r"\d+(-\d+)?", ["12345"], ["1234"])
    assert not loose.verified and loose.counters == {"1234": True}
    assert "counter-example '1234' fully matches" in (loose.error or "")

    partial = verify_regex(r"\d{5}", ["12345-6789"])  # a prefix match is not a full match
    assert not partial.verified and partial.examples == {"12345-6789": False}
    assert "example '12345-6789' does not fully match" in (partial.error or "")


@pytest.mark.parametrize("pattern", [r"[z-a]", r"a{5,2}", r"(a)\2", r"(?P=x)", r"\400"])
def test_verify_regex_reports_what_re_compile_refuses(pattern: str) -> None:
    # All five are inside python_regex.lark (a grammar cannot check them): the bundled grammar's check
    # (re.compile) and the verifier must refuse them.
    bundled = structgen.Grammar.bundled("python_regex")
    assert structgen.compile_schema(structgen.Grammar(bundled.source)).validate(pattern) == pattern
    with pytest.raises(ValueError, match=r"re\.compile rejects it"):
        structgen.compile_schema(bundled).validate(pattern)
    c = verify_regex(pattern, ["a"])
    assert not c.compiles and not c.verified and c.error and c.error.startswith("does not compile")
    assert c.examples == {}


def test_verify_regex_stops_catastrophic_backtracking() -> None:
    t0 = time.perf_counter()
    c = verify_regex(r"(a+)+b", ["ab"], ["a" * 40], timeout_s=1.0)
    assert time.perf_counter() - t0 < 8
    assert c.compiles and not c.verified
    assert "stopped after 1 s (catastrophic backtracking?)" in (c.error or "")


def test_verify_regex_keeps_results_of_patterns_before_a_slow_one() -> None:
    from structgen.apps.regex import _verify_many

    out = _verify_many([(r"a+", -0.1), (r"(a+)+b", -0.2), (r"b", -0.3)], [], ["a" * 40], timeout_s=1.0)
    assert [c.regex for c in out] == ["a+", "(a+)+b", "b"]
    assert out[0].counters == {"a" * 40: True}
    assert "catastrophic" in (out[1].error or "")
    assert out[2].verified and out[2].counters == {"a" * 40: False}


@pytest.mark.parametrize(("reply", "regex"), [
    (r"\d{4}", r"\d{4}"),
    ("```python\nr'^\\d{4}$'\n```\nThis matches four digits.", r"^\d{4}$"),
    ('The regex is: "[a-z]+"', "[a-z]+"),
    ("Regex: `[A-Z]{2}`, for two capitals", "[A-Z]{2}"),
    ("/^ab+c$/", "^ab+c$"),
    ("\n\n[0-9]+\nexplanation", "[0-9]+"),
    ("", ""),
])
def test_extract_regex(reply: str, regex: str) -> None:
    assert extract_regex(reply) == regex


# ---- argument and environment errors -----------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"description": ""}, "description is empty"),
    ({"description": "  \n "}, "description is empty"),
    ({"examples": ["a"], "counters": ["a"]}, "both an example and a counter-example"),
    ({"examples": "abc"}, "not one string"),
    ({"examples": [1]}, "must be a string"),
    ({"n": 0}, "n must be a positive integer"),
    ({"rounds": 0}, "rounds must be a positive integer"),
])
def test_text_to_regex_rejects_bad_arguments(kwargs: dict[str, object], message: str,
                                             random_model: RandomLogitsModel) -> None:
    args: dict[str, object] = {"description": "a word", "model": random_model, **kwargs}
    with pytest.raises(InvalidArgument, match=message):
        text_to_regex(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(("content", "expect"), [
    (b"\xff\xfe not utf-8", "cannot read the bundled grammar"),
    (b"start: item\nitem: \"a\" | undefined_rule\n", "undefined_rule"),
])
def test_unreadable_or_broken_grammar_is_a_grammar_error(content: bytes, expect: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         random_model: RandomLogitsModel) -> None:
    import structgen.compile.kinds

    (tmp_path / "python_regex.lark").write_bytes(content)
    monkeypatch.setattr(structgen.compile.kinds, "_grammar_dir", lambda: tmp_path)
    with pytest.raises(GrammarError, match=expect):
        text_to_regex("a word", model=random_model, seed=1)


# ---- generation ------------------------------------------------------------------------------------


def test_prompt_is_few_shot_and_ends_with_the_description() -> None:
    messages = regex_messages("a US ZIP code")
    assert messages[0]["role"] == "system"
    assert [m["role"] for m in messages[1:-1]] == ["user", "assistant"] * ((len(messages) - 2) // 2)
    assert len(messages) >= 7
    assert messages[-1] == {"role": "user", "content": "Python regex for: a US ZIP code"}
    for shot in messages[2:-1:2]:  # every few-shot answer is itself a valid regex
        re.compile(shot["content"])


def test_random_logits_never_yield_an_unverified_regex(random_model: RandomLogitsModel) -> None:
    # Random logits under the grammar: whatever comes back compiles and matches; anything else is a
    # RegexNotVerified that says, per candidate, why.
    outcomes = {"verified": 0, "refused": 0}
    for seed in range(6):
        try:
            r = text_to_regex("anything", ["a"], n=3, model=random_model, seed=seed, max_tokens=24)
        except RegexNotVerified as exc:
            outcomes["refused"] += 1
            assert exc.candidates and all(not c.verified and c.error for c in exc.candidates)
            assert exc.to_dict()["verified"] is False
            continue
        outcomes["verified"] += 1
        assert re.fullmatch(r.regex, "a")
        assert r.verified and r.compiles and r.examples == {"a": True}
    assert outcomes["refused"] > 0  # random regexes rarely match "a": the failure path ran


def test_real_model_regex_end_to_end(app_model: structgen.LlamaCpp) -> None:
    # No examples: verification is re.compile alone, which a grammar-constrained candidate passes.
    r = text_to_regex("a word in capital letters", n=2, model=app_model, seed=3)
    assert isinstance(r, RegexResult) and r.verified and r.compiles
    re.compile(r.regex)
    assert not r.regex.startswith(("'", '"', "/", "r'"))  # the whole output is the regex
    ranked = [c.avg_logprob for c in r.candidates if c.avg_logprob is not None]
    assert ranked == sorted(ranked, reverse=True)
    best_verified = next(c for c in r.candidates if c.verified)
    assert (best_verified.regex, best_verified.avg_logprob) == (r.regex, r.avg_logprob)
    d = r.to_dict()
    assert list(d) == ["regex", "compiles", "examples", "counters", "verified", "candidates"]
    assert d["candidates"][0].keys() >= {"regex", "avg_logprob", "verified", "error"}

    again = text_to_regex("a word in capital letters", n=2, model=app_model, seed=3)
    assert again.regex == r.regex  # seeded


def test_real_model_unverifiable_request_raises_with_every_candidate(app_model: structgen.LlamaCpp) -> None:
    # Forty digits that differ only in the last one: no plausible regex separates them.
    good, bad = "1234567890" * 4, "1234567890" * 3 + "1234567891"
    with pytest.raises(RegexNotVerified) as info:
        text_to_regex("a 40-digit number", [good], [bad], n=1, model=app_model, seed=0)
    cands = info.value.candidates
    assert cands and all(c.error for c in cands)
    for c in cands:
        if c.compiles:
            assert c.examples.get(good) is False or c.counters.get(bad) is True
    assert "no regex verified" in str(info.value)
