"""A bound on the digits of JSON numbers, like the bound on whitespace.

llguidance's JSON number lexeme is unbounded (``-?(0|[1-9][0-9]*)(\\.[0-9]+)?([eE][+-]?[0-9]+)?``), and its
bounded forms (``minimum``/``maximum``) drop exponent notation, so a grammar cannot say "at most 24 digits" without
refusing valid values. A greedy small model can then write a 90-digit total until ``max_tokens``. The bound is
applied where the token is chosen instead: outside JSON strings, a token may not make the current run of digits
longer than ``digits`` (the integer part, the fraction) or ``EXPONENT_DIGITS`` (an exponent). A schema whose own
numbers (bounds, ``multipleOf``, ``enum``, ``const``...) are written with more digits raises the bound to them, and
the bound never removes the last token the grammar allows.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

__all__ = ["DEFAULT_DIGITS", "EXPONENT_DIGITS", "NumberRuns", "digit_limit"]

DEFAULT_DIGITS = 24      # int64/uint64 need 20, a double's shortest repr 17 significant digits
EXPONENT_DIGITS = 3      # a double's exponent reaches 308
_MOST = 400              # past this a schema's literal is not a reason to allow more


def digit_limit(schema_text: str, default: int) -> int:
    """``default``, or the longest run of digits a number written in the schema (its JSON text) needs, if longer.
    A scan of the text, once per compiled schema (``CompiledSchema.number_digits``, on first use). Digits inside
    strings count too, which can only raise the bound."""
    longest = max((len(run) for run in re.findall(rf"\d{{{default + 1},}}", schema_text)), default=0)
    for number in _EXPONENT.findall(schema_text):     # 1e-30 is written short but needs 30 fraction digits
        longest = max(longest, _runs(number))
    return max(default, min(longest, _MOST))


_EXPONENT = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?[eE][+-]?\d+")


def _runs(number: str) -> int:
    """The longest digit run of the JSON number ``number`` written out in plain decimal (1e-30 as 0.000...1)."""
    try:
        text = format(Decimal(number), "f")
    except (InvalidOperation, ValueError):
        return 0
    return max(len(part) for part in text.lstrip("-").split("."))


class NumberRuns:
    """Where the JSON text written so far stands: inside a string or not, and how long its current digit run is.

    It also keeps the brackets opened inside the current string: ``stray`` says whether the last text fed, begun
    inside a string, closed one that the string never opened (``"...purchase is 100.0}}}``), the mark of a small
    model that believes the JSON already ended while the grammar still holds it inside a string (``decode.Loop``
    re-decides that token).

    And the strings written as items of an array: ``repeated`` is, when the last text fed closed an array item of at
    least ``REPEATED_ITEM_BYTES`` bytes equal to an earlier item of the same array, how many bytes back from the end
    of that text the item's opening quote is (else 0). A small model that starts writing an array's items again
    (``["a@x.org", "b@x.org", "location: Room 4", "location: Room 4", ...``) rarely stops before ``max_tokens``;
    ``decode.Loop`` re-decides where the copy began.
    """

    __slots__ = ("_containers", "_escape", "_exponent", "_in_string", "_item", "_open", "_run", "digits",
                 "repeated", "stray")

    def __init__(self, digits: int) -> None:
        self.digits = digits
        self._in_string = self._escape = self._exponent = self.stray = False
        self._run = self._open = self.repeated = 0
        self._containers: list[set[bytes] | None] = []   # outside strings: an array's items so far, or None ({})
        self._item: bytearray | None = None              # the string being written, if it is an array item

    def room(self) -> int | None:
        """How many more digits may follow now (None: inside a string, where digits are text)."""
        if self._in_string:
            return None
        return max(0, (EXPONENT_DIGITS if self._exponent else self.digits) - self._run)

    def feed(self, text: bytes) -> None:
        """Advance over the bytes of the next token(s)."""
        self.stray = False
        self.repeated = 0
        open_before = self._in_string      # only a string already open when this text began can go stray
        for at, b in enumerate(text):
            if self._in_string:
                if self._item is not None and not (b == 0x22 and not self._escape):
                    self._item.append(b)
                if self._escape:
                    self._escape = False
                elif b == 0x5C:      # backslash
                    self._escape = True
                elif b == 0x22:      # closing quote
                    self._in_string = open_before = False
                    self._close_item(len(text) - at)
                elif b in (0x7B, 0x5B):             # { [ opened inside the string
                    self._open += 1
                elif b in (0x7D, 0x5D):             # } ] closed: one the string opened, or a stray one
                    if self._open:
                        self._open -= 1
                    else:
                        self.stray = self.stray or open_before
            elif 0x30 <= b <= 0x39:
                self._run += 1
            else:
                self._run = 0
                if b == 0x22:
                    self._in_string = True
                    self._exponent = False
                    self._open = 0
                    self._item = bytearray() if self._containers and self._containers[-1] is not None else None
                elif b == 0x5B:                     # [
                    self._containers.append(set())
                elif b == 0x7B:                     # {
                    self._containers.append(None)
                elif b in (0x5D, 0x7D) and self._containers:
                    self._containers.pop()
                elif b in (0x65, 0x45):             # e, E: an exponent's digits come next (or the end of true/false)
                    self._exponent = True
                elif b not in (0x2B, 0x2D):         # a sign keeps the exponent state; anything else ends it
                    self._exponent = False

    def _close_item(self, back: int) -> None:
        """An array item's string has just closed, ``back`` bytes before the end of the text being fed."""
        item, self._item = self._item, None
        if item is None or not self._containers:
            return
        items = self._containers[-1]
        assert items is not None
        key = bytes(item)
        if len(key) >= REPEATED_ITEM_BYTES and key in items:
            self.repeated = back + len(key) + 1
        items.add(key)


REPEATED_ITEM_BYTES = 8
"""Array items shorter than this may repeat (``["yes", "no", "yes"]``) without being taken for a loop."""
