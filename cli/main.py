"""The ``structgen`` command line."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from structgen.errors import BackendError, GenerationError, StructgenError

from .options import ChoiceOpt, GpuOpt, GrammarOpt, ModelOpt, RegexOpt, SchemaFile, SystemOpt, schema_from_options

app = typer.Typer(
    name="structgen",
    help="Structured output from language models that is valid every time.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,   # help texts are plain: `structgen[bench]` must not be read as a style tag
    add_completion=False,
)

# Exit codes: 0 ok; 1 generation failed (truncated / no valid output); 2 bad input; 3 backend or server.
EXIT_GENERATION, EXIT_INPUT, EXIT_BACKEND = 1, 2, 3

SeedOpt = Annotated[int | None, typer.Option("--seed", help="Sampling seed (default: random, reported).")]
TempOpt = Annotated[float, typer.Option("--temperature", "-t", help="0 = greedy.")]
MaxTokOpt = Annotated[int, typer.Option("--max-tokens", help="Token budget; running out is an error.")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print the full result as JSON.")]


def load_model(model: str | None, n_gpu_layers: int = 0, backend: str = "llguidance") -> Any:
    """A LlamaCpp for ``--model`` (or the bundled default)."""
    from structgen import LlamaCpp

    return LlamaCpp(model, n_gpu_layers=n_gpu_layers, backend=backend)


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="The prompt (user message).")],
    schema: SchemaFile = None,
    regex: RegexOpt = None,
    choice: ChoiceOpt = None,
    grammar: GrammarOpt = None,
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
    system: SystemOpt = None,
    raw: Annotated[bool, typer.Option("--raw", help="No chat template: the prompt is the raw text.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Refuse a JSON Schema the grammar cannot enforce in "
                                         "full, instead of relaxing it (see 'relaxed' in --json).")] = False,
    as_json: JsonOut = False,
    stream: Annotated[bool, typer.Option("--stream", help="Show the text on stderr as it is generated (a retry "
                                         "shows as '[retry: ...]'); the validated value is still printed at the end.")]
    = False,
    timeout: Annotated[float | None, typer.Option("--timeout", help="Give up after this many seconds.")] = None,
    source: Annotated[Path | None, typer.Option("--source", help="A text file to extract from: every plain string "
                                                "of the value is copied verbatim from it (grounded extraction; "
                                                "'spans' in --json).", dir_okay=False)] = None,
    think: Annotated[int, typer.Option("--think", help="Let the model reason for up to N tokens before the "
                                       "answer ('reasoning' in --json).")] = 0,
    select: Annotated[str, typer.Option("--select", help="With --n > 1: logprob | first_valid | first_finished | "
                                        "judge (the model's P(yes) that the extraction is right).")] = "logprob",
) -> None:
    """Generate a value valid for a JSON Schema, regex, choice or grammar."""
    import structgen

    spec = schema_from_options(schema, regex, choice, grammar)
    source_text = read_source(source) if source is not None else None
    m = load_model(model, n_gpu_layers, backend)
    options: dict[str, Any] = dict(
        seed=seed, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, max_tokens=max_tokens,
        strategy=strategy, n=n, system=system, chat=not raw, strict=strict, timeout=timeout, source=source_text,
        think=think, select=structgen.Judge() if select == "judge" else select)
    r = _streamed(prompt, spec, m, options) if stream else structgen.generate(prompt, spec, model=m, **options)
    if as_json:
        typer.echo(json.dumps(r.to_dict(), ensure_ascii=False))
    elif isinstance(r.value, str):
        typer.echo(r.value)
    else:
        typer.echo(json.dumps(r.value, ensure_ascii=False))


def read_source(path: Path) -> str:
    """The text of ``--source`` (UTF-8; a file that is not is an ``InvalidArgument``)."""
    from structgen.errors import InvalidArgument

    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"--source {path} is not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
    except OSError as exc:
        raise InvalidArgument(f"cannot read --source {path}: {exc.strerror or exc}") from exc


def _streamed(prompt: str, spec: Any, model: Any, options: dict[str, Any]) -> Any:
    """Run ``structgen.stream``, echoing the text to stderr as it comes; the final ``Result``."""
    import structgen

    for event in structgen.stream(prompt, spec, model=model, **options):
        if isinstance(event, structgen.Delta):
            sys.stderr.write(event.text)
        elif isinstance(event, structgen.Reset):
            sys.stderr.write(f"\n[retry: {event.reason.splitlines()[0][:120]}]\n")
        else:
            sys.stderr.write("\n")
            return event.result
        sys.stderr.flush()
    raise AssertionError("a stream ends with Done or raises")


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
COMMAND_MODULES: list[str] = ["bench", "determinism", "apps", "serve", "batch"]
_register_commands()


def main() -> None:
    """Console entry point: typed errors become one line on stderr and a non-zero exit code."""
    # SIGTERM unwinds like Ctrl-C, so context managers run: a `--serve` bench stops the server it started.
    if threading.current_thread() is threading.main_thread():   # signal handlers live in the main thread
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
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
