"""Schema kinds compile to a grammar and a validator; bad input gets a typed error with a location."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from structgen import Choice, Grammar, GrammarError, Regex, SchemaError, bundled_grammars, compile_schema


class Point(BaseModel):
    x: int
    y: int


def test_pydantic_model_compiles_closed_and_validates() -> None:
    c = compile_schema(Point)
    assert c.kind == "json" and c.grammar
    assert c.json_schema is not None and c.json_schema["additionalProperties"] is False
    assert c.validate('{"x":1,"y":2}') == Point(x=1, y=2)
    with pytest.raises(ValueError, match="y"):
        c.validate('{"x":1}')


def test_compile_is_cached() -> None:
    assert compile_schema(Point) is compile_schema(Point)
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    assert compile_schema(schema) is compile_schema(dict(schema))


def test_dict_schema_validates_with_jsonschema_formats() -> None:
    c = compile_schema({"type": "object", "properties": {"d": {"type": "string", "format": "date"}},
                        "required": ["d"]})
    assert c.validate('{"d":"2024-01-31"}') == {"d": "2024-01-31"}
    with pytest.raises(ValueError, match="date"):
        c.validate('{"d":"2024-13-45"}')


def test_regex_choice_and_text() -> None:
    assert compile_schema(Regex(r"\d+")).validate("123") == "123"
    with pytest.raises(ValueError):
        compile_schema(Regex(r"\d+")).validate("12a")
    c = compile_schema(Choice(["spam", "ham"]))
    assert c.validate("ham") == "ham"
    with pytest.raises(ValueError):
        c.validate("eggs")
    assert compile_schema(None).kind == "text"


@pytest.mark.parametrize(
    ("schema", "match", "pointer"),
    [
        (Regex("a(b"), "invalid regex", "pattern[1]"),
        (Regex("(?<=a)b"), "not supported", "pattern"),
        ({"type": "strin"}, "malformed JSON Schema", "/type"),
        ({"type": "object", "properties": {"a": {"$ref": "#/nope"}}}, "does not exist in the schema", "/nope"),
        ({"type": "integer", "minimum": 5, "maximum": 1}, "cannot be satisfied", ""),
        ({"type": "object", "properties": {"a": {"type": "integer", "minimum": "x"}}}, "malformed", "/properties/a/minimum"),
        ({"type": "object", "properties": {"a": {"type": "string", "pattern": "(x"}}}, r"invalid regex '\(x'",
         "/properties/a/pattern"),       # the meta-schema does not check a regex: every reply reaching it would fail
        ({"type": "object", "patternProperties": {"[z-a]": {}}}, "invalid regex", "/patternProperties/[z-a]"),
        ({"type": "number", "maximum": float("inf")}, "not JSON-serialisable: Out of range float", ""),
        ({"type": "object", "properties": {"a": {"type": "integer"}}, "required": {"a"}}, "not JSON-serialisable", ""),
    ],
)
def test_bad_schemas_raise_schema_error_with_location(schema: object, match: str, pointer: str) -> None:
    with pytest.raises(SchemaError, match=match) as info:
        compile_schema(schema)  # type: ignore[arg-type]
    assert info.value.pointer == pointer


def test_a_pattern_in_data_is_not_a_regex() -> None:
    """``default``, ``const`` and ``enum`` hold data: a ``pattern`` key there is a value, and ECMA syntax compiles."""
    compile_schema({"type": "object", "properties": {"pattern": {"type": "string", "pattern": "^\\d{3}$"}},
                    "default": {"pattern": "("}, "examples": [{"pattern": "["}]})


def test_bad_choice() -> None:
    with pytest.raises(SchemaError):
        Choice([])
    with pytest.raises(SchemaError, match="distinct"):
        Choice(["a", "a"])
    with pytest.raises(SchemaError) as info:
        Choice(["a", ""])
    assert info.value.pointer == "/1"


def test_unsupported_keywords_fall_back_to_a_relaxed_grammar() -> None:
    c = compile_schema({"type": "object", "propertyNames": {"maxLength": 3}})
    assert c.relaxed and c.grammar
    with pytest.raises(ValueError):
        c.validate('{"toolong": 1}')


def test_deferred_check_gives_the_same_errors_and_fallback_at_matcher_build() -> None:
    from structgen.compile.matchers import get_backend
    from structgen.compile.schema import compile_for_decoding
    from structgen.testing import RandomLogitsModel

    vocab = RandomLogitsModel(None).vocab
    backend = get_backend("llguidance")
    # Supported: no check is run, the matcher builds, and checking later finds nothing to change.
    ok = compile_for_decoding({"type": "object", "properties": {"a": {"type": "integer"}}})
    assert ok.deferred_check is not None and not ok.relaxed
    backend.compile(ok, vocab).new_matcher()
    assert not ok.checked().relaxed and ok.checked().deferred_check is None
    # Unsupported keyword: the build falls back to the relaxed grammar, exactly as compile_schema does.
    loose = compile_for_decoding({"type": "object", "propertyNames": {"maxLength": 3}})
    matcher = backend.compile(loose, vocab).new_matcher()
    assert loose.checked().relaxed and matcher.error() is None
    with pytest.raises(ValueError):
        loose.validate('{"toolong": 1}')
    # Unsupported schema: the build raises the same located SchemaError compile_schema raises.
    with pytest.raises(SchemaError, match="does not exist"):
        backend.compile(compile_for_decoding({"type": "object", "properties": {"a": {"$ref": "#/nope"}}}), vocab)
    # Malformed schemas are still refused up front.
    with pytest.raises(SchemaError, match="malformed") as info:
        compile_for_decoding({"type": "object", "properties": {"a": {"type": "integer", "minimum": "x"}}})
    assert info.value.pointer == "/properties/a/minimum"


def test_grammar_errors_carry_line_and_column(tmp_path: object) -> None:
    with pytest.raises(GrammarError) as info:
        compile_schema(Grammar('start: "a" b\nb: "x" c\n', name="g.lark"))
    assert (info.value.file, info.value.line) == ("g.lark", 2)
    assert isinstance(info.value.column, int) and info.value.column >= 1
    assert str(info.value).startswith("g.lark:2:")
    assert "c" in info.value.reason
    with pytest.raises(GrammarError, match="empty"):
        compile_schema(Grammar("   "))


def test_grammar_files() -> None:
    assert {"json", "csv", "python_regex", "sqlite_select"} <= set(bundled_grammars())
    g = Grammar.from_file("json")
    assert g.source == Grammar.bundled("json").source
    assert compile_schema(g).validate('{"a": [1, 2]}') == '{"a": [1, 2]}'
    with pytest.raises(GrammarError, match="not found"):
        Grammar.from_file("/nonexistent/x.lark")


def test_unsupported_schema_kind() -> None:
    with pytest.raises(SchemaError, match="unsupported schema kind"):
        compile_schema(42)  # type: ignore[arg-type]


def test_property_order_is_kept() -> None:
    schema = {"type": "object", "properties": {"zeta": {"type": "integer"}, "alpha": {"type": "integer"}},
              "required": ["zeta", "alpha"], "additionalProperties": False}
    from structgen.compile._byte_tokenizer import grammar_accepts

    c = compile_schema(schema)
    assert grammar_accepts(c.grammar, '{"zeta":1,"alpha":2}')
    assert c.validate('{"zeta":1,"alpha":2}') == {"zeta": 1, "alpha": 2}


def test_formats_are_checked_by_the_validator() -> None:
    # MaskBench found "Invalid URI" accepted for format uri through a relaxed grammar: the validator must catch it.
    c = compile_schema({"type": "object", "properties": {"href": {"type": "string", "format": "uri"}},
                        "not": {"required": ["x"]}})
    assert c.relaxed
    c.validate('{"href":"https://example.com/a"}')
    with pytest.raises(ValueError, match="uri"):
        c.validate('{"href":"Invalid URI"}')
