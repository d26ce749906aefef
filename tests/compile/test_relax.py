"""The relaxation ladder: every refusal class becomes usable, the relaxed grammar admits every valid value (an
over-approximation, checked on MaskBench's own valid instances), what is not enforced is reported keyword by
keyword, ``strict=True`` refuses instead, and schemas or grammars with no finite value are refused at compile
time."""

from __future__ import annotations

import json
import random
from typing import Any

import llguidance
import pytest

import structgen
from structgen import Grammar, GrammarError, SchemaError
from structgen.compile._byte_tokenizer import grammar_accepts
from structgen.compile.schema import JsonOptions, compile_schema
from structgen.testing import RandomLogitsModel

from ..conftest import MASKBENCH

CLASSES: list[tuple[str, dict[str, Any], str, str]] = [
    ("oneOf", {"oneOf": [{"type": "string"}, {"type": "string", "maxLength": 3}]}, "oneOf", "/oneOf"),
    ("unknown format", {"type": "object", "properties": {"p": {"type": "string", "format": "path"}}},
     "format", "/properties/p/format"),
    ("not", {"type": "object", "properties": {"a": {"not": {"type": "string"}}}}, "not", "/properties/a/not"),
    ("if/then", {"type": "object", "if": {"required": ["a"]}, "then": {"required": ["b"]}}, "if", "/if"),
    ("dependentRequired", {"type": "object", "dependentRequired": {"a": ["b"]}}, "dependentRequired",
     "/dependentRequired"),
    ("uniqueItems", {"type": "array", "items": {"type": "integer"}, "uniqueItems": True}, "uniqueItems",
     "/uniqueItems"),
    ("minProperties with optional keys", {"type": "object", "properties": {"a": {"type": "string"}},
                                          "additionalProperties": True, "minProperties": 1},
     "minProperties", "/minProperties"),
    ("look-around", {"type": "string", "pattern": "^(?=a)ab$"}, "pattern", "/pattern"),
    ("overlapping patternProperties", {"type": "object", "patternProperties": {"a": {"type": "integer"},
                                                                               "^.{1,3}$": {"type": "string"}}},
     "patternProperties", "/patternProperties"),
    ("huge integer bounds", {"type": "integer", "minimum": -2**63, "maximum": 2**63}, "minimum", "/minimum"),
]


@pytest.mark.parametrize(("label", "schema", "keyword", "pointer"), CLASSES, ids=[c[0] for c in CLASSES])
def test_each_refusal_class_compiles_relaxed_and_says_what(label: str, schema: dict[str, Any], keyword: str,
                                                          pointer: str) -> None:
    compiled = compile_schema(schema)
    assert compiled.relaxed
    assert any(r.keyword == keyword and r.pointer == pointer for r in compiled.relaxations), compiled.relaxations
    with pytest.raises(SchemaError, match="strict=True"):
        compile_schema(schema, JsonOptions(strict=True))


def test_min_properties_with_optional_keys_admits_every_count() -> None:
    # llguidance's lenient mode made this grammar refuse "}" after both keys; left out, it admits them all.
    schema = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "boolean"}},
              "minProperties": 1}
    compiled = compile_schema(schema, JsonOptions(extra_properties=True))
    for text in ('{"a":60,"b":true}', '{"a":1}', '{"b":false}', '{}'):
        assert grammar_accepts(compiled.grammar, text), text
    with pytest.raises(ValueError, match=r"should be non-empty|does not have enough properties"):
        compiled.validate("{}")
    # Closed to the named keys (the default), the count is the grammar's to enforce, and it does.
    closed = compile_schema(schema)
    assert not closed.relaxed
    assert [grammar_accepts(closed.grammar, t) for t in ('{"a":60,"b":true}', '{"a":1}', '{"b":false}', '{}')] \
        == [True, True, True, False]


def test_the_validator_still_enforces_what_the_grammar_does_not() -> None:
    compiled = compile_schema({"type": "array", "items": {"type": "integer"}, "uniqueItems": True})
    assert grammar_accepts(compiled.grammar, "[1,1]")        # the grammar admits it ...
    with pytest.raises(ValueError, match="non-unique"):
        compiled.validate("[1,1]")                           # ... the validator does not
    assert compiled.validate("[1,2]") == [1, 2]


def test_a_relaxed_result_reports_what_was_relaxed(random_model: RandomLogitsModel) -> None:
    schema = {"type": "object", "properties": {"tag": {"enum": ["a/b", "c"], "format": "path"}},
              "required": ["tag"], "additionalProperties": False}
    result = structgen.generate("Tag?", schema, model=random_model, max_tokens=48, temperature=0.5, seed=3)
    assert [(r.keyword, r.pointer) for r in result.relaxed] == [("format", "/properties/tag/format")]
    assert result.to_dict()["relaxed"][0]["keyword"] == "format"
    strict = structgen.generate("Tag?", {"type": "object", "properties": {"tag": {"enum": ["a/b", "c"]}},
                                         "required": ["tag"], "additionalProperties": False},
                                model=random_model, max_tokens=48, temperature=0.5, seed=3, strict=True)
    assert strict.relaxed == []
    with pytest.raises(SchemaError, match="strict=True"):
        structgen.generate("Tag?", schema, model=random_model, strict=True)


@pytest.mark.parametrize("schema", [
    {"$defs": {"n": {"type": "array", "items": {"$ref": "#/$defs/n"}, "minItems": 1}}, "$ref": "#/$defs/n"},
    {"type": "object", "properties": {"a": {"$ref": "#"}}, "required": ["a"]},
    {"$defs": {"a": {"type": "object", "properties": {"b": {"$ref": "#/$defs/b"}}, "required": ["b"]},
               "b": {"type": "object", "properties": {"a": {"$ref": "#/$defs/a"}}, "required": ["a"]}},
     "$ref": "#/$defs/a"},
    {"type": "integer", "minimum": 5, "maximum": 1},
    {"type": "string", "minLength": 4, "maxLength": 2},
    {"enum": []},
], ids=["array cycle", "required self", "mutual required", "min>max", "minLength>maxLength", "empty enum"])
def test_schemas_with_no_finite_value_are_refused_at_compile_time(schema: dict[str, Any]) -> None:
    with pytest.raises(SchemaError, match="cannot be satisfied"):
        compile_schema(schema)


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"next": {"$ref": "#"}}},                        # optional: ends
    {"$defs": {"n": {"anyOf": [{"type": "null"}, {"type": "array", "items": {"$ref": "#/$defs/n"},
                                                   "minItems": 1}]}}, "$ref": "#/$defs/n"},
    {"type": "array", "items": {"$ref": "#"}},                                         # [] ends it
    {"anyOf": [{"type": "object", "properties": {"a": {"$ref": "#"}}, "required": ["a"]}, {"type": "string"}]},
], ids=["optional self", "null way out", "empty array", "string way out"])
def test_recursive_schemas_with_a_way_out_are_fine(schema: dict[str, Any]) -> None:
    compile_schema(schema)


@pytest.mark.parametrize("source", ["start: start", 'start: "a" start', "start: a\na: b\nb: a"])
def test_grammars_whose_language_is_empty_are_refused(source: str) -> None:
    with pytest.raises(GrammarError, match="language is empty"):
        compile_schema(Grammar(source))


def test_a_dangling_ref_is_malformed_not_relaxed() -> None:
    with pytest.raises(SchemaError, match="does not exist") as info:
        compile_schema({"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}})
    assert info.value.pointer == "/$defs/missing"


def _relaxed_sample(n: int) -> list[tuple[str, Any, list[Any]]]:
    """``n`` MaskBench files (fixed shuffle) that compile only relaxed, with their valid instances. Compiled with
    the schema's own semantics (``extra_properties``): closing objects narrows on purpose (test_closed.py)."""
    files = sorted(MASKBENCH.glob("*.json"))
    random.Random(16).shuffle(files)
    picked = []
    for path in files:
        doc = json.loads(path.read_text())
        valid = [t["data"] for t in doc.get("tests", []) if t.get("valid")]
        if not valid:
            continue
        try:
            compiled = compile_schema(doc["schema"], JsonOptions(extra_properties=True))
        except structgen.StructgenError:
            continue
        if compiled.relaxed:
            picked.append((path.name, compiled, valid))
            if len(picked) == n:
                break
    return picked


def test_relaxed_grammars_admit_every_valid_instance_llguidance_itself_admits() -> None:
    # An over-approximation must never force the model away from a correct answer: each valid MaskBench instance
    # that llguidance's own most lenient grammar for the original schema admits, the relaxed grammar admits too.
    # (llguidance emits object keys in schema order, so instances are written in that order where it is known.)
    loose = {"lenient": True, "coerce_one_of": True, "item_separator": ",", "key_separator": ":",
             "whitespace_flexible": False}
    checked = narrower = 0
    sample = _relaxed_sample(60)
    assert len(sample) == 60
    for name, compiled, valid in sample:
        raw = llguidance.LLMatcher.grammar_from_json_schema(compiled.json_schema, overrides=loose)
        raw_usable = not llguidance.LLMatcher.validate_grammar(raw)
        for value in valid:
            text = json.dumps(_schema_order(value, compiled.json_schema), separators=(",", ":"), ensure_ascii=False)
            checked += 1
            if not grammar_accepts(compiled.grammar, text) and (not raw_usable or grammar_accepts(raw, text)):
                narrower += 1
                pytest.fail(f"{name}: the relaxed grammar rejects a valid value llguidance admits: {text[:200]}")
    assert checked >= 90 and narrower == 0


def _schema_order(value: Any, schema: Any) -> Any:
    """``value`` with object keys in the order the schema's ``properties`` list them (others after)."""
    if isinstance(value, dict):
        props = schema.get("properties", {}) if isinstance(schema, dict) else {}
        order = [k for k in props if k in value] + [k for k in value if k not in props]
        return {k: _schema_order(value[k], props.get(k, {})) for k in order}
    if isinstance(value, list):
        items = schema.get("items", {}) if isinstance(schema, dict) else {}
        return [_schema_order(v, items if isinstance(items, dict) else {}) for v in value]
    return value
