"""Same seed, same bytes: repeated runs, best-of candidates vs separate runs, alone vs batched with other prompts."""

from __future__ import annotations

from typing import Any

import pytest

import structgen
from structgen import Choice, Regex, generate, generate_batch

# Sampling at temperature 1 over a few free words: every run draws several tokens from its seed.
WORDS = Regex(r"[a-z]{2,8}( [a-z]{2,8}){0,3}")
PROMPT = "Describe the sea in a few words."
OTHERS = ["Name a colour.", "What is 17 times 23? Show your work step by step.", "Write a haiku about the moon.",
          "Translate 'good morning' into French, German and Spanish, one per line.", "Name a prime number.",
          "Describe a cat in detail: its fur, its eyes, its whiskers, and how it moves around at night.",
          "Is a tomato a fruit?"]


def fingerprint(r: structgen.Result[Any]) -> tuple[Any, ...]:
    """Everything a run produced that must repeat bit for bit."""
    return r.text, tuple(r.tokens), tuple(r.logprobs), tuple(r.forced), r.seed


def _repeat_same_seed(model: structgen.LlamaCpp, runs: int) -> None:
    first = fingerprint(generate(PROMPT, WORDS, model=model, temperature=1.0, seed=7, max_tokens=8))
    assert len(first[1]) >= 2, "the test should sample several tokens"
    for _ in range(runs - 1):
        assert fingerprint(generate(PROMPT, WORDS, model=model, temperature=1.0, seed=7, max_tokens=8)) == first


def test_same_seed_same_text_and_logprobs_20_runs(plain: structgen.LlamaCpp) -> None:
    _repeat_same_seed(plain, 20)


@pytest.mark.slow
@pytest.mark.parametrize("deterministic", [False, True])
def test_same_seed_same_text_and_logprobs_100_runs(plain: structgen.LlamaCpp, invariant: structgen.LlamaCpp,
                                                   deterministic: bool) -> None:
    _repeat_same_seed(invariant if deterministic else plain, 100)


def test_best_of_candidates_equal_separate_runs(invariant: structgen.LlamaCpp) -> None:
    kwargs: dict[str, Any] = dict(model=invariant, temperature=1.0, max_tokens=8)
    best = generate(PROMPT, WORDS, strategy="best_of", n=4, seed=11, **kwargs)
    assert [c.seed for c in best.candidates] == [11, 12, 13, 14]
    alone = [fingerprint(generate(PROMPT, WORDS, seed=11 + i, **kwargs)) for i in range(4)]
    assert [fingerprint(c) for c in best.candidates] == alone
    assert len({f[0] for f in alone}) > 1, "different seeds should give different candidates here"
    assert fingerprint(best) == max(alone, key=lambda f: sum(f[2]) / len(f[2]))


def test_alone_equals_batched_with_other_prompts(invariant: structgen.LlamaCpp) -> None:
    kwargs: dict[str, Any] = dict(model=invariant, temperature=1.0, max_tokens=8)
    alone = fingerprint(generate(PROMPT, WORDS, seed=5, **kwargs))
    for size in (1, 4, 8):
        slot = size // 2
        prompts = [*OTHERS[: size - 1]]
        prompts.insert(slot, PROMPT)
        seeds = [5 if i == slot else 100 + i for i in range(size)]
        results = generate_batch(prompts, WORDS, seed=seeds, **kwargs)
        assert fingerprint(results[slot]) == alone, f"batch of {size}"
        # Each neighbour is also what it would be alone.
        other = (slot + 1) % size
        if other != slot:
            assert fingerprint(results[other]) == fingerprint(generate(prompts[other], WORDS, seed=seeds[other],
                                                                       **kwargs))


def test_more_requests_than_sequences_run_in_waves(invariant: structgen.LlamaCpp) -> None:
    prompts = [f"Name animal number {i}." for i in range(invariant.n_seq_max + 2)]
    schema = Choice(["cat", "dog", "horse"])
    results = generate_batch(prompts, schema, model=invariant, temperature=1.0, seed=3)
    assert len(results) == len(prompts) and all(r.value in schema.options for r in results)
    assert fingerprint(results[-1]) == fingerprint(generate(prompts[-1], schema, model=invariant, temperature=1.0,
                                                            seed=3))


def test_batch_mixes_settings_and_returns_errors_in_place(plain: structgen.LlamaCpp) -> None:
    results = generate_batch(["Pick one.", "", "Pick again."], Choice(["a", "b"]), model=plain, seed=[1, 2, 3],
                             return_exceptions=True)
    assert isinstance(results[1], structgen.InvalidArgument)
    assert [r.seed for r in (results[0], results[2])] == [1, 3]
    with pytest.raises(structgen.InvalidArgument):
        generate_batch(["Pick one.", ""], Choice(["a", "b"]), model=plain)
    with pytest.raises(structgen.InvalidArgument, match="2 seeds for 3 prompts"):
        generate_batch(["a", "b", "c"], model=plain, seed=[1, 2])


def test_batched_best_of_in_a_batch_matches_alone(invariant: structgen.LlamaCpp) -> None:
    kwargs: dict[str, Any] = dict(model=invariant, temperature=1.0, max_tokens=8, strategy="best_of", n=3)
    alone = generate(PROMPT, WORDS, seed=21, **kwargs)
    batched = generate_batch([OTHERS[0], PROMPT], WORDS, seed=21, **kwargs)[1]
    assert [fingerprint(c) for c in batched.candidates] == [fingerprint(c) for c in alone.candidates]


def test_a_model_without_batching_serves_in_turn(random_model: Any) -> None:
    results = generate_batch(["x", "y", ""], Choice(["a", "b"]), model=random_model, seed=[4, 5, 6],
                             temperature=1.0, return_exceptions=True)
    assert [r.value for r in results[:2]] == [r.text for r in results[:2]]
    assert {r.value for r in results[:2]} <= {"a", "b"} and [r.seed for r in results[:2]] == [4, 5]
    assert isinstance(results[2], structgen.InvalidArgument)
