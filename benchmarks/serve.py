"""``structgen bench serve``: structgen's OpenAI-compatible server against the servers people would otherwise pick.

In one run, on the same model, threads and machine: (a) ``structgen serve``; (b) llama-cpp-python's
``llama_cpp.server`` (one request at a time; it refuses OpenAI's ``json_schema`` form, so it gets its own
``json_object`` + ``schema`` form); (c) llama.cpp's ``llama-server`` with ``--parallel N`` (continuous batching; built
by ``scripts/llama_server.sh``). Each runs as its own process on 127.0.0.1, started afresh for each concurrency level
N with N slots and 1024 KV cells per slot (structgen: ``--max-concurrency N``; llama-server: ``--parallel N``), so no
level inherits another's cache.

Requests: the 16 JSON extractions of ``bench concurrency`` (8 real-world-style schemas × 2 texts), as chat
requests with ``response_format`` json_schema (strict), greedy, a 256-token budget, streamed (for the time to first
token). The schema is written in the user message for every server (structgen is told not to add its own hint, so
every server sees the same prompt). N client threads work through the requests. The bench itself validates every
reply against its schema (jsonschema, formats checked) and counts output tokens with the model's own tokenizer, the
same way for every server. Per server and level: aggregate output tok/s, requests/s, valid replies/s, TTFT and
latency p50/p99, valid rate, and errors (HTTP errors, and replies returned with status 200 that are invalid).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from structgen_benchmarks import plain
from structgen_benchmarks.checks import is_valid
from structgen_benchmarks.concurrency import REQUESTS
from structgen_benchmarks.prompts import Extraction
from structgen_benchmarks.report import machine, machine_line, markdown_table, percentiles, sse_chunks, versions

__all__ = ["SERVERS", "Settings", "llama_server_binary", "markdown", "plot", "run"]

SERVERS = ("structgen", "llama_cpp.server", "llama-server")
DEFAULT_N_CTX = 4096
"""``llama_cpp.server``'s context in the single-client pass (it has no default of its own to fall back on)."""


@dataclass(frozen=True, slots=True)
class Settings:
    """One bench run."""

    model_path: str
    concurrency: tuple[int, ...] = (1, 2, 4, 8, 16)
    requests: int = 16
    max_tokens: int = 256
    n_threads: int = 0
    n_ctx_per_slot: int = 1024
    servers: tuple[str, ...] = SERVERS
    single: tuple[str, ...] = plain.SETS     # the single-client sets (``plain``); () for none
    fresh: int = 24                          # requests of the ``fresh`` set
    documents: int | None = None             # documents of the ``documents`` / ``grounded`` sets (None: all)


def llama_server_binary() -> str | None:
    """The cached ``llama-server`` binary, or None when ``scripts/llama_server.sh`` has not built it."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "llama_server.sh"
    if not script.is_file():
        return None
    found = subprocess.run(["bash", str(script), "--check"], capture_output=True, text=True, check=False)
    path = found.stdout.strip()
    return path if found.returncode == 0 and path and os.access(path, os.X_OK) else None


def run(settings: Settings, on_step: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every server at every concurrency level; the JSON-ready report."""
    from llama_cpp import Llama

    vocab = Llama(settings.model_path, vocab_only=True, verbose=False)
    count = lambda text: len(vocab.tokenize(text.encode(), add_bos=False, special=False))  # noqa: E731
    requests = [REQUESTS[i % len(REQUESTS)] for i in range(settings.requests)]
    rows: list[dict[str, Any]] = []
    single: list[dict[str, Any]] = []
    notes: list[str] = []
    sets = {name: plain.fresh(settings.fresh) if name == "fresh" else plain.documents(settings.documents)
            for name in settings.single}
    for server in settings.servers:
        if server == "llama-server" and llama_server_binary() is None:
            notes.append("llama-server is not built: run `bash scripts/llama_server.sh` (~10 min once) to include it")
            continue
        if sets:
            with _server(server, settings, 0) as url:   # its own defaults: what a new user starts
                for name, chosen in sets.items():
                    if name == "grounded" and server != "structgen":
                        continue
                    single.append(plain.run_set(server, url, name, chosen, max_tokens=settings.max_tokens,
                                                count=count))
                    if on_step:
                        on_step(f"{server} one client, {name}")
        for n in settings.concurrency:   # a fresh server per level, with N slots (llama-server: --parallel N)
            with _server(server, settings, n) as url:
                rows.append(_level(server, url, requests, n, settings, count))
            if on_step:
                on_step(f"{server} x{n}")
    return {
        "bench": "serve",
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "versions": versions(("structgen", "llama-cpp-python", "llguidance")),
        "settings": {"model": Path(settings.model_path).name, "max_tokens": settings.max_tokens,
                     "requests": settings.requests, "n_threads": settings.n_threads or os.cpu_count(),
                     "concurrency": list(settings.concurrency)},
        "rows": rows,
        "single": single,
        "ratios": {**_ratios(rows), **_single_ratios(single)},
        "notes": notes,
    }


@contextmanager
def _server(server: str, settings: Settings, slots: int) -> Iterator[str]:
    """Start ``server`` on a free loopback port for the block; yields its ``/v1`` URL. ``slots`` 0: the server's
    own defaults (threads and port aside)."""
    from structgen.testing.llama_server import free_port, llama_server, server_process

    threads = settings.n_threads or os.cpu_count() or 1
    n_ctx = settings.n_ctx_per_slot * max(slots, 1)
    if server == "llama_cpp.server":
        with llama_server(settings.model_path, n_ctx=settings.n_ctx_per_slot * 2 if slots else DEFAULT_N_CTX,
                          n_threads=threads) as url:
            yield url
        return
    port = free_port()
    if server == "structgen":
        cmd = [sys.executable, "-m", "structgen_cli", "serve", "--model", settings.model_path, "--port", str(port),
               "--n-threads", str(threads)]
        if slots:
            cmd += ["--n-ctx", str(n_ctx), "--max-concurrency", str(slots), "--max-tokens", str(settings.max_tokens)]
    else:
        binary = llama_server_binary()
        assert binary is not None
        cmd = [binary, "-m", settings.model_path, "--host", "127.0.0.1", "--port", str(port), "-t", str(threads),
               "-tb", str(threads), "--no-webui"]
        if slots:
            cmd += ["-c", str(n_ctx), "--parallel", str(slots), "--cont-batching"]
    with server_process(cmd, f"http://127.0.0.1:{port}/v1", name=server) as url:
        yield url


def _body(server: str, e: Extraction, settings: Settings) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "bench", "messages": [{"role": "user", "content": e.prompt()}],
                            "temperature": 0.0, "max_tokens": settings.max_tokens, "stream": True, "seed": 0}
    if server == "llama_cpp.server":   # it refuses the json_schema form
        body["response_format"] = {"type": "json_object", "schema": e.schema}
    else:
        body["response_format"] = {"type": "json_schema",
                                   "json_schema": {"name": e.name, "schema": e.schema, "strict": True}}
    if server == "structgen":
        body["schema_in_prompt"] = False   # the prompt already holds the schema, as for the others
    return body


def _call(server: str, url: str, e: Extraction, settings: Settings, count: Callable[[str], int]) -> dict[str, Any]:
    import urllib.error
    import urllib.request

    data = json.dumps(_body(server, e, settings)).encode()
    request = urllib.request.Request(f"{url}/chat/completions", data=data,
                                     headers={"Content-Type": "application/json"})
    t0 = time.perf_counter()
    ttft = None
    parts: list[str] = []
    error = None
    try:
        with urllib.request.urlopen(request, timeout=600) as resp:
            for chunk in sse_chunks(resp):
                if "error" in chunk:
                    error = str(chunk["error"].get("type") or "error")
                    break
                for choice in chunk.get("choices") or []:
                    piece = (choice.get("delta") or {}).get("content") or ""
                    if piece and ttft is None:
                        ttft = (time.perf_counter() - t0) * 1000
                    parts.append(piece)
    except urllib.error.HTTPError as exc:
        error = f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        error = type(exc).__name__
    latency = (time.perf_counter() - t0) * 1000
    text = "".join(parts)
    if error is not None:
        return {"ok": False, "valid": False, "error": error, "latency_ms": latency, "ttft_ms": ttft,
                "tokens": count(text) if text else 0}
    return {"ok": True, "valid": is_valid(text, e.schema), "error": None, "latency_ms": latency, "ttft_ms": ttft,
            "tokens": count(text)}


def _level(server: str, url: str, requests: list[Extraction], n: int, settings: Settings,
           count: Callable[[str], int]) -> dict[str, Any]:
    _call(server, url, requests[0], settings, count)   # warm-up (compile, first-use costs), untimed
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=n) as pool:
        calls = list(pool.map(lambda e: _call(server, url, e, settings, count), requests))
    wall = time.perf_counter() - t0
    ok = [c for c in calls if c["ok"]]
    valid = [c for c in ok if c["valid"]]
    return {
        "server": server,
        "concurrency": n,
        "wall_s": round(wall, 3),
        "requests": len(calls),
        "tok_s": round(sum(c["tokens"] for c in ok) / wall, 2),
        "req_s": round(len(ok) / wall, 3),
        "valid_per_s": round(len(valid) / wall, 3),
        "valid_rate": round(len(valid) / len(calls), 3),
        "invalid_200": len(ok) - len(valid),
        "errors": len(calls) - len(ok),
        "error_kinds": sorted({c["error"] for c in calls if c["error"]}),
        "ttft_ms": percentiles([c["ttft_ms"] for c in ok if c["ttft_ms"] is not None], {"p50": 50, "p99": 99}),
        "latency_ms": percentiles([c["latency_ms"] for c in calls], {"p50": 50, "p99": 99}),
    }


def _ratios(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    by = {(r["server"], r["concurrency"]): r for r in rows}
    out: dict[str, float | None] = {}
    for n in sorted({r["concurrency"] for r in rows}):
        ours, peer, lcp = by.get(("structgen", n)), by.get(("llama-server", n)), by.get(("llama_cpp.server", n))
        if ours and peer:
            out[f"valid_per_s_{n}_vs_llama_server"] = _ratio(ours["valid_per_s"], peer["valid_per_s"])
            out[f"tok_s_{n}_vs_llama_server"] = _ratio(ours["tok_s"], peer["tok_s"])
            out[f"latency_p99_{n}_vs_llama_server"] = _ratio(ours["latency_ms"]["p99"], peer["latency_ms"]["p99"])
        if ours and lcp:
            out[f"tok_s_{n}_vs_llama_cpp_server"] = _ratio(ours["tok_s"], lcp["tok_s"])
    return out


def _single_ratios(single: list[dict[str, Any]]) -> dict[str, float | None]:
    """structgen's single-client wall time and field accuracy against each peer's, per set."""
    by = {(r["server"], r["set"]): r for r in single}
    out: dict[str, float | None] = {}
    for (server, name), ours in by.items():
        if server != "structgen":
            continue
        for peer, key in (("llama-server", "llama_server"), ("llama_cpp.server", "llama_cpp_server")):
            theirs = by.get((peer, "documents" if name == "grounded" else name))
            if theirs is None:
                continue
            if name != "grounded":
                out[f"one_client_{name}_wall_vs_{key}"] = _ratio(ours["wall_s"], theirs["wall_s"])
            if "field_accuracy" in ours and "field_accuracy" in theirs:
                out[f"one_client_{name}_accuracy_vs_{key}"] = _ratio(ours["field_accuracy"], theirs["field_accuracy"])
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: one row per server and level, then the ratios."""
    rows = [(r["server"], r["concurrency"], r["tok_s"], r["req_s"], r["valid_per_s"], f"{r['valid_rate']:.0%}",
             r["invalid_200"], r["errors"], r["ttft_ms"]["p50"], r["ttft_ms"]["p99"], r["latency_ms"]["p50"],
             r["latency_ms"]["p99"]) for r in report["rows"]]
    table = markdown_table(["server", "clients", "tok/s", "req/s", "valid/s", "valid", "invalid (200)", "errors",
                            "TTFT p50 ms", "TTFT p99 ms", "latency p50 ms", "latency p99 ms"], rows)
    single = [(r["server"], r["set"], r["requests"], r["wall_s"], f"{r['valid_rate']:.0%}", r["invalid_200"],
               r["errors"], r["tokens"], f"{r['field_accuracy']:.3f}" if "field_accuracy" in r else "-",
               r.get("attempts", "-"), r.get("wasted_tokens", "-"))
              for r in report.get("single", [])]
    lines = [f"serve bench, {report['date']}, {machine_line(report['machine'])}, {report['settings']['model']}, "
             f"{report['settings']['requests']} requests, {report['settings']['n_threads']} threads", ""]
    if single:
        lines += ["one client, each server's defaults:", "",
                  markdown_table(["server", "set", "requests", "wall s", "valid", "invalid (200)", "errors",
                                  "tokens", "field accuracy", "attempts", "wasted tokens"], single), ""]
    if rows:
        lines += [table, ""]
    lines += ["ratios: " + ", ".join(f"{k} {v}" for k, v in report["ratios"].items())]
    lines += [f"note: {n}" for n in report["notes"]]
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    """Aggregate output tok/s against concurrent clients, one line per server."""
    from structgen_benchmarks.report import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for server in SERVERS:
        rows = [r for r in report["rows"] if r["server"] == server]
        if rows:
            ax.plot([r["concurrency"] for r in rows], [r["tok_s"] for r in rows], "o-", label=server)
    ax.set_xlabel("concurrent clients")
    ax.set_ylabel("aggregate output tokens / s")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"JSON extraction over HTTP, {report['settings']['model']}, {report['date']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
