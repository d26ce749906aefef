"""``Grammar.check``: the meaning a context-free grammar cannot express, checked on every output and resampled."""

from __future__ import annotations

import pytest

import structgen
from structgen import Grammar, compile_schema, generate
from structgen.compile.kinds import python_regex_check

COIN = Grammar('start: "heads" | "tails"\n', name="coin")


def _not_heads(text: str) -> str:
    if text == "heads":
        raise ValueError("heads is not allowed today")
    return text


@pytest.mark.parametrize("load", [lambda: Grammar.bundled("python_regex"),
                                  lambda: Grammar.from_file("python_regex")])
def test_the_bundled_regex_grammar_checks_with_re_compile(load: object) -> None:
    grammar = load()  # type: ignore[operator]
    assert grammar.check is python_regex_check
    compiled = compile_schema(grammar)
    assert compiled.validate("[A-Z]{4,8}") == "[A-Z]{4,8}"
    for bad in ("[A-Z]{8,4}", "[z-a]", r"(a)\2"):
        with pytest.raises(ValueError, match=r"re\.compile rejects it"):
            compiled.validate(bad)


def test_a_grammar_read_from_a_file_has_no_check(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "python_regex.lark"
    path.write_text(Grammar.bundled("python_regex").source, encoding="utf-8")
    assert Grammar.from_file(path).check is None


def test_same_source_with_and_without_a_check_compile_apart() -> None:
    checked = compile_schema(Grammar(COIN.source, check=_not_heads))
    assert compile_schema(Grammar(COIN.source)).validate("heads") == "heads"
    with pytest.raises(ValueError, match="heads is not allowed today"):
        checked.validate("heads")


def test_an_output_the_check_rejects_is_resampled(model: structgen.LlamaCpp) -> None:
    digit = Grammar("start: /[0-9]/\n", name="digit")
    prompt = "Pick a digit."
    greedy = generate(prompt, digit, model=model, temperature=0.0, seed=1).value

    def not_greedy(text: str) -> str:
        if text == greedy:
            raise ValueError(f"{greedy} is not allowed today")
        return text

    # SmolLM2 puts ~80 % on its favourite digit even at the retries' temperature 0.7 (the 7th attempt was the first
    # other digit here): 40 attempts (one token each) leave 0.8 ** 39 < 0.1 % to chance on any machine's numerics.
    r = generate(prompt, Grammar(digit.source, check=not_greedy), model=model, temperature=0.0, seed=1,
                 max_attempts=40)
    assert r.value != greedy and r.value.isdigit()
    assert f"{greedy} is not allowed today" in (r.attempts[0].error or "")


def test_when_every_attempt_fails_the_check_it_is_a_typed_error(model: structgen.LlamaCpp) -> None:
    only_heads = Grammar('start: "heads"\n', check=_not_heads)
    with pytest.raises(structgen.ValidationFailed, match="heads is not allowed today") as info:
        generate("Say heads.", only_heads, model=model, max_attempts=2)
    assert len(info.value.attempts) == 2
