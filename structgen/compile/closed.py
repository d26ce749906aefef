"""Objects closed for generation: a model writes the properties a schema names, not invented ones.

JSON Schema lets an object carry properties it does not name unless ``additionalProperties`` says otherwise, so a
grammar that follows the letter of ``{"type": "object", "properties": {...}}`` lets the model add keys of its own.
A small model does: ``"": "json"``, ``"location:{string}": "..."``, a second copy of a nested object under a new
key, each costing tokens and none wanted. Like llama.cpp's and xgrammar's grammars (and OpenAI's strict mode),
structgen's grammar therefore admits only the named properties where the schema is silent
(``JsonOptions.extra_properties=False``, the default). Every value the closed grammar admits, the grammar of the
schema as written admits too, and the validator still checks against that schema; only what the model may *write*
narrows.

Closing is only safe where no other part of the schema adds properties at the same place, since
``additionalProperties`` sees its own object's ``properties`` alone. So an object is left as it is when

* it says ``additionalProperties``, ``unevaluatedProperties`` or ``propertyNames`` itself, or has no (or empty)
  ``properties``;
* a ``required`` name is not among its ``properties``, or ``minProperties`` asks for more than it names;
* its own ``allOf``/``anyOf``/``oneOf``/``then``/``else``/``dependentSchemas``/``dependentRequired``/``$ref``
  mention property names it does not list;
* it is combined with properties from elsewhere: a branch of an ``allOf`` of several, of an ``anyOf``/``oneOf`` or
  ``then``/``else`` under an object that describes properties itself, or a ``$ref`` target used so;
* it sits under ``not`` or ``if`` (narrowing a negated or tested schema would widen what passes);
* the schema has ``$ref``s that are not local JSON pointers (their targets cannot be told apart here).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from .refs import resolve_ref

__all__ = ["close_objects"]

_SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_CHILD = ("items", "additionalItems", "contains", "additionalProperties", "unevaluatedItems",
          "unevaluatedProperties", "propertyNames")
_OBJECT_WORDS = frozenset({"properties", "required", "patternProperties", "additionalProperties",
                           "unevaluatedProperties", "minProperties", "dependentRequired", "dependentSchemas",
                           "dependencies"})
_FROZEN = ("not", "if")


def close_objects(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with ``"additionalProperties": false`` added to each object where that is safe (module
    docstring); the same dict when nothing changes."""
    if not _refs_are_local(schema):
        return schema
    closer = _Closer(schema)
    while True:   # a target used where properties come from elsewhere is open, and so is what it refers to
        known = set(closer.open_targets)
        closer.walk(schema, "", False)
        if closer.open_targets == known:
            break
    closer.closing = True
    out = closer.walk(schema, "", False)
    return out if closer.closed else schema


class _Closer:
    """One schema's walk: first (``closing`` False) only finding the open ``$ref`` targets, then closing."""

    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self.frozen = self._frozen_targets()
        self.open_targets: set[str] = set()
        self.closing = False
        self.closed = 0

    def walk(self, node: Any, pointer: str, place_open: bool) -> Any:
        """The node with its safe objects closed. ``place_open``: properties may come to this instance location
        from elsewhere, so neither the node nor what applies at the same place may close."""
        if not isinstance(node, dict) or pointer in self.frozen:
            return node
        place_open = place_open or pointer in self.open_targets
        words = _OBJECT_WORDS & node.keys()
        ref = node.get("$ref")
        if isinstance(ref, str) and (place_open or words):
            self.open_targets.add(_normal(ref))
        out: dict[str, Any] = {}
        for key, value in node.items():
            here = _pointer(pointer, key)
            if key in _FROZEN:
                out[key] = value
            elif key in _SUBSCHEMA_MAPS and isinstance(value, dict):
                # properties' values are other places, $defs places of their own; dependentSchemas apply here
                same = key == "dependentSchemas"
                out[key] = {k: self.walk(v, _pointer(here, k), same) for k, v in value.items()}
            elif key in _CHILD or key == "prefixItems":
                out[key] = ([self.walk(v, _pointer(here, i), False) for i, v in enumerate(value)]
                            if isinstance(value, list) else self.walk(value, here, False))
            elif key in ("allOf", "anyOf", "oneOf") and isinstance(value, list):
                branch_open = place_open or bool(words) or (key == "allOf" and len(value) > 1)
                out[key] = [self.walk(v, _pointer(here, i), branch_open) for i, v in enumerate(value)]
            elif key in ("then", "else"):
                out[key] = self.walk(value, here, True)
            else:
                out[key] = value
        if self.closing and not place_open and self._closable(node):
            out["additionalProperties"] = False
            self.closed += 1
        return out

    def _frozen_targets(self) -> set[str]:
        """Pointers of the ``$ref`` targets reached from under ``not``/``if``, transitively: left whole."""
        frozen: set[str] = set()
        todo = [node[key] for node in _nodes(self.root) for key in _FROZEN if key in node]
        while todo:
            for node in _nodes(todo.pop()):
                ref = node.get("$ref")
                if isinstance(ref, str) and _normal(ref) not in frozen:
                    frozen.add(_normal(ref))
                    todo.append(resolve_ref(self.root, ref))
        return frozen

    def _closable(self, node: dict[str, Any]) -> bool:
        props = node.get("properties")
        if not isinstance(props, dict) or not props:
            return False
        if "additionalProperties" in node or "unevaluatedProperties" in node or "propertyNames" in node:
            return False
        kind = node.get("type")
        if kind is not None and kind != "object" and not (isinstance(kind, list) and "object" in kind):
            return False
        required = node.get("required", [])
        if not isinstance(required, list) or any(name not in props for name in required):
            return False
        least = node.get("minProperties", 0)
        if isinstance(least, (int, float)) and not isinstance(least, bool) and least > len(props):
            return False
        return self._named_at(node, set()) <= props.keys()

    def _named_at(self, node: dict[str, Any], seen: set[str]) -> set[str]:
        """Property names that the subschemas applying at the node's own place mention (``properties``,
        ``required``); "\0" where one admits keys by pattern or any key."""
        branches: list[Any] = [node.get("then"), node.get("else")]
        for key in ("allOf", "anyOf", "oneOf"):
            if isinstance(node.get(key), list):
                branches += node[key]
        for key in ("dependentSchemas", "dependencies", "dependentRequired"):
            for value in (node.get(key) or {}).values() if isinstance(node.get(key), dict) else ():
                if isinstance(value, list):   # names a present property requires
                    branches.append({"required": value})
                else:
                    branches.append(value)
        ref = node.get("$ref")
        if isinstance(ref, str) and _normal(ref) not in seen:
            seen.add(_normal(ref))
            branches.append(resolve_ref(self.root, ref))
        names: set[str] = set()
        for branch in branches:
            if not isinstance(branch, dict):
                continue
            if isinstance(branch.get("properties"), dict):
                names |= branch["properties"].keys()
            if isinstance(branch.get("required"), list):
                names |= {n for n in branch["required"] if isinstance(n, str)}
            if branch.get("patternProperties") or branch.get("additionalProperties") not in (None, False):
                names.add("\0")
            names |= self._named_at(branch, seen)
        return names


def _refs_are_local(schema: Any) -> bool:
    """Whether every ``$ref`` is a local JSON pointer (and no dynamic or recursive reference is used)."""
    for node in _nodes(schema):
        if "$dynamicRef" in node or "$recursiveRef" in node:
            return False
        ref = node.get("$ref")
        if isinstance(ref, str) and not (ref == "#" or ref.startswith("#/")):
            return False
    return True


def _nodes(node: Any) -> list[dict[str, Any]]:
    """Every dict in ``node``, itself included."""
    found: list[dict[str, Any]] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            found.append(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _normal(ref: str) -> str:
    """A ``$ref``'s JSON pointer as this module writes pointers: "#/a%20b" -> "/a b"; the root is ""."""
    return unquote(ref[1:])


def _pointer(parent: str, key: str | int) -> str:
    return f"{parent}/{str(key).replace('~', '~0').replace('/', '~1')}"
