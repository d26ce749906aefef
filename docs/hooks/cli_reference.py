"""MkDocs hook: the CLI reference, generated from the typer app at build time (never written by hand).

A page holding the line ``<!-- structgen-cli -->`` gets it replaced by typer's own Markdown for ``cli.main.app``
(the same generator as ``typer cli.main utils docs``), so the reference always matches ``structgen --help``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

MARKER = "<!-- structgen-cli -->"
ROOT = Path(__file__).resolve().parents[2]


def cli_markdown() -> str:
    """typer's Markdown for the ``structgen`` command and every subcommand, headings one level down."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import typer.main
    from typer.cli import get_docs_for_click

    from cli.main import app

    command = typer.main.get_command(app)
    text = get_docs_for_click(obj=command, ctx=typer.Context(command), name="structgen")
    return "\n".join("#" + line if line.startswith("#") else line for line in text.splitlines())


def on_page_markdown(markdown: str, **_: Any) -> str:
    """Fill the marker on the page that has it."""
    return markdown.replace(MARKER, cli_markdown()) if MARKER in markdown else markdown
