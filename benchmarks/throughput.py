"""``structgen bench throughput``: tokens per second, structgen against its peers, same model, same prompts,
same run.

Configurations (``CONFIGS``):
- ``structgen``: ``structgen.generate(..., model=LlamaCpp(...))`` unconstrained (``schema=None``), constrained
  without fast-forward, and constrained with fast-forward (forced tokens decoded as one batch), each with the
  engine's default drafts (``LlamaCpp(speculate=...)``), and constrained with fast-forward and no drafts;
- ``llama-cpp-python``: ``Llama.create_chat_completion`` plain, and with ``LlamaGrammar.from_json_schema``;
- ``outlines``: ``outlines.Generator(outlines.from_llamacpp(Llama(...)), outlines.json_schema(schema))``
  (numba must be installed: without it outlines 1.3.3 silently generates unconstrained).

Every configuration gets the same chat messages (the schema is written into the prompt for all of them),
greedy decoding and the same ``max_tokens``; there is no "ignore EOS", so each reports how many tokens it
actually generated. Each configuration runs in its own worker process (a peer that crashes costs only its
own input, counted as failing), is warmed up with one untimed pass, then ``reps`` timed passes over every
prompt, interleaved across configurations so that load changes on a shared machine hit all of them alike.

Clocks: structgen's rate is ``generated_tokens / decode_ms`` from ``Result.timings`` (the decode loop's own
clock, from the first sample to the end) and its TTFT is the rest of the call's wall time (prefill, setup,
post-validation). A peer's TTFT is the wall time of the same call with ``max_tokens=1``; its rate is
``(completion tokens - 1) / (wall - TTFT)``. ``wall_tok_s`` (tokens / whole-call wall time) is the same
clock for everyone. Compilation is excluded from the timed passes for every configuration (grammars and
outlines generators are built once per prompt during setup; structgen caches compiled schemas).
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from structgen_benchmarks.checks import is_valid

from ._worker import Worker
from .prompts import EXTRACTIONS, Extraction
from .report import INSTALL_HINT, MissingBenchDependency, machine, machine_line, markdown_table, pyplot, versions

OURS_UNCONSTRAINED = "structgen unconstrained"
OURS_CONSTRAINED = "structgen constrained"
OURS_FF = "structgen constrained+ff"
OURS_FF_NO_DRAFTS = "structgen constrained+ff, no drafts"
LCP_PLAIN = "llama-cpp-python"
LCP_GRAMMAR = "llama-cpp-python LlamaGrammar"
OUTLINES = "outlines"
CONFIGS: tuple[str, ...] = (OURS_UNCONSTRAINED, OURS_CONSTRAINED, OURS_FF, OURS_FF_NO_DRAFTS, LCP_PLAIN,
                            LCP_GRAMMAR, OUTLINES)
CONSTRAINED = frozenset({OURS_CONSTRAINED, OURS_FF, OURS_FF_NO_DRAFTS, LCP_GRAMMAR, OUTLINES})

# (constrained+ff ÷ unconstrained, ÷ LlamaGrammar, ÷ outlines) from the issue, per setting.
TARGETS: dict[str, dict[str, float]] = {
    "smollm2-cpu": {"ff_vs_unconstrained": 1.15, "vs_llamagrammar": 2.0, "vs_outlines": 1.3},
    "gemma-cpu": {"ff_vs_unconstrained": 1.0, "vs_llamagrammar": 2.5},
    "gpu": {"ff_vs_unconstrained": 1.0, "vs_llamagrammar": 8.0, "vs_outlines": 2.0},
}


@dataclass(frozen=True, slots=True)
class Settings:
    """What every configuration shares."""

    model_path: str
    n_gpu_layers: int = 0
    n_threads: int = 0          # 0: all cores, as structgen's default
    n_ctx: int = 2048
    max_tokens: int = 256
    flash_attn: bool | None = None   # structgen's LlamaCpp(flash_attn=...); the peers keep Llama's own default (off)


# ---- worker side ------------------------------------------------------------------------------------

@dataclass(eq=False)
class _State:
    config: str
    settings: Settings
    prompts: list[Extraction]
    call: Callable[[int, int], dict[str, Any]]
    extra: dict[str, Any] = field(default_factory=dict)


def _threads(settings: Settings) -> int:
    return settings.n_threads or max(1, os.cpu_count() or 1)


def _messages(p: Extraction) -> list[dict[str, str]]:
    return [{"role": "user", "content": p.prompt()}]


def _setup(config: str, settings: Settings, prompts: list[Extraction]) -> _State:
    if config.startswith("structgen"):
        return _setup_ours(config, settings, prompts)
    return _setup_peer(config, settings, prompts)


def _setup_ours(config: str, settings: Settings, prompts: list[Extraction]) -> _State:
    import structgen

    model = structgen.LlamaCpp(settings.model_path, n_gpu_layers=settings.n_gpu_layers, n_ctx=settings.n_ctx,
                               n_threads=_threads(settings), flash_attn=settings.flash_attn,
                               speculate=0 if config == OURS_FF_NO_DRAFTS else None)

    def call(index: int, max_tokens: int) -> dict[str, Any]:
        p = prompts[index]
        schema = None if config == OURS_UNCONSTRAINED else p.schema
        t0 = time.perf_counter()
        try:
            r = structgen.generate(p.prompt(), schema, model=model, temperature=0.0, max_tokens=max_tokens,
                                   fast_forward=config in (OURS_FF, OURS_FF_NO_DRAFTS), schema_in_prompt=False,
                                   max_attempts=1, seed=0)
        except structgen.StructgenError as exc:
            return {"error": f"{type(exc).__name__}: {exc}", "wall_ms": (time.perf_counter() - t0) * 1000}
        wall = (time.perf_counter() - t0) * 1000
        t = r.timings
        return {"text": r.text, "tokens": t.generated_tokens, "forced": t.forced_tokens, "wall_ms": wall,
                "decode_ms": t.decode_ms, "ttft_ms": wall - t.decode_ms}

    return _State(config, settings, prompts, call)


def _setup_peer(config: str, settings: Settings, prompts: list[Extraction]) -> _State:
    import llama_cpp

    threads = _threads(settings)
    llm: Any = llama_cpp.Llama(settings.model_path, n_gpu_layers=settings.n_gpu_layers, n_ctx=settings.n_ctx,
                          n_threads=threads, n_threads_batch=threads, n_batch=512, verbose=False)
    if config == OUTLINES:
        import outlines

        model = outlines.from_llamacpp(llm)
        generators = [outlines.Generator(model, outlines.json_schema(p.schema)) for p in prompts]

        def run(index: int, max_tokens: int) -> tuple[str, int]:
            text = str(generators[index](prompts[index].prompt(), max_tokens=max_tokens, temperature=0.0))
            # outlines returns only the text: count its tokens with the same tokenizer.
            return text, len(llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))
    else:
        grammars: list[Any] = [None] * len(prompts)
        if config == LCP_GRAMMAR:
            from llama_cpp.llama_grammar import LlamaGrammar

            grammars = [LlamaGrammar.from_json_schema(json.dumps(p.schema), verbose=False) for p in prompts]

        def run(index: int, max_tokens: int) -> tuple[str, int]:
            llm.reset()   # no prompt-prefix reuse between calls: every call pays its prefill, as structgen's does
            out: Any = llm.create_chat_completion(_messages(prompts[index]), max_tokens=max_tokens, temperature=0.0,
                                                  grammar=grammars[index])
            return str(out["choices"][0]["message"]["content"] or ""), int(out["usage"]["completion_tokens"])

    def call(index: int, max_tokens: int) -> dict[str, Any]:
        t0 = time.perf_counter()
        run(index, 1)
        ttft = (time.perf_counter() - t0) * 1000
        t1 = time.perf_counter()
        text, tokens = run(index, max_tokens)
        wall = (time.perf_counter() - t1) * 1000
        return {"text": text, "tokens": tokens, "wall_ms": wall, "decode_ms": max(wall - ttft, 1e-6),
                "ttft_ms": ttft, "decode_tokens": max(tokens - 1, 0)}

    return _State(config, settings, prompts, call)


def _handle(state: _State, job: tuple[int, int]) -> dict[str, Any]:
    index, max_tokens = job
    return state.call(index, max_tokens)


# ---- parent side ------------------------------------------------------------------------------------

@dataclass(eq=False)
class _Config:
    name: str
    worker: Worker
    reps: list[dict[str, float]] = field(default_factory=list)
    calls: int = 0            # timed calls
    completed: int = 0        # of calls: returned text (valid or not)
    valid: int = 0            # of completed: parses and validates against the prompt's schema
    failed: int = 0           # of calls: crashed, timed out, raised, or (constrained configs) invalid output
    tokens: int = 0
    forced: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)


def check_configs(configs: Sequence[str]) -> list[str]:
    """The requested configurations, checked; the optional peers' packages must be installed."""
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        from structgen.errors import InvalidArgument

        raise InvalidArgument(f"unknown configuration(s) {unknown}; choose from {list(CONFIGS)}")
    if OUTLINES in configs:
        for module in ("outlines", "numba"):
            if importlib.util.find_spec(module) is None:
                raise MissingBenchDependency(f"the outlines configuration needs {module} ({INSTALL_HINT}); "
                                             "or leave it out with --configs")
    return list(configs)


def run(settings: Settings, *, configs: Sequence[str] = CONFIGS, reps: int = 3, warmup: int = 1,
        limit: int | None = None, timeout: float = 600.0,
        on_step: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Warm up every configuration (``warmup`` untimed passes), then time ``reps`` interleaved passes."""
    from structgen.errors import InvalidArgument

    if reps < 1 or warmup < 0:
        raise InvalidArgument("--reps must be at least 1 and --warmup at least 0")
    configs = check_configs(configs)
    prompts = list(EXTRACTIONS[:limit] if limit else EXTRACTIONS)
    states = [_Config(c, Worker(_setup, (c, settings, prompts), _handle)) for c in configs]
    started = time.perf_counter()
    try:
        for rep in range(-warmup, reps):   # negative reps: untimed warm-up passes
            for cfg in states:
                _pass(cfg, prompts, settings, timeout, timed=rep >= 0)
                if on_step is not None:
                    on_step(cfg.name)
    finally:
        for cfg in states:
            cfg.worker.close()
    rows = [_row(cfg, len(prompts)) for cfg in states]
    return {
        "bench": "throughput",
        "model": settings.model_path,
        "n_gpu_layers": settings.n_gpu_layers,
        "n_threads": _threads(settings),
        "n_ctx": settings.n_ctx,
        "max_tokens": settings.max_tokens,
        "structgen_flash_attn": settings.flash_attn,
        "sampling": "greedy (temperature 0)",
        "prompts": [p.name for p in prompts],
        "reps": reps,
        "warmup": warmup,
        "elapsed_s": round(time.perf_counter() - started, 1),
        "clock": "structgen: generated_tokens / Result.timings.decode_ms; peers: (tokens - 1) / (wall - ttft), "
                 "ttft = wall time of the same call with max_tokens=1",
        "machine": machine(),
        "versions": versions(),
        "configs": rows,
        "ratios": _ratios(rows, settings),
    }


def _pass(cfg: _Config, prompts: list[Extraction], settings: Settings, timeout: float, *, timed: bool) -> None:
    tokens = decode_tokens = ok = 0
    decode_ms = wall_ms = ttft_ms = 0.0
    for i, p in enumerate(prompts):
        out = cfg.worker.call((i, settings.max_tokens), timeout)
        error = out.message if out.status != "ok" else str(out.value.get("error") or "")
        if not timed:
            if error:
                cfg.failures.append({"prompt": p.name, "pass": "warm-up", "status": out.status, "error": error[:300]})
            continue
        cfg.calls += 1
        if error:
            cfg.failed += 1
            cfg.failures.append({"prompt": p.name, "status": out.status, "error": error[:300]})
            continue
        v = out.value
        cfg.completed += 1
        ok += 1
        tokens += v["tokens"]
        decode_tokens += v.get("decode_tokens", v["tokens"])
        decode_ms += v["decode_ms"]
        wall_ms += v["wall_ms"]
        ttft_ms += v["ttft_ms"]
        cfg.tokens += v["tokens"]
        cfg.forced += v.get("forced", 0)
        if is_valid(v["text"], p.schema):
            cfg.valid += 1
        elif cfg.name in CONSTRAINED:
            cfg.failed += 1
            cfg.failures.append({"prompt": p.name, "status": "invalid", "error": f"invalid output {v['text'][:200]!r}"})
    if timed and ok:
        cfg.reps.append({"tok_s": decode_tokens / (decode_ms / 1000) if decode_ms else 0.0,
                         "wall_tok_s": tokens / (wall_ms / 1000) if wall_ms else 0.0,
                         "ttft_ms": ttft_ms / ok})


def _row(cfg: _Config, n_prompts: int) -> dict[str, Any]:
    def stat(key: str) -> tuple[float | None, float | None, float | None]:
        values = [r[key] for r in cfg.reps]
        if not values:
            return None, None, None
        return round(statistics.median(values), 2), round(min(values), 2), round(max(values), 2)

    tok_s, tok_min, tok_max = stat("tok_s")
    wall, _, _ = stat("wall_tok_s")
    ttft, ttft_min, ttft_max = stat("ttft_ms")
    return {
        "name": cfg.name,
        "tok_s": tok_s,
        "tok_s_min": tok_min,
        "tok_s_max": tok_max,
        "ms_per_token": round(1000 / tok_s, 3) if tok_s else None,
        "ttft_ms": ttft,
        "ttft_ms_min": ttft_min,
        "ttft_ms_max": ttft_max,
        "wall_tok_s": wall,
        "reps": len(cfg.reps),
        "prompts": n_prompts,
        "calls": cfg.calls,
        "valid": cfg.valid,
        "failed": cfg.failed,
        "mean_tokens": round(cfg.tokens / cfg.completed, 1) if cfg.completed else None,
        "forced_share": round(cfg.forced / cfg.tokens, 3) if cfg.tokens and cfg.name.startswith("structgen") else None,
        "failures": cfg.failures,
    }


def _ratios(rows: list[dict[str, Any]], settings: Settings) -> dict[str, Any]:
    rate = {r["name"]: r["tok_s"] for r in rows}

    def ratio(a: str, b: str) -> float | None:
        x, y = rate.get(a), rate.get(b)
        return round(x / y, 3) if x and y else None

    ratios: dict[str, Any] = {
        "ff_vs_unconstrained": ratio(OURS_FF, OURS_UNCONSTRAINED),
        "constrained_vs_unconstrained": ratio(OURS_CONSTRAINED, OURS_UNCONSTRAINED),
        "vs_llamagrammar": ratio(OURS_FF, LCP_GRAMMAR),
        "vs_outlines": ratio(OURS_FF, OUTLINES),
        "vs_llama_cpp_python_plain": ratio(OURS_FF, LCP_PLAIN),
        "drafts_vs_no_drafts": ratio(OURS_FF, OURS_FF_NO_DRAFTS),
    }
    setting = ("gpu" if settings.n_gpu_layers != 0 else
               "gemma-cpu" if "gemma" in os.path.basename(settings.model_path).lower() else
               "smollm2-cpu" if "smollm2" in os.path.basename(settings.model_path).lower() else None)
    ratios["target_setting"] = setting
    if setting is not None:
        ratios["targets"] = {k: {"target": v, "met": ratios[k] is not None and ratios[k] >= v}
                             for k, v in TARGETS[setting].items()}
    return ratios


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: one row per configuration, then the ratios."""
    headers = ["config", "tok/s (median)", "min", "max", "ms/token", "TTFT ms", "wall tok/s", "mean tokens",
               "valid", "failed", "reps"]
    rows = [[r["name"], r["tok_s"], r["tok_s_min"], r["tok_s_max"], r["ms_per_token"], r["ttft_ms"], r["wall_tok_s"],
             r["mean_tokens"], f"{r['valid']}/{r['calls']}", r["failed"], r["reps"]]
            for r in report["configs"]]
    ratios = report["ratios"]
    lines = [
        f"Throughput: {os.path.basename(report['model'])}, n_gpu_layers={report['n_gpu_layers']}, "
        f"{report['n_threads']} threads, greedy, max_tokens={report['max_tokens']}, {len(report['prompts'])} "
        f"extraction prompts × {report['reps']} reps (+{report['warmup']} warm-up), structgen flash attention "
        f"{_flash_attn_words(report.get('structgen_flash_attn'))}",
        f"Machine: {machine_line(report['machine'])}",
        "",
        markdown_table(headers, rows),
        "",
        f"structgen constrained+ff ÷ unconstrained {ratios['ff_vs_unconstrained']}, "
        f"÷ LlamaGrammar {ratios['vs_llamagrammar']}, ÷ outlines {ratios['vs_outlines']}, "
        f"÷ itself without drafts {ratios['drafts_vs_no_drafts']}",
    ]
    if "targets" in ratios:
        lines.append(f"Targets ({ratios['target_setting']}): " + ", ".join(
            f"{k} ≥ {v['target']}: {'yes' if v['met'] else 'NO'}" for k, v in ratios["targets"].items()))
    return "\n".join(lines)


def _flash_attn_words(value: bool | None) -> str:
    return ("default (off with a KV stream per sequence on CPU, on with a shared cache)" if value is None
            else "on" if value else "off")


def plot(report: dict[str, Any], path: Any) -> None:
    """Bars of median tok/s per configuration, min–max as error bars."""
    plt = pyplot()
    rows = [r for r in report["configs"] if r["tok_s"] is not None]
    fig, ax = plt.subplots(figsize=(9, 4))
    names = [r["name"] for r in rows]
    med = [r["tok_s"] for r in rows]
    err = [[m - r["tok_s_min"] for m, r in zip(med, rows, strict=True)],
           [r["tok_s_max"] - m for m, r in zip(med, rows, strict=True)]]
    colors = ["tab:blue" if n.startswith("structgen") else "tab:gray" for n in names]
    ax.barh(names, med, xerr=err, color=colors)
    ax.invert_yaxis()
    ax.set_xlabel("tokens / s (median of reps; bars: min–max)")
    ax.set_title(f"{os.path.basename(report['model'])}, n_gpu_layers={report['n_gpu_layers']} — "
                 f"{machine_line(report['machine'])}", fontsize=9)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
