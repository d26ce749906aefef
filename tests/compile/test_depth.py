"""The nesting bound of JSON Schemas: the text pre-check agrees with the walk, and brackets in strings do not count."""

from __future__ import annotations

import json
from typing import Any

import pytest

from structgen import SchemaError
from structgen.compile.depth import MAX_SCHEMA_DEPTH, check_depth, nesting


def _nested(levels: int, leaf: Any = "x") -> dict[str, Any]:
    node: Any = leaf
    for _ in range(levels):
        node = {"items": node}
    return node


@pytest.mark.parametrize("value", [{}, [], {"a": [1, {"b": []}]}, _nested(40), [[["[", "]]]"]]]], ids=repr)
def test_nesting_is_the_depth_of_the_value(value: Any) -> None:
    def depth(v: Any) -> int:
        children = v.values() if isinstance(v, dict) else v if isinstance(v, list) else None
        return 0 if children is None else 1 + max((depth(c) for c in children), default=0)

    assert nesting(json.dumps(value)) == depth(value)


def test_brackets_inside_strings_do_not_count() -> None:
    text = json.dumps({"description": "[[[[{{{{ \"}}}}\\", "pattern": "^[a-z]{2}\\]$"})
    assert nesting(text) == 1


def test_a_schema_at_the_bound_passes_and_one_past_it_is_located() -> None:
    ok = _nested(MAX_SCHEMA_DEPTH)          # the leaf sits MAX_SCHEMA_DEPTH levels down
    check_depth(ok, json.dumps(ok))
    deep = _nested(MAX_SCHEMA_DEPTH + 1)
    with pytest.raises(SchemaError, match=f"deeper than {MAX_SCHEMA_DEPTH}") as err:
        check_depth(deep, json.dumps(deep))
    assert err.value.pointer.startswith("/items/items")


def test_many_brackets_but_shallow_passes_without_the_walk() -> None:
    wide = {"enum": [[i] for i in range(5 * MAX_SCHEMA_DEPTH)]}   # many brackets, depth 3
    check_depth(wide, json.dumps(wide))
