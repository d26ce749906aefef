"""What batch invariance costs, and what the default mode gives: ``python -m benchmarks.determinism_bench``.

Sections (all on one model file, in one process, default ``LlamaCpp`` vs ``LlamaCpp(deterministic=True)``):

- ``throughput``: generated tok/s and per-request latency for k different prompts served together
  (``generate_batch``; k = 1 is a lone request), greedy free text of ``--max-tokens`` tokens.
- ``best_of``: wall time of best-of-8 (one prompt decode, 8 sequences) against one sample, same prompt
  and schema, temperature 1.
- ``invariance``: the coin-flip experiment (``structgen.determinism``): distinct logprob vectors and
  P(first token) values alone and batched with other prompts.
- ``threads``: one long request (its KV past 512 cells) alone on contexts with different thread counts.

Prints Markdown tables; ``--json FILE`` writes everything. Figures depend on the machine and its load
(the load average is recorded).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import llama_cpp  # isort: skip  (before numpy: see structgen/__init__.py)

import structgen
from structgen import Choice, generate, generate_batch
from structgen.analysis.determinism import OTHER_PROMPTS, run_experiment

INVOICE = {"type": "object", "additionalProperties": False, "required": ["vendor", "total", "items"],
           "properties": {"vendor": {"type": "string", "maxLength": 30}, "total": {"type": "number"},
                          "items": {"type": "array", "maxItems": 3, "items": {"type": "string", "maxLength": 20}}}}
INVOICE_PROMPT = "Extract the invoice: ACME Tools, 2 hammers and a screwdriver set, total 49.00."
LONG_PROMPT = "Summarise this text in one sentence.\n\n" + " ".join(OTHER_PROMPTS * 6)


def _models(args: argparse.Namespace) -> dict[str, structgen.LlamaCpp]:
    common: dict[str, Any] = {"n_gpu_layers": args.n_gpu_layers, "n_threads": args.n_threads}
    return {"default": structgen.LlamaCpp(args.model, n_ctx=4096, **common),
            "deterministic": structgen.LlamaCpp(args.model, n_ctx=2048, deterministic=True, **common)}


def throughput(models: dict[str, structgen.LlamaCpp], sizes: Sequence[int], reps: int,
               max_tokens: int) -> list[dict[str, Any]]:
    """tok/s and latency of k prompts served together, per mode."""
    rows = []
    for label, model in models.items():
        generate(OTHER_PROMPTS[0], model=model, max_tokens=8)  # warm-up
        for k in sizes:
            tokens, walls = 0, []
            for rep in range(reps):
                prompts = [OTHER_PROMPTS[(rep * k + j) % len(OTHER_PROMPTS)] for j in range(k)]
                t0 = time.perf_counter()
                results = generate_batch(prompts, model=model, seed=rep, max_tokens=max_tokens)
                walls.append(time.perf_counter() - t0)
                tokens += sum(len(r.tokens) for r in results)
            rows.append({"mode": label, "batch": k, "tok_s": tokens / sum(walls),
                         "latency_s": statistics.median(walls), "tokens": tokens})
    return rows


def best_of(models: dict[str, structgen.LlamaCpp], reps: int, n: int = 8) -> list[dict[str, Any]]:
    """Median wall time of best-of-n against one sample, per mode."""
    rows = []
    for label, model in models.items():
        kwargs: dict[str, Any] = {"model": model, "temperature": 1.0, "max_tokens": 120}
        generate(INVOICE_PROMPT, INVOICE, seed=0, **kwargs)  # warm-up (compiles the schema)
        one, many, tok_one, tok_many = [], [], 0, 0
        for rep in range(reps):
            t0 = time.perf_counter()
            r1 = generate(INVOICE_PROMPT, INVOICE, seed=rep, **kwargs)
            one.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            rn = generate(INVOICE_PROMPT, INVOICE, seed=rep, strategy="best_of", n=n, **kwargs)
            many.append(time.perf_counter() - t0)
            tok_one += r1.timings.generated_tokens
            tok_many += rn.timings.generated_tokens
        single, several = statistics.median(one), statistics.median(many)
        rows.append({"mode": label, "n": n, "single_s": single, f"best_of_{n}_s": several, "ratio": several / single,
                     "tokens_single": tok_one / reps, "tokens_best_of": tok_many / reps})
    return rows


def invariance(models: dict[str, structgen.LlamaCpp], runs: int, sizes: Sequence[int]) -> dict[str, Any]:
    """The coin-flip experiment on both modes."""
    report = run_experiment("Flip a coin.", Choice(["heads", "tails"]), models=models, runs=runs, batch_sizes=sizes,
                            temperature=0.0, seed=42, max_tokens=8)
    return {"markdown": report.to_markdown(), "report": report.to_dict()}


def threads(args: argparse.Namespace, counts: Sequence[int]) -> list[dict[str, Any]]:
    """One long greedy request alone on contexts with different thread counts, per mode."""
    rows = []
    for deterministic in (False, True):
        vectors: dict[int, tuple[float, ...]] = {}
        for n in counts:
            model = structgen.LlamaCpp(args.model, n_ctx=2048, n_threads=n, deterministic=deterministic,
                                       n_gpu_layers=args.n_gpu_layers, n_seq_max=1)
            r = generate(LONG_PROMPT, model=model, max_tokens=24, seed=0)
            vectors[n] = tuple(r.logprobs)
            model.close()
        ref = vectors[counts[0]]
        rows.append({"mode": "deterministic" if deterministic else "default", "prompt_tokens": r.timings.prompt_tokens,
                     "distinct_vectors": len(set(vectors.values())),
                     "max_abs_diff_vs_first": {n: max((abs(a - b) for a, b in zip(v, ref, strict=False)), default=0.0)
                                               for n, v in vectors.items()}})
    return rows


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    keys = list(rows[0])
    fmt = [lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)] * len(keys)
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(f(r[k]) for f, k in zip(fmt, keys, strict=True)) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sections asked for; print Markdown, optionally write JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="GGUF path (default: the bundled SmolLM2-135M)")
    p.add_argument("--n-gpu-layers", type=int, default=0)
    p.add_argument("--n-threads", type=int, default=None)
    p.add_argument("--reps", type=int, default=5, help="repetitions per timing")
    p.add_argument("--max-tokens", type=int, default=48)
    p.add_argument("--batch", default="1,4,8")
    p.add_argument("--runs", type=int, default=20, help="runs per mode of the coin-flip experiment")
    p.add_argument("--threads", default="1,2", help="thread counts for the threads section")
    p.add_argument("--sections", default="throughput,best_of,invariance,threads")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    sizes = [int(x) for x in args.batch.split(",")]
    sections = set(args.sections.split(","))
    models = _models(args)
    out: dict[str, Any] = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                       "loadavg_start": os.getloadavg(), "argv": sys.argv[1:],
                                       "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
                                       "threads": models["default"].n_threads}}
    print(f"model {models['default'].name}, {out['machine']['threads']} threads, n_gpu_layers {args.n_gpu_layers}, "
          f"load {out['machine']['loadavg_start'][0]:.2f}", flush=True)
    if "throughput" in sections:
        out["throughput"] = throughput(models, sizes, args.reps, args.max_tokens)
        print("\n## throughput (greedy free text, k different prompts served together)\n", flush=True)
        print(_table(out["throughput"]), flush=True)
    if "best_of" in sections:
        out["best_of"] = best_of(models, args.reps)
        print("\n## best-of-8 vs one sample (JSON schema, temperature 1)\n", flush=True)
        print(_table(out["best_of"]), flush=True)
    if "invariance" in sections:
        out["invariance"] = invariance(models, args.runs, sizes)
        print("\n## coin flip, alone vs batched\n", flush=True)
        print(out["invariance"]["markdown"], flush=True)
    if "threads" in sections:
        out["threads"] = threads(args, [int(x) for x in args.threads.split(",")])
        print("\n## thread count (one long request alone)\n", flush=True)
        print(_table(out["threads"]), flush=True)
    out["machine"]["loadavg_end"] = os.getloadavg()
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
