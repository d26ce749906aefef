"""``structgen determinism`` (repeat one request, count what changes per serving mode) and ``structgen probs``
(exact probabilities of a fixed set of answers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from structgen.errors import InvalidArgument

from .options import (
    ChoiceOpt,
    GpuOpt,
    GrammarOpt,
    ModelOpt,
    RegexOpt,
    SchemaFile,
    SystemOpt,
    ThreadsOpt,
    schema_from_options,
)


def _int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InvalidArgument(f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise InvalidArgument("give at least one batch size")
    return values


def _load(model: str | None, n_gpu_layers: int, n_threads: int | None, deterministic: bool) -> Any:
    from structgen import LlamaCpp

    return LlamaCpp(model, n_gpu_layers=n_gpu_layers, n_threads=n_threads, deterministic=deterministic)


def determinism(
    prompt: Annotated[str, typer.Argument(help="The prompt (user message).")],
    schema: SchemaFile = None,
    regex: RegexOpt = None,
    choice: ChoiceOpt = None,
    grammar: GrammarOpt = None,
    runs: Annotated[int, typer.Option("--runs", help="Repeats per mode.")] = 100,
    batch: Annotated[str, typer.Option("--batch", help="Batch sizes: 1 = alone, k = with k-1 other prompts.")] =
    "1,4,8",
    temperature: Annotated[float, typer.Option("--temperature", "-t", help="0 = greedy.")] = 0.0,
    seed: Annotated[int, typer.Option("--seed", help="The request's seed (the same in every run).")] = 42,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Token budget per run.")] = 64,
    model: ModelOpt = None,
    base_url: Annotated[str | None, typer.Option(
        "--base-url", help="An OpenAI-compatible endpoint (e.g. http://127.0.0.1:8080/v1): the hosted mode "
        "instead of a local model.")] = None,
    hosted_model: Annotated[str, typer.Option("--hosted-model", help="Model name sent to --base-url.")] = "local",
    deterministic: Annotated[str, typer.Option(
        "--deterministic", help="Local modes on a default LlamaCpp (off), on LlamaCpp(deterministic=True) (on), "
        "or both.")] = "both",
    tolerance: Annotated[float, typer.Option("--tolerance", help="Logprob vectors within this are the same.")] =
    1e-6,
    n_gpu_layers: GpuOpt = 0,
    n_threads: ThreadsOpt = None,
    json_file: Annotated[Path | None, typer.Option("--json", help="Write the report as JSON to this file.")] = None,
    plot_file: Annotated[Path | None, typer.Option("--plot", help="Write a PNG of P(first token) per mode.")] = None,
) -> None:
    """Repeat one request N times per mode (alone, batched with other prompts, hosted) and count what changes."""
    from structgen.analysis.determinism import plot, run_experiment

    spec = schema_from_options(schema, regex, choice, grammar)
    if deterministic not in ("off", "on", "both"):
        raise InvalidArgument(f"--deterministic must be off, on or both, got {deterministic!r}")
    sizes = _int_list(batch)
    models: dict[str, Any] = {}
    hosted = None
    if base_url is not None:
        from structgen.hosted import OpenAICompatible

        hosted = OpenAICompatible(base_url, model=hosted_model, logprobs=True)
    else:
        if deterministic in ("off", "both"):
            models["default"] = _load(model, n_gpu_layers, n_threads, False)
        if deterministic in ("on", "both"):
            models["deterministic"] = _load(model, n_gpu_layers, n_threads, True)

    def progress(mode: str, done: int, total: int) -> None:
        if done == total or done % 10 == 0:
            typer.echo(f"{mode}: {done}/{total}", err=True)

    report = run_experiment(prompt, spec, models=models, runs=runs, batch_sizes=sizes, temperature=temperature,
                            seed=seed, max_tokens=max_tokens, tolerance=tolerance, hosted=hosted, progress=progress)
    if plot_file is not None:
        plot(report, str(plot_file))
    if json_file is not None:
        _write(json_file, json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    typer.echo(report.to_markdown())


def probs(
    prompt: Annotated[str, typer.Argument(help="The prompt (user message).")],
    choice: ChoiceOpt = None,
    regex: RegexOpt = None,
    grammar: GrammarOpt = None,
    schema: SchemaFile = None,
    method: Annotated[str, typer.Option(
        "--method", help="model: how likely the model makes each option its answer; sampler: how often "
        "constrained generation returns each.")] = "model",
    prefix: Annotated[bool, typer.Option(
        "--prefix", help="(model) Do not score the end of the answer: P(answer begins with the option).")] = False,
    temperature: Annotated[float, typer.Option("--temperature", "-t", help="(sampler) Sampling temperature.")] = 1.0,
    no_hint: Annotated[bool, typer.Option("--no-hint", help="Leave the schema's format hint out of the prompt.")] =
    False,
    system: SystemOpt = None,
    raw: Annotated[bool, typer.Option("--raw", help="No chat template: the prompt is the raw text.")] = False,
    model: ModelOpt = None,
    n_gpu_layers: GpuOpt = 0,
    n_threads: ThreadsOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Exact probability of each option (a choice, or a regex/grammar with a small finite language)."""
    import structgen

    spec = schema_from_options(schema, regex, choice, grammar)
    if spec is None:
        raise InvalidArgument("give the options: --choice, --regex, --grammar or --schema")
    if method not in ("model", "sampler"):
        raise InvalidArgument(f"--method must be model or sampler, got {method!r}")
    m = _load(model, n_gpu_layers, n_threads, False)
    r = structgen.probs(prompt, spec, model=m, method=method,  # type: ignore[arg-type]  # checked above
                        complete=not prefix, temperature=temperature, schema_in_prompt=not no_hint,
                        system=system, chat=not raw)
    if as_json:
        typer.echo(json.dumps(r.to_dict(), ensure_ascii=False))
        return
    rest = "(outside)" if r.method == "model" else "(unexplored)"
    width = max(len(rest), *(len(repr(o)) for o in r))
    for option, p in sorted(r.items(), key=lambda kv: -kv[1]):
        typer.echo(f"{option!r:<{width}}  {p:.6f}  (log P = {r.logprobs[option]:.4f})")
    typer.echo(f"{rest:<{width}}  {r.outside:.6f}")


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text + "\n", encoding="utf-8")
    except OSError as exc:
        raise InvalidArgument(f"cannot write {path}: {exc.strerror}") from exc


def register(app: typer.Typer) -> None:
    """Add ``determinism`` and ``probs`` to the ``structgen`` app."""
    app.command()(determinism)
    app.command()(probs)
