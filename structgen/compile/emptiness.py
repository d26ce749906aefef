"""Schemas and grammars with no finite valid value, found at compile time.

llguidance accepts ``start: start`` and a ``$ref`` cycle that every value must go round forever: the mask then
lets the model write until ``max_tokens`` and every attempt ends truncated, reported as a generation failure
when the input was at fault. Both are the classic "productive symbols" fixpoint:

* a grammar rule is productive when one of its expansions has only terminals and productive rules; the
  language is empty when ``start`` is not productive;
* a JSON Schema node has a finite instance when its type admits a scalar, or an object whose required
  properties all have finite instances, or an array with no required item (``minItems`` 0) or whose items
  have finite instances; ``$ref`` follows its target, ``anyOf``/``oneOf`` need one branch, ``allOf`` all.

The JSON check is deliberately one-sided: it only reports nodes whose every path leads back into a cycle
(everything it does not understand counts as having an instance), so it never refuses a satisfiable schema.
"""

from __future__ import annotations

from typing import Any

from ..errors import GrammarError, SchemaError
from .refs import resolve_ref

__all__ = ["check_grammar_productive", "check_schema_finite"]


def check_grammar_productive(parser: Any, name: str | None = None) -> None:
    """``GrammarError`` if ``start`` of a loaded ``lark.Lark`` grammar derives no finite string."""
    productive: set[str] = set()
    rules = [(r.origin.name, [s for s in r.expansion]) for r in parser.rules]
    changed = True
    while changed:
        changed = False
        for origin, expansion in rules:
            if origin not in productive and all(s.is_term or s.name in productive for s in expansion):
                productive.add(origin)
                changed = True
    if "start" not in productive:
        stuck = sorted({o for o, _ in rules} - productive)[:5]
        raise GrammarError(f"the grammar's language is empty: 'start' never finishes (rules that cannot end: "
                           f"{', '.join(stuck)})", file=name)


def check_schema_finite(root: dict[str, Any]) -> None:
    """``SchemaError`` if the root of ``root`` has no finite instance (a ``$ref`` cycle with no way out)."""
    # Kleene iteration: each round decides every node afresh, taking the nodes proven finite in earlier rounds as
    # finite and any node met again inside its own decision as not (yet); proofs only accumulate, so the rounds
    # end, at the least fixpoint, and a result computed under a not-yet never outlives its round.
    proven: set[int] = set()
    memo: dict[int, bool] = {}

    def finite(node: Any, depth: int) -> bool:
        if node is False:
            return False
        if not isinstance(node, dict) or depth > 64:
            return True
        key = id(node)
        if key in proven:
            return True
        if key in memo:
            return memo[key]
        memo[key] = False
        result = _finite_node(node, depth)
        memo[key] = result
        if result:
            proven.add(key)
        return result

    def _finite_node(node: dict[str, Any], depth: int) -> bool:
        ref = node.get("$ref")
        if isinstance(ref, str):
            target = resolve_ref(root, ref)
            if target is not None and not finite(target, depth + 1):
                return False
        for combinator, need_all in (("allOf", True), ("anyOf", False), ("oneOf", False)):
            branches = node.get(combinator)
            if isinstance(branches, list) and branches:
                results = [finite(b, depth + 1) for b in branches]
                if not (all(results) if need_all else any(results)):
                    return False
        if "enum" in node or "const" in node:
            return True
        types = node.get("type")
        kinds = {types} if isinstance(types, str) else set(types) if isinstance(types, list) else set()
        if not kinds or kinds & {"string", "number", "integer", "boolean", "null"}:
            return True
        if "object" in kinds and _object_finite(node, depth):
            return True
        return "array" in kinds and _array_finite(node, depth)

    def _object_finite(node: dict[str, Any], depth: int) -> bool:
        props = node.get("properties")
        required = node.get("required")
        if not isinstance(props, dict):
            props = {}
        if not isinstance(required, list):
            required = []
        return all(finite(props.get(name, True), depth + 1) for name in required if isinstance(name, str))

    def _array_finite(node: dict[str, Any], depth: int) -> bool:
        min_items = node.get("minItems", 0)
        if not isinstance(min_items, int) or min_items <= 0:
            return True
        prefix = node.get("prefixItems")
        if not isinstance(prefix, list):
            prefix = []
        needed = prefix[:min_items]
        rest = node.get("items", True) if min_items > len(prefix) else True
        return all(finite(p, depth + 1) for p in needed) and finite(rest, depth + 1)

    while True:
        before = len(proven)
        memo.clear()
        if finite(root, 0):
            return
        if len(proven) == before:
            raise SchemaError("the schema cannot be satisfied: every value would have to go round a $ref cycle "
                              "forever (no finite instance)")
