"""Server-side grammars: structgen's GBNF for llama.cpp's ``grammar`` field must parse in llama.cpp itself
(llama-cpp-python's server crashes on one that does not), and must mean what the schema means."""

from __future__ import annotations

import re

import pytest

import structgen
from structgen.hosted import llama_accepts, to_gbnf

REGEXES = [
    r"\d{5}", r"[A-Z][a-z]+ \w+@\w+\.(com|org)", r"(?:ab|c)*?x+[^\s\]\-]{2,}", r"^a.b$", r"\\d",
    r"[\u00e9-\u00ff\U0001F600]+\.\*\?\[\]\(\)\{\}", r"(\+1 )?\(\d{3}\) \d{3}-\d{4}", r"a{2,}b{0,3}c?",
    r'"[^"\n]*"', r"[-+]?[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?",
]


@pytest.mark.parametrize("pattern", REGEXES)
def test_regex_gbnf_parses_in_llama_cpp(pattern: str) -> None:
    gbnf = to_gbnf(structgen.compile_schema(structgen.Regex(pattern)))
    assert gbnf is not None and llama_accepts(gbnf)


@pytest.mark.parametrize("name", structgen.bundled_grammars())
def test_bundled_lark_grammars_translate(name: str) -> None:
    gbnf = to_gbnf(structgen.compile_schema(structgen.Grammar.bundled(name)))
    assert gbnf is not None and gbnf.startswith("root ::= ")
    assert llama_accepts(gbnf)


def test_choice_literals_are_escaped() -> None:
    options = ["yes", 'he said "hi"\n', "naïve", "a\\b", "x]y"]
    gbnf = to_gbnf(structgen.compile_schema(structgen.Choice(options)))
    assert gbnf is not None and llama_accepts(gbnf)
    assert gbnf.count("|") == len(options) - 1 and '\\x22hi\\x22' in gbnf


def test_left_recursion_becomes_repetition() -> None:
    gbnf = to_gbnf(structgen.compile_schema(structgen.Grammar('start: start "," NUM | NUM\nNUM: /[0-9]+/\n')))
    assert gbnf is not None and llama_accepts(gbnf) and ")*" in gbnf


@pytest.mark.parametrize("schema", [
    structgen.Regex(r"(?i)abc"),                       # flags
    structgen.Regex(r"[\Dx]+"),                        # a negated class inside a class
    structgen.Grammar('start: WORD+\nWORD: /[a-z]+/\n%ignore " "\n'),   # %ignore has no GBNF form
    structgen.Grammar('start: "SELECT"i\n'),           # case-insensitive literal
], ids=["flags", "negated-category", "ignore", "nocase"])
def test_untranslatable_schemas_get_no_grammar(schema: structgen.Regex | structgen.Grammar) -> None:
    assert to_gbnf(structgen.compile_schema(schema)) is None


def test_json_kinds_go_as_json_schema_not_grammar() -> None:
    compiled = structgen.compile_schema({"type": "object", "properties": {"a": {"type": "integer"}}})
    assert to_gbnf(compiled) is None
    openai_form, llama_cpp_python_form = structgen.OpenAICompatible("http://127.0.0.1:9/v1").constraints(compiled)
    assert openai_form.kind == "json_schema" and openai_form.payload["json_schema"]["strict"] is True
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", openai_form.payload["json_schema"]["name"])
    assert llama_cpp_python_form.kind == "json_object"
    assert llama_cpp_python_form.payload == {"type": "json_object", "schema": compiled.json_schema}


def test_llama_accepts_rejects_broken_gbnf() -> None:
    assert not llama_accepts('root ::= root "a"\n')     # left recursion
    assert not llama_accepts("root ::= [\n")             # syntax
    assert llama_accepts('root ::= "a" | "b"\n')
