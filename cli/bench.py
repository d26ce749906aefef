"""``structgen bench masks | throughput | strategies | apps | concurrency | serve | soak | start | batch``: support,
speed and validity against the peers, and a long-running server's steadiness.

Each command shows a progress bar (stderr), prints a Markdown table (stdout), and writes ``--json FILE``
and ``--plot FILE.png`` on request. The code lives in ``structgen_benchmarks`` (``benchmarks/``).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer

from .options import GpuOpt, ModelOpt

SINGLE_SETS = ("fresh", "documents", "grounded")   # benchmarks/plain.py's SETS (imported lazily there)

bench_app = typer.Typer(name="bench", help="Benchmarks: grammar masks, throughput, strategies, apps.",
                        no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
                        rich_markup_mode=None)

ThreadsOpt = Annotated[int, typer.Option("--threads", help="CPU threads (0: all cores).")]
JsonFile = Annotated[Path | None, typer.Option("--json", help="Write the full report as JSON to this file.")]
PlotFile = Annotated[Path | None, typer.Option("--plot", help="Write a PNG plot to this file (needs matplotlib).")]


def _finish(report: dict[str, Any], markdown: str, json_file: Path | None, plot_file: Path | None,
            plot: Any) -> None:
    from structgen_benchmarks.report import write_json

    if plot_file is not None:
        plot(report, plot_file)
    report.pop("_samples", None)
    if json_file is not None:
        write_json(json_file, report)
    typer.echo(markdown)


@bench_app.command()
def masks(
    data: Annotated[Path | None, typer.Option("--data", help="MaskBench directory (default: "
                                              "../shared/jsonschemabench/maskbench).")] = None,
    backend: Annotated[str, typer.Option("--backend", help="structgen's matcher: llguidance | outlines-core")] =
    "llguidance",
    limit: Annotated[int | None, typer.Option("--limit", help="A fixed seeded sample of N files.")] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds per compile (and per file's walk).")] = 30.0,
    model: ModelOpt = None,
    json_file: JsonFile = None,
    plot_file: PlotFile = None,
) -> None:
    """MaskBench: compile coverage, TTFM and TBM of structgen's compile path vs raw llguidance."""
    from structgen_benchmarks import data as mb
    from structgen_benchmarks import maskbench
    from structgen_benchmarks.report import progress

    with progress() as bar:
        task = bar.add_task("masks", total=None)
        report = maskbench.run(data or mb.DEFAULT_DATA, backend=backend, limit=limit, timeout=timeout,
                               model_path=model,
                               on_file=lambda done, total: bar.update(task, completed=done, total=total))
    _finish(report, maskbench.markdown(report), json_file, plot_file, maskbench.plot)


@bench_app.command()
def throughput(
    model: ModelOpt = None,
    n_gpu_layers: GpuOpt = 0,
    reps: Annotated[int, typer.Option("--reps", help="Timed passes per configuration.")] = 3,
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed passes first (compiles, caches).")] = 1,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Token budget of every call.")] = 256,
    limit: Annotated[int | None, typer.Option("--limit", help="Use only the first N prompts.")] = None,
    threads: Annotated[int, typer.Option("--threads", help="CPU threads for every config (0: all cores).")] = 0,
    configs: Annotated[str | None, typer.Option("--configs", help="Comma-separated subset of the configurations "
                                                "(default: all).")] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds per call before it counts as failed.")] = 600.0,
    flash_attn: Annotated[str, typer.Option(
        "--flash-attn", help="structgen's LlamaCpp(flash_attn=...): on, off, or default (on for its unified "
        "cache); the peers keep llama-cpp-python's default (off).")] = "default",
    json_file: JsonFile = None,
    plot_file: PlotFile = None,
) -> None:
    """Tokens/s: structgen (unconstrained, constrained, +fast-forward) vs llama-cpp-python and outlines."""
    from structgen_benchmarks import throughput as tp
    from structgen_benchmarks.report import progress

    from structgen.local.models import resolve_model_path

    chosen = tp.check_configs([c.strip() for c in configs.split(",") if c.strip()] if configs else tp.CONFIGS)
    settings = tp.Settings(model_path=str(resolve_model_path(model)), n_gpu_layers=n_gpu_layers,
                           n_threads=threads, max_tokens=max_tokens,
                           flash_attn=_on_off(flash_attn, "--flash-attn"))
    with progress() as bar:
        task = bar.add_task("throughput", total=len(chosen) * (reps + warmup))
        report = tp.run(settings, configs=chosen, reps=reps, warmup=warmup, limit=limit, timeout=timeout,
                        on_step=lambda name: bar.update(task, advance=1, description=name))
    _finish(report, tp.markdown(report), json_file, plot_file, tp.plot)


@bench_app.command()
def start(
    model: ModelOpt = None,
    runs: Annotated[int, typer.Option("--runs", min=1, help="Fresh processes to time.")] = 10,
    json_file: JsonFile = None,
) -> None:
    """A fresh process: import structgen, load the model, one short constrained answer (per-stage times)."""
    from structgen_benchmarks import start as st
    from structgen_benchmarks.report import progress

    from structgen.local.models import resolve_model_path

    with progress() as bar:
        task = bar.add_task("start", total=runs)
        report = st.run(str(resolve_model_path(model)), runs=runs, on_run=lambda done: bar.update(task, completed=done))
    _finish(report, st.markdown(report), json_file, None, None)


@bench_app.command()
def concurrency(
    model: ModelOpt = None,
    n_gpu_layers: GpuOpt = 0,
    levels: Annotated[str, typer.Option("--concurrency", help="Comma-separated numbers of concurrent callers.")]
    = "1,2,4,8",
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Token budget of every call.")] = 256,
    limit: Annotated[int | None, typer.Option("--limit", help="Use only the first N of the 16 requests.")] = None,
    requests: Annotated[int | None, typer.Option(
        "--requests", min=1, help="Requests per level, the 16 (or --limit) cycled: more than the callers keeps "
        "every caller busy to the end (steady-state throughput).")] = None,
    threads: ThreadsOpt = 0,
    n_ctx: Annotated[int, typer.Option("--n-ctx", help="KV cells shared by all callers.")] = 8192,
    prefix_cache: Annotated[int, typer.Option("--prefix-cache", help="Prefix-cache slots (0: off).")] = 8,
    deterministic: Annotated[bool, typer.Option("--deterministic", help="Measure LlamaCpp(deterministic=True).")]
    = False,
    kv_per_sequence: Annotated[bool, typer.Option(
        "--kv-per-sequence", help="Measure LlamaCpp(kv_unified=False): the --n-ctx budget split into one KV stream "
        "per sequence.")] = False,
    ttft_rounds: Annotated[int, typer.Option(
        "--ttft-rounds", min=1, help="Rounds of the cold/warm TTFT pass over the schema pairs.")] = 2,
    flash_attn: Annotated[str, typer.Option(
        "--flash-attn", help="LlamaCpp(flash_attn=...): on, off, or default (off on CPU with "
        "--kv-per-sequence, else llama.cpp's choice).")] = "default",
    json_file: JsonFile = None,
    plot_file: PlotFile = None,
) -> None:
    """Many callers on one model: aggregate tok/s, valid replies/s, TTFT, latency, prefix hits, wasted tokens."""
    from structgen_benchmarks import concurrency as cc
    from structgen_benchmarks.report import progress

    from structgen.local.models import resolve_model_path

    counts = _levels(levels)
    settings = cc.Settings(model_path=str(resolve_model_path(model)), concurrency=counts, max_tokens=max_tokens,
                           n_gpu_layers=n_gpu_layers, n_threads=threads, n_ctx=n_ctx, prefix_cache=prefix_cache,
                           limit=limit, requests=requests, deterministic=deterministic,
                           kv_per_sequence=kv_per_sequence, ttft_rounds=ttft_rounds,
                           flash_attn=_on_off(flash_attn, "--flash-attn"))
    with progress() as bar:
        task = bar.add_task("concurrency", total=len(counts) + 1)
        report = cc.run(settings, on_step=lambda name: bar.update(task, advance=1, description=name))
    _finish(report, cc.markdown(report), json_file, plot_file, cc.plot)


@bench_app.command()
def strategies(
    model: ModelOpt = None,
    base_url: Annotated[str | None, typer.Option("--base-url", help="An OpenAI-compatible endpoint (e.g. "
                                                 "http://127.0.0.1:8080/v1): runs the hosted strategies.")] = None,
    serve: Annotated[bool, typer.Option("--serve", help="Start `python -m llama_cpp.server` on 127.0.0.1 with "
                                        "--model and run the hosted strategies against it.")] = False,
    tasks: Annotated[Path | None, typer.Option("--tasks", help="Task data directory (default: benchmarks/tasks).")]
    = None,
    data: Annotated[Path | None, typer.Option("--data", help="MaskBench directory for the JSON task.")] = None,
    limit: Annotated[str | None, typer.Option("--limit", help="At most N items per task (the first N of "
                                              "each), or per named task: `regex=20,sql=20`.")] = None,
    only: Annotated[str | None, typer.Option("--strategies", help="Comma-separated subset of strategies.")] = None,
    task_names: Annotated[str | None, typer.Option("--task", help="Comma-separated subset of tasks.")] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Token budget of every call.")] = 256,
    n_gpu_layers: GpuOpt = 0,
    threads: ThreadsOpt = 0,
    json_file: JsonFile = None,
    plot_file: PlotFile = None,
) -> None:
    """Valid-output rate, latency and tokens per strategy × task, locally or against a hosted endpoint."""
    from structgen_benchmarks import strategies as st
    from structgen_benchmarks.report import progress, write_json

    every, per_task = _limits(limit)
    options = st.Options(model_path=model, base_url=base_url, serve=serve, tasks_dir=tasks, data_dir=data,
                         limit=every, task_limits=per_task, max_tokens=max_tokens, n_gpu_layers=n_gpu_layers,
                         n_threads=threads or None,
                         strategies=[s.strip() for s in only.split(",") if s.strip()] if only else None,
                         tasks=[t.strip() for t in task_names.split(",") if t.strip()] if task_names else None)
    with progress() as bar:
        task = bar.add_task("strategies", total=None)
        report = st.run(options, on_item=lambda done, total, label: bar.update(task, completed=done, total=total,
                                                                               description=label),
                        on_partial=None if json_file is None else partial(write_json, json_file))
    _finish(report, st.markdown(report), json_file, plot_file, st.plot)


def _limits(text: str | None) -> tuple[int | None, dict[str, int]]:
    """``--limit``: "N" for every task, or "task=N,task=N"."""
    from structgen.errors import InvalidArgument

    if not text:
        return None, {}
    every: int | None = None
    per_task: dict[str, int] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, _, count = part.rpartition("=")
        if not count.isdigit() or int(count) < 1:
            raise InvalidArgument(f"--limit: {part!r} is not N or task=N with N a positive integer")
        if name:
            per_task[name.strip()] = int(count)
        else:
            every = int(count)
    return every, per_task


@bench_app.command()
def apps(
    model: ModelOpt = None,
    kinds: Annotated[str, typer.Option("--apps", help="Comma-separated: regex, sql.")] = "regex,sql",
    modes: Annotated[str, typer.Option("--modes", help="Comma-separated: constrained, prompt.")] = "constrained,prompt",
    n: Annotated[int, typer.Option("--n", help="Candidates per task (1: greedy).")] = 4,
    seed: Annotated[int, typer.Option("--seed", help="Sampling seed of every task.")] = 0,
    limit: Annotated[int | None, typer.Option("--limit", help="Only the first N tasks of each app.")] = None,
    tasks: Annotated[Path | None, typer.Option("--tasks", help="Task directory with regex.jsonl and sql.jsonl "
                                               "(default: benchmarks/tasks).")] = None,
    db: Annotated[Path | None, typer.Option("--db", help="SQLite file of the SQL tasks (default: the bundled "
                                            "shop.sqlite).")] = None,
    n_gpu_layers: GpuOpt = 0,
    threads: ThreadsOpt = 0,
    json_file: JsonFile = None,
    plot_file: PlotFile = None,
) -> None:
    """Text→regex and text→SQL: validity, verified rate and execution accuracy, constrained vs prompt-only."""
    from structgen_benchmarks import apps as ab

    from .apps import load_model

    target = load_model(model, n_gpu_layers=n_gpu_layers, n_threads=threads or None)
    report = ab.run_apps_bench(target, kinds=_split(kinds), modes=_split(modes), n=n, seed=seed, limit=limit,
                               tasks_dir=tasks or ab.TASKS_DIR, db=db, show_progress=True)
    _finish(report, ab.format_apps_markdown(report), json_file, plot_file, ab.plot)


@bench_app.command()
def accuracy(
    model: ModelOpt = None,
    modes: Annotated[str, typer.Option("--modes", help="Comma-separated: prompt, constrained, grounded, think-N, "
                                       "best_of-logprob, best_of-judge, self_consistency.")] =
    "prompt,constrained,grounded,think-32,think-128,best_of-logprob,best_of-judge,self_consistency",
    n: Annotated[int, typer.Option("--n", help="Samples of the sampled modes.")] = 4,
    temperature: Annotated[float, typer.Option("--temperature", help="Of the sampled modes.")] = 0.7,
    seed: Annotated[int, typer.Option("--seed", help="Sampling seed of every document.")] = 0,
    limit: Annotated[int | None, typer.Option("--limit", help="Only the first N documents.")] = None,
    tasks: Annotated[Path | None, typer.Option("--tasks", help="Directory with extraction.jsonl and "
                                               "extraction_schemas.json (default: benchmarks/tasks).")] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", help="Documents in flight at once.")] = 4,
    n_gpu_layers: GpuOpt = 0,
    threads: ThreadsOpt = 0,
    json_file: JsonFile = None,
    plot_file: PlotFile = None,
) -> None:
    """Extraction accuracy (field, record) per mode: prompt-only, constrained, grounded, think, best-of, voting."""
    from structgen_benchmarks import accuracy as ab

    from .apps import load_model

    target = load_model(model, n_gpu_layers=n_gpu_layers, n_threads=threads or None)
    report = ab.run_accuracy_bench(target, modes=_split(modes), n=n, temperature=temperature, seed=seed, limit=limit,
                                   tasks_dir=tasks or ab.TASKS_DIR, concurrency=concurrency, show_progress=True)
    _finish(report, ab.format_accuracy_markdown(report), json_file, plot_file, ab.plot)


@bench_app.command("batch")
def batch_bench(
    model: ModelOpt = None,
    records: Annotated[int, typer.Option("--records", min=1, help="Batch lines (the 16 extraction requests "
                                         "cycled).")] = 200,
    max_tokens: Annotated[int, typer.Option("--max-tokens")] = 256,
    n_seq_max: Annotated[int, typer.Option("--n-seq-max", help="Sequences in flight (every path).")] = 8,
    threads: ThreadsOpt = 0,
    endpoint: Annotated[bool, typer.Option("--endpoint/--no-endpoint", help="Also --endpoint against structgen "
                                           "serve.")] = True,
    ray_workers: Annotated[str, typer.Option("--ray", help="Comma-separated actor counts for --ray runs (e.g. "
                                             "1,2; needs structgen[ray]); empty: none.")] = "",
    ttft_probes: Annotated[int, typer.Option("--ttft-probes", min=0, help="Streamed interactive requests timed "
                                             "to first token on structgen serve, idle then beside a /v1/batches "
                                             "job of the same file (0: skip).")] = 8,
    json_file: JsonFile = None,
    plot_file: PlotFile = None,
) -> None:
    """structgen batch run (in process, --endpoint, --ray) against the bare engine: docs/s, tok/s, valid rate; an
    interactive request's time to first token beside a /v1/batches job."""
    from structgen_benchmarks import batch as bb
    from structgen_benchmarks.report import progress

    from structgen.local.models import resolve_model_path

    workers = tuple(int(x) for x in _split(ray_workers))
    settings = bb.Settings(model_path=str(resolve_model_path(model)), records=records, max_tokens=max_tokens,
                           n_seq_max=n_seq_max, n_threads=threads, endpoint=endpoint, ray_workers=workers,
                           ttft_probes=ttft_probes)
    with progress() as bar:
        task = bar.add_task("batch", total=2 + endpoint + bool(ttft_probes) + len(workers))
        report = bb.run(settings, on_step=lambda name: bar.update(task, advance=1, description=name))
    _finish(report, bb.markdown(report), json_file, plot_file, bb.plot)


@bench_app.command("serve")
def serve_bench(
    model: ModelOpt = None,
    levels: Annotated[str, typer.Option("--concurrency", help="Comma-separated numbers of concurrent clients.")]
    = "1,2,4,8,16",
    requests: Annotated[int, typer.Option("--requests", help="Requests per level (the 16 extractions, cycled).")]
    = 16,
    servers: Annotated[str, typer.Option("--servers", help="Comma-separated subset of: structgen, "
                                         "llama_cpp.server, llama-server.")]
    = "structgen,llama_cpp.server,llama-server",
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Token budget of every request.")] = 256,
    threads: Annotated[int, typer.Option("--threads", help="CPU threads of every server (0: all cores).")] = 0,
    single: Annotated[str, typer.Option("--single", help="Single-client sets, each server at its defaults: "
                                        "comma-separated subset of fresh, documents, grounded; 'none' for none.")]
    = "fresh,documents,grounded",
    fresh: Annotated[int, typer.Option("--fresh", help="Requests of the single-client 'fresh' set.")] = 24,
    documents: Annotated[int | None, typer.Option("--documents", help="Documents of the single-client "
                                                  "'documents' and 'grounded' sets (default: all).")] = None,
    json_file: JsonFile = None,
    plot_file: PlotFile = None,
) -> None:
    """structgen serve vs llama_cpp.server vs llama.cpp's llama-server: one client on plain requests (wall time,
    valid rate, field accuracy), then tok/s, valid replies/s, TTFT and latency per number of clients."""
    from structgen_benchmarks import serve as sb
    from structgen_benchmarks.report import progress

    from structgen.errors import InvalidArgument
    from structgen.local.models import resolve_model_path

    counts = () if levels.strip() == "none" else _levels(levels)
    chosen = tuple(_split(servers))
    unknown = sorted(set(chosen) - set(sb.SERVERS))
    sets = () if single.strip() == "none" else tuple(_split(single))
    if set(sets) - set(SINGLE_SETS):
        raise InvalidArgument(f"--single takes a subset of {', '.join(SINGLE_SETS)} or 'none', got {single!r}")
    if requests < 1 or fresh < 1 or (documents is not None and documents < 1):
        raise InvalidArgument("--requests, --fresh and --documents need positive integers")
    if unknown:
        raise InvalidArgument(f"unknown server(s) {', '.join(unknown)}; choose from {', '.join(sb.SERVERS)}")
    settings = sb.Settings(model_path=str(resolve_model_path(model)), concurrency=counts, requests=requests,
                           max_tokens=max_tokens, n_threads=threads, servers=chosen, single=sets, fresh=fresh,
                           documents=documents)
    with progress() as bar:
        task = bar.add_task("serve", total=(len(counts) + len(sets)) * len(chosen))
        report = sb.run(settings, on_step=lambda name: bar.update(task, advance=1, description=name))
    _finish(report, sb.markdown(report), json_file, plot_file, sb.plot)


@bench_app.command("soak")
def soak_bench(
    model: ModelOpt = None,
    requests: Annotated[int, typer.Option("--requests", min=1, help="Requests in all (the mix, cycled).")] = 2000,
    clients: Annotated[int, typer.Option("--clients", min=1, help="Concurrent clients.")] = 8,
    n_ctx: Annotated[int, typer.Option("--n-ctx", help="The server's --n-ctx.")] = 16384,
    kv: Annotated[str, typer.Option("--kv", help="The server's KV layout: unified, streams, or default.")]
    = "default",
    threads: Annotated[int, typer.Option("--threads", help="CPU threads of the server (0: all cores).")] = 0,
    seed: Annotated[int, typer.Option("--seed", help="Varies the prompts and the requests' seeds.")] = 0,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="Untimed requests before the run (and before "
                                        "the first RSS reading).")] = 10,
    json_file: JsonFile = None,
) -> None:
    """One structgen serve, many clients, a long mixed load: throughput and p99 of the first and last 10 % of the
    requests, the server's RSS after warm-up and at the end, and every outcome. Exits 1 when a target fails."""
    from structgen_benchmarks import soak
    from structgen_benchmarks.report import progress

    from structgen.errors import InvalidArgument
    from structgen.local.models import resolve_model_path

    layouts = {"unified": True, "streams": False, "default": None}
    if kv not in layouts:
        raise InvalidArgument(f"--kv takes unified, streams or default, got {kv!r}")
    settings = soak.Settings(model_path=str(resolve_model_path(model)), requests=requests, clients=clients,
                             n_ctx=n_ctx, n_threads=threads, kv_unified=layouts[kv], seed=seed,
                             warmup=warmup)
    with progress() as bar:
        task = bar.add_task("soak", total=requests)
        report = soak.run(settings, on_progress=lambda done, total: bar.update(task, completed=done))
    _finish(report, soak.markdown(report), json_file, None, None)
    if not report["met"]:
        raise typer.Exit(1)


def _on_off(text: str, option: str) -> bool | None:
    """``on`` / ``off`` / ``default`` as True / False / None."""
    from structgen.errors import InvalidArgument

    choices = {"on": True, "off": False, "default": None}
    if text not in choices:
        raise InvalidArgument(f"{option} takes on, off or default, got {text!r}")
    return choices[text]


def _levels(text: str) -> tuple[int, ...]:
    """``--concurrency``: comma-separated positive integers."""
    from structgen.errors import InvalidArgument

    try:
        counts = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError as exc:
        raise InvalidArgument(f"--concurrency takes comma-separated integers, got {text!r}") from exc
    if not counts or min(counts) < 1:
        raise InvalidArgument("--concurrency needs positive integers")
    return counts


def _split(csv: str) -> list[str]:
    return [part.strip() for part in csv.split(",") if part.strip()]


def register(app: typer.Typer) -> None:
    """Add the ``bench`` command group to the ``structgen`` app."""
    app.add_typer(bench_app, name="bench")
