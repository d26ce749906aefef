"""A forgiving lexer for JSON-ish text, and what it finds wrong with a payload.

Model replies are JSON-ish: single quotes, Python literals, comments, unquoted words, trailing commas,
a truncated tail. ``tokens`` reads such text without ever failing (unknown characters become one-character
tokens), ``match_span`` finds where a bracketed value ends, and ``analyse`` lists the issues the repair step
acts on. Used by the payload extraction and the JSON repair in ``parse.py``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Tok:
    """One token: open, close, comma, colon, str, word, comment or other; ``closed`` for str/comment."""

    kind: str
    start: int
    end: int
    closed: bool = True


_WORD = re.compile(r"(?:[^\s{}\[\],:\"'#/]|/(?![/*]))+")
_PUNCT = {"{": "open", "[": "open", "}": "close", "]": "close", ",": "comma", ":": "colon"}
_STRING_CONTEXT = ("", "open", "comma", "colon")


def _string_token(text: str, pos: int) -> Tok:
    """The quoted string starting at ``pos`` (backslash escapes respected); unclosed runs to the end."""
    quote, i, n = text[pos], pos + 1, len(text)
    while i < n:
        if text[i] == "\\":
            i += 2
        elif text[i] == quote:
            return Tok("str", pos, i + 1)
        else:
            i += 1
    return Tok("str", pos, n, closed=False)


def _comment_token(text: str, pos: int) -> Tok | None:
    """A ``//``, ``#`` or ``/* */`` comment starting at ``pos``, if one does."""
    if text.startswith("/*", pos):
        end = text.find("*/", pos + 2)
        return Tok("comment", pos, len(text), closed=False) if end < 0 else Tok("comment", pos, end + 2)
    if text.startswith("//", pos) or text[pos] == "#":
        end = text.find("\n", pos)
        return Tok("comment", pos, len(text) if end < 0 else end)
    return None


def _next_token(text: str, pos: int, prev: str) -> Tok:
    """The token at ``pos``; a single quote opens a string only where a value or key may start."""
    ch = text[pos]
    if ch in _PUNCT:
        return Tok(_PUNCT[ch], pos, pos + 1)
    if ch == '"' or (ch == "'" and prev in _STRING_CONTEXT):
        return _string_token(text, pos)
    comment = _comment_token(text, pos)
    if comment is not None:
        return comment
    match = _WORD.match(text, pos)
    return Tok("word", pos, match.end()) if match else Tok("other", pos, pos + 1)


def tokens(text: str, pos: int = 0, end: int | None = None) -> Iterator[Tok]:
    """Tokens of ``text`` from ``pos`` on (up to ``end``: none starts at or after it)."""
    prev, n = "", len(text) if end is None else end
    while pos < n:
        if text[pos].isspace():
            pos += 1
            continue
        tok = _next_token(text, pos, prev)
        if tok.kind != "comment":
            prev = tok.kind
        yield tok
        pos = tok.end


_CONTINUATION = re.compile(r"\s*[,:]")


def _continues(text: str, pos: int) -> bool:
    """Whether JSON goes on after ``pos`` (the next significant character is a comma or colon)."""
    return _CONTINUATION.match(text, pos) is not None


def _close_bracket(stack: list[str], closer: str, continues: bool) -> str:
    """Apply a closing bracket to ``stack``: 'ok', 'mismatched' (implicitly closed others) or 'stray'.

    A closer that does not match the innermost open bracket closes it anyway when JSON goes on after it
    (``{"a": [1}, "b": 2}``: a ``]`` was left out); otherwise it closes down to its own opener.
    """
    want = "{" if closer == "}" else "["
    if stack and stack[-1] == want:
        stack.pop()
        return "ok"
    if not stack or (want not in stack and not continues):
        return "stray"
    if continues:
        stack.pop()
        return "mismatched"
    while stack.pop() != want:
        pass
    return "mismatched"


def match_span(text: str, start: int) -> int:
    """End of the bracketed value opening at ``start`` (the end of ``text`` when it never closes)."""
    stack: list[str] = []
    for tok in tokens(text, start):
        if tok.kind == "open":
            stack.append(text[tok.start])
        elif tok.kind == "close":
            _close_bracket(stack, text[tok.start], _continues(text, tok.end))
            if not stack:
                return tok.end
    return len(text)


# ---------------------------------------------------------------------------------------------------
# analysis of a JSON-ish payload: what is wrong with it


PY_LITERALS = frozenset({"True", "False", "None"})
JSON_LITERALS = frozenset({"true", "false", "null"})
NON_FINITE = frozenset({"NaN", "nan", "Infinity", "-Infinity", "+Infinity", "inf", "-inf", "+inf"})
JSON_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")
LOOSE_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?0[xX][0-9a-fA-F]+")


@dataclass
class Analysis:
    """Tokens of a payload, which sit in key position, brackets left open, issue counts, max nesting."""

    tokens: list[Tok]
    keys: set[int]
    stack: list[str]
    issues: Counter[str]
    depth: int


class _Analyser:
    """One pass over the tokens of a JSON-ish payload, tracking containers and counting problems."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = list(tokens(text))
        self.keys: set[int] = set()
        self.brackets: list[str] = []  # open brackets, innermost last
        self.states: list[str] = []  # per open bracket: "key" or "value" (what comes next)
        self.issues: Counter[str] = Counter()
        self.prev: Tok | None = None
        self.depth = 0

    def run(self) -> Analysis:
        """Analyse every token."""
        for index, tok in enumerate(self.tokens):
            if tok.kind == "comment":
                self.issues["comment"] += 1
                continue
            self._step(index, tok)
            self.prev = tok
        return Analysis(self.tokens, self.keys, self.brackets, self.issues, self.depth)

    def _step(self, index: int, tok: Tok) -> None:
        in_object = bool(self.brackets) and self.brackets[-1] == "{"
        if tok.kind == "open":
            self._separator(tok)
            char = self.text[tok.start]
            self.brackets.append(char)
            self.states.append("key" if char == "{" else "value")
            self.depth = max(self.depth, len(self.brackets))
        elif tok.kind == "close":
            self._close(tok)
        elif tok.kind in ("colon", "comma"):
            if in_object:
                self.states[-1] = "value" if tok.kind == "colon" else "key"
        else:
            self._value(index, tok, in_object and self.states[-1] == "key")

    def _separator(self, tok: Tok) -> None:
        if self.brackets and self.prev is not None and self.prev.kind in ("str", "word", "close"):
            self.issues["missing_separator"] += 1

    def _close(self, tok: Tok) -> None:
        if self.prev is not None and self.prev.kind == "comma":
            self.issues["trailing_comma"] += 1
        outcome = _close_bracket(self.brackets, self.text[tok.start], _continues(self.text, tok.end))
        if outcome != "ok":
            self.issues[outcome] += 1
        del self.states[len(self.brackets) :]

    def _value(self, index: int, tok: Tok, is_key: bool) -> None:
        self._separator(tok)
        if is_key:
            self.keys.add(index)
        if tok.kind == "str":
            self._string_issues(tok)
        elif tok.kind == "word":
            self._word_issues(self.text[tok.start : tok.end], is_key)
        else:
            self.issues["stray"] += 1

    def _string_issues(self, tok: Tok) -> None:
        if self.text[tok.start] == "'":
            self.issues["single_quote"] += 1
        if any(ord(ch) < 0x20 for ch in self.text[tok.start : tok.end]):
            self.issues["control_char"] += 1

    def _word_issues(self, word: str, is_key: bool) -> None:
        if is_key:
            self.issues["unquoted_key"] += 1
        elif word in PY_LITERALS:
            self.issues["python_literal"] += 1
        elif word in NON_FINITE:
            self.issues["non_finite"] += 1
        elif word in JSON_LITERALS or JSON_NUMBER.fullmatch(word):
            return
        elif LOOSE_NUMBER.fullmatch(word):
            self.issues["number_format"] += 1
        else:
            self.issues["bare_word"] += 1


def analyse(text: str) -> Analysis:
    """Analyse a JSON-ish payload."""
    return _Analyser(text).run()


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


_ISSUE_NOTES: tuple[tuple[str, str, str], ...] = (
    ("comment", "removed {}", "comment"),
    ("trailing_comma", "removed {}", "trailing comma"),
    ("single_quote", "converted {} to double quotes", "single-quoted string"),
    ("unquoted_key", "quoted {}", "unquoted key"),
    ("python_literal", "converted {} (True/False/None) to JSON", "Python literal"),
    ("number_format", "normalised {}", "non-JSON number"),
    ("bare_word", "quoted {}", "bare word"),
    ("missing_separator", "inserted {} (comma or colon)", "missing separator"),
    ("control_char", "escaped raw control characters in {}", "string"),
    ("mismatched", "closed {} left open before a mismatched closer", "bracket"),
    ("stray", "removed {}", "stray closing bracket or character"),
)


def issue_notes(issues: Counter[str]) -> list[str]:
    """Human-readable notes for the counted issues (non-finite numbers are noted where replaced)."""
    return [template.format(plural(issues[key], noun)) for key, template, noun in _ISSUE_NOTES if issues[key]]


