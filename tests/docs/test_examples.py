"""The scripts of ``examples/`` run on the bundled model (in process, sharing the session's model) and do what they
say. Nothing here asserts the small model's words: only what structgen guarantees and the shape of the output."""

from __future__ import annotations

import io
import runpy
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

pytestmark = pytest.mark.usefixtures("default_is_session_model")


def example(name: str) -> dict[str, Any]:
    """The module namespace of ``examples/NAME.py`` (its ``main`` not yet called)."""
    return runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name=f"example_{name}")


def test_every_example_is_tested() -> None:
    tested = {"extract_folder", "stream_tui", "serve_instructor", "grounded_spans", "classify_probs"}
    assert {p.stem for p in EXAMPLES.glob("*.py")} == tested


def test_extract_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    ns = example("extract_folder")
    letter = sorted((EXAMPLES / "letters").glob("*.txt"))[0]      # one letter: the loop is the same for each
    (tmp_path / letter.name).write_text(letter.read_text())
    found = ns["main"](tmp_path)
    letters = [tmp_path / letter.name]
    assert list(found) == [p.name for p in letters] and len(capsys.readouterr().out.splitlines()) == len(letters)
    for path in letters:
        order = found[path.name]
        if isinstance(order, ns["Order"]):     # a value: every string copied from its letter
            text = " ".join(path.read_text().split())
            assert all(v in text for v in (order.customer, order.product, order.city))
        else:
            assert "Error" in order or "Failed" in order or "Output" in order


def test_stream_tui_shows_the_value_growing() -> None:
    person, shown = example("stream_tui")["main"](console=Console(file=io.StringIO()))
    assert person.name in example("stream_tui")["TEXT"] and shown >= 3


def test_serve_instructor_gets_validated_tickets() -> None:
    ns = example("serve_instructor")
    tickets = ns["main"](ns["MODES"][:1])      # Mode.TOOLS; tests/serve/test_clients.py covers both modes
    assert len(tickets) == 1 and all(isinstance(t, ns["Ticket"]) for t in tickets)


def test_grounded_spans_highlights_each_copied_value() -> None:
    ns = example("grounded_spans")
    out = io.StringIO()
    r = ns["main"](console=Console(file=out, width=120))
    assert r.spans and all(ns["DOCUMENT"][a:b] for a, b in r.spans.values())
    assert r.value.chair in ns["DOCUMENT"] and "/chair" in out.getvalue()


def test_classify_probs_gives_a_label_and_a_distribution() -> None:
    ns = example("classify_probs")
    rows = ns["main"](ns["MESSAGES"][:2])
    for label, probabilities in rows:
        assert label in ns["LABELS"] and set(probabilities) == set(ns["LABELS"])
        assert sum(probabilities.values()) == pytest.approx(1.0)


def test_examples_use_the_public_api_only() -> None:
    for path in EXAMPLES.glob("*.py"):
        imports = [line for line in path.read_text().splitlines() if line.startswith(("import ", "from "))]
        assert all("structgen." not in line or "structgen.testing" in line for line in imports), path
