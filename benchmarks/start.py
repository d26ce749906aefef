"""``structgen bench start``: how fast a fresh process gets its first answer.

Each run is a new Python process that does what a CLI call or a server start does: ``import structgen``, load
the model (``LlamaCpp``), and ask for one short constrained answer (a choice). The parent times the whole
process; the child reports its three stages. Runs alternate with nothing else, so the median is the figure
(a shared machine's noise shows in the p90).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from structgen_benchmarks.report import machine, machine_line, markdown_table, percentiles, versions

__all__ = ["CHILD", "markdown", "run"]

CHILD = """
import json, sys, time
t0 = time.perf_counter()
import structgen
t1 = time.perf_counter()
model = structgen.LlamaCpp(sys.argv[1])
t2 = time.perf_counter()
r = structgen.generate("Is the sky blue? Answer yes or no.", structgen.Choice(["yes", "no"]), model=model)
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "first_answer_s": t3 - t2, "in_process_s": t3 - t0,
                  "compile_ms": r.timings.compile_ms, "prompt_ms": r.timings.prompt_ms, "value": r.value}))
model.close()
"""

STAGES = ("import_s", "load_s", "first_answer_s", "in_process_s", "process_s")
TARGET_S = 1.0


def run(model_path: str, runs: int = 10, on_run: Callable[[int], None] | None = None) -> dict[str, Any]:
    """``runs`` fresh processes; per-stage samples and their median and p90."""
    samples: list[dict[str, Any]] = []
    for i in range(runs):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", CHILD, model_path], capture_output=True, text=True,
                             timeout=300, check=False)
        wall = time.perf_counter() - t0
        if out.returncode != 0:
            raise RuntimeError(f"run {i} failed (exit {out.returncode}): {out.stderr.strip()[-500:]}")
        sample = json.loads(out.stdout.strip().splitlines()[-1])
        sample["process_s"] = wall
        samples.append(sample)
        if on_run:
            on_run(i + 1)
    stats = {k: percentiles([s[k] for s in samples], {"p50": 50, "p90": 90}) for k in STAGES}
    return {
        "bench": "start",
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "versions": versions(("structgen", "llama-cpp-python", "llguidance")),
        "settings": {"model": model_path, "runs": runs},
        "stages": stats,
        "target_s": TARGET_S,
        "met": (stats["in_process_s"]["p50"] or 1e9) <= TARGET_S,
        "samples": samples,
    }


def markdown(report: dict[str, Any]) -> str:
    """The stage table, then the verdict against the target."""
    rows = [(k.removesuffix("_s").replace("_", " "), report["stages"][k]["p50"], report["stages"][k]["p90"])
            for k in STAGES]
    head = f"start bench, {report['date']}, {machine_line(report['machine'])}, {report['settings']['runs']} runs"
    table = markdown_table(["stage", "p50 s", "p90 s"], rows)
    verdict = (f"import + load + first short answer (in process), p50 {report['stages']['in_process_s']['p50']} s "
               f"(target ≤ {report['target_s']} s: {'met' if report['met'] else 'NOT met'})")
    return f"{head}\n\n{table}\n\n{verdict}\n"
