"""GBNF for llama.cpp's ``grammar`` request field: choices, regexes and Lark grammars translated where a
faithful translation exists, and checked with llama.cpp's own parser before anything is sent."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..compile.schema import CompiledSchema

__all__ = ["llama_accepts", "to_gbnf"]


def to_gbnf(schema: CompiledSchema) -> str | None:
    """A GBNF grammar (llama.cpp's ``grammar`` field) for a choice, regex or Lark schema; None where the
    schema has no faithful GBNF form here (JSON kinds go as json_schema; look-arounds, back-references,
    flags and llguidance-only Lark syntax are not translated)."""
    try:
        if schema.kind == "choice" and isinstance(schema.source, tuple):
            gbnf = "root ::= " + " | ".join(_gbnf_literal(o) for o in schema.source) + "\n"
        elif schema.kind == "regex" and schema.regex is not None:
            gbnf = f"root ::= {_regex_to_gbnf(schema.regex)}\n"
        elif schema.kind == "grammar" and isinstance(schema.source, str):
            gbnf = _lark_to_gbnf(schema.source)
        else:
            return None
    except _Untranslatable:
        return None
    # llama-cpp-python's server crashes on a grammar llama.cpp cannot parse (or crashes parsing): never send one.
    return gbnf if llama_accepts(gbnf) else None


MAX_GBNF_CHARS = 200_000
"""Longest GBNF ever sent to a server (a larger one is a grammar the server would spend its memory on)."""

_CHILD = Path(__file__).with_name("_gbnf_child.py")


@functools.lru_cache(maxsize=512)
def llama_accepts(gbnf: str) -> bool:
    """Whether llama.cpp's own GBNF parser takes ``gbnf`` without failing or crashing, checked here in a child
    process (no model or vocabulary needed; ~0.3 s, cached per grammar)."""
    data = gbnf.encode("utf-8", "surrogatepass")
    if len(data) > MAX_GBNF_CHARS:
        return False
    try:
        done = subprocess.run([sys.executable, "-I", str(_CHILD)], input=data, capture_output=True,
                              timeout=_CHECK_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


_CHECK_TIMEOUT_S = 30.0


class _Untranslatable(Exception):
    """A construct with no GBNF form here."""


def _gbnf_char(cp: int) -> str:
    """One code point for a GBNF literal or class, escaped unless plainly safe."""
    c = chr(cp)
    if c.isascii() and (c.isalnum() or c in " _.,:;!?@#%&=<>'`~/+*{}()|$^"):
        return c
    return f"\\x{cp:02X}" if cp < 0x80 else (f"\\u{cp:04X}" if cp <= 0xFFFF else f"\\U{cp:08X}")


def _gbnf_literal(text: str) -> str:
    return '"' + "".join(_gbnf_char(ord(c)) for c in text) + '"' if text else '""'


def _gbnf_class_char(cp: int) -> str:
    c = chr(cp)
    return c if c.isascii() and c.isalnum() else (
        f"\\x{cp:02X}" if cp < 0x80 else (f"\\u{cp:04X}" if cp <= 0xFFFF else f"\\U{cp:08X}"))


_CATEGORY_RANGES: dict[str, list[tuple[int, int]]] = {
    "CATEGORY_DIGIT": [(0x30, 0x39)],
    "CATEGORY_WORD": [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)],
    "CATEGORY_SPACE": [(0x09, 0x0D), (0x20, 0x20)],
}


def _regex_to_gbnf(pattern: str) -> str:
    """A GBNF expression for a Python regex, matched in full; the ASCII forms of \\d, \\w, \\s (a subset of
    what Python's Unicode classes accept, so every output still passes the regex validator)."""
    from re import _parser  # the standard library's own regex parser: no hand-written regex lexer

    try:
        tree = _parser.parse(pattern)
    except Exception as exc:
        raise _Untranslatable(str(exc)) from exc
    if tree.state.flags & ~(_parser.SRE_FLAG_UNICODE):
        raise _Untranslatable("regex flags")
    return _seq(list(tree))


def _seq(items: list[tuple[Any, Any]]) -> str:
    parts = [p for p in (_node(op, av) for op, av in items) if p]
    return " ".join(parts) if parts else '""'


def _node(op: Any, av: Any) -> str:
    name = str(op)
    if name == "LITERAL":
        return _gbnf_literal(chr(av))
    if name == "NOT_LITERAL":
        return f"[^{_gbnf_class_char(av)}]"
    if name == "ANY":
        return "[^\\x0A]"
    if name == "IN":
        return _char_class(av)
    if name == "CATEGORY":
        return _char_class([(op, av)])
    if name == "BRANCH":
        return "(" + " | ".join(_seq(list(b)) for b in av[1]) + ")"
    if name == "SUBPATTERN":
        _group, add_flags, del_flags, sub = av
        if add_flags or del_flags:
            raise _Untranslatable("inline flags")
        return f"({_seq(list(sub))})"
    if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
        lo, hi, sub = av
        inner = f"({_seq(list(sub))})"
        from re import _constants

        if hi == _constants.MAXREPEAT:
            return f"{inner}*" if lo == 0 else (f"{inner}+" if lo == 1 else f"{inner}{{{lo},}}")
        return f"{inner}{{{lo},{hi}}}" if lo != hi else f"{inner}{{{lo}}}"
    if name == "AT" and str(av) in ("AT_BEGINNING", "AT_END", "AT_BEGINNING_STRING", "AT_END_STRING"):
        return ""  # a full match is anchored anyway
    if name == "ATOMIC_GROUP":
        return f"({_seq(list(av))})"
    raise _Untranslatable(name)


def _char_class(items: list[tuple[Any, Any]]) -> str:
    negate = False
    ranges: list[tuple[int, int]] = []
    for op, av in items:
        name = str(op)
        if name == "NEGATE":
            negate = True
        elif name == "LITERAL":
            ranges.append((av, av))
        elif name == "RANGE":
            ranges.append((av[0], av[1]))
        elif name == "CATEGORY" and str(av) in _CATEGORY_RANGES:
            ranges.extend(_CATEGORY_RANGES[str(av)])
        else:
            raise _Untranslatable(f"class item {name} {av}")
    if not ranges:
        raise _Untranslatable("empty class")
    body = "".join(_gbnf_class_char(a) if a == b else f"{_gbnf_class_char(a)}-{_gbnf_class_char(b)}"
                   for a, b in ranges)
    return f"[{'^' if negate else ''}{body}]"


def _without_left_recursion(name: str, alternatives: list[list[str]]) -> str:
    """A rule body with direct left recursion turned into repetition (llama.cpp rejects left recursion):
    ``R ::= a | b | R x | R y`` becomes ``R ::= (a | b) (x | y)*`` — the same language."""
    def seq(symbols: list[str]) -> str:
        return " ".join(symbols) or '""'

    recursive = [alt[1:] for alt in alternatives if alt and alt[0] == name]
    base = [alt for alt in alternatives if not alt or alt[0] != name]
    if not recursive:
        return " | ".join(seq(alt) for alt in base)
    if not base:
        raise _Untranslatable(f"rule {name} never ends")
    return f"({' | '.join(seq(a) for a in base)}) ({' | '.join(seq(a) for a in recursive)})*"


def _lark_to_gbnf(source: str) -> str:
    """GBNF from a Lark grammar via the ``lark`` package's own parse (rules in BNF, terminals as regexes).
    ``%ignore`` has no GBNF form (GBNF has no lexer), so such grammars are not translated."""
    import lark

    try:
        parser = lark.Lark(source, start="start", parser="earley", lexer="dynamic")
    except Exception as exc:  # llguidance-only syntax, or not Lark at all
        raise _Untranslatable(str(exc)) from exc
    if parser.ignore_tokens:
        raise _Untranslatable("%ignore")
    names: dict[str, str] = {}

    def ref(symbol_name: str) -> str:
        if symbol_name not in names:
            names[symbol_name] = f"s{len(names)}"
        return names[symbol_name]

    alternatives: dict[str, list[list[str]]] = {}
    for rule in parser.rules:
        alternatives.setdefault(ref(rule.origin.name), []).append([ref(sym.name) for sym in rule.expansion])
    rules = {name: _without_left_recursion(name, alts) for name, alts in alternatives.items()}
    for term in parser.terminals:
        pattern = term.pattern
        if pattern.flags:
            raise _Untranslatable(f"terminal {term.name} has flags")
        rules[ref(term.name)] = _gbnf_literal(pattern.value) if pattern.type == "str" else _regex_to_gbnf(pattern.value)
    if "start" not in names:
        raise _Untranslatable("no start rule")
    lines = [f"root ::= {names['start']}"]
    lines += [f"{name} ::= {body}" for name, body in rules.items()]
    return "\n".join(lines) + "\n"
