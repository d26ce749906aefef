"""``structgen bench soak``: does a long-running ``structgen serve`` stay fast, small and correct?

One ``structgen serve`` (``--n-ctx 16384`` by default: where a long-running server's slowdown showed), driven by
``clients`` concurrent clients through ``requests`` requests of a fixed mix (``KINDS``, cycled in order, so every
window of a multiple of ``len(KINDS)`` requests holds the same mix): json_schema extractions, tool calls, regex
answers, streamed and not, documents from a few dozen to a few thousand tokens, and bounded schemas whose longest
valid answer comes near the request's ``max_tokens`` (so a valid answer always fits, and any 5xx is the server's).
Greedy decoding with a seed per request; prompts vary with the request's number, the system prompts rotate (the
prefix cache keeps changing).

The bench validates every 200 reply itself (jsonschema, ``re.fullmatch``, the tool's parameter schema) and reports:
throughput (output tokens/s from the replies' ``usage``, requests/s) and latency p50/p99 of the first and of the last
window (10 % of the requests), the server's RSS after warm-up and at the end (its ``/metrics``), and the outcomes:
valid, invalid content with status 200, HTTP errors by status, 429/503 with ``Retry-After`` apart, stream error
events by type, transport failures. Targets: last-window throughput >= 0.95x the first's; RSS growth <= 5 %; no
invalid content with 200; no 5xx or stream error other than 429/503 with ``Retry-After``.
"""

from __future__ import annotations

import json
import os
import random
import re
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from structgen_benchmarks.checks import is_valid
from structgen_benchmarks.report import machine, machine_line, markdown_table, percentiles, sse_chunks, versions

__all__ = ["KINDS", "TARGETS", "Settings", "markdown", "run"]

TARGETS = {"throughput_ratio": 0.95, "rss_growth": 0.05}
"""Last-window throughput at least this times the first window's; RSS growth after warm-up at most this."""


@dataclass(frozen=True, slots=True)
class Settings:
    """One soak run."""

    model_path: str
    requests: int = 2000
    clients: int = 8
    n_ctx: int = 16384
    n_threads: int = 0
    kv_unified: bool | None = None     # None: the server's default layout
    window: float = 0.1                # the share of requests in the first and in the last window
    warmup: int = 10                   # untimed requests first (the mix's first pass: compiles, first-use costs)
    seed: int = 0


# ---- the request mix ------------------------------------------------------------------------------------------

_WORD = "^[a-z ]{1,12}$"   # ASCII only: a character is at least one token's worth, so the bound below holds

PERSON = {"type": "object", "additionalProperties": False, "required": ["name", "age", "city"],
          "properties": {"name": {"type": "string", "maxLength": 40}, "age": {"type": "integer", "minimum": 0,
                                                                             "maximum": 130},
                         "city": {"type": "string", "maxLength": 40}}}
NOTES = {"type": "object", "additionalProperties": False, "required": ["title", "notes"],
         "properties": {"title": {"type": "string", "pattern": _WORD},
                        "notes": {"type": "array", "minItems": 1, "maxItems": 4,
                                  "items": {"type": "string", "pattern": _WORD}}}}
LIST8 = {"type": "object", "additionalProperties": False, "required": ["items"],
         "properties": {"items": {"type": "array", "minItems": 8, "maxItems": 8,
                                  "items": {"type": "string", "pattern": _WORD}}}}
LIST8_MAX_TOKENS = 144
"""``{"items":[`` + 8 quoted strings of at most 12 ASCII characters + commas + ``]}`` is 131 bytes at most, and a
token is at least one byte, so a valid answer always fits; a model that writes short tokens comes near the limit."""
INVOICE = {"type": "object", "additionalProperties": False, "required": ["customer", "lines", "total"],
           "properties": {"customer": {"type": "string", "maxLength": 40},
                          "lines": {"type": "array", "minItems": 1, "maxItems": 3,
                                    "items": {"type": "object", "additionalProperties": False,
                                              "required": ["item", "qty"],
                                              "properties": {"item": {"type": "string", "maxLength": 30},
                                                             "qty": {"type": "integer", "minimum": 1,
                                                                     "maximum": 99}}}},
                          "total": {"type": "number", "minimum": 0, "maximum": 100000}}}
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "additionalProperties": False, "required": ["city", "unit"],
                   "properties": {"city": {"type": "string", "maxLength": 40},
                                  "unit": {"enum": ["celsius", "fahrenheit"]}}}}}
ORDER_ID = r"[A-Z]{3}-[0-9]{4}"
DATE = r"20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9])"

_NAMES = ("Alice", "Bob", "Chen", "Dana", "Emil", "Farah", "Goran", "Hana", "Ivan", "Júlia", "Kofi", "Lena")
_CITIES = ("Paris", "Oslo", "Lima", "Rome", "Kyiv", "Cairo", "Zagreb", "Tokyo", "Quito", "Accra")
_SYSTEMS = tuple(f"You are assistant {n} of the {team} team. Answer exactly in the requested format."
                 for n, team in enumerate(("billing", "support", "research", "travel", "logistics", "sales")))
_PARAGRAPH = ("The quarterly report of {name}'s company covers revenue in {city}, the costs of the new warehouse, "
              "hiring plans for the autumn, and the supply problems of the spring, with figures for each month. ")


@dataclass(frozen=True, slots=True)
class Call:
    """One request of the mix: the body to send and how to check a 200 reply."""

    kind: str
    body: dict[str, Any]
    check: Callable[[str | None, list[dict[str, Any]]], bool]


def _json_check(schema: dict[str, Any]) -> Callable[[str | None, list[dict[str, Any]]], bool]:
    return lambda content, calls: not calls and is_valid(content, schema)


def _regex_check(pattern: str) -> Callable[[str | None, list[dict[str, Any]]], bool]:
    return lambda content, calls: not calls and content is not None and re.fullmatch(pattern, content) is not None


def _tool_check(content: str | None, calls: list[dict[str, Any]]) -> bool:
    return bool(calls) and all(c.get("name") == WEATHER["function"]["name"]
                               and is_valid(c.get("arguments"), WEATHER["function"]["parameters"])
                               for c in calls)


def _json_body(schema: dict[str, Any], name: str) -> dict[str, Any]:
    return {"response_format": {"type": "json_schema", "json_schema": {"name": name, "schema": schema,
                                                                       "strict": True}}}


def _person(i: int, rng: random.Random) -> tuple[dict[str, Any], Callable[..., bool]]:
    name, city = rng.choice(_NAMES), rng.choice(_CITIES)
    return ({"messages": [{"role": "user", "content": f"{name} is {18 + i % 70} years old and lives in {city}. "
                           "Extract the person."}], "max_tokens": 96, **_json_body(PERSON, "person")},
            _json_check(PERSON))


def _tool(i: int, rng: random.Random) -> tuple[dict[str, Any], Callable[..., bool]]:
    city = rng.choice(_CITIES)
    return ({"messages": [{"role": "user", "content": f"What is the weather in {city} today? Request {i}."}],
             "tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
             "max_tokens": 96}, _tool_check)


def _regex(pattern: str, ask: str) -> Callable[[int, random.Random], tuple[dict[str, Any], Callable[..., bool]]]:
    def make(i: int, rng: random.Random) -> tuple[dict[str, Any], Callable[..., bool]]:
        return ({"messages": [{"role": "user", "content": f"{ask} (ticket {i}, {rng.choice(_NAMES)})."}],
                 "regex": pattern, "max_tokens": 32}, _regex_check(pattern))
    return make


def _document(i: int, rng: random.Random) -> tuple[dict[str, Any], Callable[..., bool]]:
    # 1 to 60 paragraphs: ~40 to ~2,400 prompt tokens
    text = "".join(_PARAGRAPH.format(name=rng.choice(_NAMES), city=rng.choice(_CITIES))
                   for _ in range(1 + (i * 7) % 60))
    return ({"messages": [{"role": "user", "content": f"{text}\nSummarise this report as a title and notes."}],
             "max_tokens": 160, **_json_body(NOTES, "notes")}, _json_check(NOTES))


def _near_limit(i: int, rng: random.Random) -> tuple[dict[str, Any], Callable[..., bool]]:
    return ({"messages": [{"role": "user", "content": f"List eight things {rng.choice(_NAMES)} could pack for a "
                           f"trip to {rng.choice(_CITIES)} (list {i})."}], "max_tokens": LIST8_MAX_TOKENS,
             **_json_body(LIST8, "packing")}, _json_check(LIST8))


def _invoice(i: int, rng: random.Random) -> tuple[dict[str, Any], Callable[..., bool]]:
    who = rng.choice(_NAMES)
    return ({"messages": [{"role": "user", "content": f"Invoice {i} for {who}: {1 + i % 9} chairs at 40 each and "
                           f"{1 + i % 4} lamps at 25 each. Extract the invoice."}], "max_tokens": 200,
             **_json_body(INVOICE, "invoice")}, _json_check(INVOICE))


KINDS: tuple[tuple[str, bool, Callable[[int, random.Random], tuple[dict[str, Any], Callable[..., bool]]]], ...] = (
    ("json_schema", False, _person),
    ("json_schema", True, _person),
    ("tools", False, _tool),
    ("tools", True, _tool),
    ("regex", False, _regex(ORDER_ID, "Make up an order id")),
    ("regex", True, _regex(DATE, "Give a date in this decade")),
    ("document", False, _document),
    ("near_max_tokens", False, _near_limit),
    ("near_max_tokens", True, _near_limit),
    ("json_schema", True, _invoice),
)
"""(kind, streamed, make): the mix, cycled in this order."""


def calls(count: int, seed: int = 0) -> list[Call]:
    """The first ``count`` requests of the mix (deterministic for ``seed``)."""
    out = []
    for i in range(count):
        kind, streamed, make = KINDS[i % len(KINDS)]
        rng = random.Random(seed * 1_000_003 + i)
        body, check = make(i, rng)
        body["messages"] = [{"role": "system", "content": _SYSTEMS[(i // len(KINDS)) % len(_SYSTEMS)]},
                            *body["messages"]]
        body.update({"model": "soak", "temperature": 0.0, "seed": seed + i, "stream": streamed})
        if streamed:
            body["stream_options"] = {"include_usage": True}
        out.append(Call(kind, body, check))
    return out


# ---- one request over HTTP ------------------------------------------------------------------------------------

def send(url: str, call: Call) -> dict[str, Any]:
    """POST ``call`` to ``url``/chat/completions; its outcome: ``status`` (an HTTP status, or "transport"),
    ``valid``, ``retry_after``, ``error`` (a stream's error type), ``tokens``, ``start`` and ``end`` times."""
    data = json.dumps(call.body).encode()
    request = urllib.request.Request(f"{url}/chat/completions", data=data,
                                     headers={"Content-Type": "application/json"})
    out: dict[str, Any] = {"kind": call.kind, "status": None, "valid": False, "retry_after": False, "error": None,
                           "tokens": 0, "start": time.perf_counter()}
    try:
        with urllib.request.urlopen(request, timeout=900) as resp:
            out["status"] = resp.status
            content, tool_calls, usage, error = (_read_stream(resp) if call.body["stream"] else
                                                 _read_body(json.loads(resp.read())))
        out["error"] = error
        out["tokens"] = int((usage or {}).get("completion_tokens") or 0)
        out["valid"] = error is None and call.check(content, tool_calls)
    except urllib.error.HTTPError as exc:
        out["status"] = exc.code
        out["retry_after"] = exc.headers.get("Retry-After") is not None
        exc.close()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        out["status"] = "transport"
        out["error"] = type(exc).__name__
    out["end"] = time.perf_counter()
    return out


def _read_body(reply: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]], dict[str, Any] | None, None]:
    message = reply["choices"][0]["message"]
    calls = [c["function"] for c in message.get("tool_calls") or []]
    return message.get("content"), calls, reply.get("usage"), None


def _read_stream(resp: Any) -> tuple[str | None, list[dict[str, Any]], dict[str, Any] | None, str | None]:
    parts: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    usage = None
    for chunk in sse_chunks(resp):
        if "error" in chunk:
            return None, [], usage, str(chunk["error"].get("type") or "error")
        usage = chunk.get("usage") or usage
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            parts.append(delta.get("content") or "")
            for tc in delta.get("tool_calls") or []:   # OpenAI's deltas: the name first, then argument fragments
                call = calls.setdefault(tc.get("index", 0), {"name": None, "arguments": ""})
                function = tc.get("function") or {}
                call["name"] = function.get("name") or call["name"]
                call["arguments"] += function.get("arguments") or ""
    return ("".join(parts) if parts else None), [calls[k] for k in sorted(calls)], usage, None


# ---- the run --------------------------------------------------------------------------------------------------

def run(settings: Settings, on_progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Start the server, warm it up, run the mix; the JSON-ready report."""
    mix = calls(settings.requests, settings.seed)
    warm = calls(settings.warmup, settings.seed + 10_000_019)
    with _server(settings) as url:
        with ThreadPoolExecutor(max_workers=settings.clients) as pool:
            list(pool.map(lambda c: send(url, c), warm))   # compiles, first-use costs: untimed
            rss_start = server_rss(url)
            done = [0]
            lock = threading.Lock()

            def one(call: Call) -> dict[str, Any]:
                out = send(url, call)
                with lock:
                    done[0] += 1
                    if on_progress:
                        on_progress(done[0], len(mix))
                return out

            t0 = time.perf_counter()
            results = list(pool.map(one, mix))
            wall = time.perf_counter() - t0
        rss_end = server_rss(url)
    return _report(settings, results, wall, rss_start, rss_end)


@contextmanager
def _server(settings: Settings) -> Iterator[str]:
    from structgen.testing.llama_server import free_port, server_process

    port = free_port()
    cmd = [sys.executable, "-m", "structgen_cli", "serve", "--model", settings.model_path, "--port", str(port),
           "--n-threads", str(settings.n_threads or os.cpu_count() or 1), "--n-ctx", str(settings.n_ctx)]
    if settings.kv_unified is not None:
        cmd.append("--kv-unified" if settings.kv_unified else "--kv-streams")
    with server_process(cmd, f"http://127.0.0.1:{port}/v1", name="structgen serve") as url:
        yield url


def server_rss(url: str) -> float | None:
    """The server's resident memory in MB, from its ``/metrics`` (None if it does not say)."""
    base = url.removesuffix("/v1")
    try:
        with urllib.request.urlopen(f"{base}/metrics", timeout=30) as resp:
            text = resp.read().decode()
    except (urllib.error.URLError, OSError):
        return None
    found = re.search(r"^process_resident_memory_bytes ([0-9.e+]+)$", text, re.M)
    return round(float(found.group(1)) / 1e6, 1) if found else None


def _window(results: list[dict[str, Any]]) -> dict[str, Any]:
    span = max(r["end"] for r in results) - min(r["start"] for r in results)
    return {"requests": len(results), "tok_s": round(sum(r["tokens"] for r in results) / span, 2),
            "req_s": round(len(results) / span, 3),
            "latency_ms": percentiles([(r["end"] - r["start"]) * 1000 for r in results], {"p50": 50, "p99": 99})}


def _window_size(settings: Settings) -> int:
    """10 % of the requests, rounded down to whole passes of the mix (at least one), so both windows hold the same
    requests kinds."""
    size = int(settings.requests * settings.window)
    return max(len(KINDS), size - size % len(KINDS)) if settings.requests >= 2 * len(KINDS) else \
        max(1, settings.requests // 2)


def outcomes(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Valid, invalid with 200, HTTP errors by status (429/503 with Retry-After apart), stream errors, transport."""
    ok = [r for r in results if r["status"] == 200]
    http = [r for r in results if isinstance(r["status"], int) and r["status"] != 200]
    told = [r for r in http if r["status"] in (429, 503) and r["retry_after"]]
    told_ids = {id(r) for r in told}
    return {
        "valid": sum(r["valid"] for r in ok),
        "invalid_200": sum(not r["valid"] and r["error"] is None for r in ok),
        "stream_errors": dict(Counter(r["error"] for r in ok if r["error"] is not None)),
        "http_errors": dict(Counter(str(r["status"]) for r in http if id(r) not in told_ids)),
        "retry_after": len(told),
        "transport": sum(r["status"] == "transport" for r in results),
        "by_kind": {k: dict(Counter("valid" if r["valid"] else str(r["status"]) for r in results
                                    if r["kind"] == k)) for k in sorted({r["kind"] for r in results})},
    }


def _report(settings: Settings, results: list[dict[str, Any]], wall: float, rss_start: float | None,
            rss_end: float | None) -> dict[str, Any]:
    size = _window_size(settings)
    first, last = _window(results[:size]), _window(results[-size:])
    counts = outcomes(results)
    ratio = round(last["tok_s"] / first["tok_s"], 3) if first["tok_s"] else None
    growth = round(rss_end / rss_start - 1, 4) if rss_start and rss_end else None
    server_errors = (sum(n for code, n in counts["http_errors"].items() if code.startswith("5"))
                     + sum(counts["stream_errors"].values()) + counts["transport"])
    targets = {
        "throughput_ratio": {"value": ratio, "target": f">= {TARGETS['throughput_ratio']}",
                             "met": ratio is not None and ratio >= TARGETS["throughput_ratio"]},
        "rss_growth": {"value": growth, "target": f"<= {TARGETS['rss_growth']}",
                       "met": growth is not None and growth <= TARGETS["rss_growth"]},
        "invalid_200": {"value": counts["invalid_200"], "target": "0", "met": counts["invalid_200"] == 0},
        "server_errors": {"value": server_errors, "target": "0 (5xx, stream errors, transport; 429/503 with "
                          "Retry-After apart)", "met": server_errors == 0},
    }
    return {
        "bench": "soak",
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "versions": versions(("structgen", "llama-cpp-python", "llguidance")),
        "settings": {"model": os.path.basename(settings.model_path), "requests": settings.requests,
                     "clients": settings.clients, "n_ctx": settings.n_ctx,
                     "kv": {None: "default", True: "unified", False: "streams"}[settings.kv_unified],
                     "n_threads": settings.n_threads or os.cpu_count(), "window": size, "seed": settings.seed,
                     "warmup": settings.warmup},
        "wall_s": round(wall, 1),
        "tok_s": round(sum(r["tokens"] for r in results) / wall, 2),
        "first": first,
        "last": last,
        "rss_mb": {"start": rss_start, "end": rss_end, "growth": growth},
        "outcomes": counts,
        "targets": targets,
        "met": all(t["met"] for t in targets.values()),
    }


def markdown(report: dict[str, Any]) -> str:
    """The two windows, memory, outcomes and the verdict on each target."""
    s = report["settings"]
    rows = [(name, w["requests"], w["tok_s"], w["req_s"], w["latency_ms"]["p50"], w["latency_ms"]["p99"])
            for name, w in (("first", report["first"]), ("last", report["last"]))]
    o = report["outcomes"]
    errors = ", ".join(f"{k}: {v}" for k, v in {**o["http_errors"], **o["stream_errors"]}.items()) or "none"
    verdicts = [(name, t["value"], t["target"], "met" if t["met"] else "NOT met")
                for name, t in report["targets"].items()]
    return "\n".join([
        f"soak bench, {report['date']}, {machine_line(report['machine'])}, {s['model']}, {s['requests']} requests, "
        f"{s['clients']} clients, n_ctx {s['n_ctx']}, KV {s['kv']}, {report['wall_s']} s ({report['tok_s']} tok/s)",
        "",
        markdown_table(["window", "requests", "tok/s", "req/s", "latency p50 ms", "latency p99 ms"], rows),
        "",
        f"server RSS: {report['rss_mb']['start']} MB after warm-up, {report['rss_mb']['end']} MB at the end",
        f"outcomes: {o['valid']} valid, {o['invalid_200']} invalid with 200, errors {errors}, "
        f"{o['retry_after']} 429/503 with Retry-After, {o['transport']} transport failures",
        "",
        markdown_table(["target", "value", "wanted", "verdict"], verdicts),
    ])
