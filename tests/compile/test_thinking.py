"""``think=N``'s grammar (``structgen.compile.thinking``) without a model: delimiters, free reasoning, the answer."""

from __future__ import annotations

import json

import pytest

from structgen import InvalidArgument, compile_schema
from structgen.compile._byte_tokenizer import grammar_accepts
from structgen.compile.thinking import ThinkDelimiters, compile_think, split_reasoning

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


def test_reasoning_then_the_answer() -> None:
    compiled = compile_think(compile_schema(SCHEMA), 50)
    assert grammar_accepts(compiled.grammar, '<think>two and two is four</think>\n{"n":4}')
    assert not grammar_accepts(compiled.grammar, '{"n":4}')                           # the thinking comes first
    assert not grammar_accepts(compiled.grammar, '<think>four</think>\n{"n":"4"}')    # the answer's grammar holds
    assert compiled.validate('<think>four</think>\n{"n":4}') == {"n": 4}
    with pytest.raises(ValueError, match="</think>"):
        compiled.validate('{"n":4}')


def test_free_text_answers_and_opened_special_delimiters() -> None:
    text = compile_think(compile_schema(None), 10)
    assert grammar_accepts(text.grammar, "<think>hm</think>\nHello there")
    opened = compile_think(compile_schema(SCHEMA), 10, ThinkDelimiters(opened=True))
    assert grammar_accepts(opened.grammar, 'hm</think>\n{"n":1}')
    assert "<think>" in json.loads(compile_think(compile_schema(SCHEMA), 10, ThinkDelimiters(special=True))
                                   .grammar)["grammars"][0]["lark_grammar"]


def test_split_reasoning() -> None:
    assert split_reasoning("<think>\nplan\n</think>\n\n{}") == ("plan", "{}")
    assert split_reasoning("no thinking") == ("", None)


@pytest.mark.parametrize("budget", [0, -1, True, 10**9, 1.5])
def test_a_bad_budget_is_a_typed_error(budget: object) -> None:
    with pytest.raises(InvalidArgument, match="think"):
        compile_think(compile_schema(SCHEMA), budget)  # type: ignore[arg-type]
