"""Objects closed for generation (structgen/compile/closed.py): the model writes only the properties a schema
names, the grammar never admits a value the schema refuses, and where closing is unsafe the object stays open."""

from __future__ import annotations

import json
import random
from typing import Any

import jsonschema_rs
import pydantic
import pytest

import structgen
from structgen.compile._byte_tokenizer import grammar_accepts
from structgen.compile.closed import close_objects
from structgen.compile.schema import JsonOptions, compile_schema

from ..conftest import MASKBENCH
from ..scripted import ScriptedModel

OPEN = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 8},
                                         "tags": {"type": "array", "items": {"type": "object",
                                                                             "properties": {"k": {"type": "integer"}}}}}}


def test_a_model_writes_only_the_named_properties_unless_asked() -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "count": {"type": "integer"}},
              "required": ["name"]}
    probe = ScriptedModel([], [])
    script, fallback = probe.tokens('{"name":"a","extra":1}'), probe.tokens("}")
    closed = structgen.generate("Item?", schema, model=ScriptedModel(script, fallback), max_tokens=40, chat=False)
    assert set(closed.value) <= {"name", "count"} and len(closed.attempts) == 1
    opened = structgen.generate("Item?", schema, model=ScriptedModel(script, fallback), max_tokens=40, chat=False,
                                extra_properties=True)
    assert opened.value == {"name": "a", "extra": 1}   # the schema allows it, and without closing it is written


def test_the_grammar_refuses_an_invented_key_and_the_validator_still_follows_the_schema() -> None:
    compiled = compile_schema(OPEN)
    assert grammar_accepts(compiled.grammar, '{"name":"a","tags":[{"k":1}]}')
    assert not grammar_accepts(compiled.grammar, '{"name":"a","x":1}')
    assert not grammar_accepts(compiled.grammar, '{"tags":[{"k":1,"j":2}]}')
    assert compiled.json_schema == OPEN   # the schema as written, for hosted servers and prompts
    assert compiled.validate('{"name":"a","x":1}') == {"name": "a", "x": 1}   # valid for the schema: accepted
    opened = compile_schema(OPEN, JsonOptions(extra_properties=True))
    assert grammar_accepts(opened.grammar, '{"name":"a","x":1}')


@pytest.mark.parametrize(("label", "schema"), [
    ("explicit additionalProperties", {"properties": {"a": {}}, "additionalProperties": {"type": "integer"}}),
    ("required outside properties", {"properties": {"a": {}}, "required": ["b"]}),
    ("more properties asked than named", {"properties": {"a": {}}, "minProperties": 2}),
    ("allOf base and extension", {"allOf": [{"$ref": "#/$defs/Base"}, {"properties": {"x": {}}}],
                                  "$defs": {"Base": {"type": "object", "properties": {"y": {}}}}}),
    ("anyOf branch adds a property", {"properties": {"a": {}}, "anyOf": [{"properties": {"b": {}}}]}),
    ("$ref beside properties", {"$ref": "#/$defs/A", "properties": {"z": {}},
                                "$defs": {"A": {"properties": {"q": {}}}}}),
    ("under not", {"not": {"properties": {"a": {"const": 1}}}}),
    ("a def used under not", {"$defs": {"A": {"properties": {"q": {}}}}, "not": {"$ref": "#/$defs/A"}}),
    ("dependentRequired names another key", {"properties": {"a": {}}, "dependentRequired": {"a": ["b"]}}),
    ("then adds a property", {"properties": {"a": {}}, "if": {"required": ["a"]},
                              "then": {"properties": {"b": {}}}}),
    ("a remote $ref", {"properties": {"a": {"$ref": "other.json#/x"}}}),
    ("no properties", {"type": "object"}),
])
def test_where_closing_would_refuse_valid_values_the_object_stays_open(label: str, schema: dict[str, Any]) -> None:
    closed = close_objects(schema)
    pointers = [p for p, node in _objects(closed) if node.get("additionalProperties") is False
                and "additionalProperties" not in _at(schema, p)]
    # only objects at other places (a property's own schema, a standalone def) may have closed
    assert all(p.startswith(("/properties/", "/$defs/", "/then/properties")) for p in pointers), (label, pointers)
    assert "" not in pointers and "/$defs/Base" not in pointers and "/$defs/A" not in pointers


def test_what_closes_is_each_place_that_names_all_its_keys() -> None:
    schema = {"anyOf": [{"$ref": "#/$defs/Cat"}, {"type": "string"}],
              "$defs": {"Cat": {"type": "object", "required": ["name"],
                                "properties": {"name": {"type": "string"},
                                               "owner": {"type": "object", "properties": {"id": {}}}},
                                "anyOf": [{"required": ["name"]}]}}}
    closed = close_objects(schema)
    cat = closed["$defs"]["Cat"]
    assert cat["additionalProperties"] is False and cat["properties"]["owner"]["additionalProperties"] is False
    assert close_objects(closed) is closed   # nothing left to close: the same dict back


def test_pydantic_models_are_closed_whatever_the_option() -> None:
    class Pet(pydantic.BaseModel):
        name: str

    class Owner(pydantic.BaseModel):
        pets: list[Pet]

    for options in (JsonOptions(), JsonOptions(extra_properties=True)):
        compiled = compile_schema(Owner, options)
        assert not grammar_accepts(compiled.grammar, '{"pets":[{"name":"a","age":1}]}')


def test_a_closing_that_leaves_nothing_to_write_falls_back_to_the_schema_as_written() -> None:
    # The one named property may not be written, yet one property is required: closed, nothing is valid.
    schema = {"type": "object", "properties": {"a": False}, "minProperties": 1}
    compiled = compile_schema(schema)
    assert grammar_accepts(compiled.grammar, '{"b":1}') and not compiled.relaxed


def test_closing_never_admits_a_value_the_schema_refuses() -> None:
    # On a fixed sample of MaskBench schemas that closing changes, every labelled instance the closed schema
    # accepts, the schema as written accepts too (oneOf read as anyOf, as the grammar enforces it).
    files = sorted(MASKBENCH.glob("*.json"))
    random.Random(7).shuffle(files)
    changed = checked = 0
    for path in files[:600]:
        doc = json.loads(path.read_text())
        schema = json.loads(json.dumps(doc["schema"]).replace('"oneOf"', '"anyOf"'))
        closed = close_objects(schema)
        if closed is schema:
            continue
        changed += 1
        try:
            as_written, narrowed = jsonschema_rs.validator_for(schema), jsonschema_rs.validator_for(closed)
        except Exception:   # a schema jsonschema-rs cannot build (e.g. an ECMA-only regex): not this test's
            continue
        for test in doc.get("tests", ()):
            checked += 1
            if narrowed.is_valid(test["data"]):
                assert as_written.is_valid(test["data"]), (path.name, test["data"])
    assert changed >= 200 and checked >= 600, (changed, checked)


def _objects(node: Any, pointer: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = []
    if isinstance(node, dict):
        found.append((pointer, node))
        for key, value in node.items():
            found += _objects(value, f"{pointer}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _objects(value, f"{pointer}/{i}")
    return found


def _at(node: Any, pointer: str) -> Any:
    for part in pointer.split("/")[1:]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def test_grounded_grammars_close_objects_too() -> None:
    from structgen.compile.grounding import ground

    schema = {"type": "object", "properties": {
        "name": {"type": "string"},
        "meta": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"],
                 "minProperties": 1}}}   # minProperties: not a shape grounding builds itself (llguidance's rule)
    source = "Ada Lovelace wrote notes."
    for options, extra_ok in ((JsonOptions(), False), (JsonOptions(extra_properties=True), True)):
        grounded = ground(compile_schema(schema, options), source, options)
        assert grammar_accepts(grounded.grammar, '{"name":"Ada Lovelace","meta":{"n":1}}')
        assert grammar_accepts(grounded.grammar, '{"name":"Ada Lovelace","meta":{"n":1,"x":2}}') is extra_ok
