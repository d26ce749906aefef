"""``structgen bench concurrency``: many callers on one local model, in-process.

Requests: JSON extraction over 8 schemas, two texts each (``REQUESTS``), greedy, the schema enforced by the
grammar and described in the prompt by structgen's own hint. For each concurrency level N, N caller threads
share one ``LlamaCpp`` and work through all requests (each caller takes the next one when done). Reported per
level: aggregate tokens/s (every token decoded, wall clock), valid replies/s, TTFT and latency p50/p99,
prefix-cache hit tokens, and tokens wasted on attempts that gave no valid value. Latency under load is compared
with the same requests run by one caller (p99 against p99: the requests differ in length).

``--deterministic`` runs it on ``LlamaCpp(deterministic=True)`` (the KV budget split among the sequences, each
with its own stream; no prefix cache). The prefix cache is cleared before each level, so every level starts
cold. A separate pass measures TTFT with a cold cache against a warm shared prefix: each schema's first text
cold (cache cleared before it), then its second text (same template and schema hint, a different text), in
``ttft_rounds`` rounds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from structgen_benchmarks.prompts import EXTRACTIONS, Extraction, _obj, _str
from structgen_benchmarks.report import machine, machine_line, markdown_table, percentiles, versions

__all__ = ["REQUESTS", "Settings", "markdown", "plot", "run"]

_SECOND_TEXTS = {
    "invoice": "Invoice 7781-B from Northwind Paper, 2024-05-02: 10 reams of paper at $4.20 each and 1 stapler at "
               "$8.99; total due $50.99.",
    "contact": "Tom Becker, 35, is a software engineer at Globex in Denver; email tom.becker@globex.com, phone "
               "+1 303 555 0142.",
    "event": "The Lisbon Jazz Night is on 3 August 2024 at 21:00 at Casa da Música. Tickets cost 15 euros; the hall "
             "seats 300.",
    "review": "The K3 kettle boils fast and looks nice, but the lid broke after two weeks and support never "
              "answered. Two stars.",
    "flight": "Booking confirmed: AF 1234 from Paris (CDG) to Rome (FCO) on 9 May 2024, leaving 07:40 and landing "
              "09:50. Seat 14C in business, two bags.",
}

_EXTRA: tuple[tuple[str, tuple[str, str], dict[str, Any]], ...] = (
    ("recipe", ("Pancakes for 4: 200 g flour, 2 eggs, 300 ml milk and a pinch of salt; cook 20 minutes.",
                "Tomato soup serves 2: 6 tomatoes, 1 onion, 500 ml stock; ready in 35 minutes."),
     _obj({"dish": _str(40), "servings": {"type": "integer", "minimum": 1, "maximum": 20},
           "minutes": {"type": "integer", "minimum": 1, "maximum": 600},
           "ingredients": {"type": "array", "maxItems": 6, "items": _str(30)}})),
    ("job", ("Acme Robotics is hiring a senior Python developer in Munich, full time, 70,000 to 85,000 EUR a year.",
             "Part-time barista wanted at Bean There, Leeds; 12 GBP an hour, weekends only.")
     , _obj({"company": _str(40), "role": _str(40), "city": _str(30),
             "employment": {"enum": ["full_time", "part_time", "contract"]},
             "salary_min": {"type": "number"}, "currency": {"enum": ["EUR", "GBP", "USD"]}})),
    ("order", ("Order #5521 shipped on 4 March via DHL, tracking JD014600003, 3 parcels to Hamburg.",
               "Order #8890 left the warehouse on 11 April with UPS, tracking 1Z999AA10123456784, one parcel to "
               "Leeds.")
     , _obj({"order_id": _str(10), "carrier": {"enum": ["DHL", "UPS", "FedEx", "other"]},
             "tracking": _str(24), "parcels": {"type": "integer", "minimum": 1, "maximum": 50},
             "destination": _str(30)})),
)


def _requests() -> tuple[Extraction, ...]:
    pairs = [(e, Extraction(e.name, _SECOND_TEXTS[e.name], e.schema)) for e in EXTRACTIONS]
    pairs += [(Extraction(name, first, schema), Extraction(name, second, schema))
              for name, (first, second), schema in _EXTRA]
    return tuple(e for pair in pairs for e in pair)


REQUESTS = _requests()
"""16 requests: 8 schemas × 2 texts, each schema's two texts side by side."""


def prompt_of(e: Extraction) -> str:
    """The user message: the text; structgen appends its own schema hint."""
    return f"Extract the data from the text below as JSON.\n\nText: {e.text}"


@dataclass(frozen=True, slots=True)
class Settings:
    """One bench run."""

    model_path: str
    concurrency: tuple[int, ...] = (1, 2, 4, 8)
    max_tokens: int = 256
    n_gpu_layers: int = 0
    n_threads: int = 0
    n_ctx: int = 8192
    n_seq_max: int = 16
    prefix_cache: int = 8
    limit: int | None = None
    requests: int | None = None      # per level: the (limited) requests cycled to this count
    deterministic: bool = False
    kv_per_sequence: bool = False    # LlamaCpp(kv_unified=False) outside deterministic mode
    flash_attn: bool | None = None   # LlamaCpp(flash_attn=...): None is its default
    ttft_rounds: int = 2             # one round's p50 over 8 pairs moved by ±0.07 run to run on a shared 2-core host


def run(settings: Settings, on_step: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every concurrency level, then the cold/warm TTFT pass; the JSON-ready report."""
    import structgen

    # One stream per sequence (deterministic mode, --kv-per-sequence) gives every sequence its own n_ctx cells:
    # split the same KV budget among them.
    streams = settings.deterministic or settings.kv_per_sequence
    n_ctx = max(1024, settings.n_ctx // settings.n_seq_max) if streams else settings.n_ctx
    model = structgen.LlamaCpp(settings.model_path, n_gpu_layers=settings.n_gpu_layers, n_ctx=n_ctx,
                               n_threads=settings.n_threads or None, n_seq_max=settings.n_seq_max,
                               prefix_cache=settings.prefix_cache, deterministic=settings.deterministic,
                               kv_unified=not streams, flash_attn=settings.flash_attn)
    chosen = REQUESTS[: settings.limit] if settings.limit else REQUESTS
    requests = [chosen[i % len(chosen)] for i in range(settings.requests)] if settings.requests else chosen
    try:
        _call(model, requests[0], settings)   # load, compile and warm up once, untimed
        levels = []
        for n in settings.concurrency:
            _clear_cache(model)
            levels.append(_level(model, requests, n, settings))
            if on_step:
                on_step(f"concurrency {n}")
        ttft = _cold_vs_warm(model, chosen, settings)
        if on_step:
            on_step("cold vs warm")
    finally:
        model.close()
    base = levels[0]
    ratios = {f"tok_s_{lv['concurrency']}_vs_1": _ratio(lv["tok_s"], base["tok_s"]) for lv in levels}
    last = levels[-1]
    return {
        "bench": "concurrency",
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "versions": versions(("structgen", "llama-cpp-python", "llguidance")),
        "settings": {"model": Path(settings.model_path).name, "max_tokens": settings.max_tokens,
                     "n_ctx": settings.n_ctx, "n_seq_max": settings.n_seq_max,
                     "prefix_cache": 0 if settings.deterministic else settings.prefix_cache,
                     "deterministic": settings.deterministic, "kv_per_sequence": streams,
                     "flash_attn": model.flash_attn,
                     "requests": len(requests), "ttft_rounds": settings.ttft_rounds},
        "levels": levels,
        "cold_vs_warm": ttft,
        "ratios": {
            **ratios,
            "wasted_vs_valid_tokens": _ratio(sum(lv["wasted_tokens"] for lv in levels),
                                             sum(lv["valid_tokens"] for lv in levels)),
            "warm_vs_cold_ttft_p50": _ratio(ttft["warm_ttft_ms_p50"], ttft["cold_ttft_ms_p50"]),
            f"latency_p99_{last['concurrency']}_vs_1": _ratio(last["latency_ms"]["p99"], base["latency_ms"]["p99"]),
        },
    }


def _call(model: Any, e: Extraction, settings: Settings) -> dict[str, Any]:
    import structgen

    t0 = time.perf_counter()
    try:
        r = structgen.generate(prompt_of(e), e.schema, model=model, temperature=0.0, seed=0,
                               max_tokens=settings.max_tokens)
    except structgen.StructgenError as exc:
        attempts = getattr(exc, "attempts", None) or []   # TruncatedOutput carries only its last attempt's tokens
        wasted = sum(a.tokens for a in attempts) or len(getattr(exc, "tokens", None) or [])
        return {"valid": False, "error": type(exc).__name__, "latency_ms": (time.perf_counter() - t0) * 1000,
                "tokens": wasted, "wasted": wasted, "ttft_ms": None, "hit": 0}
    t = r.timings
    return {"valid": True, "latency_ms": (time.perf_counter() - t0) * 1000,
            "tokens": t.generated_tokens + t.wasted_tokens,
            "valid_tokens": len(r.tokens), "wasted": t.wasted_tokens, "ttft_ms": t.first_token_ms,
            "hit": t.prefix_hit_tokens}


def _level(model: Any, requests: Sequence[Extraction], n: int, settings: Settings) -> dict[str, Any]:
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=n) as pool:
        calls = list(pool.map(lambda e: _call(model, e, settings), requests))
    wall = time.perf_counter() - t0
    valid = [c for c in calls if c["valid"]]
    tokens = sum(c["tokens"] for c in calls)
    return {
        "concurrency": n,
        "wall_s": round(wall, 3),
        "valid": len(valid),
        "calls": len(calls),
        "tok_s": round(tokens / wall, 2),
        "valid_per_s": round(len(valid) / wall, 3),
        "ttft_ms": percentiles([c["ttft_ms"] for c in valid], {"p50": 50, "p99": 99}),
        "latency_ms": percentiles([c["latency_ms"] for c in calls], {"p50": 50, "p99": 99}),
        "prefix_hit_tokens": sum(c["hit"] for c in calls),
        "wasted_tokens": sum(c["wasted"] for c in calls),
        "valid_tokens": sum(c.get("valid_tokens", 0) for c in valid),
        "errors": sorted({c["error"] for c in calls if not c["valid"]}),
    }


def _cold_vs_warm(model: Any, requests: Sequence[Extraction], settings: Settings) -> dict[str, Any]:
    by_schema: dict[str, list[Extraction]] = {}
    for e in requests:
        by_schema.setdefault(e.name, []).append(e)
    cold, warm, alone, pairs = [], [], [], []
    for _ in range(settings.ttft_rounds):
        for name, pair in by_schema.items():
            if len(pair) < 2:
                continue
            _clear_cache(model)
            first = _call(model, pair[0], settings)
            second = _call(model, pair[1], settings)
            if first["valid"] and second["valid"]:
                cold.append(first["ttft_ms"])
                warm.append(second["ttft_ms"])
                alone.append(first["latency_ms"])
                pairs.append({"schema": name, "cold_ttft_ms": round(first["ttft_ms"], 2),
                              "warm_ttft_ms": round(second["ttft_ms"], 2), "warm_hit_tokens": second["hit"]})
    return {"pairs": len(cold),
            "cold_ttft_ms_p50": percentiles(cold, {"p50": 50})["p50"],
            "warm_ttft_ms_p50": percentiles(warm, {"p50": 50})["p50"],
            "alone_latency_ms_p50": percentiles(alone, {"p50": 50})["p50"],
            "each": pairs}


def _clear_cache(model: Any) -> None:
    """Empty the prefix cache: an exclusive hold of the context makes the engine start afresh."""
    with model.lock:
        model.clear()


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: one row per concurrency level, then the ratios."""
    rows = [(lv["concurrency"], f"{lv['valid']}/{lv['calls']}", lv["tok_s"], lv["valid_per_s"], lv["ttft_ms"]["p50"],
             lv["ttft_ms"]["p99"], lv["latency_ms"]["p50"], lv["latency_ms"]["p99"], lv["prefix_hit_tokens"],
             lv["wasted_tokens"]) for lv in report["levels"]]
    table = markdown_table(["callers", "valid", "tok/s", "valid/s", "TTFT p50 ms", "TTFT p99 ms", "latency p50 ms",
                            "latency p99 ms", "prefix-hit tokens", "wasted tokens"], rows)
    cw = report["cold_vs_warm"]
    layout = "one KV stream per sequence" if report["settings"].get("kv_per_sequence") else "unified KV cache"
    fa = report["settings"].get("flash_attn")
    layout += ", flash attention " + ("llama.cpp's choice" if fa is None else "on" if fa else "off")
    lines = [f"concurrency bench, {report['date']}, {machine_line(report['machine'])}, "
             f"{report['settings']['model']}, {layout}", "", table, "",
             f"TTFT cold {cw['cold_ttft_ms_p50']} ms vs warm shared prefix {cw['warm_ttft_ms_p50']} ms "
             f"(p50 of {cw['pairs']} schema pairs, {report['settings'].get('ttft_rounds', 1)} round(s))", "",
             "ratios: " + ", ".join(f"{k} {v}" for k, v in report["ratios"].items())]
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    """Aggregate tok/s and valid replies/s against the number of callers."""
    from structgen_benchmarks.report import pyplot

    plt = pyplot()
    levels = report["levels"]
    xs = [lv["concurrency"] for lv in levels]
    fig, left = plt.subplots(figsize=(6, 4))
    left.plot(xs, [lv["tok_s"] for lv in levels], "o-", label="aggregate tok/s")
    left.set_xlabel("concurrent callers")
    left.set_ylabel("tokens / s")
    left.set_ylim(bottom=0)
    right = left.twinx()
    right.plot(xs, [lv["valid_per_s"] for lv in levels], "s--", color="tab:orange", label="valid replies / s")
    right.set_ylabel("valid replies / s")
    right.set_ylim(bottom=0)
    fig.legend(fontsize=8, loc="lower right")
    left.grid(True, alpha=0.3)
    left.set_title(f"structgen concurrency, {report['settings']['model']}, {report['date']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
