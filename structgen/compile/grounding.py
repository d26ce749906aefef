"""Grounded extraction: string values that are verbatim spans of a source text, and where they came from.

``ground(compiled, source)`` turns a JSON ``CompiledSchema`` into one whose grammar writes every *grounded* string
(by default: every plain string, i.e. no ``enum``, ``const``, ``format`` or ``pattern``) as a span of ``source``,
so a model chooses *which* text to copy and can never invent it. A schema node opts out with ``"x-source":
"free"``; ``"x-source": "span"`` opts a node in (a number or integer: only numbers written in the source; a
``format: date`` string: only dates written there, as ISO dates), and ``"x-source": "passage"`` lets a string be
any span, however long. Pydantic: ``Field(json_schema_extra={"x-source": "free"})``.

Spans are word-level: the source is cut into chunks (a run of word characters, or one other character), and a
value is ``chunks[i:j]`` joined — llguidance's ``substring_chunks`` lexeme, a suffix automaton, linear in the
source. Word-level rather than character-level because a field value is whole words: a character-level span lets
a model stop inside a word ("Acme Cor") or start inside one, and doubles the choices at every step for nothing.
A value is also a *phrase*: it does not begin or end with whitespace, does not run across a line break, a sentence
end, a ", " or a "Label: value" pair, does not end on "," ";" ":" "|", and is not one of the document's labels
(the "Vendor" of "Vendor: ACME"). Small models otherwise run a span on past the value (on the 48 documents of
``bench accuracy``, SmolLM2-135M's field accuracy went from 52 % with any span to 67 % with phrases). A value
that holds commas or sentences ("Denver, Colorado", a full address, a description) is marked ``passage``. Each
chunk is JSON-escaped first, so a span of a text with quotes or newlines is still a valid JSON string.

The grammar is built in Lark around the grounded strings: objects, arrays, ``anyOf``/``oneOf`` and type lists
that contain grounded strings are written out (compact or spaced separators, like the rest); every other subtree
is compiled as its own JSON Schema (relaxations included) and referenced as a sub-grammar. The validator is the
schema's own plus a check that every grounded value is written in the source (the hosted chain re-asks when it is
not; whitespace may differ there). ``Result.spans`` maps each grounded value's JSON pointer to its offsets.

Why it is long: the span grammar, the checks of a grounded value (spans that exist, items not repeated beyond the
source) and the annotation of a result (where each value came from) read one model of the source text: its chunks and
their offsets, built once per compile.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import llguidance

from .._unicode import check_text
from ..errors import InvalidArgument, SchemaError
from ..result import Relaxation
from ._locations import first_line, json_pointer
from .closed import close_objects
from .refs import resolve_ref
from .schema import CompiledSchema, JsonOptions, _Invalid, check_llguidance, compile_schema, named_grammars
from .source_text import LABEL, json_numbers, locate, source_dates, written_at, written_numbers

if TYPE_CHECKING:
    from ..result import Result

__all__ = ["MAX_SOURCE_CHARS", "ground", "grounded_values", "with_source"]

MAX_SOURCE_CHARS = 200_000
"""Longest source text ``ground`` takes (its automaton is linear in it; the prompt must hold it anyway)."""

_UNSPACED = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"   # kana and CJK ideographs: no spaces between words
_CHUNK = re.compile(rf"[{_UNSPACED}]|[^\W{_UNSPACED}]+|\s|[^\w\s]")
"""A chunk of the source: one character of a script written without spaces, else a run of word characters, else
one other character."""
_DATE_FORMATS = ("date",)
_ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$comment", "x-source", "$schema", "$id",
                          "$defs", "definitions", "deprecated", "readOnly", "writeOnly"})
_PLAIN_STRING_BLOCKERS = ("enum", "const", "format", "pattern", "contentEncoding", "contentMediaType")
_OBJECT_UNSUPPORTED = ("patternProperties", "propertyNames", "minProperties", "maxProperties", "dependencies",
                       "dependentRequired", "dependentSchemas", "if", "then", "else", "not", "allOf",
                       "unevaluatedProperties", "anyOf", "oneOf", "enum", "const")
_ARRAY_UNSUPPORTED = ("prefixItems", "contains", "minContains", "maxContains", "unevaluatedItems", "if", "then",
                      "else", "not", "allOf", "anyOf", "oneOf", "enum", "const", "additionalItems")


def with_source(prompt: Any, source: str) -> Any:
    """The prompt with the source text appended to its last user turn (unless it already contains it)."""
    def add(text: str) -> str:
        return text if source in text else f'{text}\n\nText:\n"""\n{source}\n"""'

    if isinstance(prompt, str):
        return add(prompt)
    messages = [dict(m) for m in prompt]
    if messages:
        messages[-1]["content"] = add(messages[-1]["content"])
    return messages


def ground(compiled: CompiledSchema, source: str, options: JsonOptions | None = None) -> CompiledSchema:
    """``compiled`` with its grounded strings constrained to spans of ``source`` (see the module docstring).

    Free text (``schema=None``) becomes one span of the source. Raises ``InvalidArgument`` for a source that is not
    text or is too long, or for a schema kind that has no strings to ground (regex, choice, grammar, tools)."""
    if not isinstance(source, str) or not source.strip():
        raise InvalidArgument("source must be a non-empty string")
    if len(source) > MAX_SOURCE_CHARS:
        raise InvalidArgument(f"source has {len(source):,} characters; at most {MAX_SOURCE_CHARS:,}")
    check_text("the source", source)
    if compiled.kind == "text":
        return _ground_text(source)
    if compiled.kind != "json" or compiled.json_schema is None:
        raise InvalidArgument(f"source= grounds JSON values (a Pydantic model or a JSON Schema) or free text, "
                              f"not a {compiled.kind} schema")
    return _ground_json(compiled, source, options or JsonOptions())


@functools.lru_cache(maxsize=64)
def _ground_text(source: str) -> CompiledSchema:
    lark = f"start: SPAN\n{_span_terminals(source, json_escaped=False)}"

    def validate(text: str) -> str:
        if locate(source, text) is None:
            raise _Invalid(f"{text[:60]!r} does not occur in the source")
        return text

    def annotate(result: Result[Any]) -> None:
        where = locate(source, result.text)
        result.spans = {"": where} if where is not None and where[0] != where[1] else {}

    grammar = llguidance.LLMatcher.grammar_from_lark(lark)
    check_llguidance(grammar, _unbuildable)
    return CompiledSchema(kind="text", grammar=grammar, validator=validate, annotate=annotate,
                          hint="Answer with a passage copied exactly from the text.", source=None)


@functools.lru_cache(maxsize=64)
def _ground_json(compiled: CompiledSchema, source: str, options: JsonOptions) -> CompiledSchema:
    schema = compiled.json_schema
    assert schema is not None
    # The grammar closes objects as the ungrounded one does (closed.py); what is checked is the schema as written.
    enforced = schema if options.extra_properties else close_objects(schema)
    builder = _Builder(enforced, source, options)
    start = builder.expr(enforced, ())
    if not builder.grounded:
        return compiled   # nothing to ground: the schema has no plain strings
    grammar = builder.grammar(start)
    inner = compiled.validator

    def validate(text: str) -> Any:
        value = inner(text)
        found = list(_walk(schema, schema, json.loads(text), (), 0))
        for path, item, kind in found:
            if written_at(source, item, kind) is None:
                raise _Invalid(f"{json_pointer(path) or '/'}: {str(item)[:60]!r} is not written in the source")
        repeat = repeated_item(source, found)
        if repeat is not None:
            raise _Invalid(repeat)
        return value

    def annotate(result: Result[Any]) -> None:
        spans: dict[str, tuple[int, int]] = {}
        for path, item, kind in _walk(schema, schema, _plain(result), (), 0):
            where = written_at(source, item, kind)
            if where is not None and where[0] != where[1]:
                spans[json_pointer(path)] = where
        result.spans = spans

    return CompiledSchema(kind="json", grammar=grammar, validator=validate, json_schema=schema,
                          relaxations=(*compiled.checked().relaxations, *builder.relaxations), annotate=annotate,
                          hint=functools.partial(_fields_hint, schema),
                          warnings=compiled.warnings, source=compiled.source, number_bound=compiled.number_bound)


def _plain(result: Result[Any]) -> Any:
    """The result's value as JSON data (its text, or the value itself where the text is not JSON, e.g. YAML)."""
    try:
        return json.loads(result.text)
    except ValueError:
        value = result.value
        return value.model_dump(mode="json", by_alias=True) if hasattr(value, "model_dump") else value


def _fields_hint(schema: Mapping[str, Any]) -> str:
    """A short hint for grounded extraction: the fields to fill, not the whole JSON Schema (the grammar enforces the
    form; on small models the schema's text in the prompt leaks into the values)."""
    return ("Reply with JSON with these fields: " + _fields(schema, schema, 0)
            + ". Copy every text value exactly as it is written in the text.")


def _fields(root: Mapping[str, Any], node: Any, depth: int) -> str:
    if not isinstance(node, Mapping) or depth > 3:
        return ""
    if "$ref" in node:
        return _fields(root, _resolve(root, node["$ref"]), depth + 1)
    if "items" in node:
        inner = _fields(root, node["items"], depth + 1)
        return f"a list of ({inner})" if inner else ""
    if node.get("anyOf") or node.get("oneOf"):
        return next((f for b in _branches(node) if (f := _fields(root, b, depth + 1))), "")
    parts = []
    for key, sub in (node.get("properties") or {}).items():
        described = sub.get("description") if isinstance(sub, Mapping) else None
        inner = _fields(root, sub, depth + 1)
        parts.append(key + (f": {described}" if described else "") + (f": {inner}" if inner else ""))
    return "; ".join(parts)


def grounded_values(schema: Mapping[str, Any], value: Any) -> Iterator[tuple[str, Any, str]]:
    """``(JSON pointer, value, kind)`` for every value of ``value`` that sits at a grounded node of ``schema``: kind
    "span" (strings), "number" and "date" (numbers and dates marked ``"x-source": "span"``)."""
    for path, item, kind in _walk(schema, schema, value, (), 0):
        yield json_pointer(path), item, kind


def repeated_item(source: str, found: Sequence[tuple[tuple[Any, ...], Any, str]]) -> str | None:
    """Why a grounded value copies one array item's text more often than the source writes it, or None.

    An item is its grounded strings (``found``: ``_walk``'s paths, values and kinds); two items with the same strings
    are two readings of one passage unless the source writes one of those strings at least as often as the items
    repeat it. A small model that runs on past the last line item ("Screwdriver set" a second and a third time) is
    caught here and resampled; a receipt with two "Coffee" lines is not.
    """
    items: dict[tuple[tuple[Any, ...], int], list[tuple[tuple[Any, ...], str]]] = {}
    for path, item, kind in found:
        at = max((i for i, part in enumerate(path) if isinstance(part, int)), default=None)
        if kind == "span" and at is not None and item.strip():
            items.setdefault((path[:at], path[at]), []).append((path[at + 1:], item))
    seen: dict[tuple[tuple[Any, ...], tuple[Any, ...]], list[int]] = {}
    for (array, index), strings in items.items():
        copies = seen.setdefault((array, tuple(strings)), [])
        copies.append(index)
        written = max(_occurrences(source, text) for _, text in strings)
        if len(copies) > written:
            return (f"{json_pointer(array) or '/'}: item {index} repeats item {copies[0]} "
                    f"({strings[0][1][:40]!r}), which the source writes {written} time(s)")
    return None


def _occurrences(source: str, text: str) -> int:
    """How many times ``text`` is written in ``source`` (whitespace runs may differ; at least 1: it was found)."""
    words = text.split()
    return max(1, len(re.findall(r"\s+".join(map(re.escape, words)), source)))


# ---- classification (shared by the grammar builder and the value walker) ----------------------------------------

def _kind(node: Any) -> str:
    """How a node is handled: "span", "number", "ref", "union", "types", "object", "array" or "json"."""
    if not isinstance(node, Mapping):
        return "json"
    mark = node.get("x-source")
    if mark is not None and mark not in ("span", "passage", "free"):
        raise SchemaError(f"x-source must be 'span', 'passage' or 'free', got {mark!r}", pointer="/x-source")
    keys = set(node) - _ANNOTATIONS
    if "$ref" in node:
        return "ref" if keys == {"$ref"} else "json"
    if keys in ({"anyOf"}, {"oneOf"}):
        return "union"
    if keys == {"allOf"} and len(node["allOf"]) == 1:
        return "union"
    kind = node.get("type")
    if isinstance(kind, list):
        return "types" if len(kind) > 1 else _kind({**node, "type": kind[0]} if kind else {})
    if kind == "string" and mark in ("span", "passage") and node.get("format") in _DATE_FORMATS:
        return "date"
    if kind == "string" and mark != "free" and (mark is not None or not any(k in node for k in _PLAIN_STRING_BLOCKERS)):
        return "span"
    if kind in ("number", "integer") and mark == "span" and not ("enum" in node or "const" in node):
        return "number"
    if kind == "object" and not any(k in node for k in _OBJECT_UNSUPPORTED) \
            and set(node.get("required", ())) <= set(node.get("properties", {})) \
            and (node.get("properties") or node.get("additionalProperties") is False):
        return "object"
    if kind == "array" and isinstance(node.get("items"), Mapping) and not any(k in node for k in _ARRAY_UNSUPPORTED):
        return "array"
    return "json"


def _branches(node: Mapping[str, Any]) -> list[Any]:
    return list(node.get("anyOf") or node.get("oneOf") or node.get("allOf") or [])


def _resolve(root: Mapping[str, Any], ref: str) -> Any:
    if not ref.startswith("#"):
        raise SchemaError(f"source= needs local $refs; cannot follow {ref!r}", pointer="/$ref")
    node = resolve_ref(root, ref)
    if node is None:
        raise SchemaError(f"$ref {ref!r} does not resolve", pointer="/$ref")
    return node


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _admits_type(root: Mapping[str, Any], node: Any, value: Any, depth: int = 0) -> bool:
    """Whether ``node``'s declared type (through refs and unions) admits ``value``'s JSON type."""
    if not isinstance(node, Mapping) or depth > 32:
        return node is not False
    if "$ref" in node:
        return _admits_type(root, _resolve(root, node["$ref"]), value, depth + 1)
    if "anyOf" in node or "oneOf" in node:
        return any(_admits_type(root, b, value, depth + 1) for b in _branches(node))
    if "const" in node:
        return bool(node["const"] == value)
    if "enum" in node:
        return value in node["enum"]
    kind = node.get("type")
    if kind is None:
        return True
    types = kind if isinstance(kind, list) else [kind]
    actual = _json_type(value)
    return actual in types or (actual == "integer" and "number" in types)


def _walk(root: Mapping[str, Any], node: Any, value: Any, path: tuple[Any, ...],
          depth: int) -> Iterator[tuple[tuple[Any, ...], Any, str]]:
    if depth > 64:
        return
    kind = _kind(node)
    if (kind in ("span", "date") and isinstance(value, str)) or \
            (kind == "number" and isinstance(value, int | float) and not isinstance(value, bool)):
        yield path, value, kind
    elif kind == "ref":
        yield from _walk(root, _resolve(root, node["$ref"]), value, path, depth + 1)
    elif kind == "union":
        branch = next((b for b in _branches(node) if _admits_type(root, b, value)), None)
        if branch is not None:
            yield from _walk(root, branch, value, path, depth + 1)
    elif kind == "types":
        yield from _walk(root, {**node, "type": _json_type(value) if _json_type(value) in node["type"]
                                else "number"}, value, path, depth + 1)
    elif kind == "object" and isinstance(value, dict):
        for key, item in value.items():
            if key in node.get("properties", {}):
                yield from _walk(root, node["properties"][key], item, (*path, key), depth + 1)
    elif kind == "array" and isinstance(value, list):
        for i, item in enumerate(value):
            yield from _walk(root, node["items"], item, (*path, i), depth + 1)


# ---- the grammar ----------------------------------------------------------------------------------------------

def _span_terminals(source: str, *, json_escaped: bool = True) -> str:
    """``SPAN``: a word-level span of ``source`` that does not begin or end with whitespace; ``PHRASE``: one that
    also stays within a line, a sentence, a ", " list and a "Label: value" pair (no ". ", ", ", "| ", "; ", ": "
    inside; no "," ";" ":" "|" at its end) and is not one of the document's labels; ``GSTR`` / ``GPASSAGE``: a
    JSON string of a phrase / of any span. ``json_escaped``: the chunks as they are written inside a JSON string."""
    chunks = [m.group() for m in _CHUNK.finditer(source)]
    if json_escaped:
        chunks = [json.dumps(c, ensure_ascii=False)[1:-1] for c in chunks]
        edge, newline = r"( |\\[nrt])", r"\\n"   # escaped whitespace: a space, or a \n, \r, \t escape
    else:
        edge, newline = r"[ \t\r\n]", r"\n"
    substring = json.dumps({"substring_chunks": chunks}, ensure_ascii=False)
    labels = sorted({json.dumps(m.group(1).strip(), ensure_ascii=False)[1:-1] if json_escaped else m.group(1).strip()
                     for m in LABEL.finditer(source)})
    # One negation per rule: every "&" and "~" multiplies the lexer's derivative expressions (several of each hit
    # llguidance's "too many expressions" limit once the grammar was wrapped for think=).
    not_labels = f" & ~({' | '.join(json.dumps(label, ensure_ascii=False) for label in labels)})" if labels else ""
    lines = [f"SPAN_ANY: %regex {substring}",
             f"SPAN: SPAN_ANY & ~/{edge}(?s:.*)|(?s:.*){edge}/",
             f"PHRASE: SPAN & ~/(?s:.*)({newline}|[.!?;|:,] )(?s:.*)|(?s:.*)[,;:|]/{not_labels}"]
    if json_escaped:
        lines += ['GSTR: "\\"" PHRASE "\\""', 'GPASSAGE: "\\"" SPAN "\\""']
    return "\n".join(lines) + "\n"


def _unbuildable(message: str) -> SchemaError:
    return SchemaError(f"the grounded grammar cannot be compiled: {first_line(message)}")


class _Builder:
    """Writes the Lark grammar of a schema whose grounded strings are spans (see the module docstring)."""

    def __init__(self, root: Mapping[str, Any], source: str, options: JsonOptions) -> None:
        self.root = root
        self.source = source
        self.options = options
        self.item_sep, self.key_sep = (", ", ": ") if options.whitespace == "spaced" else (",", ":")
        self.rules: list[str] = []
        self.subgrammars: list[dict[str, Any]] = []
        self.relaxations: list[Relaxation] = []
        self.grounded: list[str] = []
        self.dates = {iso for iso, _, _ in source_dates(source)}
        self.numbers = written_numbers(source)
        self._refs: dict[str, str] = {}
        self._json: dict[str, str] = {}
        self._defs = {k: root[k] for k in ("$defs", "definitions") if k in root}

    def grammar(self, start: str) -> str:
        lines = [f"start: {start}", *self.rules, _span_terminals(self.source)]
        if self.options.whitespace not in ("compact", "spaced"):
            lines[:0] = ['%llguidance { "skip_repetition": "once" }', f"%ignore /{self.options.whitespace}/"]
        top = {"name": "grounded", "lark_grammar": "\n".join(lines) + "\n"}
        grammar = json.dumps({"grammars": [top, *self.subgrammars]})
        check_llguidance(grammar, _unbuildable)
        return grammar

    def expr(self, node: Any, path: tuple[Any, ...]) -> str:
        """A Lark expression for ``node`` at schema path ``path``."""
        if not self._reaches_span(node, set()):
            return self._json_rule(node, path)
        kind = _kind(node)
        if kind == "span":
            self.grounded.append(json_pointer(path))
            for key in ("minLength", "maxLength"):
                if key in node:
                    self.relaxations.append(Relaxation(key, json_pointer((*path, key)), "grounded span: validated"))
            return "GPASSAGE" if node.get("x-source") == "passage" else "GSTR"
        if kind == "number":
            return self._number(node, path)
        if kind == "date":
            return self._date(node, path)
        if kind == "ref":
            return self._ref(node["$ref"])
        if kind == "union":
            key = "anyOf" if "anyOf" in node else "oneOf" if "oneOf" in node else "allOf"
            if key == "oneOf":
                self.relaxations.append(Relaxation("oneOf", json_pointer((*path, key)),
                                                   "enforced as anyOf (exactly one branch not checked)"))
            return self._rule([self.expr(b, (*path, key, i)) for i, b in enumerate(_branches(node))])
        if kind == "types":
            return self._rule([self.expr({**node, "type": t}, path) for t in node["type"]])
        if kind == "object":
            return self._object(node, path)
        if kind == "array":
            return self._array(node, path)
        return self._json_rule(node, path)

    def _rule(self, alternatives: Sequence[str]) -> str:
        name = f"r{len(self.rules)}"
        self.rules.append(f"{name}: " + " | ".join(f"({a})" if a else '""' for a in alternatives))
        return name

    def _literal(self, text: str) -> str:
        return json.dumps(text, ensure_ascii=False)

    def _object(self, node: Mapping[str, Any], path: tuple[Any, ...]) -> str:
        props = list(node.get("properties", {}).items())
        required = set(node.get("required", ()))
        members = [f"{self._literal(json.dumps(k, ensure_ascii=False) + self.key_sep)} "
                   f"{self.expr(v, (*path, 'properties', k))}" for k, v in props]
        first = rest = '""'   # rules for the members from i on, with nothing yet written / after a member
        for i in range(len(props) - 1, -1, -1):
            name = props[i][0]
            new_first = self._rule([f"{members[i]} {rest}"] + ([] if name in required else [first]))
            new_rest = self._rule([f"{self._literal(self.item_sep)} {members[i]} {rest}"]
                                  + ([] if name in required else [rest]))
            first, rest = new_first, new_rest
        return self._rule([f"\"{{\" {first} \"}}\""])

    def _array(self, node: Mapping[str, Any], path: tuple[Any, ...]) -> str:
        low, high = int(node.get("minItems", 0)), node.get("maxItems")
        if node.get("uniqueItems"):
            self.relaxations.append(Relaxation("uniqueItems", json_pointer((*path, "uniqueItems")),
                                               "grounded array: validated"))
        if high is not None and int(high) == 0:
            return '"[]"'
        item = self.expr(node["items"], (*path, "items"))
        more = f"{{{max(low - 1, 0)},{'' if high is None else int(high) - 1}}}"
        body = f"{item} ({self._literal(self.item_sep)} {item}){more}"
        return self._rule([f"\"[\" {body} \"]\""] + (['"[]"'] if low == 0 else []))

    def _number(self, node: Mapping[str, Any], path: tuple[Any, ...]) -> str:
        integer = node.get("type") == "integer"
        literals = sorted({form for n in self.numbers if not (integer and "." in n) for form in json_numbers(n)})
        if not literals:
            return self._json_rule({k: v for k, v in node.items() if k != "x-source"}, path)
        self.grounded.append(json_pointer(path))
        return self._rule([self._literal(n) for n in literals])

    def _date(self, node: Mapping[str, Any], path: tuple[Any, ...]) -> str:
        if not self.dates:
            return self._json_rule({k: v for k, v in node.items() if k != "x-source"}, path)
        self.grounded.append(json_pointer(path))
        return self._rule([self._literal(json.dumps(d)) for d in sorted(self.dates)])

    def _ref(self, ref: str) -> str:
        if ref not in self._refs:
            name = f"d{len(self._refs)}"
            self._refs[ref] = name
            index = len(self.rules)
            self.rules.append("")   # reserved: a recursive schema refers to the rule before its body is written
            target = _resolve(self.root, ref)
            self.rules[index] = f"{name}: {self.expr(target, tuple(ref[2:].split('/')) if ref != '#' else ())}"
        return self._refs[ref]

    def _json_rule(self, node: Any, path: tuple[Any, ...]) -> str:
        sub = dict(node) if isinstance(node, Mapping) else ({} if node is True else {"not": {}})
        if self._defs and '"$ref"' in json.dumps(sub):
            sub = {**sub, **self._defs}
        key = json.dumps(sub, sort_keys=True)
        if key not in self._json:
            name = f"j{len(self._json)}"
            try:
                compiled = compile_schema(sub, self.options)
            except SchemaError as exc:
                raise SchemaError(exc.reason, pointer=json_pointer(path) + exc.pointer) from None
            self.relaxations.extend(Relaxation(r.keyword, json_pointer(path) + r.pointer, r.how)
                                    for r in compiled.relaxations)
            self.subgrammars.extend(named_grammars(compiled.grammar or "", name))
            self._json[key] = name
        return f"@{self._json[key]}"

    def _reaches_span(self, node: Any, seen: set[str]) -> bool:
        kind = _kind(node)
        if kind in ("span", "number", "date"):
            return True
        if kind == "ref":
            ref = node["$ref"]
            if ref in seen:
                return False
            seen.add(ref)
            return self._reaches_span(_resolve(self.root, ref), seen)
        if kind == "union":
            return any(self._reaches_span(b, seen) for b in _branches(node))
        if kind == "types":
            return any(self._reaches_span({**node, "type": t}, seen) for t in node["type"])
        if kind == "object":
            return any(self._reaches_span(v, seen) for v in node.get("properties", {}).values())
        if kind == "array":
            return self._reaches_span(node["items"], seen)
        return False
