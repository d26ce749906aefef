"""The fallback chain against the real llama_cpp.server: every strategy, JSON and YAML, refusals, re-asks.

Where a test needs a particular reply (a broken one, YAML the small model will not write), the fault proxy
rewrites the real server's reply text; everything else is the real model's output.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re

import pytest
from pydantic import BaseModel

import structgen
from structgen import Choice, Fault, FaultProxy, OpenAICompatible, Regex, ValidationFailed
from structgen.selection import normalise


class City(BaseModel):
    city: str
    country: str


PARIS = "Paris is the capital of France. Extract the city and its country."
SKY = "Is the sky blue? Answer yes or no."
YES_NO = Choice(["yes", "no"])


def _messages(proxy: FaultProxy, i: int) -> list[dict[str, str]]:
    return list(proxy.log[i].json()["messages"])


# ---- strategies on the real server ----------------------------------------------------------------

CAPITALS = [("Paris", "France"), ("Rome", "Italy"), ("Tokyo", "Japan")]


def test_prompt_returns_a_validated_value_and_reports_usage(hosted: OpenAICompatible) -> None:
    # Free text is not constrained: each reply is a validated City or a typed ValidationFailed. What it says is
    # checked over three texts, ignoring case (what a 135M model writes may differ in a letter on another CPU).
    named = []
    for city, country in CAPITALS:
        try:
            r = structgen.generate(f"{city} is the capital of {country}. Extract the city and its country.",
                                   schema=City, model=hosted, strategy="prompt", max_tokens=32, seed=1)
        except ValidationFailed as exc:
            assert exc.attempts and all(a.error for a in exc.attempts)
            named.append(None)
            continue
        assert isinstance(r.value, City)
        assert r.strategy == "prompt" and r.model == "local"
        assert City.model_validate_json(r.text) == r.value          # the returned text is the validated text
        assert len(r.attempts) == 1 and r.attempts[0].error is None and r.attempts[0].text.strip()
        assert r.timings.prompt_tokens > 10 and r.timings.generated_tokens == r.attempts[0].tokens > 0
        named.append(r.value.city.strip().lower() == city.lower())
    assert named.count(True) >= 2, named


def test_a_refused_json_schema_goes_as_json_object_and_is_remembered(hosted: OpenAICompatible) -> None:
    # llama-cpp-python's server rejects response_format type "json_schema" (an HTTP 500 naming the field) but
    # takes {"type": "json_object", "schema": ...} and compiles the schema to a grammar itself.
    r = structgen.generate(PARIS, schema=City, model=hosted, max_tokens=32, seed=1)
    assert r.strategy == "server" and isinstance(r.value, City)
    refused, served = r.attempts
    assert refused.strategy == "server" and refused.error is not None and refused.error.startswith("refused")
    assert "json_schema" in refused.error
    assert served.strategy == "server" and served.error is None
    assert hosted.caps.json_schema is False and hosted.caps.json_object is True
    again = structgen.generate(PARIS, schema=City, model=hosted, max_tokens=32, seed=1)
    assert [a.strategy for a in again.attempts] == ["server"]  # no second refused request
    assert again.value == r.value


def test_the_server_side_schema_holds_patterns_and_bounds(hosted: OpenAICompatible) -> None:
    # The server compiles pattern and integer bounds into its grammar; the value is still validated here.
    schema = {"type": "object", "properties": {"code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"},
                                               "count": {"type": "integer", "minimum": 3, "maximum": 9}},
              "required": ["code", "count"], "additionalProperties": False}
    r = structgen.generate("Make up a product code and a count.", schema=schema, model=hosted,
                           strategy="server", max_tokens=48, seed=3)
    assert r.strategy == "server" and [a.strategy for a in r.attempts][-1] == "server"
    assert re.fullmatch(r"[A-Z]{3}-[0-9]{4}", r.value["code"]) and 3 <= r.value["count"] <= 9


@pytest.mark.parametrize(("schema", "prompt", "check"), [
    (YES_NO, SKY, lambda v: v in ("yes", "no")),
    (Regex(r"[0-9]{5}"), "Give a US zip code.", lambda v: re.fullmatch(r"[0-9]{5}", v) is not None),
    (structgen.Grammar('start: WORD ("," WORD)*\nWORD: /[a-z]{1,8}/\n'), "List three colours.",
     lambda v: re.fullmatch(r"[a-z]{1,8}(,[a-z]{1,8})*", v) is not None),
], ids=["choice", "regex", "lark"])
def test_server_side_grammar(hosted: OpenAICompatible, schema: object, prompt: str, check: object) -> None:
    r = structgen.generate(prompt, schema=schema, model=hosted, strategy="server", max_tokens=12, seed=1)  # type: ignore[arg-type]
    assert r.strategy == "server" and [a.strategy for a in r.attempts] == ["server"]
    assert check(r.value)  # type: ignore[operator]
    assert hosted.caps.grammar is True


def test_best_of_keeps_the_best_average_logprob(hosted: OpenAICompatible) -> None:
    r = structgen.generate(SKY, schema=YES_NO, model=hosted, strategy="best_of", n=3, max_tokens=4, seed=1,
                           temperature=1.0)
    assert r.strategy == "best_of" and r.value in ("yes", "no")
    assert r.candidates and r.logprobs
    assert r.avg_logprob == max(c.avg_logprob for c in r.candidates)
    assert hosted.caps.n is False  # this server answers one choice per request whatever n says
    assert sum(a.strategy == "best_of" for a in r.attempts) >= 3


def test_best_of_without_logprobs_takes_the_first_valid(llama_server: str) -> None:
    model = OpenAICompatible(base_url=f"{llama_server}/v1", logprobs=False)
    r = structgen.generate(SKY, schema=YES_NO, model=model, strategy="best_of", n=2, max_tokens=4, seed=1,
                           temperature=1.0)
    assert r.logprobs == [] and all(a.avg_logprob is None for a in r.attempts)
    assert r.value == r.candidates[0].value
    model.close()


def test_self_consistency_returns_the_majority(hosted: OpenAICompatible) -> None:
    r = structgen.generate(SKY, schema=YES_NO, model=hosted, strategy="self_consistency", n=3, max_tokens=4,
                           seed=2, temperature=1.0)
    assert r.strategy == "self_consistency"
    votes = [normalise(c.value) for c in r.candidates]
    assert votes.count(normalise(r.value)) == max(votes.count(v) for v in votes)


def test_yaml_is_asked_for_and_parsed(proxy: FaultProxy, via_proxy: OpenAICompatible) -> None:
    proxy.inject(Fault.content("city: Paris\ncountry: France\n"))
    r = structgen.generate(PARIS, schema=City, model=via_proxy, strategy="repair", format="yaml", max_tokens=2)
    assert r.value == City(city="Paris", country="France")
    assert json.loads(r.text) == {"city": "Paris", "country": "France"}
    assert "YAML" in _messages(proxy, 0)[-1]["content"]


def test_yaml_from_the_real_model(hosted: OpenAICompatible) -> None:
    # The 135M model answers prose when asked for YAML; prose is a YAML string, so a string schema holds it.
    r = structgen.generate("Name the capital of France.", schema={"type": "string"}, model=hosted,
                           strategy="repair", format="yaml", max_tokens=12)
    assert isinstance(r.value, str) and r.value
    assert json.loads(r.text) == r.value


# ---- the chain's rules, on chosen replies -----------------------------------------------------------

def test_repair_re_asks_with_field_paths(proxy: FaultProxy, via_proxy: OpenAICompatible) -> None:
    proxy.inject(Fault.content('{"city": "Paris"}'), Fault.content('{"city": "Paris", "country": "France"}'))
    r = structgen.generate(PARIS, schema=City, model=via_proxy, strategy="repair", max_tokens=2)
    assert r.value == City(city="Paris", country="France")
    assert [a.error is None for a in r.attempts] == [False, True]
    second = _messages(proxy, 1)
    assert second[-2] == {"role": "assistant", "content": '{"city": "Paris"}'}
    assert "/country" in second[-1]["content"] and "Field required" in second[-1]["content"]


def test_prompt_is_strict_where_repair_is_defensive(proxy: FaultProxy, via_proxy: OpenAICompatible) -> None:
    broken = 'Sure!\n```json\n{"city": "Paris", "country": "France",}\n```'
    proxy.inject(Fault.content(broken), Fault.content(broken))
    with pytest.raises(ValidationFailed) as info:
        structgen.generate(PARIS, schema=City, model=via_proxy, strategy="prompt", max_tokens=2)
    assert len(info.value.attempts) == 1 and info.value.attempts[0].text == broken
    r = structgen.generate(PARIS, schema=City, model=via_proxy, strategy="repair", max_tokens=2)
    assert r.value == City(city="Paris", country="France") and r.attempts[0].repaired


def test_a_truncated_reply_is_repaired_and_flagged(proxy: FaultProxy, via_proxy: OpenAICompatible) -> None:
    proxy.inject(Fault.content('{"city": "Paris", "country": "Fra'))
    r = structgen.generate(PARIS, schema=City, model=via_proxy, strategy="repair", max_tokens=2)
    assert r.value == City(city="Paris", country="Fra")
    assert r.attempts[0].repaired


def test_values_are_coerced_to_the_schema(proxy: FaultProxy, via_proxy: OpenAICompatible) -> None:
    proxy.inject(Fault.content("{'n': '42', 'ok': 'yes'}"))
    schema = {"type": "object", "properties": {"n": {"type": "integer"}, "ok": {"type": "boolean"}},
              "required": ["n", "ok"]}
    r = structgen.generate("Give n and ok.", schema=schema, model=via_proxy, strategy="repair", max_tokens=2)
    assert r.value == {"n": 42, "ok": True} and r.text == '{"n":42,"ok":true}'


def test_a_4xx_on_the_constraint_drops_to_the_next_strategy(proxy: FaultProxy,
                                                            via_proxy: OpenAICompatible) -> None:
    proxy.inject(Fault.status(422))
    r = structgen.generate(SKY, schema=YES_NO, model=via_proxy, strategy="server", max_tokens=4, seed=1)
    assert r.strategy == "repair"
    assert r.attempts[0].strategy == "server" and "HTTP 422" in (r.attempts[0].error or "")
    assert "grammar" in proxy.log[0].json() and "grammar" not in proxy.log[1].json()
    assert via_proxy.caps.grammar is False


def test_server_output_that_does_not_validate_is_asked_again_under_the_constraint(
        proxy: FaultProxy, via_proxy: OpenAICompatible) -> None:
    proxy.inject(Fault.content("maybe"), Fault.content("yes"))
    r = structgen.generate(SKY, schema=YES_NO, model=via_proxy, strategy="server", max_tokens=2)
    assert r.strategy == "server" and r.value == "yes"
    assert [a.strategy for a in r.attempts] == ["server", "server"]
    assert "'maybe' is not one of" in (r.attempts[0].error or "")
    again = proxy.log[1].json()
    assert "grammar" in again, "the retry keeps the constraint"
    assert again["temperature"] >= 0.7, "and samples warm"
    assert "'maybe' is not one of" in again["messages"][-1]["content"], "and says what was wrong"
    assert again["messages"][-2] == {"role": "assistant", "content": "maybe"}
    assert via_proxy.caps.grammar is True


def test_a_server_reply_cut_at_the_limit_is_retried_with_a_frequency_penalty(
        proxy: FaultProxy, via_proxy: OpenAICompatible) -> None:
    via_proxy.caps.json_schema = False    # learnt before: this server takes the json_object + schema form
    proxy.inject(Fault.content('{"city":"Paris","city'), Fault.content('{"city":"Paris","country":"France"}'))
    r = structgen.generate(PARIS, schema=City, model=via_proxy, strategy="server", max_tokens=1)
    assert r.strategy == "server" and r.value == City(city="Paris", country="France")
    first, again = proxy.log[0].json(), proxy.log[1].json()
    assert not first.get("frequency_penalty")
    assert again["frequency_penalty"] == 0.5, "one reply cut at the limit so far: a small model loops"


def test_server_output_invalid_every_time_drops_to_repair(proxy: FaultProxy, via_proxy: OpenAICompatible) -> None:
    proxy.inject(Fault.content("maybe"), Fault.content("perhaps"), Fault.content("maybe"), Fault.content("yes"))
    r = structgen.generate(SKY, schema=YES_NO, model=via_proxy, strategy="server", max_tokens=2, max_attempts=3)
    assert r.strategy == "repair" and r.value == "yes"
    assert [a.strategy for a in r.attempts] == ["server", "server", "server", "repair"]
    assert "grammar" not in proxy.log[3].json()
    assert via_proxy.caps.grammar is True  # accepted, just not obeyed: tried again next time


def test_garbage_never_becomes_a_value(proxy: FaultProxy, via_proxy: OpenAICompatible) -> None:
    proxy.always(Fault.content("<html><body>Service temporarily unavailable</body></html>"))
    with pytest.raises(ValidationFailed) as info:
        structgen.generate(PARIS, schema=City, model=via_proxy, strategy="repair", max_tokens=2, max_attempts=2)
    assert len(info.value.attempts) == 2 and all(a.error for a in info.value.attempts)
    assert len(proxy.log) == 2


def test_local_only_strategies_and_raw_mode_are_refused(hosted: OpenAICompatible) -> None:
    with pytest.raises(structgen.InvalidArgument):
        structgen.generate(SKY, schema=YES_NO, model=hosted, strategy="constrained")
    with pytest.raises(structgen.InvalidArgument):
        structgen.generate(SKY, schema=YES_NO, model=hosted, chat=False)


# ---- async -----------------------------------------------------------------------------------------

def test_agenerate_takes_the_same_arguments_as_generate() -> None:
    assert inspect.signature(structgen.agenerate).parameters.keys() == \
        inspect.signature(structgen.generate).parameters.keys()


def test_agenerate_runs_requests_concurrently(hosted: OpenAICompatible) -> None:
    async def both() -> list[structgen.Result[object]]:
        try:
            return list(await asyncio.gather(
                structgen.agenerate(SKY, schema=YES_NO, model=hosted, strategy="server", max_tokens=4),
                structgen.agenerate("Give a US zip code.", schema=Regex(r"[0-9]{5}"), model=hosted,
                                    strategy="server", max_tokens=8),
            ))
        finally:
            await hosted.aclose()

    yes_no, zip_code = asyncio.run(both())
    assert yes_no.value in ("yes", "no") and re.fullmatch(r"[0-9]{5}", zip_code.value)


def test_requests_are_compiled_for_the_model_that_serves_them(local_model: structgen.LlamaCpp,
                                                             hosted: OpenAICompatible) -> None:
    from structgen.generate import build_request

    # generate and agenerate share build_request: a local model's matcher build checks the schema itself, so
    # the separate check is deferred; a hosted model gets it done up front.
    assert build_request(local_model, SKY, City).schema.deferred_check is not None
    assert build_request(hosted, SKY, City).schema.deferred_check is None
    with pytest.raises(structgen.InvalidArgument, match="model must be"):
        build_request(object(), SKY, City)


def test_agenerate_on_a_local_model(local_model: structgen.LlamaCpp) -> None:
    r = asyncio.run(structgen.agenerate(SKY, schema=YES_NO, model=local_model, max_tokens=4))
    assert r.value in ("yes", "no") and r.strategy == "constrained"


# ---- local models through the same chain -------------------------------------------------------------

@pytest.mark.parametrize("strategy", ["prompt", "repair"])
def test_local_models_run_the_chain_on_free_text(local_model: structgen.LlamaCpp, strategy: str) -> None:
    # Free text: whether a 135M model writes valid JSON is its own affair (a typed error when it does not), so
    # the checks run over three texts and most must come back valid.
    valid = 0
    for city, country in CAPITALS:
        try:
            r = structgen.generate(f"{city} is the capital of {country}. Extract the city and its country.",
                                   schema=City, model=local_model, strategy=strategy, max_tokens=24, seed=1)
        except ValidationFailed as exc:
            assert exc.attempts and all(a.error for a in exc.attempts)
            continue
        assert r.strategy == strategy and isinstance(r.value, City)
        assert r.tokens and len(r.tokens) == len(r.logprobs) == r.attempts[-1].tokens
        assert r.timings.prompt_tokens > 10
        valid += 1
    assert valid >= 2, valid
