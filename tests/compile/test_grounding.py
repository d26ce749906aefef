"""Grounded extraction's grammar and validator (``structgen.compile.grounding``), checked without a model: what
the grammar admits (llguidance on a byte tokenizer), what the validator accepts, and where the spans are."""

from __future__ import annotations

import json
from typing import Any

import pydantic
import pytest

from structgen import InvalidArgument, SchemaError, compile_schema
from structgen.compile._byte_tokenizer import grammar_accepts
from structgen.compile.grounding import MAX_SOURCE_CHARS, ground, grounded_values, with_source
from structgen.compile.source_text import source_dates

SOURCE = ('Invoice INV-2041 from "Acme" Corp.\nDate: 12 February 2025\nWidget A, 3 pieces 12.50\n'
          "Gadget B 1,200.00\nThanks! Pay soon.")


class Item(pydantic.BaseModel):
    description: str
    amount: float = pydantic.Field(json_schema_extra={"x-source": "span"})


class Invoice(pydantic.BaseModel):
    number: str
    vendor: str
    note: str | None = None
    items: list[Item]
    code: str = pydantic.Field(pattern=r"^[A-Z]+$")
    comment: str = pydantic.Field(json_schema_extra={"x-source": "free"})


@pytest.fixture(scope="module")
def grounded() -> Any:
    return ground(compile_schema(Invoice), SOURCE)


def accepts(compiled: Any, value: dict[str, Any]) -> bool:
    return grammar_accepts(compiled.grammar, json.dumps(value, separators=(",", ":"), ensure_ascii=False))


def invoice(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"number": "INV-2041", "vendor": '"Acme" Corp', "note": None,
                            "items": [{"description": "Widget A", "amount": 12.50}], "code": "XYZ",
                            "comment": "anything at all"}
    return {**base, **changes}


def test_plain_strings_are_spans_and_the_rest_keeps_its_own_constraints(grounded: Any) -> None:
    assert accepts(grounded, invoice())
    assert accepts(grounded, invoice(items=[], note="Pay soon"))            # Optional[str]: a span or null
    assert accepts(grounded, invoice(comment="not in the text"))            # x-source: free
    assert not accepts(grounded, invoice(number="INV-2042"))                # invented
    assert not accepts(grounded, invoice(vendor="Acm"))                     # half a word
    assert not accepts(grounded, invoice(number=" INV-2041"))               # leading whitespace
    assert not accepts(grounded, invoice(code="ABC1"))                      # the pattern still holds
    assert not accepts(grounded, invoice(items=[{"description": "Widget A", "amount": 7}]))   # not a written number


def test_a_value_is_a_phrase_not_a_run_across_lines_sentences_or_labels(grounded: Any) -> None:
    assert accepts(grounded, invoice(vendor="Acme\" Corp"))
    assert not accepts(grounded, invoice(vendor="Widget A, 3 pieces"))     # past a ", "
    assert not accepts(grounded, invoice(vendor='"Acme" Corp.\nDate'))     # across a line break
    assert not accepts(grounded, invoice(vendor="Thanks! Pay soon"))       # across a sentence end
    assert not accepts(grounded, invoice(vendor="Date: 12 February 2025"))  # a label and its value
    assert not accepts(grounded, invoice(vendor="Date"))                   # the document's label itself
    assert not accepts(grounded, invoice(vendor="Widget A,"))              # ends on a comma


def test_the_validator_checks_every_grounded_value_and_spans_point_at_them(grounded: Any) -> None:
    text = json.dumps(invoice(), separators=(",", ":"))
    assert grounded.validate(text).number == "INV-2041"
    with pytest.raises(ValueError, match="/vendor"):
        grounded.validate(json.dumps(invoice(vendor="Globex")))
    with pytest.raises(ValueError, match="/items/0/amount"):
        grounded.validate(json.dumps(invoice(items=[{"description": "Widget A", "amount": 99}])))
    found = {pointer: (item, kind) for pointer, item, kind in grounded_values(grounded.json_schema, invoice())}
    assert found == {"/number": ("INV-2041", "span"), "/vendor": ('"Acme" Corp', "span"),
                     "/items/0/description": ("Widget A", "span"), "/items/0/amount": (12.5, "number")}


def test_spans_locate_each_value_in_the_source(grounded: Any) -> None:
    from structgen.result import Result

    text = json.dumps(invoice(items=[{"description": "Gadget B", "amount": 1200}]), separators=(",", ":"))
    result: Result[Any] = Result(value=None, text=text, tokens=[], logprobs=[], seed=0, strategy="constrained")
    grounded.annotate(result)
    assert {p: SOURCE[a:b] for p, (a, b) in result.spans.items()} == {
        "/number": "INV-2041", "/vendor": '"Acme" Corp', "/items/0/description": "Gadget B",
        "/items/0/amount": "1,200.00"}


def test_dates_marked_span_are_dates_written_in_the_source() -> None:
    schema = {"type": "object", "properties": {"when": {"type": "string", "format": "date", "x-source": "span"}},
              "required": ["when"]}
    compiled = ground(compile_schema(schema), SOURCE)
    assert accepts(compiled, {"when": "2025-02-12"})
    assert not accepts(compiled, {"when": "2025-02-13"})
    assert [iso for iso, *_ in source_dates("on 3 October 2025, March 28, 2025 and 22/02/2025")] == \
        ["2025-02-22", "2025-10-03", "2025-03-28"]


def test_recursive_schemas_ground_through_refs() -> None:
    schema = {"$defs": {"node": {"type": "object", "properties": {"name": {"type": "string"}, "children": {
        "type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 2}}, "required": ["name", "children"],
        "additionalProperties": False}}, "$ref": "#/$defs/node"}
    compiled = ground(compile_schema(schema), "Anna and Ben and Cleo")
    tree = {"name": "Anna", "children": [{"name": "Ben", "children": []}, {"name": "Cleo", "children": []}]}
    assert accepts(compiled, tree)
    assert not accepts(compiled, {"name": "Dora", "children": []})
    assert [p for p, *_ in grounded_values(schema, tree)] == ["/name", "/children/0/name", "/children/1/name"]


def test_free_text_becomes_a_passage_of_the_source() -> None:
    compiled = ground(compile_schema(None), SOURCE)
    assert grammar_accepts(compiled.grammar, "Widget A, 3 pieces 12.50\nGadget B")
    assert not grammar_accepts(compiled.grammar, "Widget C")
    assert compiled.validate("Pay soon") == "Pay soon"


def test_a_schema_without_plain_strings_is_left_as_it_is() -> None:
    compiled = compile_schema({"type": "object", "properties": {"n": {"type": "integer"}}})
    assert ground(compiled, SOURCE) is compiled


@pytest.mark.parametrize("bad", [{"type": "string", "x-source": "maybe"}])
def test_bad_input_is_a_typed_error(bad: dict[str, Any]) -> None:
    with pytest.raises(SchemaError, match="x-source"):
        ground(compile_schema(bad), SOURCE)
    with pytest.raises(InvalidArgument, match="regex"):
        from structgen import Regex

        ground(compile_schema(Regex("a+")), SOURCE)
    with pytest.raises(InvalidArgument, match="at most"):
        ground(compile_schema(None), "x" * (MAX_SOURCE_CHARS + 1))
    with pytest.raises(InvalidArgument, match="non-empty"):
        ground(compile_schema(None), "  ")
    with pytest.raises(InvalidArgument, match="source"):
        ground(compile_schema(None), "caf\udce9")


def test_the_source_joins_the_prompt_once() -> None:
    assert with_source("Extract.", "doc") == 'Extract.\n\nText:\n"""\ndoc\n"""'
    assert with_source("Extract from: doc", "doc") == "Extract from: doc"
    messages = with_source([{"role": "user", "content": "Extract."}], "doc")
    assert messages[-1]["content"].endswith('"""\ndoc\n"""')


def test_scripts_written_without_spaces_are_spanned_by_character() -> None:
    schema = {"type": "object", "properties": {"place": {"type": "string"}}, "required": ["place"]}
    compiled = ground(compile_schema(schema), "会場は東京タワーです。Tokyo Tower.")
    assert accepts(compiled, {"place": "東京タワー"})
    assert accepts(compiled, {"place": "Tokyo Tower"})
    assert not accepts(compiled, {"place": "Kyoto"})
    assert not accepts(compiled, {"place": "Tok"})


def test_an_array_may_not_repeat_an_item_more_often_than_the_source_writes_it(grounded: Any) -> None:
    widget = {"description": "Widget A", "amount": 12.50}
    with pytest.raises(ValueError, match=r"/items: item 1 repeats item 0 .*1 time"):
        grounded.validate(json.dumps(invoice(items=[widget, {**widget, "amount": 1200}])))
    assert grounded.validate(json.dumps(invoice(items=[widget, {"description": "Gadget B", "amount": 1200}])))
    twice = ground(compile_schema(Invoice), SOURCE + "\nWidget A, 1 piece 12.50")   # written twice: two items
    assert len(twice.validate(json.dumps(invoice(items=[widget, widget]))).items) == 2
