"""``structgen serve``: the OpenAI-compatible server."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated

import typer

from .options import GpuOpt, ModelOpt, ThreadsOpt


def serve(
    model: ModelOpt = None,
    host: Annotated[str, typer.Option("--host", help="Address to bind (loopback by default; 0.0.0.0 exposes it).")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8000,
    n_gpu_layers: GpuOpt = 0,
    n_threads: ThreadsOpt = None,
    n_ctx: Annotated[int, typer.Option("--n-ctx", help="Context size of one request (prompt and output). On CPU "
                                       "each sequence gets its own KV of this size while it fits 1 GiB in all, "
                                       "else the requests decoding together share one KV of this size.")]
    = 4096,
    max_concurrency: Annotated[int | None, typer.Option(
        "--max-concurrency", help="Sequences decoded together; requests beyond wait in the engine's queue "
        "(default: 8 with a KV per sequence, 16 with a shared one).")] = None,
    max_queue: Annotated[int, typer.Option("--max-queue", help="Requests that may wait; then 503 + Retry-After.")]
    = 256,
    api_key: Annotated[str | None, typer.Option("--api-key", envvar="STRUCTGEN_API_KEY",
                                                help="Require 'Authorization: Bearer KEY' (or $STRUCTGEN_API_KEY).")]
    = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Cap (and default) of a request's max_tokens.")]
    = 2048,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds a request may take; then 504.")] = 600.0,
    max_body: Annotated[int, typer.Option("--max-body-bytes", help="Larger request bodies get 413.")] = 1 << 20,
    deterministic: Annotated[bool, typer.Option("--deterministic", help="Batch-invariant decoding: a seed gives "
                                                "the same bytes whatever else is running.")] = False,
    prefix_cache: Annotated[int | None, typer.Option("--prefix-cache", help="Prompt KV entries kept for reuse "
                                                     "(default: 2 with a KV per sequence, 4 with a shared one).")]
    = None,
    kv_unified: Annotated[bool | None, typer.Option(
        "--kv-unified/--kv-streams", help="The KV layout: one cache shared by every sequence, or one stream of "
        "--n-ctx cells per sequence (default: streams on CPU while they fit 1 GiB, else shared).")] = None,
    speculate: Annotated[int | None, typer.Option(
        "--speculate", min=0, help="Draft tokens a request decoding alone verifies per model step, guessed from its "
        "own prompt and output (0: off; default: LlamaCpp's).")] = None,
    log_level: Annotated[str, typer.Option("--log-level")] = "warning",
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Also serve OpenAI's Files and Batch endpoints "
                                                  "(/v1/files, /v1/batches), keeping files and batch state here; a "
                                                  "batch in progress resumes when the server restarts.")] = None,
) -> None:
    """Serve a local model over an OpenAI-compatible HTTP API (chat, completions, responses, streaming, tools,
    /metrics)."""
    from structgen import LlamaCpp
    from structgen.batch.service import add_batch_routes
    from structgen.serve import ServeConfig, run_server

    m = LlamaCpp(model, n_gpu_layers=n_gpu_layers, n_threads=n_threads, n_ctx=n_ctx, n_seq_max=max_concurrency,
                 max_queue=max_queue, deterministic=deterministic, prefix_cache=prefix_cache,
                 kv_unified=kv_unified, speculate=speculate)
    config = ServeConfig(api_key=api_key, max_body_bytes=max_body, max_tokens=max_tokens, timeout=timeout,
                         max_concurrency=m.n_seq_max + max_queue)
    typer.echo(f"structgen serve: {m.name} on http://{host}:{port}/v1", err=True)
    try:
        run_server(m, host=host, port=port, config=config, log_level=log_level,
                   configure=None if data_dir is None else functools.partial(
                       add_batch_routes, model=m, data_dir=data_dir, name=m.name, api_key=api_key))
    finally:
        m.close()


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the CLI."""
    app.command()(serve)
