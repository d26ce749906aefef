"""``bench apps``: text→regex and text→SQL, grammar-constrained vs prompt-only, on ``benchmarks/tasks``.

Both modes run the same app code with the same model, prompt, ``n``, temperature and seeds; they differ
only in decoding. *Constrained* samples under the grammar (``python_regex.lark``; the schema-aware SELECT
grammar with the scoped fallback). *Prompt-only* samples free text and extracts the regex / query from
the reply (``extract_regex`` / ``extract_sql``). Per task the app keeps the best verified candidate; when
none verifies, the answer counted is the most likely candidate that is syntactically valid, if any.

Measured per mode:

* valid answer: the task's answer compiles (regex: ``re.compile``) or passes ``check_select`` (SQL:
  one read-only SELECT that ``EXPLAIN`` compiles on the read-only connection);
* valid samples: the same, over every sample drawn (before selection);
* verified (regex): the answer fully matches every positive and no negative of the task;
* execution accuracy (SQL): the answer's result set equals the gold query's (values compared with
  floats rounded to 4 places; as multisets unless the gold query has a top-level ORDER BY).
"""

from __future__ import annotations

import json
import re
import statistics
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from structgen.apps.regex import RegexCandidate, RegexNotVerified, text_to_regex
from structgen.apps.sql import SqlCandidate, SqlNotVerified, text_to_sql
from structgen.apps.sql_guard import execute_select
from structgen.apps.sqlite_db import open_readonly, shop_db_path
from structgen.errors import InvalidArgument, StructgenError

from .report import grouped_bars, machine, machine_line, markdown_table, progress, versions

__all__ = ["MODES", "TASKS_DIR", "format_apps_markdown", "load_tasks", "plot", "result_sets_equal",
           "run_apps_bench"]

TASKS_DIR = Path(__file__).resolve().parent / "tasks"
MODES = ("constrained", "prompt")
KINDS = ("regex", "sql")


def load_tasks(kind: str, tasks_dir: Path = TASKS_DIR, limit: int | None = None) -> list[dict[str, Any]]:
    """The tasks of ``kind`` ("regex" or "sql") from ``tasks_dir/<kind>.jsonl`` (the first ``limit``)."""
    if kind not in KINDS:
        raise InvalidArgument(f"kind must be one of {KINDS}, got {kind!r}")
    path = tasks_dir / f"{kind}.jsonl"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InvalidArgument(f"cannot read the tasks file {path}: {exc}") from exc
    tasks = [json.loads(line) for line in lines if line.strip()]
    return tasks[:limit] if limit is not None else tasks


# ---- result-set comparison -------------------------------------------------------------------------

def _norm(value: Any) -> Any:
    if isinstance(value, float):
        value = round(value, 4)
        return int(value) if value.is_integer() else value
    return value


def _top_level_order_by(sql: str) -> bool:
    text = re.sub(r"'(?:[^']|'')*'", "''", sql)
    depth = 0
    for m in re.finditer(r"[()]|\bORDER\s+BY\b", text, re.I):
        token = m.group(0)
        if token == "(":
            depth += 1
        elif token == ")":
            depth -= 1
        elif depth == 0:
            return True
    return False


def result_sets_equal(predicted: Sequence[Sequence[Any]], gold: Sequence[Sequence[Any]], *, ordered: bool) -> bool:
    """Whether two result sets hold the same rows (in the same order when ``ordered``)."""
    p = [tuple(_norm(v) for v in row) for row in predicted]
    g = [tuple(_norm(v) for v in row) for row in gold]
    return p == g if ordered else Counter(p) == Counter(g)


# ---- per-task runs ---------------------------------------------------------------------------------

def _regex_task(task: dict[str, Any], mode: str, model: Any, n: int, temperature: float | None,
                seed: int) -> dict[str, Any]:
    candidates: list[RegexCandidate] = []
    error: str | None = None
    t0 = time.perf_counter()
    try:
        result = text_to_regex(task["description"], task["positives"], task["negatives"], n=n, model=model,
                               temperature=temperature, seed=seed, constrained=mode == "constrained")
        candidates = result.candidates
    except RegexNotVerified as exc:
        candidates = exc.candidates
    except StructgenError as exc:
        error = f"{type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - t0
    answer = next((c for c in candidates if c.verified), None) or next((c for c in candidates if c.compiles), None)
    answer = answer or (candidates[0] if candidates else None)
    return {"id": task["id"], "mode": mode, "answer": answer.regex if answer else None,
            "valid": bool(answer and answer.compiles), "verified": bool(answer and answer.verified),
            "samples": len(candidates), "valid_samples": sum(c.compiles for c in candidates),
            "seconds": seconds, "error": error}


def _sql_task(task: dict[str, Any], mode: str, model: Any, n: int, temperature: float | None, seed: int,
              db: Path, gold: tuple[list[tuple[Any, ...]], bool]) -> dict[str, Any]:
    candidates: list[SqlCandidate] = []
    sql: str | None = None
    error: str | None = None
    t0 = time.perf_counter()
    try:
        result = text_to_sql(task["question"], db, n=n, model=model, temperature=temperature, seed=seed,
                             constrained=mode == "constrained")
        candidates, sql = result.candidates, result.sql
    except SqlNotVerified as exc:
        candidates = exc.candidates
    except StructgenError as exc:
        error = f"{type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - t0
    chosen = next((c for c in candidates if c.sql == sql), None)
    match = False
    if sql is not None:
        conn = open_readonly(db)
        try:
            _, rows = execute_select(sql, conn, max_rows=100_000, timeout_s=10.0)
            match = result_sets_equal(rows, gold[0], ordered=gold[1])
        except StructgenError as exc:
            error = f"execution: {type(exc).__name__}: {exc}"
        finally:
            conn.close()
    return {"id": task["id"], "mode": mode, "answer": sql, "valid": sql is not None, "exec_match": match,
            "fallback": bool(chosen and chosen.grammar == "scoped"),
            "samples": len(candidates), "valid_samples": sum(c.explain_ok for c in candidates),
            "seconds": seconds, "error": error}


def _gold(tasks: Iterable[dict[str, Any]], db: Path) -> dict[str, tuple[list[tuple[Any, ...]], bool]]:
    conn = open_readonly(db)
    try:
        return {t["id"]: (execute_select(t["gold"], conn, max_rows=100_000, timeout_s=10.0)[1],
                          _top_level_order_by(t["gold"])) for t in tasks}
    finally:
        conn.close()


# ---- the bench -------------------------------------------------------------------------------------

def _summary(kind: str, mode: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    k = len(rows)
    samples = sum(r["samples"] for r in rows)
    out: dict[str, Any] = {
        "kind": kind, "mode": mode, "tasks": k,
        "valid": sum(r["valid"] for r in rows) / k if k else None,
        "valid_samples": sum(r["valid_samples"] for r in rows) / samples if samples else None,
        "seconds_per_task": statistics.fmean(r["seconds"] for r in rows) if k else None,
        "errors": sum(r["error"] is not None for r in rows),
    }
    if kind == "regex":
        out["verified"] = sum(r["verified"] for r in rows) / k if k else None
    else:
        out["execution_accuracy"] = sum(r["exec_match"] for r in rows) / k if k else None
        out["scoped_fallback"] = sum(r["fallback"] for r in rows)
    return out


def run_apps_bench(
    model: Any = None,
    *,
    kinds: Sequence[str] = KINDS,
    modes: Sequence[str] = MODES,
    n: int = 4,
    temperature: float | None = None,
    seed: int = 0,
    limit: int | None = None,
    tasks_dir: Path = TASKS_DIR,
    db: Path | None = None,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Run the regex and SQL tasks in each mode and return the report (``summary`` rows and per-task ``tasks``).

    ``model``: a ``LlamaCpp`` (default: the shared bundled model). Every task uses seed ``seed`` in both
    modes; ``n`` and ``temperature`` are the apps' (``n == 1``: greedy). ``limit`` takes the first N tasks of
    each kind. ``db``: the SQLite file the SQL tasks ask about (default: the bundled shop.sqlite).
    """
    from structgen.generate import default_model

    for m in modes:
        if m not in MODES:
            raise InvalidArgument(f"mode must be one of {MODES}, got {m!r}")
    target = default_model() if model is None else model
    database = db if db is not None else shop_db_path()
    loaded = {kind: load_tasks(kind, tasks_dir, limit) for kind in kinds}
    gold = _gold(loaded["sql"], database) if "sql" in loaded else {}
    per_task: list[dict[str, Any]] = []
    started = time.perf_counter()
    bar = progress() if show_progress else None
    total = sum(len(t) for t in loaded.values()) * len(modes)
    task_id = bar.add_task("bench apps", total=total) if bar else None
    if bar:
        bar.start()
    try:
        for kind, tasks in loaded.items():
            for task in tasks:
                for mode in modes:
                    if kind == "regex":
                        row = _regex_task(task, mode, target, n, temperature, seed)
                    else:
                        row = _sql_task(task, mode, target, n, temperature, seed, database, gold[task["id"]])
                    per_task.append({"kind": kind, **row})
                    if bar and task_id is not None:
                        bar.update(task_id, advance=1, description=f"{kind} {task['id']} ({mode})")
    finally:
        if bar:
            bar.stop()
    summary = [_summary(kind, mode, [r for r in per_task if r["kind"] == kind and r["mode"] == mode])
               for kind in loaded for mode in modes]
    return {
        "bench": "apps",
        "settings": {"n": n, "temperature": temperature, "seed": seed, "limit": limit,
                     "model": getattr(target, "name", str(target)), "db": str(database)},
        "machine": machine(),
        "versions": versions(),
        "wall_seconds": time.perf_counter() - started,
        "summary": summary,
        "tasks": per_task,
    }


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f} %"


def format_apps_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: one table for regex, one for SQL, and the settings they were measured with."""
    s = report["settings"]
    temp = s["temperature"] if s["temperature"] is not None else ("0 (greedy)" if s["n"] == 1 else 0.7)
    parts = [f"Model {s['model']}, n={s['n']}, temperature {temp}, seed {s['seed']}; "
             f"{machine_line(report['machine'])}."]
    regex_rows = [r for r in report["summary"] if r["kind"] == "regex"]
    if regex_rows:
        parts.append(markdown_table(
            ["text → regex", "tasks", "valid answer (compiles)", "valid samples", "verified (examples)",
             "s / task"],
            [[r["mode"], r["tasks"], _pct(r["valid"]), _pct(r["valid_samples"]), _pct(r["verified"]),
              f"{r['seconds_per_task']:.1f}" if r["seconds_per_task"] is not None else "-"] for r in regex_rows]))
    sql_rows = [r for r in report["summary"] if r["kind"] == "sql"]
    if sql_rows:
        parts.append(markdown_table(
            ["text → SQL", "tasks", "valid answer (EXPLAIN)", "valid samples", "execution accuracy",
             "scoped fallback", "s / task"],
            [[r["mode"], r["tasks"], _pct(r["valid"]), _pct(r["valid_samples"]), _pct(r["execution_accuracy"]),
              r["scoped_fallback"] if r["mode"] == "constrained" else "-",
              f"{r['seconds_per_task']:.1f}" if r["seconds_per_task"] is not None else "-"] for r in sql_rows]))
    return "\n\n".join(parts)


def plot(report: dict[str, Any], path: Path) -> None:
    """Grouped bars per app: valid answers and verified / execution-accurate answers, constrained vs prompt."""
    rows = report["summary"]
    metrics = [("valid", "valid answer"), ("verified", "verified (regex)"),
               ("execution_accuracy", "execution accuracy (SQL)")]
    grouped_bars(path, [f"{r['kind']}\n{r['mode']}" for r in rows],
                 [(label, [r.get(key) or 0.0 for r in rows]) for key, label in metrics],
                 ylabel="tasks (%)", group_width=1.8,
                 title=f"apps — {Path(report['settings']['model']).name} — {machine_line(report['machine'])}")
