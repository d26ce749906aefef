"""Grounded extraction with the copied spans highlighted in the document.

    python examples/grounded_spans.py [FILE]

With ``source=`` every string of the value is a verbatim span of the document; ``Result.spans`` maps each value's
JSON pointer to its offsets, which are highlighted here, each field in its own colour.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import BaseModel, Field
from rich.console import Console
from rich.table import Table
from rich.text import Text

import structgen

DOCUMENT = """\
Meeting of the Riverside Library board, 4 March 2025.
Chair: Helen Park. Present: 6 members.
Decided: to open on Sundays from April; to buy a new book scanner.
Next meeting: 1 April 2025."""

COLOURS = ["black on yellow", "black on cyan", "black on green", "black on magenta", "white on blue"]


class Minutes(BaseModel):
    organisation: str
    chair: str
    members_present: int = Field(json_schema_extra={"x-source": "span"})
    decisions: list[str] = Field(max_length=4)


def main(document: str = DOCUMENT, max_tokens: int = 128, console: Console | None = None) -> structgen.Result:
    """Extract ``Minutes``; print the document with each value's span highlighted, and a table of them."""
    console = console or Console()
    r = structgen.generate("Extract the minutes.", schema=Minutes, source=document, seed=0, max_tokens=max_tokens)
    shown, table = Text(document), Table("field", "value", "offsets")
    for i, (pointer, (start, end)) in enumerate(sorted(r.spans.items(), key=lambda item: item[1])):
        style = COLOURS[i % len(COLOURS)]
        shown.stylize(style, start, end)
        table.add_row(Text(pointer, style=style), document[start:end], f"{start}–{end}")
    console.print(shown)
    console.print(table)
    return r


if __name__ == "__main__":
    main(Path(sys.argv[1]).read_text(encoding="utf-8") if len(sys.argv) > 1 else DOCUMENT)
