"""``bench accuracy``: is the extracted value *right*? Field and record accuracy per decoding mode.

The task set (``tasks/extraction.jsonl``, schemas in ``tasks/extraction_schemas.json``) is short documents of eight
kinds — invoices, contacts, events, bookings, job postings, addresses, reviews, meeting minutes — written for this
project, each with gold values. Every mode gets the same prompt (the instruction and the document) and the same
seed; they differ only in how the value is decoded and chosen:

* ``prompt``: no grammar; the reply is parsed and validated, and re-asked with the error (the hosted chain's
  prompting path, run on the local model);
* ``constrained``: grammar-constrained JSON (greedy);
* ``grounded``: constrained, and every plain string a verbatim span of the document (``source=``);
* ``think-N``: grounded, after up to N tokens of reasoning;
* ``best_of-logprob``, ``best_of-judge``: grounded, ``n`` samples at ``temperature``, kept by average logprob or by
  a judge's P("yes") (``structgen.Judge``, the same model);
* ``self_consistency``: grounded, ``n`` samples, majority vote.

Comparison: strings case- and punctuation-insensitive (whitespace collapsed), numbers by value, booleans exactly,
lists as sets of normalised strings; a typed error makes every field of that document wrong. ``absent`` counts
grounded-mode string values that do not occur in the document (it must be 0).
"""

from __future__ import annotations

import json
import re
import statistics
import time
import unicodedata
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from structgen.compile.grounding import grounded_values
from structgen.compile.source_text import written_at
from structgen.errors import InvalidArgument, StructgenError

from .report import grouped_bars, machine, machine_line, markdown_table, progress, versions

__all__ = ["MODES", "TASKS_DIR", "field_correct", "format_accuracy_markdown", "load_extraction_tasks", "plot",
           "run_accuracy_bench"]

TASKS_DIR = Path(__file__).resolve().parent / "tasks"
MODES = ("prompt", "constrained", "grounded", "think-32", "think-128", "best_of-logprob", "best_of-judge",
         "self_consistency")


def load_extraction_tasks(tasks_dir: Path = TASKS_DIR, limit: int | None = None) -> list[dict[str, Any]]:
    """The documents (``id``, ``kind``, ``text``, ``gold``, and their kind's ``schema``), the first ``limit``."""
    try:
        schemas = json.loads((tasks_dir / "extraction_schemas.json").read_text(encoding="utf-8"))
        lines = (tasks_dir / "extraction.jsonl").read_text(encoding="utf-8").splitlines()
    except (OSError, ValueError) as exc:
        raise InvalidArgument(f"cannot read the extraction tasks in {tasks_dir}: {exc}") from exc
    tasks = [json.loads(line) for line in lines if line.strip()]
    for task in tasks:
        task["schema"] = schemas[task["kind"]]
    return tasks[:limit] if limit is not None else tasks


def prompt_for(task: dict[str, Any]) -> str:
    """The one prompt every mode sends."""
    return f"Extract the {task['kind']} from the text.\n\nText:\n\"\"\"\n{task['text']}\n\"\"\""


def _norm(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(re.sub(r"[^\w\s]", " ", text).split())


def field_correct(predicted: Any, gold: Any) -> bool:
    """Whether one field is right under the comparison rules (module docstring)."""
    if isinstance(gold, bool) or isinstance(predicted, bool):
        return predicted is gold
    if isinstance(gold, int | float):
        return isinstance(predicted, int | float) and abs(float(predicted) - float(gold)) < 1e-6
    if isinstance(gold, list):
        return isinstance(predicted, list) and {_norm(str(p)) for p in predicted} == {_norm(str(g)) for g in gold}
    return isinstance(predicted, str) and _norm(predicted) == _norm(str(gold))


def _mode_options(mode: str, n: int, temperature: float, judge: Any) -> dict[str, Any]:
    if mode == "prompt":
        return {"strategy": "prompt"}
    if mode == "constrained":
        return {"strategy": "constrained"}
    grounded: dict[str, Any] = {"strategy": "constrained", "ground": True}
    if mode == "grounded":
        return grounded
    if mode.startswith("think-"):
        return {**grounded, "think": int(mode.split("-", 1)[1])}
    sampled = {"ground": True, "n": n, "temperature": temperature}
    if mode == "best_of-logprob":
        return {**sampled, "strategy": "best_of"}
    if mode == "best_of-judge":
        return {**sampled, "strategy": "best_of", "select": judge}
    if mode == "self_consistency":
        return {**sampled, "strategy": "self_consistency"}
    raise InvalidArgument(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")


def run_accuracy_bench(model: Any, *, modes: Sequence[str] = MODES, n: int = 4, temperature: float = 0.7,
                       seed: int = 0, limit: int | None = None, tasks_dir: Path = TASKS_DIR, max_tokens: int = 256,
                       concurrency: int = 4, show_progress: bool = False) -> dict[str, Any]:
    """Run every mode over the tasks; the report (``by_mode`` summaries and per-document ``rows``)."""
    import structgen

    tasks = load_extraction_tasks(tasks_dir, limit)
    judge = structgen.Judge()
    report: dict[str, Any] = {"bench": "accuracy", "date": time.strftime("%Y-%m-%d"), "machine": machine(),
                              "versions": versions(), "model": getattr(model, "name", str(model)),
                              "settings": {"n": n, "temperature": temperature, "seed": seed, "max_tokens": max_tokens,
                                           "tasks": len(tasks), "concurrency": concurrency},
                              "by_mode": {}, "rows": []}
    bar = progress() if show_progress else None
    if bar is not None:
        bar.start()
    try:
        for mode in modes:
            options = _mode_options(mode, n, temperature, judge)
            task_id = bar.add_task(mode, total=len(tasks)) if bar is not None else None

            def one(task: dict[str, Any], options: dict[str, Any] = options, task_id: Any = task_id) -> dict[str, Any]:
                row = _run_one(model, task, dict(options), seed, max_tokens)
                if bar is not None:
                    bar.advance(task_id)
                return row

            with ThreadPoolExecutor(max(1, concurrency)) as pool:
                rows = list(pool.map(one, tasks))
            for row in rows:
                row["mode"] = mode
            report["rows"].extend(rows)
            report["by_mode"][mode] = _summary(rows)
    finally:
        if bar is not None:
            bar.stop()
    return report


def _run_one(model: Any, task: dict[str, Any], options: dict[str, Any], seed: int, max_tokens: int) -> dict[str, Any]:
    import structgen

    source = task["text"] if options.pop("ground", False) else None
    gold = task["gold"]
    t0 = time.perf_counter()
    row: dict[str, Any] = {"id": task["id"], "kind": task["kind"]}
    try:
        result = structgen.generate(prompt_for(task), task["schema"], model=model, seed=seed, max_tokens=max_tokens,
                                    source=source, **options)
    except StructgenError as exc:
        row.update(valid=False, error=f"{type(exc).__name__}: {str(exc)[:200]}", correct=dict.fromkeys(gold, False),
                   tokens=0, latency_s=time.perf_counter() - t0, absent=0, value=None)
        return row
    value = result.value
    correct = {k: field_correct(value.get(k), g) for k, g in gold.items()}
    absent = 0
    if source is not None:
        absent = sum(1 for _, item, kind in grounded_values(task["schema"], value)
                     if written_at(source, item, kind) is None)
    row.update(valid=True, error=None, correct=correct, tokens=result.timings.generated_tokens,
               latency_s=time.perf_counter() - t0, absent=absent, value=value)
    return row


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    fields = [ok for r in rows for ok in r["correct"].values()]
    return {
        "documents": len(rows),
        "field_accuracy": round(sum(fields) / len(fields), 4) if fields else 0.0,
        "record_accuracy": round(sum(all(r["correct"].values()) for r in rows) / len(rows), 4) if rows else 0.0,
        "valid_rate": round(sum(r["valid"] for r in rows) / len(rows), 4) if rows else 0.0,
        "mean_tokens": round(statistics.fmean(r["tokens"] for r in rows), 1) if rows else 0.0,
        "mean_latency_s": round(statistics.fmean(r["latency_s"] for r in rows), 2) if rows else 0.0,
        "absent_from_source": sum(r["absent"] for r in rows),
    }


def format_accuracy_markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown table (one row per mode) with the ratio to ``constrained``."""
    by_mode = report["by_mode"]
    base = by_mode.get("constrained", {}).get("field_accuracy") or None
    rows = [[mode, f"{100 * s['field_accuracy']:.1f} %",
             f"{s['field_accuracy'] / base:.2f}x" if base else "-",
             f"{100 * s['record_accuracy']:.1f} %", f"{100 * s['valid_rate']:.0f} %", s["mean_tokens"],
             s["mean_latency_s"], s["absent_from_source"]] for mode, s in by_mode.items()]
    settings = report["settings"]
    head = (f"# bench accuracy — {report['model']}, {settings['tasks']} documents, seed {settings['seed']}, "
            f"n={settings['n']} at T={settings['temperature']} for the sampled modes ({report['date']}; "
            f"{machine_line(report['machine'])})\n\n")
    return head + markdown_table(["mode", "field acc.", "vs constrained", "record acc.", "valid", "mean tokens",
                                  "mean latency s", "absent from source"], rows)


def plot(report: dict[str, Any], path: Path) -> None:
    """Field and record accuracy per mode, as grouped bars."""
    modes = list(report["by_mode"])
    grouped_bars(path, modes, [(label, [report["by_mode"][m][key] for m in modes])
                               for label, key in (("field accuracy", "field_accuracy"),
                                                  ("record accuracy", "record_accuracy"))],
                 ylabel="%", title=f"bench accuracy — {report['model']}", group_width=1.7)


