"""Local $refs (structgen/compile/refs.py): one resolver shared by the compile checks, the outline, grounding,
closing and the hosted prompts."""

from __future__ import annotations

from structgen.compile.hint import outline
from structgen.compile.refs import MAX_CHAIN, follow_refs, resolve_ref

ROOT = {"$defs": {"a/b": {"type": "integer"}, "t~x": {"type": "string"}, "Alias": {"$ref": "#/$defs/Pet"},
                  "Pet": {"type": "object", "properties": {"name": {"type": "string"}}}},
        "prefixItems": [{"const": 1}, {"const": 2}],
        "loop": {"$ref": "#/loop"}}


def test_resolve_ref_follows_pointers_with_their_escapes_and_list_indexes() -> None:
    assert resolve_ref(ROOT, "#") is ROOT
    assert resolve_ref(ROOT, "#/$defs/a~1b") == {"type": "integer"}
    assert resolve_ref(ROOT, "#/$defs/t~0x") == {"type": "string"}
    assert resolve_ref(ROOT, "#/prefixItems/1") == {"const": 2}
    for unresolvable in ("#/$defs/missing", "#/prefixItems/7", "other.json#/a", "#anchor"):
        assert resolve_ref(ROOT, unresolvable) is None, unresolvable


def test_follow_refs_keeps_the_referring_keywords_and_gives_up_on_loops() -> None:
    followed = follow_refs({"$ref": "#/$defs/Alias", "description": "a pet"}, ROOT)
    assert followed == {"type": "object", "properties": {"name": {"type": "string"}}, "description": "a pet"}
    assert follow_refs({"type": "string"}, ROOT) == {"type": "string"}
    assert follow_refs({"$ref": "#/loop"}, ROOT) is None
    assert follow_refs({"$ref": "#/$defs/missing"}, ROOT) is None
    chain = {"$defs": {f"d{i}": {"$ref": f"#/$defs/d{i + 1}"} for i in range(MAX_CHAIN + 2)}}
    assert follow_refs({"$ref": "#/$defs/d0"}, chain) is None


def test_the_outline_reads_through_refs_and_past_ones_it_cannot_follow() -> None:
    schema = {**ROOT, "type": "object", "properties": {"pet": {"$ref": "#/$defs/Alias"},
                                                       "far": {"$ref": "other.json", "description": "elsewhere"}}}
    text = outline(schema)
    assert '"pet" (optional): {"name" (optional): string}' in text
    assert '"far" (optional): any value, elsewhere' in text


def test_a_percent_encoded_pointer_resolves_as_a_uri_fragment() -> None:
    root = {"$defs": {"a b": {"type": "integer"}, "50%": {"type": "string"}}}
    assert resolve_ref(root, "#/$defs/a%20b") == {"type": "integer"}
    assert resolve_ref(root, "#/$defs/50%25") == {"type": "string"}
