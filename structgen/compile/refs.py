"""Local ``$ref``s: the node one points at, and a node with its chain of refs followed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

__all__ = ["MAX_CHAIN", "follow_refs", "resolve_ref"]

MAX_CHAIN = 8
"""``$ref``s followed in a row before ``follow_refs`` gives up (a chain this long is a loop in practice)."""


def resolve_ref(root: Mapping[str, Any], ref: str) -> Any:
    """The node a local ``$ref`` (``#``, ``#/$defs/X``; percent- and JSON-pointer escapes undone) points at in
    ``root``; None for a remote ref, an anchor, or one that does not resolve."""
    if ref != "#" and not ref.startswith("#/"):   # remote, or a plain-name anchor ("#foo"): not followed here
        return None
    node: Any = root
    for part in ref[1:].split("/")[1:]:
        part = unquote(part).replace("~1", "/").replace("~0", "~")   # a URI fragment: "%20" is a space
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def follow_refs(node: Any, root: Mapping[str, Any]) -> Any:
    """``node`` with its ``$ref`` followed, as often as the target is a ``$ref`` again, the referring node's other
    keywords kept over the target's; None where a ref is remote, does not resolve or the chain runs past
    ``MAX_CHAIN``. A node without a ``$ref`` comes back as it is."""
    for _ in range(MAX_CHAIN):
        if not isinstance(node, Mapping) or not isinstance(node.get("$ref"), str):
            return node
        target = resolve_ref(root, node["$ref"])
        if not isinstance(target, Mapping):
            return None
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return None if isinstance(node, Mapping) and isinstance(node.get("$ref"), str) else node
