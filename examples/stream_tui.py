"""Stream a partial object to a terminal UI: the value redrawn as the model writes it, field by field.

    python examples/stream_tui.py

``Delta.partial`` is the value parsed from the grammar-valid prefix: complete fields as parsed, the string being
written as its text so far, and ``incomplete`` the JSON pointer of the field being written. A retry shows as a
``Reset`` (the text so far is void), and ``Done`` carries the validated result.
"""

from __future__ import annotations

from pydantic import BaseModel, Field
from rich.console import Console
from rich.live import Live
from rich.pretty import Pretty

import structgen

TEXT = "Grace Hopper, rear admiral and computer scientist, was born in New York City in 1906."


class Person(BaseModel):
    name: str
    occupation: str = Field(max_length=40)
    birth_year: int
    birthplace: str


def main(max_tokens: int = 96, console: Console | None = None) -> tuple[Person, int]:
    """Draw the partial ``Person`` live; return the validated value and how many partial values were shown."""
    console = console or Console()
    shown = 0
    with Live(console=console, refresh_per_second=20) as live:
        for event in structgen.stream(f"Extract the person: {TEXT}", schema=Person, source=TEXT, seed=0,
                                      max_tokens=max_tokens):
            if isinstance(event, structgen.Delta) and event.partial is not None:
                live.update(Pretty({"value": event.partial.value, "writing": event.partial.incomplete}))
                shown += 1
            elif isinstance(event, structgen.Reset):
                live.update(f"[yellow]retry: {event.reason}")
            elif isinstance(event, structgen.Done):
                person = event.result.value
                live.update(Pretty(person))
    return person, shown


if __name__ == "__main__":
    main()
