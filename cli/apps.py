"""``structgen regex`` (text → verified regex) and ``structgen sql`` (question → verified SELECT).

Typed errors propagate to ``cli.main.main``, which prints one line and exits non-zero; a failed
verification first shows every candidate (a table on stderr, or the ``--json`` object on stdout).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import typer

from .options import GpuOpt, ModelOpt, ThreadsOpt

SeedOpt = Annotated[int | None, typer.Option("--seed", help="Sampling seed (default: random).")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print the result as one JSON object.")]
NOpt = Annotated[int, typer.Option("--n", help="Candidates sampled in one batch (1 = greedy).")]
TempOpt = Annotated[float | None, typer.Option("--temperature", "-t",
                                               help="Sampling temperature for --n > 1 (default 0.7).")]


def load_model(model: str | None, n_gpu_layers: int = 0, n_threads: int | None = None,
               n_ctx: int | None = None) -> Any:
    """A ``LlamaCpp`` for ``--model`` (default: the bundled model)."""
    from structgen import LlamaCpp

    if n_ctx is None:
        return LlamaCpp(model, n_gpu_layers=n_gpu_layers, n_threads=n_threads)
    return LlamaCpp(model, n_gpu_layers=n_gpu_layers, n_threads=n_threads, n_ctx=n_ctx)


def _echo_json(obj: dict[str, Any]) -> None:
    typer.echo(json.dumps(obj, ensure_ascii=False))


def regex(
    description: Annotated[str, typer.Argument(help="What the regex must match, in words.")],
    example: Annotated[list[str] | None, typer.Option("--example", "-e",
                                                      help="A string that must fully match (repeatable).")] = None,
    counter: Annotated[list[str] | None, typer.Option("--counter", "-c",
                                                      help="A string that must not match (repeatable).")] = None,
    n: NOpt = 4,
    model: ModelOpt = None,
    n_gpu_layers: GpuOpt = 0,
    n_threads: ThreadsOpt = None,
    seed: SeedOpt = None,
    temperature: TempOpt = None,
    as_json: JsonOut = False,
) -> None:
    """Write a Python regex for a description; verify it compiles, matches every --example and no --counter."""
    from rich.console import Console

    from structgen.apps import RegexNotVerified, text_to_regex
    from structgen.errors import InvalidArgument

    if not description.strip():
        raise InvalidArgument("the description is empty")  # before loading a model
    m = load_model(model, n_gpu_layers, n_threads)
    try:
        result = text_to_regex(description, example or (), counter or (), n=n, model=m, seed=seed,
                               temperature=temperature)
    except RegexNotVerified as exc:
        if as_json:
            _echo_json(exc.to_dict())
        else:
            _candidates_table(Console(stderr=True), "no candidate verified",
                              ((c.regex, c.avg_logprob, c.error) for c in exc.candidates))
        raise
    if as_json:
        _echo_json(result.to_dict())
        return
    typer.echo(result.regex)
    err = Console(stderr=True)
    lp = f"{result.avg_logprob:.3f}" if result.avg_logprob is not None else "n/a"
    err.print(f"[green]verified[/]: {len(result.examples)} example(s) match, {len(result.counters)} "
              f"counter-example(s) do not; avg logprob {lp}; {len(result.candidates)} candidate(s)", highlight=False)


def _candidates_table(console: Any, title: str, candidates: Iterable[tuple[str, float | None, str | None]]) -> None:
    """The candidates that failed (text, average logprob, why), as a table on ``console``."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("candidate", overflow="fold")
    table.add_column("avg logprob", justify="right")
    table.add_column("why it failed", overflow="fold")
    for text, avg_logprob, error in candidates:
        table.add_row(text, f"{avg_logprob:.3f}" if avg_logprob is not None else "-", error or "")
    console.print(table, highlight=False, markup=False)


def sql(
    question: Annotated[str | None, typer.Argument(help="The question to answer with one SELECT.")] = None,
    db: Annotated[Path | None, typer.Option("--db", help="The SQLite file (default: the bundled shop.sqlite).",
                                            dir_okay=False)] = None,
    execute: Annotated[bool, typer.Option("--execute", "-x", help="Run the query and print its rows.")] = False,
    given_sql: Annotated[str | None, typer.Option("--sql", help="Check (and with --execute run) this query "
                                                  "instead of generating one; only one read-only SELECT passes.")]
    = None,
    n: NOpt = 4,
    max_rows: Annotated[int, typer.Option("--max-rows", help="Most rows --execute returns.")] = 100,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds before --execute stops a query.")] = 5.0,
    max_bytes: Annotated[int, typer.Option("--max-bytes", help="Most bytes of rows --execute returns.")]
    = 8_000_000,
    n_ctx: Annotated[int | None, typer.Option("--n-ctx", help="Context size of the model (default 4096); a "
                                              "schema too large for it is narrowed to the tables the question "
                                              "needs.")] = None,
    model: ModelOpt = None,
    n_gpu_layers: GpuOpt = 0,
    n_threads: ThreadsOpt = None,
    seed: SeedOpt = None,
    temperature: TempOpt = None,
    as_json: JsonOut = False,
) -> None:
    """Answer a question about an SQLite database with one read-only SELECT, checked with EXPLAIN."""
    from rich.console import Console

    from structgen.apps import SqlNotVerified, text_to_sql, verify_sql
    from structgen.apps.sqlite_db import shop_db_path
    from structgen.errors import InvalidArgument

    path = db if db is not None else shop_db_path()
    if given_sql is not None:
        if question:
            raise InvalidArgument("give either a question or --sql, not both")
        result = verify_sql(given_sql, path, execute=execute, max_rows=max_rows, timeout_s=timeout,
                            max_bytes=max_bytes)
    else:
        if question is None or not question.strip():
            raise InvalidArgument("the question is empty")
        m = load_model(model, n_gpu_layers, n_threads, n_ctx)
        try:
            result = text_to_sql(question, path, n=n, execute=execute, model=m, seed=seed, temperature=temperature,
                                 max_rows=max_rows, timeout_s=timeout, max_bytes=max_bytes)
        except SqlNotVerified as exc:
            if as_json:
                _echo_json(exc.to_dict())
            else:
                _candidates_table(Console(stderr=True), "no candidate passed the checks",
                                  ((c.sql, c.avg_logprob, c.error) for c in exc.candidates))
            raise
    if as_json:
        _echo_json(result.to_dict())
        return
    typer.echo(result.sql)
    if result.executed:
        _rows_table(Console(), result)


def _rows_table(console: Any, result: Any) -> None:
    from rich.table import Table

    table = Table(caption=f"{len(result.rows)} row(s)", caption_justify="left")
    for name in result.columns:
        table.add_column(_cell(name), overflow="fold")
    for row in result.rows:
        table.add_row(*("NULL" if v is None else _cell(v) for v in row))
    console.print(table, highlight=False, markup=False)


CELL_CHARS = 300
"""A cell longer than this is cut in the table (``--json`` has the whole value, within ``--max-bytes``)."""


def _cell(value: Any) -> str:
    text = value.hex() if isinstance(value, bytes) else str(value)
    return text if len(text) <= CELL_CHARS else f"{text[:CELL_CHARS]}… ({len(text):,} chars)"


def register(app: typer.Typer) -> None:
    """Add ``regex`` and ``sql`` to the ``structgen`` app."""
    app.command("regex")(regex)
    app.command("sql")(sql)
