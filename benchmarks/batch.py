"""``structgen bench batch``: the batch runner against the bare engine, in one run.

Records: ``bench concurrency``'s 16 extraction requests (8 schemas × 2 texts) cycled to ``records`` lines, greedy,
as one OpenAI Batch file. Paths: (d) the bare engine — the same requests through ``agenerate`` with the same number
in flight, nothing written (the reference); (a) ``structgen batch run`` in process (check, plans, journal, fsync);
(c) ``--endpoint`` against ``structgen serve`` on 127.0.0.1 (same model object, so the same engine); (b) ``--ray``
with 1 and 2 actors on a local Ray instance (optional: needs ``structgen[ray]``, and each actor loads its own model).
Reported per path: documents/s, completion tokens/s, wall time, valid rate, and the ratio to the bare engine.

Then (``ttft_probes`` > 0) an interactive client's time to first token on ``structgen serve --data-dir``: streamed
extraction requests one at a time, first on the idle server, then while the same file runs as a ``/v1/batches`` job
on the same engine (the batch's requests at the engine's lower priority). Each probe's text is new to the server
(no prefix-cache hit beyond the chat template); the stream is closed at its first content token. Target: the busy
median ≤ 1.5× the idle one.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from structgen_benchmarks.concurrency import REQUESTS, prompt_of
from structgen_benchmarks.report import machine, machine_line, markdown_table, sse_chunks, versions

__all__ = ["Settings", "batch_lines", "markdown", "plot", "run"]


@dataclass(frozen=True, slots=True)
class Settings:
    """One bench run."""

    model_path: str
    records: int = 200
    max_tokens: int = 256
    n_ctx: int = 8192
    n_seq_max: int = 8
    n_threads: int = 0
    endpoint: bool = True
    ray_workers: tuple[int, ...] = ()
    ttft_probes: int = 8


TTFT_TARGET = 1.5
"""An interactive request's median time to first token while a ``/v1/batches`` job runs, at most this × idle."""


def batch_lines(records: int, max_tokens: int) -> list[dict[str, Any]]:
    """``records`` OpenAI Batch lines over the 16 extraction requests (cycled), greedy."""
    out = []
    for i in range(records):
        e = REQUESTS[i % len(REQUESTS)]
        out.append({"custom_id": f"{e.name}-{i}", "method": "POST", "url": "/v1/chat/completions", "body": {
            "messages": [{"role": "user", "content": prompt_of(e)}], "temperature": 0, "max_tokens": max_tokens,
            "response_format": {"type": "json_schema", "json_schema": {"name": e.name, "schema": e.schema}}}})
    return out


def run(settings: Settings, on_step: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every path; the report (settings, machine, one row per path)."""
    from structgen import LlamaCpp
    from structgen.batch import AsyncExecutor, JobOptions, endpoint_model, run_job
    from structgen.batch.lines import read_batch_file
    from structgen.serve import ServeConfig
    from structgen.testing.app_server import serving

    step = on_step or (lambda name: None)
    engine = {"n_ctx": settings.n_ctx, "n_seq_max": settings.n_seq_max, "n_threads": settings.n_threads or None}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.jsonl"
        src.write_text("".join(json.dumps(x) + "\n" for x in batch_lines(settings.records, settings.max_tokens)))
        lines, problems = read_batch_file(src)
        ttft: dict[str, Any] | None = None
        model = LlamaCpp(settings.model_path, **engine)
        try:
            step("bare engine")
            rows.append(_bare(model, lines, settings.n_seq_max))
            step("batch run")
            rows.append(_job("batch run (local)", lambda out: run_job(
                lines, problems, source=str(src), manifest={}, executor=AsyncExecutor(model),
                options=JobOptions(out)), Path(tmp)))
            if settings.endpoint:
                step("endpoint")
                with serving(model, ServeConfig(max_tokens=settings.max_tokens)) as url:
                    hosted = endpoint_model(url, model="m")
                    rows.append(_job("batch run --endpoint serve", lambda out: run_job(
                        lines, problems, source=str(src), manifest={},
                        executor=AsyncExecutor(hosted, window=settings.n_seq_max), options=JobOptions(out)),
                        Path(tmp)))
            if settings.ttft_probes:   # last: a cancelled batch must not overlap another path's timing
                step("ttft under /v1/batches")
                ttft = _ttft_beside_batch(model, src, settings)
        finally:
            model.close()
        for workers in settings.ray_workers:
            step(f"ray x{workers}")
            rows.append(_job(f"batch run --ray ({workers} actor{'s' * (workers > 1)})", lambda out, w=workers: run_job(
                lines, problems, source=str(src), manifest={}, executor=_ray(settings, engine, w),
                options=JobOptions(out)), Path(tmp)))
    bare = rows[0]["docs_per_s"]
    for row in rows:
        row["vs_bare"] = round(row["docs_per_s"] / bare, 3) if bare else None
    return {"bench": "batch", "date": time.strftime("%Y-%m-%d"), "settings": {
        **asdict(settings), "model": Path(settings.model_path).name}, "machine": machine(),
        "versions": versions(("llama-cpp-python", "llguidance", "ray")), "rows": rows, "ttft": ttft}


def _ttft_beside_batch(model: Any, src: Path, settings: Settings) -> dict[str, Any]:
    """Interactive TTFT on ``structgen serve --data-dir``: idle, then while ``src`` runs as a ``/v1/batches`` job."""
    from structgen.serve import ServeConfig
    from structgen.testing.app_server import serving

    with tempfile.TemporaryDirectory() as data, \
            serving(model, ServeConfig(max_tokens=settings.max_tokens), data_dir=Path(data)) as url:
        _first_token_s(url, -1)   # untimed: the probe schema's compile, first-use costs
        idle = [_first_token_s(url, i) for i in range(settings.ttft_probes)]
        file_id = _post_file(url, src.read_bytes())["id"]
        batch = _post_json(url + "/batches", {"input_file_id": file_id, "endpoint": "/v1/chat/completions",
                                              "completion_window": "24h"})
        deadline = time.monotonic() + 300
        while _completed(url, batch["id"]) < 1:    # the batch is decoding, not only validating its file
            if time.monotonic() > deadline:
                raise RuntimeError("the /v1/batches job finished no line in 300 s")
            time.sleep(0.2)
        busy = [_first_token_s(url, settings.ttft_probes + i) for i in range(settings.ttft_probes)]
        state = _get_json(f"{url}/batches/{batch['id']}")
        _post_json(f"{url}/batches/{batch['id']}/cancel", {})
        while _get_json(f"{url}/batches/{batch['id']}")["status"] == "cancelling":
            time.sleep(0.1)
    idle_p50, busy_p50 = statistics.median(idle), statistics.median(busy)
    return {"probes": settings.ttft_probes, "idle_s": [round(x, 3) for x in idle],
            "busy_s": [round(x, 3) for x in busy], "idle_p50_s": round(idle_p50, 3), "busy_p50_s": round(busy_p50, 3),
            "ratio": round(busy_p50 / idle_p50, 3), "target": TTFT_TARGET,
            "batch_running_throughout": state["status"] == "in_progress",
            "batch_lines_done_meanwhile": state["request_counts"]["completed"]}


_PROBE_SCHEMA = {"type": "object", "additionalProperties": False, "required": ["city", "temperature_c", "summary"],
                 "properties": {"city": {"type": "string"}, "temperature_c": {"type": "number"},
                                "summary": {"type": "string"}}}


def _first_token_s(url: str, i: int) -> float:
    """Seconds from sending probe ``i`` (a streamed extraction with text of its own) to its first content token."""
    text = (f"Weather note {i}: in the morning of day {i + 3} the station at harbour {i * 7 % 31} read "
            f"{(i * 13) % 35 - 5} degrees, with wind from the {('north', 'east', 'south', 'west')[i % 4]}.")
    body = {"model": "m", "stream": True, "temperature": 0, "max_tokens": 64,
            "messages": [{"role": "user", "content": f"Extract the weather report as JSON.\n\n{text}"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "weather", "schema": _PROBE_SCHEMA}}}
    request = urllib.request.Request(url + "/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as reply:
        for chunk in sse_chunks(reply):
            if any(c.get("delta", {}).get("content") for c in chunk.get("choices", [])):
                return time.perf_counter() - started   # closing the stream cancels the rest
    raise RuntimeError(f"probe {i} streamed no content")


def _post_file(url: str, data: bytes) -> dict[str, Any]:
    boundary = f"structgen-bench-{time.monotonic_ns()}"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\n"
            f"Content-Type: application/jsonl\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(url + "/files", data=body,
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(request, timeout=60) as reply:
        return dict(json.load(reply))


def _post_json(url: str, payload: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as reply:
        return dict(json.load(reply))


def _get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=60) as reply:
        return dict(json.load(reply))


def _completed(url: str, batch_id: str) -> int:
    return int(_get_json(f"{url}/batches/{batch_id}")["request_counts"]["completed"])


def _ray(settings: Settings, engine: dict[str, Any], workers: int) -> Any:
    """A Ray executor on a local Ray instance: ``workers`` actors sharing this machine's cores (one actor: all of
    them), each with its own model and as many threads as CPUs reserved."""
    import os

    from structgen.batch.ray import RayExecutor

    cpus = max(1, (os.cpu_count() or 1) // workers)
    return RayExecutor(settings.model_path, engine, workers=workers, batch_size=settings.n_seq_max,
                       cpus_per_worker=cpus)


def _bare(model: Any, lines: list[Any], window: int) -> dict[str, Any]:
    """The reference: the same requests through ``agenerate``, ``window`` in flight, nothing written."""
    from structgen.agenerate import agenerate

    async def main() -> list[Any]:
        room = asyncio.Semaphore(window)

        async def one(line: Any) -> Any:
            body = line.body
            async with room:
                try:
                    return await agenerate(body["messages"], body["response_format"]["json_schema"]["schema"],
                                           model=model, temperature=0, max_tokens=body["max_tokens"])
                except Exception as exc:
                    return exc

        return list(await asyncio.gather(*(one(x) for x in lines)))

    started = time.perf_counter()
    results = asyncio.run(main())
    wall = time.perf_counter() - started
    valid = [r for r in results if not isinstance(r, Exception)]
    tokens = sum(r.timings.generated_tokens for r in valid)
    return _row("bare engine (agenerate)", len(results), len(valid), tokens, wall)


def _job(name: str, go: Callable[[Path], Any], tmp: Path) -> dict[str, Any]:
    out = tmp / f"{name.replace(' ', '_').replace('/', '')}-{time.monotonic_ns()}.jsonl"
    started = time.perf_counter()
    summary = go(out)
    wall = time.perf_counter() - started
    return _row(name, summary.done, summary.valid, summary.completion_tokens, wall)


def _row(name: str, docs: int, valid: int, tokens: int, wall: float) -> dict[str, Any]:
    return {"path": name, "docs": docs, "valid": valid, "valid_rate": round(valid / docs, 4) if docs else None,
            "wall_s": round(wall, 2), "docs_per_s": round(docs / wall, 3) if wall else 0.0,
            "tok_s": round(tokens / wall, 1) if wall else 0.0}


def markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown table with the machine."""
    table = markdown_table(["path", "docs", "valid rate", "wall s", "docs/s", "tok/s", "× bare"],
                           [[r["path"], r["docs"], r["valid_rate"], r["wall_s"], r["docs_per_s"], r["tok_s"],
                             r["vs_bare"]] for r in report["rows"]])
    ttft = report.get("ttft")
    if ttft:
        verdict = "met" if ttft["ratio"] <= ttft["target"] else "not met"
        table += (f"\n\nInteractive TTFT on `structgen serve` (median of {ttft['probes']} streamed requests): idle "
                  f"{ttft['idle_p50_s']} s, while a `/v1/batches` job runs {ttft['busy_p50_s']} s = "
                  f"**{ttft['ratio']}×** (target ≤ {ttft['target']}×, {verdict}; the batch "
                  f"{'ran throughout' if ttft['batch_running_throughout'] else 'ended during the probes'}).")
    return f"{table}\n\n{machine_line(report['machine'])}; {report['settings']['model']}, {report['date']}"


def plot(report: dict[str, Any], path: Path) -> None:
    """Documents/s per path."""
    from structgen_benchmarks.report import pyplot

    plt = pyplot()
    rows = report["rows"]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.barh([r["path"] for r in rows], [r["docs_per_s"] for r in rows])
    ax.set_xlabel("documents / s")
    ax.invert_yaxis()
    ax.set_title(f"structgen bench batch, {report['settings']['model']}, {report['date']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
