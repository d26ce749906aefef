"""Matching text structgen did not write (hosted replies, model output) against a user's or a schema's regex,
in bounded time.

Python's ``re`` backtracks without limit: ``(a+)+b`` against thirty ``a`` s takes minutes, and a hosted
endpoint chooses the text. The validators therefore match with the ``regex`` package (``re``'s syntax and
semantics in its V0 mode, with a ``timeout``): a match that runs past ``MATCH_TIMEOUT_S`` raises
``MatchTimeout`` (a ``ValueError``), and validators treat it as "not verified", so the value is resampled or
re-asked and never returned unchecked. A linear-time engine (RE2, Rust's regex) would not keep Python's
semantics (``\\d`` and ``\\w`` are Unicode in ``re``), and the validator is the oracle: so a time limit it is.
"""

from __future__ import annotations

import functools

import regex

__all__ = ["MATCH_TIMEOUT_S", "MatchTimeout", "check_syntax", "fullmatch", "search", "search_all"]

MATCH_TIMEOUT_S = 1.0
"""Longest one match of untrusted text may take (seconds of CPU in the matcher)."""


class MatchTimeout(ValueError):
    """A match ran past its time limit (catastrophic backtracking): the text could not be verified."""


@functools.lru_cache(maxsize=1024)
def _compiled(pattern: str) -> regex.Pattern[str]:
    try:
        return regex.compile(pattern, flags=regex.VERSION0)
    except regex.error as exc:
        raise ValueError(f"the regex engine cannot compile /{pattern}/: {exc}") from None


def check_syntax(pattern: str) -> None:
    """Raise ``ValueError`` (saying why) unless the engine the validators match with compiles ``pattern``."""
    _compiled(pattern)


def _timed_out(pattern: str, text: str, timeout_s: float) -> MatchTimeout:
    return MatchTimeout(f"matching {len(text):,} characters against /{pattern}/ took over {timeout_s:g} s "
                        "(catastrophic backtracking): not verified")


def fullmatch(pattern: str, text: str, *, timeout_s: float = MATCH_TIMEOUT_S) -> bool:
    """Whether ``pattern`` matches all of ``text``; ``MatchTimeout`` past ``timeout_s``."""
    try:
        return _compiled(pattern).fullmatch(text, timeout=timeout_s) is not None
    except TimeoutError:
        raise _timed_out(pattern, text, timeout_s) from None


def search(pattern: str, text: str, *, timeout_s: float = MATCH_TIMEOUT_S) -> bool:
    """Whether ``pattern`` matches anywhere in ``text`` (JSON Schema's ``pattern``); ``MatchTimeout`` past
    ``timeout_s``."""
    try:
        return _compiled(pattern).search(text, timeout=timeout_s) is not None
    except TimeoutError:
        raise _timed_out(pattern, text, timeout_s) from None


def search_all(pattern: str, text: str, *, limit: int = 100, timeout_s: float = MATCH_TIMEOUT_S) -> list[str]:
    """The non-empty matches of ``pattern`` in ``text``, left to right, at most ``limit`` of them; the whole
    scan shares one ``timeout_s`` budget."""
    found: list[str] = []
    try:
        for m in _compiled(pattern).finditer(text, timeout=timeout_s):
            if m.group(0):
                found.append(m.group(0))
                if len(found) >= limit:
                    break
    except TimeoutError:
        raise _timed_out(pattern, text, timeout_s) from None
    return found
