"""``structgen demo`` (what ``make run`` shows) extracts its invoice rightly on the bundled model."""

from __future__ import annotations

import pytest

import structgen
from cli.demo import INVOICE_TEXT, Invoice, extract


def test_the_demo_s_invoice_has_exactly_its_two_line_items(model: structgen.LlamaCpp) -> None:
    r = extract(model)
    invoice = r.value
    # Guaranteed by structgen: a value comes back only if Invoice's validator passed (the items add up to the total)
    # and every copied string is a span of the text.
    assert sum(i.quantity * i.unit_price for i in invoice.line_items) == pytest.approx(invoice.total, abs=0.005)
    assert all(INVOICE_TEXT[a:b] for a, b in r.spans.values())
    # ...and no item's text is used more often than the invoice writes it (the grounding's repeated-item check).
    descriptions = [i.description for i in invoice.line_items]
    assert all(descriptions.count(d) <= INVOICE_TEXT.count(d) for d in descriptions)


def test_an_invoice_whose_items_do_not_add_up_is_rejected() -> None:
    bad = {"invoice_number": "X", "date": "2024-03-15", "vendor": "V", "total": 49.0,
           "line_items": [{"description": "Hammer", "quantity": 2, "unit_price": 12.5}]}
    with pytest.raises(ValueError, match=r"add up to 25\.00"):
        Invoice.model_validate(bad)
