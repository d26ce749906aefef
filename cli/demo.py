"""``structgen demo``: extract an invoice with the bundled model, grounded in the text, and show what came back.

The extraction is grounded (``source=``): every text value is a span the grammar lets the model copy from the
invoice, and nothing else; dates and amounts are marked ``"x-source": "span"`` (only those written in the text).
The model thinks for up to 32 tokens first (``think=32``). The input is printed with the copied spans highlighted.
"""

from __future__ import annotations

import datetime

from pydantic import BaseModel, Field

INVOICE_TEXT = """\
Vendor: ACME Tools Ltd.
Invoice number: INV-2024-0042
Date: 2024-03-15
Items:
- Hammer, quantity 2, unit price 12.50
- Screwdriver set, quantity 1, unit price 24.00
Total: 49.00
"""


WRITTEN = {"x-source": "span"}   # a number or date: only one written in the text


class LineItem(BaseModel):

    description: str = Field(max_length=60, description="the product or service sold")
    quantity: int = Field(ge=0, json_schema_extra=WRITTEN)
    unit_price: float = Field(ge=0, json_schema_extra=WRITTEN)


class Invoice(BaseModel):

    invoice_number: str = Field(max_length=20)
    date: datetime.date = Field(json_schema_extra=WRITTEN)
    vendor: str = Field(max_length=40)
    line_items: list[LineItem] = Field(max_length=5)
    total: float = Field(json_schema_extra=WRITTEN)


def run_demo(model_path: str | None = None, n_gpu_layers: int = 0) -> None:
    """Extract ``Invoice`` from ``INVOICE_TEXT`` and print the input with the copied spans highlighted, the value,
    and strategy, tokens, speed, avg logprob."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    import structgen

    console = Console()
    model = structgen.LlamaCpp(model_path, n_gpu_layers=n_gpu_layers)
    console.print(f"[bold]model[/]: {model.name}")
    r = structgen.generate("Extract the invoice.", schema=Invoice, model=model, seed=0, source=INVOICE_TEXT,
                           think=32)
    shown = Text(INVOICE_TEXT)
    for start, end in r.spans.values():
        shown.stylize("bold black on yellow", start, end)
    console.print("[bold]input[/] (highlighted: the spans the values were copied from):")
    console.print(shown)
    console.print(f"[bold]reasoning[/] ({len(r.reasoning or '')} characters, kept out of the value)")
    console.print("[bold]value[/] (validated Invoice):")
    console.print_json(r.value.model_dump_json())
    t = Table(show_header=False)
    t.add_row("strategy", r.strategy)
    t.add_row("tokens", f"{r.timings.generated_tokens} ({r.timings.forced_tokens} fast-forwarded)")
    t.add_row("tok/s", f"{r.timings.tokens_per_second:.1f}")
    t.add_row("avg logprob", f"{r.avg_logprob:.3f}")
    t.add_row("prompt / decode", f"{r.timings.prompt_ms:.0f} ms / {r.timings.decode_ms:.0f} ms")
    t.add_row("seed", str(r.seed))
    console.print(t)
