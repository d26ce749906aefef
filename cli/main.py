"""The ``structgen`` command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from structgen.errors import (
    BackendError,
    GenerationError,
    InvalidArgument,
    SchemaError,
    StructgenError,
)

app = typer.Typer(
    name="structgen",
    help="Structured output from language models that is valid every time.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Exit codes: 0 ok; 1 generation failed (truncated / no valid output); 2 bad input; 3 backend or server.
EXIT_GENERATION, EXIT_INPUT, EXIT_BACKEND = 1, 2, 3

ModelOpt = Annotated[str | None, typer.Option(
    "--model", "-m", help="GGUF path or a known name: smollm2 (default, bundled), gemma3-270m.")]
GpuOpt = Annotated[int, typer.Option("--n-gpu-layers", help="Layers to offload to the GPU (-1: all).")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Sampling seed (default: random, reported).")]
TempOpt = Annotated[float, typer.Option("--temperature", "-t", help="0 = greedy.")]
MaxTokOpt = Annotated[int, typer.Option("--max-tokens", help="Token budget; running out is an error.")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print the full result as JSON.")]


def load_model(model: str | None, n_gpu_layers: int = 0, backend: str = "llguidance") -> Any:
    """A LlamaCpp for ``--model`` (or the bundled default)."""
    from structgen import LlamaCpp

    return LlamaCpp(model, n_gpu_layers=n_gpu_layers, backend=backend)


def _schema_from_options(schema: Path | None, regex: str | None, choice: str | None, grammar: str | None) -> Any:
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
    if regex is not None:
        return Regex(regex)
    if choice is not None:
        return Choice([c.strip() for c in choice.split(",") if c.strip()])
    if grammar is not None:
        return Grammar.from_file(grammar)
    return None


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="The prompt (user message).")],
    schema: Annotated[Path | None, typer.Option("--schema", help="A JSON Schema file.")] = None,
    regex: Annotated[str | None, typer.Option("--regex", help="A regex the output must fully match.")] = None,
    choice: Annotated[str | None, typer.Option("--choice", help="Comma-separated options.")] = None,
    grammar: Annotated[str | None, typer.Option("--grammar", help="A .lark file or a bundled grammar name.")] = None,
    model: ModelOpt = None,
    n_gpu_layers: GpuOpt = 0,
    seed: SeedOpt = None,
    temperature: TempOpt = 0.0,
    top_k: Annotated[int, typer.Option("--top-k")] = 0,
    top_p: Annotated[float, typer.Option("--top-p")] = 1.0,
    min_p: Annotated[float, typer.Option("--min-p")] = 0.0,
    max_tokens: MaxTokOpt = 512,
    strategy: Annotated[str, typer.Option("--strategy", help="auto|constrained|best_of|self_consistency")] = "auto",
    n: Annotated[int, typer.Option("--n", help="Samples for best_of / self_consistency.")] = 1,
    backend: Annotated[str, typer.Option("--backend", help="llguidance | outlines-core")] = "llguidance",
    system: Annotated[str | None, typer.Option("--system", help="A system message.")] = None,
    raw: Annotated[bool, typer.Option("--raw", help="No chat template: the prompt is the raw text.")] = False,
    as_json: JsonOut = False,
) -> None:
    """Generate a value valid for a JSON Schema, regex, choice or grammar."""
    import structgen

    spec = _schema_from_options(schema, regex, choice, grammar)
    m = load_model(model, n_gpu_layers, backend)
    r = structgen.generate(prompt, spec, model=m, seed=seed, temperature=temperature, top_k=top_k, top_p=top_p,
                           min_p=min_p, max_tokens=max_tokens, strategy=strategy, n=n, system=system,
                           chat=not raw)
    if as_json:
        typer.echo(json.dumps(r.to_dict(), ensure_ascii=False))
    elif isinstance(r.value, str):
        typer.echo(r.value)
    else:
        typer.echo(json.dumps(r.value, ensure_ascii=False))


@app.command()
def demo(model: ModelOpt = None, n_gpu_layers: GpuOpt = 0) -> None:
    """Extract an Invoice from a short text with the bundled model (what `make run` shows)."""
    from .demo import run_demo

    run_demo(model, n_gpu_layers)


def _register_commands() -> None:
    """Commands that live in their own modules: each module's ``register(app)`` adds its commands."""
    import importlib

    for module in COMMAND_MODULES:
        importlib.import_module(f"{__package__}.{module}").register(app)


# One line per command module (cli/<module>.py with a `register(app: typer.Typer) -> None`).
COMMAND_MODULES: list[str] = ["bench", "determinism", "apps"]
_register_commands()


def main() -> None:
    """Console entry point: typed errors become one line on stderr and a non-zero exit code."""
    try:
        app()
    except StructgenError as exc:
        code = EXIT_BACKEND if isinstance(exc, BackendError) else (
            EXIT_GENERATION if isinstance(exc, GenerationError) else EXIT_INPUT)
        typer.echo(f"error: {type(exc).__name__}: {exc}".splitlines()[0], err=True)
        sys.exit(code)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
