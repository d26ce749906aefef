"""Exact option probabilities: they sum to 1, match sampled frequencies, and enumerate finite languages."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import pytest

import structgen
from structgen import Choice, Grammar, Regex, generate
from structgen.analysis.probs import finite_language

SAMPLE_CALLS = 10   # x 16 candidates per call (one prompt decode each) = 160 samples


def within_binomial(count: int, n: int, p: float, sigmas: float = 4.5) -> bool:
    """``count`` successes in ``n`` draws is within ``sigmas`` standard deviations of Binomial(n, p)."""
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p)) + 1


def sample(model: structgen.LlamaCpp, prompt: str, schema: Any, **kwargs: Any) -> list[structgen.Result[Any]]:
    """``SAMPLE_CALLS * 16`` independent samples at temperature 1 (best-of candidates, distinct seeds)."""
    out: list[structgen.Result[Any]] = []
    for k in range(SAMPLE_CALLS):
        r = generate(prompt, schema, model=model, temperature=1.0, strategy="best_of", n=16, seed=1000 + 16 * k,
                     **kwargs)
        assert len(r.candidates) == 16
        out += r.candidates
    return out


def test_probs_sum_to_one_with_the_outside_mass(plain: structgen.LlamaCpp) -> None:
    r = structgen.probs("Flip a coin.", ["heads", "tails", "edge"], model=plain)
    assert set(r) == {"heads", "tails", "edge"} and r.method == "model" and r.complete
    assert math.isclose(sum(r.values()), 1.0, abs_tol=1e-12)
    assert math.isclose(sum(math.exp(lp) for lp in r.logprobs.values()) + r.outside, 1.0, abs_tol=1e-12)
    assert 0.0 < r.outside < 1.0 and r.best == max(r, key=r.__getitem__)
    s = structgen.probs("Flip a coin.", ["heads", "tails", "edge"], model=plain, method="sampler")
    assert math.isclose(sum(s.values()), 1.0, abs_tol=1e-12) and s.outside == 0.0
    assert r.to_dict()["probs"] == dict(r)


def test_model_probs_match_unconstrained_sampling(plain: structgen.LlamaCpp) -> None:
    prompt = "Answer with one word, Yes or No: is fire hot?"
    r = structgen.probs(prompt, ["Yes", "No"], model=plain, schema_in_prompt=False)
    samples = sample(plain, prompt, None, max_tokens=2)
    counts = Counter(s.text if s.finish_reason == "stop" and s.text in r else "(outside)" for s in samples)
    n = len(samples)
    assert r.outside < 0.9, "the prompt should put real mass on the options"
    for option in ("Yes", "No"):
        assert within_binomial(counts[option], n, math.exp(r.logprobs[option])), (option, counts, r)
    assert within_binomial(counts["(outside)"], n, r.outside), (counts, r)


def test_sampler_probs_match_constrained_sampling_on_a_two_option_choice(plain: structgen.LlamaCpp) -> None:
    prompt, schema = "I flipped a coin and it landed on", Choice([" heads", " tails"])
    r = structgen.probs(prompt, schema, model=plain, method="sampler", chat=False)
    heads = Counter(s.value for s in sample(plain, prompt, schema, chat=False))[" heads"]
    n = SAMPLE_CALLS * 16
    assert within_binomial(heads, n, r[" heads"]), (heads, dict(r))
    # The model's own preference between the two canonical answers is far from what the grammar-constrained
    # sampler draws: the mask also lets " t"-like first tokens through, and the grammar completes them to " tails".
    prefix = structgen.probs(prompt, schema, model=plain, complete=False, chat=False)
    assert not within_binomial(heads, n, prefix[" heads"]), (heads, dict(prefix))


def test_trie_scoring_agrees_with_scoring_each_option_alone(plain: structgen.LlamaCpp) -> None:
    # Options sharing prefixes share trie nodes and batches; scored one at a time, nothing is shared. A branch
    # that saw its siblings' KV cells would be off by far more than batch-shape rounding.
    options = ["yes", "yes, it is", "yes it is", "no", "no, it is not", "maybe"]
    shared = structgen.probs("Is the sky blue?", options, model=plain, schema_in_prompt=False)
    for o in options:
        alone = structgen.probs("Is the sky blue?", [o], model=plain, schema_in_prompt=False)
        assert shared.logprobs[o] == pytest.approx(alone.logprobs[o], abs=2e-3), o


def test_deterministic_probs_do_not_depend_on_the_other_options(invariant: structgen.LlamaCpp) -> None:
    two = structgen.probs("Is the sky blue?", ["yes", "no"], model=invariant, schema_in_prompt=False)
    more = structgen.probs("Is the sky blue?", ["yes", "no", "maybe", "yes, it is"], model=invariant,
                           schema_in_prompt=False)
    assert two.logprobs["yes"] == more.logprobs["yes"] and two.logprobs["no"] == more.logprobs["no"]


def test_regex_language_is_enumerated_and_scored_like_the_choice(invariant: structgen.LlamaCpp) -> None:
    assert finite_language(Regex(r"(yes|no|maybe)"), invariant) == ["maybe", "no", "yes"]
    assert finite_language(Regex(r"[ab]{2}c?"), invariant) == ["aa", "aac", "ab", "abc", "ba", "bac", "bb", "bbc"]
    assert finite_language(Grammar('start: "a" ("b" | "cd")\n'), invariant) == ["ab", "acd"]
    assert len(finite_language(Regex(r"[1-9][0-9]"), invariant)) == 90
    by_regex = structgen.probs("Is the sky blue?", Regex(r"(yes|no)"), model=invariant, schema_in_prompt=False)
    by_choice = structgen.probs("Is the sky blue?", ["no", "yes"], model=invariant, schema_in_prompt=False)
    assert by_regex.logprobs == by_choice.logprobs


@pytest.mark.parametrize(("schema", "match"), [
    (Regex(r"a+"), "infinite"),
    (Regex(r"[a-z]{3}"), "more than 256"),
    (None, "infinite"),
])
def test_an_infinite_or_large_language_is_a_schema_error(invariant: structgen.LlamaCpp, schema: Any,
                                                         match: str) -> None:
    with pytest.raises(structgen.SchemaError, match=match):
        structgen.probs("Say something.", schema, model=invariant)


def test_bad_arguments_are_typed_errors(invariant: structgen.LlamaCpp, random_model: Any) -> None:
    with pytest.raises(structgen.InvalidArgument, match="begins"):
        structgen.probs("Hi", ["no", "no way"], model=invariant, complete=False)
    with pytest.raises(structgen.InvalidArgument):
        structgen.probs("Hi", "yes", model=invariant)
    with pytest.raises(structgen.InvalidArgument):
        structgen.probs("Hi", ["a"], model=invariant, method="magic")  # type: ignore[arg-type]
    with pytest.raises(structgen.InvalidArgument, match="local model"):
        structgen.probs("Hi", ["a"], model=random_model)
    with pytest.raises(structgen.SchemaError):
        structgen.probs("Hi", [], model=invariant)
