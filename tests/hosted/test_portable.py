"""Server-side constraints a server can take: the portable rewrite of patterns (units, checked against ``re``), and
a corpus of real-world schemas whose patterns use shorthand classes, sent through the ``server`` step of the
real ``llama_cpp.server``, which must still be alive after every one of them (it segfaulted on ``\\d`` before)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import structgen
from structgen import OpenAICompatible
from structgen.hosted.portable import STRING_CHAR, portable_pattern, portable_schema
from structgen.testing import server_answers

from ..conftest import MASKBENCH
from .conftest import SWEEP_COUNTS

S = '"\\\\\\x0A\\x0D'   # what every negated class leaves out too (a quote would end the JSON string)
REWRITES = [
    (r"^\d{5}$", "^[0-9]{5}$"),
    (r"^[\w.-]+@[\w-]+\.\w+$", r"^[A-Za-z0-9_.-]+@[A-Za-z0-9_-]+[.][A-Za-z0-9_]+$"),
    (r"^[^\s]+$", rf"^[^ \t\n\r\x0C\x0B{S}]+$"),
    (r"^\S+\s\S+$", rf"^[^ \t\n\r\x0C\x0B{S}]+[ ][^ \t\n\r\x0C\x0B{S}]+$"),
    (r"^\$\d+(\.\d\d)?$", r"^[$][0-9]+([.][0-9][0-9])?$"),
    (r"^[^@\s]+@[^@\.\s]+(\.[^@\.\s]+)+$",
     rf"^[^@ \t\n\r\x0C\x0B{S}]+@[^@. \t\n\r\x0C\x0B{S}]+([.][^@. \t\n\r\x0C\x0B{S}]+)+$"),
    (r"^[A-Z]{2}-\W$", f"^[A-Z]{{2}}-[^A-Za-z0-9_{S}]$"),
]
NOT_PORTABLE = [r"^(?:a|b)$", r"^[\D]$", r"^a\bb$", r"^(a)\1$", r"^\p{L}+$", r"^a$|^b$", r"(?i)^ab$",
                r"^[[:alpha:]]$", r"^\u00e9$", r"^(?=a)a$", "", "^$", r"a|b$", r"^a|b"]
# Unanchored patterns match anywhere (JSON Schema's search semantics); the converters need ^...$, and the copy sent
# anchors them: a narrower constraint, every string of which the original accepts.
UNANCHORED = [(r"\d+", "^([0-9]+)$"), (r"^[A-Z]+", "^([A-Z]+)$"), (r"\d{4}-\d{2}", "^([0-9]{4}-[0-9]{2})$"),
              (r"a|bb", "^(a|bb)$"), (r"^a\$", "^(a[$])$"), (r"^a.c$", f"^a{STRING_CHAR}c$")]


@pytest.mark.parametrize(("pattern", "expected"), REWRITES)
def test_shorthand_classes_are_written_out(pattern: str, expected: str) -> None:
    assert portable_pattern(pattern) == expected


def test_every_rewrite_is_taken_by_the_server_s_converter_and_llama_cpp() -> None:
    from structgen.hosted.portable import _llama_cpp_takes

    for _, expected in REWRITES + UNANCHORED:
        assert _llama_cpp_takes({"type": "string", "pattern": expected}), expected


def test_nodes_the_converter_would_not_recognise_are_sent_as_what_they_mean() -> None:
    # {"description": ...} and a misspelt "OneOf" are any value in JSON Schema; llama-cpp-python's converter
    # asserted on them, and its server then sent no schema at all.
    sent, dropped = portable_schema({"type": "object", "properties": {
        "a": {"description": "anything", "javaType": "Long"}, "b": {"OneOf": [{"type": "string"}]},
        "description": {"type": "string", "title": "a property named description"}}})
    assert sent == {"type": "object", "properties": {"a": {}, "b": {}, "description": {"type": "string"}}}
    assert set(dropped) == {"/properties/a/javaType", "/properties/b/OneOf"}   # annotations go unrecorded


def test_shapes_the_converter_cannot_read_are_sent_in_one_it_can() -> None:
    from structgen.hosted.portable import _llama_cpp_takes

    schema = {"properties": {"tuple": {"type": "array", "items": [{"type": "integer"}], "additionalItems": False},
                             "any": {"type": "array", "items": {}},
                             "open": {"additionalProperties": True}}}
    sent, _ = portable_schema(schema)
    assert sent == {"type": "object", "properties": {
        "tuple": {"type": "array", "prefixItems": [{"type": "integer"}]}, "any": {"type": "array"},
        "open": {"additionalProperties": True, "type": "object"}}}
    assert _llama_cpp_takes(sent)


def test_only_the_pattern_the_server_cannot_take_is_left_out() -> None:
    # \^ passes the rewrite but not llama.cpp's GBNF parser: that pattern goes, the other one stays.
    sent, dropped = portable_schema({"type": "object", "properties": {
        "a": {"type": "string", "pattern": r"^a\^b$"}, "z": {"type": "string", "pattern": r"^\d{5}$"}}})
    assert sent is not None and dropped == ("/properties/a/pattern",)
    assert sent["properties"]["z"]["pattern"] == "^[0-9]{5}$" and "pattern" not in sent["properties"]["a"]


@pytest.mark.parametrize(("pattern", "expected"), UNANCHORED)
def test_unanchored_patterns_are_anchored(pattern: str, expected: str) -> None:
    assert portable_pattern(pattern) == expected


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([p for p, _ in UNANCHORED]), st.text(alphabet="ab019-AZ$ _", max_size=12))
def test_what_an_anchored_rewrite_admits_the_original_accepts(pattern: str, text: str) -> None:
    rewritten = portable_pattern(pattern)
    assert rewritten is not None
    if re.fullmatch(rewritten, text):
        assert re.search(pattern, text)
    assert any(re.fullmatch(rewritten, t) for t in ("12", "AB", "2024-01", "a", "bb", "a$", "abc", "a\tc")), \
        "and something: the copy sent can be satisfied"


@pytest.mark.parametrize("pattern", NOT_PORTABLE)
def test_what_cannot_be_written_portably_is_left_out(pattern: str) -> None:
    assert portable_pattern(pattern) is None


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([p for p, _ in REWRITES]), st.text(alphabet="ab019 _.-@$\t\nXYZ!", max_size=12))
def test_a_rewrite_admits_only_what_the_original_accepts(pattern: str, text: str) -> None:
    rewritten = portable_pattern(pattern)
    assert rewritten is not None
    if re.fullmatch(rewritten, text):
        assert re.fullmatch(pattern, text)
    if not re.search(r'[\t\n"\\\\]', text):   # only tabs, line breaks, quotes and backslashes are given up
        assert bool(re.fullmatch(pattern, text)) == bool(re.fullmatch(rewritten, text))


def test_a_schema_copy_only_ever_admits_more() -> None:
    schema = {"type": "object", "additionalProperties": False,
              "properties": {"zip": {"type": "string", "pattern": r"^\d{5}$"},
                             "code": {"type": "string", "pattern": r"(?i)^ab$"},
                             "pattern": {"type": "string", "pattern": r"^\w+$"}},
              "patternProperties": {r"^x-(?=a)": {"type": "integer"}}}
    sent, dropped = portable_schema(schema)
    assert sent is not None
    assert sent["properties"]["zip"]["pattern"] == "^[0-9]{5}$"
    assert "pattern" not in sent["properties"]["code"]
    assert sent["properties"]["pattern"]["pattern"] == "^[A-Za-z0-9_]+$"   # a property named "pattern"
    # Without its patternProperties, additionalProperties: false would refuse x-... keys: both go.
    assert "patternProperties" not in sent and "additionalProperties" not in sent
    assert set(dropped) == {"/properties/code/pattern", "/patternProperties", "/additionalProperties"}
    assert schema["properties"]["zip"]["pattern"] == r"^\d{5}$"   # the caller's schema is not touched


def _compiling(paths: list[Any], n: int, wanted: Any = None) -> list[tuple[str, dict[str, Any]]]:
    """The first ``n`` MaskBench schemas of ``paths`` (at most 3,000 characters, ``wanted`` by their text) that
    compile."""
    found = []
    for path in paths:
        schema = json.loads(path.read_text())["schema"]
        text = json.dumps(schema)
        if len(text) > 3000 or (wanted is not None and not wanted(text)):
            continue
        try:
            structgen.compile_schema(schema)
        except structgen.StructgenError:
            continue
        found.append((path.name, schema))
        if len(found) == n:
            break
    return found


def _shorthand_schemas(n: int) -> list[tuple[str, dict[str, Any]]]:
    """The first ``n`` MaskBench schemas (by file name) with a shorthand class in a pattern, that compile."""
    found = _compiling(sorted(MASKBENCH.glob("*.json")), n, lambda text: re.search(r'"pattern": "[^"]*\\\\[dws]', text))
    if len(found) < n:
        pytest.fail(f"only {len(found)} MaskBench schemas with shorthand patterns at {MASKBENCH}")
    return found


def _github_sample(n: int, seed: int) -> list[tuple[str, dict[str, Any]]]:
    """``n`` real-world (GitHub) MaskBench schemas, a seeded random sample of those that compile."""
    import random

    files = sorted(MASKBENCH.glob("Github_*.json"))
    random.Random(seed).shuffle(files)
    return _compiling(files, n)


def _sweep(hosted: OpenAICompatible, llama_server: str, schemas: list[tuple[str, dict[str, Any]]],
           **options: Any) -> dict[str, int]:
    """``strategy="auto"`` over ``schemas``: each a valid value or a typed error, and the server alive after each."""
    counts = {"valid": 0, "typed error": 0}
    for name, schema in schemas:
        try:
            result = structgen.generate(f"Fill in an example value ({name}).", schema, model=hosted,
                                        strategy="auto", seed=0, **options)
        except structgen.StructgenError:
            counts["typed error"] += 1
        else:
            counts["valid"] += 1
            assert structgen.compile_schema(schema).validate(result.text) is not None
        assert server_answers(f"{llama_server}/v1"), f"the server died on {name}"
    return counts


def test_real_world_shorthand_patterns_never_take_the_server_down(hosted: OpenAICompatible,
                                                                   llama_server: str) -> None:
    counts = _sweep(hosted, llama_server, _shorthand_schemas(4), max_tokens=96, max_attempts=1)
    assert sum(counts.values()) == 4


@pytest.mark.slow
def test_forty_real_world_shorthand_patterns_never_take_the_server_down(hosted: OpenAICompatible,
                                                                         llama_server: str) -> None:
    # The guarantee under test: no server death, and every outcome a valid value or a typed error. The valid
    # rate (SmolLM2-135M, 96 tokens, one attempt per step) is reported in the summary, not asserted.
    counts = _sweep(hosted, llama_server, _shorthand_schemas(40), max_tokens=96, max_attempts=1)
    SWEEP_COUNTS["auto over 40 shorthand-pattern schemas (llama_cpp.server)"] = counts
    assert sum(counts.values()) == 40


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_auto_on_twenty_real_world_schemas(hosted: OpenAICompatible, llama_server: str, seed: int) -> None:
    # Issue 15's measure, on samples of the same kind as its collection: strategy="auto", defaults but 256 tokens.
    # Measured 18/20 valid for both seeds (2026-11-30); the rate is reported, the guarantee asserted.
    counts = _sweep(hosted, llama_server, _github_sample(20, seed), max_tokens=256)
    SWEEP_COUNTS[f"auto over 20 real-world schemas, seed {seed} (llama_cpp.server)"] = counts
    assert sum(counts.values()) == 20


def test_a_grammar_that_crashes_llama_cpp_is_checked_in_a_child() -> None:
    # llama.cpp's parser overflowed its stack on this one (a maxLength of 32,767 written out rule by rule): in
    # process, that check took the test run down with it.
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    from structgen.hosted.gbnf import llama_accepts

    assert not llama_accepts(json_schema_to_gbnf(json.dumps({"type": "string", "maxLength": 32767})))
    assert llama_accepts('root ::= "a" [0-9]*\n')
    sent, dropped = portable_schema({"type": "object", "properties": {"d": {"type": "string", "maxLength": 32767,
                                                                            "pattern": r"^\d*$"}}})
    assert sent == {"type": "object", "properties": {"d": {"type": "string", "pattern": "^[0-9]*$"}}}
    assert dropped == ("/properties/d/maxLength",)
