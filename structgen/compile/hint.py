"""What the prompt tells a local model about a JSON Schema: a compact outline of its fields.

The grammar already enforces the structure (keys are forced, types masked), so the prompt only has to say what
each field *means*: its name, its type, its description, the values of an enum, which fields may be left out.
The outline costs a fraction of the tokens of the schema itself (prefilled again for every new schema) and
gives a small model no JSON Schema keywords to copy into its answer. ``bench hints`` measures it against the
whole schema and against no hint on the extraction documents (docs/benchmarks/index.md, "The plain request").

    >>> outline({"type": "object", "required": ["name"], "properties": {
    ...     "name": {"type": "string", "description": "full name"},
    ...     "role": {"enum": ["admin", "user"]}}})
    'Reply with JSON: {"name": string, full name; "role" (optional): "admin" | "user"}'
"""

from __future__ import annotations

import json
from typing import Any

from .refs import follow_refs

__all__ = ["OUTLINE_LIMIT", "outline"]

OUTLINE_LIMIT = 1200
"""Characters of outline past which the rest is left out (a huge schema would cost more prefill than it helps)."""

_DEPTH = 4
_ENUM_SHOWN = 12
_DESCRIPTION_CHARS = 100


def outline(schema: Any) -> str:
    """The outline of ``schema`` as one line of prompt text (see the module docstring)."""
    text = _node(schema, schema, 0)
    if len(text) > OUTLINE_LIMIT:
        text = text[: OUTLINE_LIMIT - 3].rstrip() + "..."
    return f"Reply with JSON: {text}"


def _resolve(node: Any, root: Any) -> Any:
    """The node with its ``$ref``s followed; where one cannot be followed, what the node says besides it."""
    followed = follow_refs(node, root)
    if followed is None:
        return {k: v for k, v in node.items() if k != "$ref"}
    return followed


def _node(node: Any, root: Any, depth: int) -> str:
    node = _resolve(node, root)
    if not isinstance(node, dict):
        return "any value" if node is not False else "nothing"
    if depth > _DEPTH:
        return "..."
    if "const" in node:
        return json.dumps(node["const"], ensure_ascii=False)
    if isinstance(node.get("enum"), list):
        shown = [json.dumps(v, ensure_ascii=False) for v in node["enum"][:_ENUM_SHOWN]]
        return " | ".join(shown) + (" | ..." if len(node["enum"]) > _ENUM_SHOWN else "")
    branches = node.get("anyOf") or node.get("oneOf")
    if isinstance(branches, list) and branches:
        return " or ".join(_node(b, root, depth + 1) for b in branches[:4]) + _described(node)
    kind = node.get("type")
    if kind == "object" or (kind is None and isinstance(node.get("properties"), dict)):
        return _object(node, root, depth)
    if kind == "array" or (kind is None and "items" in node):
        items = node.get("items")
        inner = _node(items, root, depth + 1) if isinstance(items, dict) else "any value"
        # "[string]", not "[string, ...]": the ellipsis read as "keep going" (a model listed the prompt's other
        # lines as items); on 72 fresh MaskBench schemas the short form took 8 % less time, as valid.
        return f"[{inner}]" + _described(node)
    if isinstance(kind, list):
        return " or ".join(str(k) for k in kind) + _described(node)
    return (kind if isinstance(kind, str) else "any value") + _described(node)


def _object(node: dict[str, Any], root: Any, depth: int) -> str:
    props = node.get("properties")
    if not isinstance(props, dict) or not props:
        return "object" + _described(node)
    required = set(node.get("required") or ())
    fields = [f"{json.dumps(name, ensure_ascii=False)}{'' if name in required else ' (optional)'}: "
              f"{_node(sub, root, depth + 1)}" for name, sub in props.items()]
    return "{" + "; ".join(fields) + "}"


def _described(node: dict[str, Any]) -> str:
    notes = []
    if isinstance(node.get("format"), str):
        notes.append(node["format"])
    description = node.get("description")
    if isinstance(description, str) and description.strip():
        notes.append(" ".join(description.split())[:_DESCRIPTION_CHARS])
    return ", " + ", ".join(notes) if notes else ""
