"""Text that crosses into a tokenizer, a grammar compiler or a server must be encodable as UTF-8."""

from __future__ import annotations

from .errors import InvalidArgument

__all__ = ["check_text"]


def check_text(what: str, text: object, error: type[Exception] = InvalidArgument) -> str:
    """``text`` if it is a ``str`` that UTF-8 can encode; else ``error`` naming ``what`` and the place.

    A lone surrogate is what Python makes of a byte that was not UTF-8 (a Latin-1 shell argument, a file read
    with ``errors="surrogateescape"``): no tokenizer or server can take it, so it is refused here, with its
    index, before any model sees it.
    """
    if not isinstance(text, str):
        raise error(f"{what} must be a string, got {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = text[exc.start]
        hint = (f" (the byte 0x{ord(bad) - 0xDC00:02x} was not UTF-8: pass text as UTF-8)"
                if 0xDC80 <= ord(bad) <= 0xDCFF else "")
        where = f"lone surrogate U+{ord(bad):04X} at index {exc.start}"
        raise error(f"{what} is not valid Unicode: {where}{hint}") from None
    return text
