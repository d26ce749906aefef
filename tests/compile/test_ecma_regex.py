"""A schema's patterns are read as ECMA-262 regexes (as JSON Schema and the grammar engine read them), not with
Python's semantics: ``\\d`` and ``\\w`` are ASCII, ``$`` is the end, ``.`` stops at every line terminator."""

from __future__ import annotations

import json
import random
import time

import jsonschema
import llguidance
import pytest

import structgen
from structgen import compile_schema
from structgen.chain.coerce import coerce_to_schema
from structgen.compile.ecma_regex import python_pattern
from structgen.compile.matchers.llguidance import tokenizer_for
from structgen.compile.validation import json_validator

# (pattern, string, what an ECMA-262 engine says), where the grammar engine reads the pattern the same way.
SHARED = [
    (r"^\d{3}$", "123", True),
    (r"^\d{3}$", "١٢٣", False),          # Arabic-Indic digits: \d in Python, not in ECMA
    (r"^\d{3}$", "123\n", False),        # Python's $ also matches before a final newline
    (r"^\w+$", "ab_9", True),
    (r"^\w+$", "é", False),
    (r"^[\d.]+$", "1.5", True),
    (r"^[\d.]+$", "١.٥", False),
    (r"^\s$", "\u00a0", True),
    (r"^\s$", "\x1c", False),            # a Python \s, not an ECMA one
    (r"\bcat", "écat", True),            # é is no word character in ECMA: a boundary before "cat"
    (r"^\$\d$", "$5", True),
    (r"^[a$]$", "$", True),
    (r"^[^]$", "x", True),               # ECMA's "any character" class
    (r"x$", "x\n", False),
    (r"^ab", "abz", True),
]
# Where llguidance's regexes depart from ECMA-262 (the validator, as the oracle, keeps to the standard).
ECMA_ONLY = [
    (r"^a.c$", "a\rc", False),
    (r"^a.c$", "a\u2028c", False),
    (r"^\s$", "\ufeff", True),
    (r"\bcat", "xcat", False),
]


def _schema(pattern: str) -> dict[str, object]:
    return {"type": "object", "properties": {"v": {"type": "string", "pattern": pattern}}, "required": ["v"],
            "additionalProperties": False}


def _text(value: str) -> str:
    return json.dumps({"v": value}, separators=(",", ":"), ensure_ascii=False)


def _validator_accepts(pattern: str, value: str) -> bool:
    try:
        compile_schema(_schema(pattern)).validate(_text(value))
    except ValueError:
        return False
    return True


@pytest.mark.parametrize(("pattern", "value", "ecma"), SHARED + ECMA_ONLY)
def test_the_validator_reads_a_pattern_as_ecma_262(pattern: str, value: str, ecma: bool) -> None:
    assert _validator_accepts(pattern, value) is ecma


@pytest.mark.parametrize(("pattern", "value", "ecma"), SHARED)
def test_the_grammar_and_the_validator_agree(model: structgen.LlamaCpp, pattern: str, value: str,
                                             ecma: bool) -> None:
    text = _text(value)
    matcher = llguidance.LLMatcher(tokenizer_for(model.vocab), compile_schema(_schema(pattern)).grammar,
                                   log_level=0)
    walked = all(matcher.consume_token(t) for t in model.tokenize(text, special=False))
    assert (walked and matcher.is_accepting()) is ecma


def test_pattern_properties_keys_are_read_the_same_way() -> None:
    c = compile_schema({"type": "object", "patternProperties": {r"^\d+$": {"type": "integer"}},
                        "additionalProperties": False})
    assert c.validate('{"12":1}') == {"12": 1}
    with pytest.raises(ValueError):
        c.validate('{"١٢":1}')


def test_the_rewrite_keeps_escapes_and_classes_apart() -> None:
    assert python_pattern(r"\.\$[.$]$") == r"\.\$[.$]\Z"
    assert python_pattern(r"[\w-]") == "[A-Za-z0-9_-]"
    assert python_pattern(r"\1(?:a|b)\u0041") == r"\1(?:a|b)\u0041"
    assert python_pattern("[]") == "(?!)"


def test_a_hosted_key_cannot_stall_coercion_on_a_backtracking_pattern() -> None:
    schema = {"type": "object", "patternProperties": {r"^(a+)+$": {"type": "integer"}}}
    started = time.perf_counter()
    assert coerce_to_schema({"a" * 40 + "!": "1"}, schema) == {"a" * 40 + "!": "1"}
    assert time.perf_counter() - started < 10    # re.search alone ran for minutes here


def test_a_backtracking_pattern_key_cannot_stall_additional_properties() -> None:
    # jsonschema's own additionalProperties matches patternProperties keys with an unbounded re.search.
    c = compile_schema({"type": "object", "patternProperties": {r"^(a+)+$": {"type": "integer"}},
                        "additionalProperties": False})
    assert c.validate('{"aaa":1}') == {"aaa": 1}
    started = time.perf_counter()
    with pytest.raises(ValueError, match=r"not verified|additional properties"):
        c.validate(json.dumps({"a" * 40 + "!": 1}))
    assert time.perf_counter() - started < 10


def test_a_backtracking_pattern_key_cannot_stall_unevaluated_properties() -> None:
    c = compile_schema({"type": "object", "allOf": [{"patternProperties": {r"^(a+)+$": {"type": "integer"}}}],
                        "unevaluatedProperties": False})
    assert c.validate('{"aaa":1}') == {"aaa": 1}
    with pytest.raises(ValueError, match="unevaluated properties are not allowed: 'b'"):
        c.validate('{"b":1}')
    started = time.perf_counter()   # jsonschema's own unevaluatedProperties ran re.search here for hours
    with pytest.raises(ValueError, match=r"not allowed: 'a+!'|not verified"):
        c.validate(json.dumps({"a" * 40 + "!": 1}))
    assert time.perf_counter() - started < 10


UNEVALUATED = [
    {"type": "object", "allOf": [{"properties": {"a": {}}}], "unevaluatedProperties": False},
    {"type": "object", "anyOf": [{"properties": {"a": {"type": "integer"}}, "required": ["a"]},
                                 {"properties": {"b": {}}, "required": ["b"]}], "unevaluatedProperties": False},
    {"type": "object", "oneOf": [{"properties": {"a": {}}, "required": ["a"]},
                                 {"properties": {"b": {}}, "required": ["b"]}], "unevaluatedProperties": False},
    {"type": "object", "if": {"properties": {"a": {"const": 1}}, "required": ["a"]}, "then": {"properties": {"b": {}}},
     "else": {"properties": {"c": {}}}, "unevaluatedProperties": False},
    {"type": "object", "dependentSchemas": {"a": {"properties": {"b": {}}}}, "properties": {"a": {}},
     "unevaluatedProperties": False},
    {"type": "object", "patternProperties": {"^x": {}}, "unevaluatedProperties": {"type": "integer"}},
    {"$defs": {"base": {"properties": {"a": {}}}}, "$ref": "#/$defs/base", "unevaluatedProperties": False},
    {"type": "object", "allOf": [{"additionalProperties": {"type": "integer"}}], "unevaluatedProperties": False},
    {"type": "object", "allOf": [{"unevaluatedProperties": {"type": "string"}}], "unevaluatedProperties": False},
    {"type": "object", "allOf": [{"$ref": "#/$defs/p"}, {"properties": {"b": {}}}],
     "$defs": {"p": {"patternProperties": {"^[0-9]+$": {}}}}, "unevaluatedProperties": False},
]


@pytest.mark.parametrize("schema", UNEVALUATED)
def test_unevaluated_properties_agrees_with_jsonschema_on_plain_patterns(schema: dict[str, object]) -> None:
    # structgen's own unevaluatedProperties (bounded, ECMA patterns) against jsonschema's, on ASCII keys where
    # the two regex flavours agree.
    ours, reference = json_validator(schema), jsonschema.Draft202012Validator(schema)
    rng = random.Random(7)
    for _ in range(60):
        instance = {k: rng.choice([1, "s", None, {"a": 1}]) for k in rng.sample(["a", "b", "c", "x1", "12"], 3)}
        assert ours.is_valid(instance) == reference.is_valid(instance), (schema, instance)
