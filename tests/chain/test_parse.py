"""structgen.parse: extraction, strict parsing, repair, YAML safety and schema-guided coercion."""

from __future__ import annotations

import copy
import io
import json
import math
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from structgen.chain.coerce import coerce_to_schema
from structgen.chain.parse import Parsed, parse_json, parse_structured, parse_yaml
from structgen.chain.payload import extract_payload
from structgen.errors import InvalidArgument, ParseError

# --------------------------------------------------------------------------------------------------
# helpers and strategies

FAST = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# ruamel's pure-Python loader takes milliseconds per document: fewer, smaller YAML examples
YAML_FAST = settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)  # inf dumps as `Infinity`, which is not JSON
    | st.text(max_size=30)
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)


def label_like(key: str) -> bool:
    """Keys that auto mode deliberately reads as chatter in `Key: [...]` ("Answer: {...}", "JSON: [...]").

    A one-line YAML document `Answer: [1]` is ambiguous; auto mode prefers the JSON reading, so such keys
    are kept out of the YAML round-trip strategies.
    """
    words = key.split()
    labels = {"Answer", "Output", "Result", "Response", "Reply", "Here", "Sure", "Final"}
    return bool(re.search("json|yaml", key, re.I)) or bool(words and words[0] in labels) or len(words) >= 3


yaml_keys = st.text(max_size=10).filter(lambda key: not label_like(key))
yaml_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(yaml_keys, children, max_size=4),
    max_leaves=10,
)
yaml_containers = st.one_of(
    st.lists(yaml_values, min_size=1, max_size=4),
    st.dictionaries(yaml_keys, yaml_values, min_size=1, max_size=4),
)
containers = st.one_of(
    st.lists(json_values, min_size=1, max_size=5),
    st.dictionaries(st.text(max_size=10), json_values, min_size=1, max_size=5),
)


def identical(a: Any, b: Any) -> bool:
    """Equal with types: True is not 1, 1 is not 1.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(identical(a[k], b[k]) for k in a)  # YAML dumps sort keys
    if isinstance(a, list):
        return len(a) == len(b) and all(identical(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return bool(a == b)


def assert_plain(value: Any) -> None:
    """A JSON-compatible Python value (json.dumps without NaN/Infinity works on it)."""
    json.dumps(value, allow_nan=False)
    if isinstance(value, dict):
        assert all(isinstance(k, str) for k in value)
        for item in value.values():
            assert_plain(item)
    elif isinstance(value, list):
        for item in value:
            assert_plain(item)
    else:
        assert value is None or isinstance(value, bool | int | float | str)


def yaml_dump(value: Any, flow: bool | None = False) -> str:
    """ruamel's safe dump; only documents ruamel itself loads back unchanged are used.

    ruamel's emitter has bugs of its own (flow style writes the key ':0' unquoted, which is invalid; a
    raw U+0085 in a quoted scalar reads back as a line break), hence ASCII output and the assume().
    """
    dumper = YAML(typ="safe", pure=True)
    dumper.default_flow_style = flow
    dumper.allow_unicode = False
    stream = io.StringIO()
    dumper.dump(value, stream)
    text = stream.getvalue()
    try:
        reloaded = YAML(typ="safe", pure=True).load(text)
    except Exception:
        reloaded = object()
    assume(identical(reloaded, value))
    return text


def is_strict_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------------------------------
# property-based: clean values round-trip with repaired=False


@FAST
@given(json_values, st.booleans(), st.sampled_from([None, 2]))
def test_json_round_trips_unrepaired(value: Any, ascii_only: bool, indent: int | None) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only, indent=indent)
    for parsed in (parse_json(text), parse_json(text, repair=False), parse_structured(text)):
        assert identical(parsed.value, value)
        assert parsed.format == "json"
        assert parsed.repaired is False
        assert parsed.repairs == ()
        assert parsed.source == text
    assert extract_payload(text) == text.strip()


@YAML_FAST
@given(yaml_values, st.sampled_from([False, None]))
def test_yaml_round_trips_unrepaired(value: Any, flow: bool | None) -> None:
    text = yaml_dump(value, flow)
    for parsed in (parse_yaml(text), parse_yaml(text, repair=False), parse_structured(text, format="yaml")):
        assert identical(parsed.value, value)
        assert parsed.format == "yaml"
        assert parsed.repaired is False


@YAML_FAST
@given(yaml_containers, st.sampled_from([False, None]))
def test_yaml_containers_round_trip_in_auto_mode(value: Any, flow: bool | None) -> None:
    parsed = parse_structured(yaml_dump(value, flow))
    assert identical(parsed.value, value)
    assert parsed.repaired is False


FENCED_JSON = [
    "```json\n{}\n```",
    "Sure! Here is the JSON:\n```json\n{}\n```\nLet me know if you need anything else.",
    "~~~\n{}\n~~~\n",
    "Here you go:\n\n```\n{}\n```",
]


@FAST
@given(json_values, st.sampled_from(FENCED_JSON), st.booleans())
def test_fenced_json_round_trips_unrepaired(value: Any, template: str, indent: bool) -> None:
    dumped = json.dumps(value, indent=2 if indent else None)
    text = template.replace("{}", dumped)
    for parsed in (parse_json(text, repair=False), parse_structured(text), parse_structured(text, repair=False)):
        assert identical(parsed.value, value)
        assert parsed.repaired is False
        assert parsed.source == dumped
    assert "stripped code fence" in parse_json(text).repairs


CHATTER_JSON = [
    "Sure! Here is the JSON you asked for: {} Hope this helps!",
    "Here is the result:\n{}\n\nLet me know if you need anything else.",
    "JSON: {}",
    "Here is [the data] as requested:\n{}\n(see [1])",
]


@FAST
@given(containers, st.sampled_from(CHATTER_JSON))
def test_json_in_chatter_round_trips_unrepaired(value: Any, template: str) -> None:
    dumped = json.dumps(value)
    text = template.replace("{}", dumped)
    assert extract_payload(text, "json") == dumped
    for parsed in (parse_json(text, repair=False), parse_structured(text)):
        assert identical(parsed.value, value)
        assert parsed.repaired is False
        assert parsed.repairs == ("stripped surrounding text",)


YAML_WRAPPERS = [
    "```yaml\n{}```",
    "Sure! Here is the YAML:\n```yaml\n{}```\nAnything else?",
    "~~~yml\n{}~~~",
]


@YAML_FAST
@given(yaml_values, st.sampled_from(YAML_WRAPPERS))
def test_fenced_yaml_round_trips_unrepaired(value: Any, template: str) -> None:
    text = template.replace("{}", yaml_dump(value))
    for parsed in (parse_yaml(text, repair=False), parse_structured(text, format="yaml")):
        assert identical(parsed.value, value)
        assert parsed.repaired is False


@YAML_FAST
@given(yaml_containers, st.sampled_from([False, None]))
def test_yaml_in_chatter_round_trips_unrepaired(value: Any, flow: bool | None) -> None:
    text = f"Sure! Here is the YAML:\n{yaml_dump(value, flow)}\nLet me know if you need anything else.\n"
    for parsed in (parse_yaml(text, repair=False), parse_structured(text)):
        assert identical(parsed.value, value)
        assert parsed.repaired is False
        assert parsed.repairs == ("stripped surrounding text",)


# --------------------------------------------------------------------------------------------------
# property-based: corrupted JSON is repaired (repaired=True) or refused (ParseError), nothing else


@st.composite
def corrupted_json(draw: st.DrawFn) -> str:
    text = json.dumps(draw(json_values))
    closers = [i for i, ch in enumerate(text) if ch in "}]"]
    kind = draw(st.sampled_from(["drop_closer", "trailing_comma", "truncate", "single_quotes"]))
    if kind == "drop_closer" and closers:
        i = draw(st.sampled_from(closers))
        return text[:i] + text[i + 1 :]
    if kind == "trailing_comma" and closers:
        i = draw(st.sampled_from(closers))
        return text[:i] + "," + text[i:]
    if kind == "truncate":
        return text[: draw(st.integers(0, max(0, len(text) - 1)))]
    return text.replace('"', "'")


def check_repaired_or_refused(parse: Any, text: str, *, yaml_ok: bool = False) -> None:
    try:
        parsed = parse(text)
    except ParseError:
        return
    assert isinstance(parsed, Parsed)
    assert_plain(parsed.value)
    if is_strict_json(text.strip()):
        assert identical(parsed.value, json.loads(text)) or parsed.repaired
    elif not (yaml_ok and parsed.format == "yaml"):
        assert parsed.repaired is True
        assert parsed.repairs


@settings(max_examples=200, deadline=None)
@given(corrupted_json())
def test_corrupted_json_is_repaired_or_refused(text: str) -> None:
    check_repaired_or_refused(parse_json, text)
    # auto tries YAML before JSON repair: valid YAML (`{'a': 1,}`) is a clean YAML reading
    check_repaired_or_refused(parse_structured, text, yaml_ok=True)
    if not is_strict_json(text.strip()):
        with pytest.raises(ParseError):
            parse_json(text, repair=False)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80) | st.text(alphabet="{}[]\",:'ab1 \n-#/*`~tTN", max_size=60))
def test_arbitrary_text_parses_or_raises_parse_error(text: str) -> None:
    extract_payload(text)
    for parse in (parse_json, parse_yaml, parse_structured):
        for repair in (True, False):
            try:
                parsed = parse(text, repair=repair)
            except ParseError:
                continue
            assert_plain(parsed.value)
            assert parsed.source in text


# --------------------------------------------------------------------------------------------------
# extraction


@pytest.mark.parametrize(
    ("text", "fmt", "payload"),
    [
        ('```json\n{"a": 1}\n```', "json", '{"a": 1}'),
        ('Sure! Here is the JSON: {"a": "}"} and some more text', "json", '{"a": "}"}'),
        ('Here: {"a": "\\"}"} trailing', "json", '{"a": "\\"}"}'),
        ("Use [brackets] like this: [1, 2] ok", "json", "[1, 2]"),
        ('{"a": 1} and then {"b": 2}', "json", '{"a": 1}'),
        ('Truncated: {"a": [1, 2', "json", '{"a": [1, 2'),
        ("```yaml\na: 1\nb: 2\n```\nDone.", "yaml", "a: 1\nb: 2"),
        ("~~~\na: 1\n~~~", "yaml", "a: 1"),
        ("Here is the YAML:\na: 1\nb: [1, 2]\n\nHope this helps!", "yaml", "a: 1\nb: [1, 2]"),
        ('```yaml\nx: 1\n```\n```json\n{"y": 2}\n```', "json", '{"y": 2}'),
        ('```yaml\nx: 1\n```\n```json\n{"y": 2}\n```', "auto", "x: 1"),
        ("nums: [1, 2]\nname: x", "auto", "nums: [1, 2]\nname: x"),
        ('Answer: {"a": 1}', "auto", '{"a": 1}'),
        ('```json\n{"a": [1, {"b": "c', "json", '{"a": [1, {"b": "c'),
        ("", "auto", ""),
    ],
)
def test_extract_payload(text: str, fmt: Any, payload: str) -> None:
    assert extract_payload(text, fmt) == payload


def test_extract_payload_rejects_unknown_format() -> None:
    with pytest.raises(InvalidArgument):
        extract_payload("{}", "xml")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        parse_structured("{}", format="toml")  # type: ignore[arg-type]


def test_fence_and_chatter_are_not_repairs() -> None:
    parsed = parse_json('Sure!\n```json\n{"a": 1}\n```\nAnything else?')
    assert parsed.repaired is False
    assert parsed.repairs == ("stripped code fence", "stripped surrounding text")


# --------------------------------------------------------------------------------------------------
# repairs, one kind at a time


@pytest.mark.parametrize(
    ("text", "value", "note"),
    [
        ('{"a": 1, "b": [1, 2,],}', {"a": 1, "b": [1, 2]}, "removed 2 trailing commas"),
        ("{'a': 'b', 'c': ['d']}", {"a": "b", "c": ["d"]}, "converted 4 single-quoted strings to double quotes"),
        ("'just a string'", "just a string", "converted 1 single-quoted string to double quotes"),
        ('{a: 1, b_c: "x"}', {"a": 1, "b_c": "x"}, "quoted 2 unquoted keys"),
        (
            '{"a": True, "b": False, "c": None}',
            {"a": True, "b": False, "c": None},
            "converted 3 Python literals (True/False/None) to JSON",
        ),
        ('{"a": 1, // line\n "b": 2 /* block */}', {"a": 1, "b": 2}, "removed 2 comments"),
        ('{"a": 1, # hash\n "b": 2}', {"a": 1, "b": 2}, "removed 1 comment"),
        (
            '{"a": NaN, "b": [-Infinity]}',
            {"a": None, "b": [None]},
            "replaced 2 non-finite numbers (NaN/Infinity) with null",
        ),
        ('{"a": [1, 2, 3}, "b": 4}', {"a": [1, 2, 3], "b": 4}, "closed 1 bracket left open before a mismatched closer"),
        ('{"a": 1 "b": 2}', {"a": 1, "b": 2}, "inserted 1 missing separator (comma or colon)"),
        ('{"a": 1, "a": 2}', {"a": 2}, "kept the last value of a duplicated key"),
        ('{"a": }', {"a": ""}, "filled 1 missing value with an empty string"),
    ],
)
def test_each_repair_kind(text: str, value: Any, note: str) -> None:
    parsed = parse_json(text)
    assert parsed.value == value
    assert parsed.repaired is True
    assert note in parsed.repairs
    assert parsed.source == text
    with pytest.raises(ParseError):
        parse_json(text, repair=False)


@pytest.mark.parametrize(
    ("text", "value", "notes"),
    [
        ('{"a": [1, 2', {"a": [1, 2]}, ("closed 2 open brackets (truncated tail)",)),
        (
            '{"a": [{"b": "hel',
            {"a": [{"b": "hel"}]},
            ("closed an open string (truncated tail)", "closed 3 open brackets (truncated tail)"),
        ),
        (
            '{"a": 1, "b": ',
            {"a": 1},
            ("dropped an incomplete trailing item (truncated tail)", "closed 1 open bracket (truncated tail)"),
        ),
        ('{"a": 1, "lon', {"a": 1}, ("dropped an incomplete trailing item (truncated tail)",)),
        ("[1, 2, tr", [1, 2, True], ("completed truncated 'tr' as true (truncated tail)",)),
        ("[1.5, 2.", [1.5, 2], ("completed truncated '2.' as 2 (truncated tail)",)),
        ('{"a": "x\\', {"a": "x"}, ("closed an open string (truncated tail)",)),
        ('{"a": "\\u00', {"a": ""}, ("closed an open string (truncated tail)",)),
        ('"abc', "abc", ("closed an open string (truncated tail)",)),
        ("{'a': ['x', 'y", {"a": ["x", "y"]}, ("closed an open string (truncated tail)",)),
    ],
)
def test_truncated_tails(text: str, value: Any, notes: tuple[str, ...]) -> None:
    parsed = parse_json(text)
    assert parsed.value == value
    assert parsed.repaired is True
    for note in notes:
        assert note in parsed.repairs


def test_truncated_output_inside_fence() -> None:
    parsed = parse_structured('Here:\n```json\n{"name": "Bob", "tags": ["a", "b')
    assert parsed.value == {"name": "Bob", "tags": ["a", "b"]}
    assert parsed.repairs[0] == "stripped unclosed code fence"
    assert parsed.repaired is True


def test_strict_mode_reports_line_and_column_in_the_reply() -> None:
    text = 'Sure, here it is:\n```json\n{\n  "a": 1,\n}\n```'
    with pytest.raises(ParseError) as info:
        parse_json(text, repair=False)
    assert (info.value.line, info.value.column) == (5, 1)
    assert info.value.text == text
    assert parse_json(text).value == {"a": 1}


def test_strict_yaml_reports_line_and_column() -> None:
    text = "Here is the YAML:\n```yaml\na: 1\nb: c: d\n```"
    with pytest.raises(ParseError) as info:
        parse_yaml(text, repair=False)
    assert (info.value.line, info.value.column) == (4, 5)


# --------------------------------------------------------------------------------------------------
# garbage and json_repair's leniency


GARBAGE = [
    "",
    "   \n\t ",
    "I cannot help with that",
    "I'm sorry, but I can't help with that request.",
    "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title><style>body { color: red }</style></head>"
    "<body><h1>502 Bad Gateway</h1></body></html>",
    "<html><body><h1>503 Service Unavailable</h1></body></html>",
    "{ this is garbage text with no json }",
    "```json\n```",
]


@pytest.mark.parametrize("text", GARBAGE)
@pytest.mark.parametrize("repair", [True, False])
def test_garbage_raises_parse_error(text: str, repair: bool) -> None:
    with pytest.raises(ParseError):
        parse_json(text, repair=repair)
    with pytest.raises(ParseError):
        parse_structured(text, repair=repair)


@pytest.mark.parametrize(
    "text", ["", "  ", "<html><body>Bad Gateway</body></html>", "# only a comment\n", "```yaml\n```"]
)
def test_yaml_garbage_raises_parse_error(text: str) -> None:
    with pytest.raises(ParseError):
        parse_yaml(text)


def test_json_repair_never_turns_prose_into_empty_values() -> None:
    for text in ["The answer is unknown.", "tr", "-", "Error: rate limited", "{ hello world }", "[see below]"]:
        with pytest.raises(ParseError):
            parse_json(text)


def test_deep_nesting_is_a_parse_error_not_a_crash() -> None:
    nested_block = "".join(" " * i + "- \n" for i in range(400))
    for text in ["[" * 3000, "[" * 1000 + "]" * 1000, '{"a": ' * 3000, nested_block]:
        for parse in (parse_json, parse_yaml, parse_structured):
            try:
                parsed = parse(text)
            except ParseError:
                continue
            assert parsed.repaired or parsed.format == "yaml"


def test_parse_error_is_a_value_error_and_structgen_error() -> None:
    from structgen.errors import StructgenError

    with pytest.raises(ParseError) as info:
        parse_json("nope")
    assert isinstance(info.value, StructgenError)
    assert isinstance(info.value, ValueError)


# --------------------------------------------------------------------------------------------------
# YAML specifics


@pytest.mark.parametrize(
    "text",
    [
        "!!python/object:os.system {}",
        "a: 1\nb: !!python/object/apply:os.system ['ls']\n",
        "```yaml\nx: !!python/object/new:subprocess.Popen [['ls']]\n```",
        "- !!python/name:os.system\n",
        "k: !custom value\n",
    ],
)
@pytest.mark.parametrize("repair", [True, False])
def test_python_object_tags_are_rejected(text: str, repair: bool) -> None:
    with pytest.raises(ParseError, match="constructor"):
        parse_yaml(text, repair=repair)
    with pytest.raises(ParseError, match="constructor"):
        parse_structured(text, repair=repair)


def test_yaml_values_become_plain_json_values() -> None:
    text = (
        "d: 2024-01-02\n"
        "t: 2024-01-02 03:04:05\n"
        "b: !!binary aGVsbG8=\n"
        "s: !!set {x, y}\n"
        "o: !!omap [{k: 1}, {j: 2}]\n"
        "1: int key\n"
        "null: null key\n"
        "false: bool key\n"
        "anchor: &x [1, 2]\n"
        "alias: *x\n"
        "f: 1.5\n"
    )
    parsed = parse_yaml(text)
    assert parsed.value == {
        "d": "2024-01-02",
        "t": "2024-01-02T03:04:05",
        "b": "aGVsbG8=",
        "s": ["x", "y"],
        "o": {"k": 1, "j": 2},
        "1": "int key",
        "null": "null key",
        "false": "bool key",
        "anchor": [1, 2],
        "alias": [1, 2],
        "f": 1.5,
    }
    assert_plain(parsed.value)
    assert parsed.repaired is False


def test_yaml_refusals() -> None:
    with pytest.raises(ParseError, match="duplicate"):
        parse_yaml("a: 1\na: 2\n")
    with pytest.raises(ParseError, match="recursive"):
        parse_yaml("a: &a [*a]\n")
    with pytest.raises(ParseError, match="month"):
        parse_yaml("when: 2024-13-45\n")
    laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 10) + "]\n" for i in range(7)
    )
    with pytest.raises(ParseError, match="too large"):
        parse_yaml(laughs)


def test_yaml_non_finite_numbers() -> None:
    with pytest.raises(ParseError, match="non-finite"):
        parse_yaml("x: .nan\n", repair=False)
    parsed = parse_yaml("x: .nan\ny: -.inf\n")
    assert parsed.value == {"x": None, "y": None}
    assert parsed.repaired is True


def test_yaml_repairs() -> None:
    tabs = parse_yaml("a:\n\tb: 1\n")
    assert tabs.value == {"a": {"b": 1}}
    assert tabs.repairs == ("replaced tab indentation with spaces",)
    truncated = parse_yaml('name: Bob\nbio: "Born in')
    assert truncated.value == {"name": "Bob"}
    assert truncated.repairs == ("dropped the incomplete last line (truncated tail)",)
    with pytest.raises(ParseError):
        parse_yaml('name: Bob\nbio: "Born in', repair=False)


def test_yaml_bare_scalar_is_returned_by_parse_yaml_but_not_by_auto() -> None:
    assert parse_yaml("just words here").value == "just words here"
    assert parse_yaml("42").value == 42
    assert parse_structured("42").value == 42
    for text in ["just words here", "I cannot help with that: it is against policy."]:
        with pytest.raises(ParseError):
            parse_structured(text)


def test_yaml_chatter_and_parent_keys() -> None:
    assert parse_yaml("result:\n  value: 1\n").value == {"result": {"value": 1}}
    assert parse_yaml("Here is the YAML:\n  value: 1\n").value == {"value": 1}
    assert parse_yaml("---\na: 1\n...\nHope this helps.\n").value == {"a": 1}
    assert parse_yaml("Sure!\n---\na: 1\n").value == {"a": 1}


# --------------------------------------------------------------------------------------------------
# auto mode


@pytest.mark.parametrize(
    ("text", "value", "fmt", "repaired"),
    [
        ('{"a": 1}', {"a": 1}, "json", False),
        ("a: 1\nb: [1, 2]\n", {"a": 1, "b": [1, 2]}, "yaml", False),
        ("{a: 1, b: [x, y]}", {"a": 1, "b": ["x", "y"]}, "yaml", False),
        ("- [1, 2]\n- [3]\n", [[1, 2], [3]], "yaml", False),
        ("person: {name: Bob}", {"person": {"name": "Bob"}}, "yaml", False),
        ('Here is the JSON: {"a": 1}', {"a": 1}, "json", False),
        ('{"a": 1 // YAML would read `1 // ...` as a string\n}', {"a": 1}, "json", True),
        ('{"a": None}', {"a": None}, "json", True),
        ('{"a": [1, 2', {"a": [1, 2]}, "json", True),
        ("```yaml\na: 1\n```", {"a": 1}, "yaml", False),
        ("a: 1\nb: [1, 2", {"a": 1}, "yaml", True),
    ],
)
def test_auto_mode(text: str, value: Any, fmt: str, repaired: bool) -> None:
    parsed = parse_structured(text)
    assert parsed.value == value
    assert parsed.format == fmt
    assert parsed.repaired is repaired


def test_auto_strict_mode_still_reads_yaml_but_does_not_repair() -> None:
    assert parse_structured("a: 1\n", repair=False).value == {"a": 1}
    with pytest.raises(ParseError):
        parse_structured('{"a": [1, 2', repair=False)


def test_explicit_formats() -> None:
    assert parse_structured('{"a": 1}', format="json").format == "json"
    assert parse_structured("a: 1", format="yaml").value == {"a": 1}
    with pytest.raises(ParseError):
        parse_structured("a: 1", format="json")


# --------------------------------------------------------------------------------------------------
# coerce_to_schema

PERSON = {
    "title": "Person",
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "height": {"type": "number"},
        "member": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "nickname": {"type": ["string", "null"]},
        "address": {"$ref": "#/$defs/Address"},
    },
    "required": ["name", "age", "nickname"],
    "$defs": {
        "Address": {
            "type": "object",
            "properties": {"zip": {"type": "string"}, "floor": {"type": "integer"}},
        }
    },
}


def test_coerce_person() -> None:
    value = {
        "name": "Bob",
        "age": "42",
        "height": "1.85",
        "member": "yes",
        "tags": "friend",
        "address": {"zip": 12345, "floor": "3"},
    }
    original = copy.deepcopy(value)
    assert coerce_to_schema(value, PERSON) == {
        "name": "Bob",
        "age": 42,
        "height": 1.85,
        "member": True,
        "tags": ["friend"],
        "address": {"zip": "12345", "floor": 3},
        "nickname": None,
    }
    assert value == original  # the input is not mutated


def test_coerce_unwraps_title_key() -> None:
    assert coerce_to_schema({"Person": {"name": "Bob", "age": "1"}}, PERSON) == {
        "name": "Bob",
        "age": 1,
        "nickname": None,
    }
    assert coerce_to_schema({"person": {"name": "Bob", "age": 1, "nickname": "B"}}, PERSON)["name"] == "Bob"
    schema = {"title": "name", "type": "object", "properties": {"name": {"type": "object"}}}
    assert coerce_to_schema({"name": {"x": 1}}, schema) == {"name": {"x": 1}}  # a declared property stays


def test_coerce_unwraps_ref_name_as_title() -> None:
    schema = {
        "type": "object",
        "properties": {"owner": {"$ref": "#/$defs/Person"}},
        "$defs": {"Person": {"type": "object", "properties": {"age": {"type": "integer"}}}},
    }
    assert coerce_to_schema({"owner": {"Person": {"age": "3"}}}, schema) == {"owner": {"age": 3}}


@pytest.mark.parametrize(
    ("value", "schema", "expected"),
    [
        ("42", {"type": "integer"}, 42),
        (" -7 ", {"type": "integer"}, -7),
        ("42.0", {"type": "integer"}, 42),
        (42.0, {"type": "integer"}, 42),
        ("4.5", {"type": "integer"}, "4.5"),
        (True, {"type": "integer"}, True),
        ("3.5", {"type": "number"}, 3.5),
        ("1e3", {"type": "number"}, 1000.0),
        ("nan", {"type": "number"}, "nan"),
        ("true", {"type": "boolean"}, True),
        ("Yes", {"type": "boolean"}, True),
        ("no", {"type": "boolean"}, False),
        (0, {"type": "boolean"}, False),
        ("maybe", {"type": "boolean"}, "maybe"),
        (5, {"type": "string"}, "5"),
        ("null", {"type": "null"}, None),
        ("x", {"type": "array"}, ["x"]),
        ("5", {"type": "array", "items": {"type": "integer"}}, [5]),
        ('["a", "b"]', {"type": "array"}, ["a", "b"]),
        ('{"a": "1"}', {"type": "object", "properties": {"a": {"type": "integer"}}}, {"a": 1}),
        ([{"a": 1}], {"type": "object"}, {"a": 1}),
        (None, {"type": "array"}, None),
        ("42", {"anyOf": [{"type": "integer"}, {"type": "string"}]}, "42"),
        ("yes", {"anyOf": [{"type": "integer"}, {"type": "boolean"}]}, True),
        ("3.5", {"oneOf": [{"type": "integer"}, {"type": "number"}]}, 3.5),
        ("3", {"oneOf": [{"type": "integer"}, {"type": "number"}]}, 3),
        ("red", {"enum": ["Red", "Green"]}, "Red"),
        ("2", {"enum": [1, 2]}, 2),
        ("x", {"const": "X"}, "X"),
        ("7", {"$ref": "#/definitions/n", "definitions": {"n": {"type": "integer"}}}, 7),
        (["1", "2"], {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "boolean"}]}, [1, "2"]),
        ({"a": "1", "b": "2"}, {"type": "object", "additionalProperties": {"type": "integer"}}, {"a": 1, "b": 2}),
        ({"x_1": "1"}, {"type": "object", "patternProperties": {"^x_": {"type": "integer"}}}, {"x_1": 1}),
        ("1", {"type": ["integer", "null"]}, 1),
        (None, {"type": "integer", "nullable": True}, None),
    ],
)
def test_coerce_cases(value: Any, schema: dict[str, Any], expected: Any) -> None:
    assert identical(coerce_to_schema(value, schema), expected)


def test_coerce_nullable_missing_only_when_nullable_and_required() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "b": {"type": "string"},
            "c": {"type": ["string", "null"]},
        },
        "required": ["a", "b"],
    }
    assert coerce_to_schema({}, schema) == {"a": None}


def test_coerce_recursive_schema() -> None:
    tree = {
        "type": "object",
        "properties": {"v": {"type": "integer"}, "kids": {"type": "array", "items": {"$ref": "#"}}},
    }
    value = {"v": "1", "kids": [{"v": "2", "kids": {"v": "3"}}]}
    assert coerce_to_schema(value, tree) == {"v": 1, "kids": [{"v": 2, "kids": [{"v": 3}]}]}


@pytest.mark.parametrize(
    "schema",
    [
        {"$ref": "#/nope"},
        {"$ref": "https://example.com/schema"},
        {"$ref": "#"},
        {"type": 5},
        {"properties": "x"},
        {"anyOf": "x"},
        {"patternProperties": {"(": {"type": "integer"}}},
        {"items": [1, 2]},
        {"enum": "abc"},
        {"type": "object", "required": "a", "properties": {"a": True}},
    ],
)
def test_coerce_never_raises_on_odd_schemas(schema: dict[str, Any]) -> None:
    for value in ["1", {"a": "1"}, [1, "2"], None, 3.5]:
        coerce_to_schema(value, schema)


@FAST
@given(json_values, st.sampled_from([PERSON, {"type": "array", "items": {"type": "integer"}}, {"type": "number"}]))
def test_coerce_never_raises_and_keeps_fitting_values(value: Any, schema: dict[str, Any]) -> None:
    result = coerce_to_schema(value, schema)
    assert_plain(result)
    assert identical(coerce_to_schema(result, schema), result)  # idempotent
