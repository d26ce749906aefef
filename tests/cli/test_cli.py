"""The ``structgen`` command line: shared option handling and the ``generate`` command on the real model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

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


def _installed() -> str:
    return str(Path(sys.executable).with_name("structgen"))


@pytest.mark.parametrize("argv", [
    [b"generate", b"caf\xe9", b"--choice", b"a,b"],                 # a Latin-1 byte in a shell argument
    [b"sql", b"Combien de caf\xe9s ?"],
    [b"regex", b"caf\xe9 or tea"],
], ids=["generate", "sql", "regex"])
def test_an_argument_that_is_not_utf8_is_refused_in_one_line(argv: list[bytes]) -> None:
    # A UnicodeEncodeError traceback from the tokenizer before; now InvalidArgument, exit 2, with the byte.
    out = subprocess.run([_installed().encode(), *argv], capture_output=True, timeout=120,
                         env={**os.environ, "LC_ALL": "C.UTF-8"})
    err = out.stderr.decode("utf-8", "replace")
    assert out.returncode == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "InvalidArgument" in err and "0xe9" in err


def test_a_schema_file_that_is_not_utf8_or_too_deep_is_a_schema_error(tmp_path: Path) -> None:
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"description": "caf\xe9"}')
    with pytest.raises(SchemaError, match="0xe9 at offset 20 is not UTF-8"):
        schema_from_options(latin, None, None, None)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000, encoding="utf-8")
    with pytest.raises(SchemaError, match="nested too deeply"):
        schema_from_options(deep, None, None, None)


def test_the_api_refuses_lone_surrogates_with_their_index(random_model: Any) -> None:
    import structgen

    with pytest.raises(InvalidArgument, match=r"the prompt is not valid Unicode: lone surrogate U\+DCE9 at index 3"):
        structgen.generate("caf\udce9", Choice(["a", "b"]), model=random_model)
    with pytest.raises(InvalidArgument, match="message 0's content is not valid Unicode"):
        structgen.generate([{"role": "user", "content": "\ud800"}], Choice(["a", "b"]), model=random_model)
    with pytest.raises(SchemaError, match="Choice option 1 is not valid Unicode"):
        structgen.generate("ok", Choice(["a", "b\ud800"]), model=random_model)


def test_generate_from_a_source_file_copies_its_values_and_reports_spans(tmp_path: Path) -> None:
    source = tmp_path / "note.txt"
    source.write_text("Contact: Aisha Bello, Lagos Metro Transit\n", encoding="utf-8")
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps({"type": "object", "properties": {"name": {"type": "string"}},
                                  "required": ["name"]}), encoding="utf-8")
    out = CliRunner().invoke(app, ["generate", "Who is the contact?", "--schema", str(schema), "--source",
                                   str(source), "--seed", "0", "--json"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    start, end = result["spans"]["/name"]
    assert source.read_text(encoding="utf-8")[start:end] == result["value"]["name"] != ""
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes(b"caf\xe9")
    out = CliRunner().invoke(app, ["generate", "x", "--source", str(latin1)])
    assert out.exit_code != 0 and "not UTF-8" in str(out.exception)
