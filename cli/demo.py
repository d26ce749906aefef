"""``structgen demo``: extract an invoice with the bundled model and show what came back."""

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


class LineItem(BaseModel):

    description: str = Field(max_length=60)
    quantity: int = Field(ge=0)
    unit_price: float = Field(ge=0)


class Invoice(BaseModel):

    number: str = Field(max_length=20)
    date: datetime.date
    vendor: str = Field(max_length=40)
    line_items: list[LineItem] = Field(max_length=5)
    total: float


def run_demo(model_path: str | None = None, n_gpu_layers: int = 0) -> None:
    """Extract ``Invoice`` from ``INVOICE_TEXT`` and print the value, strategy, tokens, speed, avg logprob."""
    from rich.console import Console
    from rich.table import Table

    import structgen

    console = Console()
    model = structgen.LlamaCpp(model_path, n_gpu_layers=n_gpu_layers)
    console.print(f"[bold]model[/]: {model.name}")
    console.print(f"[bold]input[/]:\n{INVOICE_TEXT}")
    r = structgen.generate(f"Extract the invoice:\n{INVOICE_TEXT}", schema=Invoice, model=model, seed=0)
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
