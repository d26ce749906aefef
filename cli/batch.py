"""``structgen batch run``: an OpenAI Batch file (or records and one schema) to OpenAI result lines, resumable,
each ``custom_id`` exactly once — on the local engine, an OpenAI-compatible endpoint (``--endpoint``) or a Ray
cluster (``--ray``). The work itself is ``structgen.batch``; this module turns options into its calls."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from .options import GpuOpt, ModelOpt, ThreadsOpt

batch_app = typer.Typer(help="Bulk jobs on OpenAI Batch files: resumable, each custom_id exactly once.",
                        no_args_is_help=True, rich_markup_mode=None)

# Exit code of a run stopped by Ctrl-C / SIGTERM (what finished is written; run the same command to resume).
EXIT_INTERRUPTED = 130


@batch_app.command("run")
def run(
    input_path: Annotated[Path, typer.Argument(metavar="IN", help="An OpenAI Batch .jsonl file; with --schema, records "
                                               "instead: .jsonl objects, a .csv file or a folder of .txt files.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Result lines (appended; resumed).")],
    errors: Annotated[Path | None, typer.Option("--errors", help="Error lines (default: OUT.errors.jsonl).")] = None,
    model: ModelOpt = None,
    n_gpu_layers: GpuOpt = 0,
    n_threads: ThreadsOpt = None,
    n_ctx: Annotated[int, typer.Option("--n-ctx", help="Context shared by the lines decoding together.")] = 8192,
    n_seq_max: Annotated[int, typer.Option("--n-seq-max", help="Sequences decoded together (the local engine is "
                                           "kept this full).")] = 16,
    deterministic: Annotated[bool, typer.Option("--deterministic", help="Batch-invariant decoding: a seeded line "
                                                "gives the same bytes however it is batched.")] = False,
    endpoint: Annotated[str | None, typer.Option("--endpoint", help="An OpenAI-compatible base URL (…/v1): send "
                                                 "the lines there through the hosted chain; --model names the "
                                                 "model.")] = None,
    api_key: Annotated[str | None, typer.Option("--api-key", envvar="STRUCTGEN_API_KEY",
                                                help="The endpoint's API key (or $STRUCTGEN_API_KEY).")] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", help="Endpoint requests in flight.")] = 8,
    rpm: Annotated[int | None, typer.Option("--rpm", help="Endpoint requests per minute, at most.")] = None,
    tpm: Annotated[int | None, typer.Option("--tpm", help="Endpoint tokens per minute, at most (estimated before "
                                            "each request: prompt chars / 4 + max_tokens).")] = None,
    use_ray: Annotated[bool, typer.Option("--ray", help="Run on a Ray cluster (pip install 'structgen[ray]').")]
    = False,
    address: Annotated[str | None, typer.Option("--address", help="Ray cluster: auto | HOST:PORT (default: a local "
                                                "one).")] = None,
    workers: Annotated[int, typer.Option("--workers", help="Ray actors, each with its own model.")] = 1,
    cpus_per_worker: Annotated[float, typer.Option("--cpus-per-worker", help="CPUs Ray reserves for each actor; "
                                                   "its engine runs on that many threads unless --n-threads.")] = 1.0,
    gpus_per_worker: Annotated[float, typer.Option("--gpus-per-worker")] = 0.0,
    ray_batch: Annotated[int, typer.Option("--ray-batch-size", help="Lines per actor call.")] = 8,
    schema: Annotated[Path | None, typer.Option("--schema", help="Records mode: the JSON Schema of every "
                                                "record's value.")] = None,
    prompt: Annotated[str, typer.Option("--prompt", help="Records mode: the instruction before each text.")] = "",
    text_field: Annotated[str, typer.Option("--text-field", help="Records mode: the field holding the text.")]
    = "text",
    id_field: Annotated[str, typer.Option("--id-field", help="Records mode: the field holding the id (default: "
                                          "the line number).")] = "id",
    source: Annotated[bool, typer.Option("--source", help="Records mode: extract only verbatim spans of the "
                                         "text (grounded extraction).")] = False,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Records mode: each request's token budget.")]
    = 512,
    timeout: Annotated[float | None, typer.Option("--timeout", help="Seconds a request may take.")] = None,
    retry_errors: Annotated[bool, typer.Option("--retry-errors", help="Run the failed lines again (their error "
                                               "lines are replaced).")] = False,
    force: Annotated[bool, typer.Option("--force", help="Resume even though the model, engine options or version "
                                        "differ from the manifest's.")] = False,
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid", help="Write bad input lines to the error file and "
                                               "run the rest (default: report them and do not start).")] = False,
    progress: Annotated[str, typer.Option("--progress", help="auto | rich | plain | quiet")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print a summary as JSON at the end.")] = False,
) -> None:
    """Run every request of IN not yet in OUT or ERR; write each result as it completes."""
    from structgen.batch import (
        AsyncExecutor,
        JobOptions,
        RecordSpec,
        endpoint_manifest,
        endpoint_model,
        local_manifest,
        read_batch_file,
        read_records,
        run_job,
    )
    from structgen.batch.progress import make_progress
    from structgen.errors import InvalidArgument

    if endpoint and use_ray:
        raise InvalidArgument("give --endpoint or --ray, not both")
    if schema is not None:
        from .options import schema_from_options

        spec = RecordSpec(schema_from_options(schema, None, None, None), prompt, text_field=text_field,
                          id_field=id_field, source=source, max_tokens=max_tokens)
        lines, problems = read_records(input_path, spec)
    else:
        if not input_path.is_file():
            raise InvalidArgument(f"{input_path} is not a file (records and a folder need --schema)")
        lines, problems = read_batch_file(input_path)
    executor: Callable[..., None]
    if endpoint:
        manifest = endpoint_manifest(endpoint, model or "default")
        executor = AsyncExecutor(endpoint_model(endpoint, model=model or "default", api_key=api_key, rpm=rpm, tpm=tpm,
                                                timeout=timeout or 120.0), window=concurrency)
    else:
        engine: dict[str, Any] = {"n_gpu_layers": n_gpu_layers, "n_ctx": n_ctx, "n_seq_max": n_seq_max,
                                  "n_threads": n_threads, "deterministic": deterministic}
        manifest = local_manifest(_model_path(model), {"deterministic": deterministic, "n_gpu_layers": n_gpu_layers})
        if use_ray:
            from structgen.batch.ray import RayExecutor

            executor = RayExecutor(model, engine, address=address, workers=workers, cpus_per_worker=cpus_per_worker,
                                   gpus_per_worker=gpus_per_worker, batch_size=ray_batch, timeout=timeout)
        else:
            executor = _local(model, engine)
    summary = run_job(lines, problems, source=str(input_path), manifest=manifest, executor=executor,
                      options=JobOptions(output, errors, retry_errors=retry_errors, force=force,
                                         skip_invalid=skip_invalid, timeout=timeout),
                      progress=make_progress(progress))
    if as_json:
        typer.echo(json.dumps(summary.to_dict()))
    else:
        errs = ", ".join(f"{k} {v}" for k, v in summary.errors.items()) or "none"
        typer.echo(f"batch: {summary.done} done this run ({summary.valid} valid; errors: {errs}), {summary.skipped} "
                   f"already done, {summary.invalid} invalid lines; {summary.wall_s:.1f} s, "
                   f"{summary.docs_per_s:.2f} docs/s -> {summary.out}", err=True)
    if summary.interrupted:
        typer.echo("batch: stopped; what finished is written — run the same command again to resume", err=True)
        sys.exit(EXIT_INTERRUPTED)


def _model_path(model: str | None) -> Path:
    from structgen.errors import ModelNotFound
    from structgen.local.models import resolve_model_path

    path = resolve_model_path(model)
    if not path.is_file():
        raise ModelNotFound(f"model file not found: {path}")
    return path


def _local(model: str | None, engine: dict[str, Any]) -> Callable[..., None]:
    """An executor that loads the model when the job starts (after the input is checked) and closes it after."""
    from structgen import LlamaCpp
    from structgen.batch import AsyncExecutor

    def execute(pending: list[Any], emit: Callable[..., None]) -> None:
        if not pending:
            return
        m = LlamaCpp(model, **engine)
        try:
            AsyncExecutor(m)(pending, emit)
        finally:
            m.close()

    return execute


def register(app: typer.Typer) -> None:
    """Add ``batch`` (with ``batch run``) to the CLI."""
    app.add_typer(batch_app, name="batch")
