"""JSON Schema's regexes (ECMA-262 syntax and semantics) rewritten for Python's ``regex`` engine.

A schema's ``pattern`` and ``patternProperties`` keys are ECMA-262 regexes, and the grammar engine reads them
so: ``\\d`` is ``[0-9]`` and ``\\w`` is ``[A-Za-z0-9_]`` (ASCII, with or without the ``u`` flag), ``$`` is the
end of the input, ``.`` stops at any line terminator. Python's ``re`` semantics differ on each (``\\d`` takes
any Unicode digit, ``$`` also matches before a final newline), so a validator using them as they are would
pass a hosted reply such as ``"١٢٣"`` or ``"123\\n"`` for ``^\\d{3}$`` that the schema refuses.
``python_pattern`` rewrites those pieces; the rest of the syntax the two share is passed through.

Left as Python reads them: ``\\D``, ``\\W`` and ``\\S`` *inside* a character class (a class cannot hold a
negated range; Unicode there is wider, never narrower, than ECMA), and Python-only syntax, which no ECMA
pattern contains.
"""

from __future__ import annotations

import functools

__all__ = ["python_pattern"]

_SPACE = "\\t\\n\\x0B\\x0C\\r \\xA0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000\\uFEFF"
_LINE_END = "\\n\\r\\u2028\\u2029"

_OUTSIDE = {
    "d": "[0-9]", "D": "[^0-9]",
    "w": "[A-Za-z0-9_]", "W": "[^A-Za-z0-9_]",
    "s": f"[{_SPACE}]", "S": f"[^{_SPACE}]",
    "b": "(?a:\\b)", "B": "(?a:\\B)",
}
_INSIDE = {"d": "0-9", "w": "A-Za-z0-9_", "s": _SPACE}


@functools.lru_cache(maxsize=1024)
def python_pattern(pattern: str) -> str:
    """``pattern`` (ECMA-262, as JSON Schema has it) as a ``regex`` pattern that matches the same strings."""
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            table = _INSIDE if in_class else _OUTSIDE
            out.append(table.get(nxt, c + nxt))
            i += 2
            continue
        if in_class:
            if c == "]":
                in_class = False
            out.append(c)
        elif c == "[":
            in_class = True
            out.append(c)
            # A "]" first in the class (after an optional "^") is taken literally by Python; ECMA's "[]" is the
            # empty class and "[^]" any character.
            rest = pattern[i + 1 :]
            if rest.startswith("]"):
                out[-1] = "(?!)"
                in_class = False
                i += 2
                continue
            if rest.startswith("^]"):
                out[-1] = "[\\s\\S]"
                in_class = False
                i += 3
                continue
        elif c == "$":
            out.append("\\Z")
        elif c == ".":
            out.append(f"[^{_LINE_END}]")
        else:
            out.append(c)
        i += 1
    return "".join(out)
