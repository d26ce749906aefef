"""The ``structgen`` command line: shared option handling and the ``generate`` command on the real model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from cli.options import choice_options, schema_from_options
from structgen import Choice, InvalidArgument, SchemaError


@pytest.mark.parametrize(("values", "options"), [
    (["yes,no"], ["yes", "no"]),
    ([" heads, tails ,"], ["heads", "tails"]),             # one value: split on commas, trimmed
    ([" heads", " tails"], [" heads", " tails"]),          # one per flag: verbatim
    (["a, b", "c"], ["a, b", "c"]),                        # ... commas included
])
def test_choice_options(values: list[str], options: list[str]) -> None:
    assert choice_options(values) == options


def test_schema_options_are_exclusive_and_files_are_located(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="at most one"):
        schema_from_options(None, "[0-9]", ["a,b"], None)
    bad = tmp_path / "bad.json"
    bad.write_text('{"type": "object",\n "properties": }', encoding="utf-8")
    with pytest.raises(SchemaError, match=r"bad\.json:2:16: not JSON"):
        schema_from_options(bad, None, None, None)
    with pytest.raises(SchemaError, match="cannot read schema file"):
        schema_from_options(tmp_path / "missing.json", None, None, None)
    choice = schema_from_options(None, None, [" heads", " tails"], None)
    assert isinstance(choice, Choice) and choice.options == (" heads", " tails")


def test_generate_with_verbatim_choices_on_a_raw_prompt() -> None:
    out = CliRunner().invoke(app, ["generate", "I flipped a coin and it landed on", "--choice", " heads",
                                   "--choice", " tails", "--raw", "--seed", "1", "--json"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    assert result["value"] in (" heads", " tails") and result["text"] == result["value"]


@pytest.mark.parametrize("command", [["generate", "--help"], ["bench", "throughput", "--help"]])
def test_help_texts_are_plain_text(command: list[str]) -> None:
    # Rich markup would read `structgen[bench-gemma]` as a style tag and print `structgen`.
    out = CliRunner().invoke(app, command, env={"COLUMNS": "400"})
    assert out.exit_code == 0, out.output
    assert "structgen[bench-gemma]" in out.output
