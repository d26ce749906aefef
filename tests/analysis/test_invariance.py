"""Same seed, same bytes: repeated runs, best-of candidates vs separate runs, alone vs batched with other prompts."""

from __future__ import annotations

from typing import Any

import pytest

import structgen
from structgen import Choice, Regex, generate, generate_batch

# Sampling at temperature 1 over a few free words: every run draws several tokens from its seed. Raw prompts
# (no chat template) keep the prompt decode short.
WORDS = Regex(r"( [a-z]{2,8}){1,4}")
PROMPT = "The sea at night is"
OTHERS = ["My favourite colour is", "17 times 23 equals 391, because", "A haiku about the moon:",
          "Good morning in French, German and Spanish:", "The first prime numbers are",
          "A cat has soft fur, green eyes and long whiskers, and at night it", "A tomato is"]
RAW: dict[str, Any] = {"chat": False, "temperature": 1.0, "max_tokens": 8}


def fingerprint(r: structgen.Result[Any]) -> tuple[Any, ...]:
    """Everything a run produced that must repeat bit for bit."""
    return r.text, tuple(r.tokens), tuple(r.logprobs), tuple(r.forced), r.seed


def _repeat_same_seed(model: structgen.LlamaCpp, runs: int) -> None:
    first = fingerprint(generate(PROMPT, WORDS, model=model, seed=7, **RAW))
    assert len(first[1]) >= 3, "the test should sample several tokens"
    for _ in range(runs - 1):
        assert fingerprint(generate(PROMPT, WORDS, model=model, seed=7, **RAW)) == first


def test_same_seed_same_text_and_logprobs_20_runs(plain: structgen.LlamaCpp) -> None:
    _repeat_same_seed(plain, 20)


@pytest.mark.slow
@pytest.mark.parametrize("deterministic", [False, True])
def test_same_seed_same_text_and_logprobs_100_runs(plain: structgen.LlamaCpp, invariant: structgen.LlamaCpp,
                                                   deterministic: bool) -> None:
    _repeat_same_seed(invariant if deterministic else plain, 100)


def test_best_of_candidates_equal_separate_runs(invariant: structgen.LlamaCpp) -> None:
    kwargs: dict[str, Any] = dict(model=invariant, **RAW)
    best = generate(PROMPT, WORDS, strategy="best_of", n=4, seed=11, **kwargs)
    assert [c.seed for c in best.candidates] == [11, 12, 13, 14]
    alone = [fingerprint(generate(PROMPT, WORDS, seed=11 + i, **kwargs)) for i in range(4)]
    assert [fingerprint(c) for c in best.candidates] == alone
    assert len({f[0] for f in alone}) > 1, "different seeds should give different candidates here"
    assert fingerprint(best) == max(alone, key=lambda f: sum(f[2]) / len(f[2]))


def test_alone_equals_batched_with_other_prompts(invariant: structgen.LlamaCpp) -> None:
    kwargs: dict[str, Any] = dict(model=invariant, **RAW)
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
    prompts = [f"Animal number {i} is a" for i in range(invariant.n_seq_max + 2)]
    schema = Choice([" cat", " dog", " horse"])
    results = generate_batch(prompts, schema, model=invariant, seed=3, **RAW)
    assert len(results) == len(prompts) and all(r.value in schema.options for r in results)
    assert fingerprint(results[-1]) == fingerprint(generate(prompts[-1], schema, model=invariant, seed=3, **RAW))


def test_batch_mixes_settings_and_returns_errors_in_place(plain: structgen.LlamaCpp) -> None:
    no_role = [{"content": "a message without a role"}]
    results = generate_batch(["Pick:", no_role, "Pick again:"], Choice([" a", " b"]), model=plain, seed=[1, 2, 3],
                             return_exceptions=True)
    assert isinstance(results[1], structgen.InvalidArgument)
    assert [r.seed for r in (results[0], results[2])] == [1, 3]
    assert {r.value for r in (results[0], results[2])} <= {" a", " b"}
    with pytest.raises(structgen.InvalidArgument):
        generate_batch(["Pick one.", no_role], Choice(["a", "b"]), model=plain)
    with pytest.raises(structgen.InvalidArgument, match="2 seeds for 3 prompts"):
        generate_batch(["a", "b", "c"], model=plain, seed=[1, 2])


def test_batched_best_of_in_a_batch_matches_alone(invariant: structgen.LlamaCpp) -> None:
    kwargs: dict[str, Any] = dict(model=invariant, strategy="best_of", n=3, **RAW)
    alone = generate(PROMPT, WORDS, seed=21, **kwargs)
    batched = generate_batch([OTHERS[0], PROMPT], WORDS, seed=21, **kwargs)[1]
    assert [fingerprint(c) for c in batched.candidates] == [fingerprint(c) for c in alone.candidates]


def test_a_model_without_batching_serves_in_turn(random_model: Any) -> None:
    results = generate_batch(["x", "y", [{"content": "no role"}]], Choice(["a", "b"]), model=random_model, seed=[4, 5, 6],
                             temperature=1.0, return_exceptions=True)
    assert [r.value for r in results[:2]] == [r.text for r in results[:2]]
    assert {r.value for r in results[:2]} <= {"a", "b"} and [r.seed for r in results[:2]] == [4, 5]
    assert isinstance(results[2], structgen.InvalidArgument)


@pytest.mark.slow
def test_alone_equals_batched_past_512_kv_cells(invariant: structgen.LlamaCpp) -> None:
    # Past 512 cells llama.cpp's CPU attention switches to a split-KV kernel for single-token steps: the shared
    # cache of the default mode then diverges at the first token; separate streams keep every step identical.
    long_prompt = " ".join(OTHERS * 12) + "\nIn short, the sea at night is"
    assert len(invariant.prompt_tokens(long_prompt, chat=False)) > 512
    alone = fingerprint(generate(long_prompt, WORDS, model=invariant, seed=9, **RAW))
    results = generate_batch([OTHERS[0], long_prompt, OTHERS[1], OTHERS[2]], WORDS, model=invariant, seed=9, **RAW)
    assert fingerprint(results[1]) == alone


@pytest.mark.slow
def test_deterministic_bytes_do_not_depend_on_the_thread_count(invariant: structgen.LlamaCpp) -> None:
    long_prompt = " ".join(OTHERS * 12) + "\nIn short, the sea at night is"
    two = structgen.LlamaCpp(n_ctx=1024, n_threads=2, deterministic=True, n_seq_max=1)
    try:
        assert fingerprint(generate(long_prompt, WORDS, model=two, seed=9, **RAW)) == \
            fingerprint(generate(long_prompt, WORDS, model=invariant, seed=9, **RAW))
    finally:
        two.close()
