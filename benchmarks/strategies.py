"""``structgen bench strategies``: valid-output rate, latency and tokens per strategy × task.

Strategies go through the public API only: ``structgen.generate(prompt, schema, model=..., strategy=...)``.
Locally (a ``LlamaCpp``): ``prompt``, ``repair``, ``best_of`` (n=4), ``self_consistency`` (n=5) and
``constrained``; hosted (``OpenAICompatible`` on ``--base-url``, or on a ``python -m llama_cpp.server``
started on 127.0.0.1 with ``--serve``): the same minus ``constrained``, plus ``server``.

Tasks:
- ``json``: JSON extraction over ``JSON_SCHEMAS`` schemas of the MaskBench dev split (see ``data``): a
  fixed seeded sample of files whose schema structgen compiles and that have a valid instance of at most
  ``MAX_INSTANCE_CHARS`` characters; the prompt describes that instance in plain text and asks for JSON
  (accuracy: the value equals the instance);
- ``classification``: ``prompts.CLASSIFICATIONS`` with a ``Choice`` of labels (also reports accuracy);
- ``regex``: ``tasks/regex.jsonl`` under the bundled ``python_regex`` grammar, prompted as the
  ``structgen regex`` app does; valid = ``re.compile`` accepts it (accuracy: verified, i.e. every positive
  fully matches and no negative does);
- ``sql``: ``tasks/sql.jsonl`` over the bundled shop database under the scoped SELECT grammar (each column
  belongs to a table in FROM: the grammar ``structgen sql`` falls back to, and the one whose every query
  compiles), prompted as the app does; valid = the read-only checker (``EXPLAIN`` on a ``mode=ro``
  connection) accepts it.

An item is valid when ``generate`` returns and the task's own check accepts the value; a typed error
(truncated, no valid attempt, server failure) is an invalid item, never a dropped one. Single-sample
strategies decode greedily; best_of / self_consistency sample at ``MULTI_SAMPLE_TEMPERATURE``. On a local
model best_of and self_consistency sample under the mask (as ``generate`` does there); hosted, they sample
free text through the text-model chain.
"""

from __future__ import annotations

import functools
import json
import re
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import data as mb
from .prompts import CLASSIFICATIONS
from .report import grouped_bars, machine, machine_line, markdown_table, versions

LOCAL_STRATEGIES = ("prompt", "repair", "best_of", "self_consistency", "constrained")
HOSTED_STRATEGIES = ("prompt", "repair", "best_of", "self_consistency", "server")
TASKS = ("json", "classification", "regex", "sql")
SAMPLES = {"best_of": 4, "self_consistency": 5}
MULTI_SAMPLE_TEMPERATURE = 0.7
JSON_SCHEMAS = 50
MAX_INSTANCE_CHARS = 300
TASKS_DIR = Path(__file__).resolve().parent / "tasks"


@dataclass(frozen=True)
class Options:
    """What to run."""

    model_path: str | None = None
    base_url: str | None = None
    serve: bool = False
    tasks_dir: Path | None = None
    data_dir: Path | None = None
    limit: int | None = None
    task_limits: dict[str, int] = field(default_factory=dict)   # per task, over ``limit``
    max_tokens: int = 256
    n_gpu_layers: int = 0
    n_threads: int | None = None
    strategies: list[str] | None = None
    tasks: list[str] | None = None
    seed: int = 0


@dataclass(frozen=True)
class Item:
    """One input of a task: the prompt, the schema, and how to judge the returned value."""

    prompt: Any
    schema: Any
    check: Callable[[Any], str | None]                 # why the value is not valid for the task (None: valid)
    name: str = ""                                     # where the item comes from (a MaskBench file, a task id)
    correct: Callable[[Any], bool] | None = None       # does it match the gold answer (where there is one)?
    reference: Any = None                              # the gold value, where the task has one
    # The app prompts (regex, SQL) already say what to write, as the apps do; their grammars are long
    # (the shop database's SELECT grammar alone is ~4,400 tokens) and would overflow the context.
    schema_in_prompt: bool = True


@dataclass
class Task:
    """A named list of items, or the reason it could not be built."""

    name: str
    items: list[Item] = field(default_factory=list)
    skipped: str | None = None


# ---- tasks ------------------------------------------------------------------------------------------

def _describe(value: Any, prefix: str = "") -> list[str]:
    """A JSON value as plain "path: value" lines (the text the model extracts from)."""
    if isinstance(value, dict):
        lines = [line for k, v in value.items() for line in _describe(v, f"{prefix}.{k}" if prefix else str(k))]
        return lines or [f"{prefix or 'value'}: (empty)"]
    if isinstance(value, list):
        if all(not isinstance(v, dict | list) for v in value):
            return [f"{prefix or 'values'}: {', '.join(_scalar(v) for v in value) or '(none)'}"]
        return [line for i, v in enumerate(value) for line in _describe(v, f"{prefix or 'item'} {i + 1}")]
    return [f"{prefix or 'value'}: {_scalar(value)}"]


def _scalar(value: Any) -> str:
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def json_task(data_dir: Path, count: int) -> Task:
    """``count`` extraction items from the MaskBench dev split (fixed seeded order)."""
    import structgen

    items: list[Item] = []
    for path in mb.shuffled(mb.dev_split(data_dir)):
        case = mb.load(path)
        instance = next((d for d, valid in case.tests if valid and len(mb.serialise(d)) <= MAX_INSTANCE_CHARS),
                        None)
        if instance is None or not isinstance(case.schema, dict):
            continue
        try:
            compiled = structgen.compile_schema(case.schema)
        except structgen.StructgenError:
            continue
        text = "\n".join(_describe(instance))
        prompt = f"Extract the data from the text below as JSON.\n\nText:\n{text}"
        items.append(Item(prompt, case.schema, check=_json_check(compiled),
                          correct=functools.partial(_equals, instance), reference=instance, name=path.name))
        if len(items) == count:
            break
    return Task("json", items)


def _json_check(compiled: Any) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        try:
            compiled.validate(json.dumps(value, ensure_ascii=False))
        except (ValueError, TypeError) as exc:
            return str(exc)
        return None

    return check


def _equals(gold: Any, value: Any) -> bool:
    return bool(value == gold)


def _one_of(labels: tuple[str, ...], value: Any) -> str | None:
    return None if value in labels else f"{value!r} is not one of the labels"


def classification_task() -> Task:
    """The labelled texts, each under a ``Choice`` of its labels."""
    import structgen

    items = [Item(c.prompt(), structgen.Choice(c.labels), check=functools.partial(_one_of, c.labels),
                  correct=functools.partial(_equals, c.gold), reference=c.gold) for c in CLASSIFICATIONS]
    return Task("classification", items)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def regex_task(tasks_dir: Path) -> Task:
    """``regex.jsonl``: description → a Python regex under the bundled grammar."""
    path = tasks_dir / "regex.jsonl"
    if not path.is_file():
        return Task("regex", skipped=f"{path} not found")
    import structgen
    from structgen.apps.regex import regex_messages, verify_regex

    grammar = structgen.Grammar.bundled("python_regex")
    items = []
    for row in _read_jsonl(path):
        pos, neg = list(row.get("positives", ())), list(row.get("negatives", ()))
        items.append(Item(regex_messages(row["description"]), grammar, check=_compiles, schema_in_prompt=False,
                          correct=functools.partial(_verified, verify_regex, pos, neg), reference=row.get("reference")))
    return Task("regex", items)


def _compiles(value: Any) -> str | None:
    try:
        re.compile(value)
    except (re.error, TypeError) as exc:
        return f"re.compile: {exc}"
    return None


def _verified(verify: Callable[..., Any], positives: list[str], negatives: list[str], value: Any) -> bool:
    """The regex fully matches every positive and no negative (checked by the app, under a time limit)."""
    return _compiles(value) is None and bool(verify(value, positives, negatives).verified)


def sql_task(tasks_dir: Path) -> Task:
    """``sql.jsonl``: question → one SELECT over the shop database, under the scoped SELECT grammar."""
    path = tasks_dir / "sql.jsonl"
    if not path.is_file():
        return Task("sql", skipped=f"{path} not found")
    import structgen
    from structgen.apps import sql_guard, sqlite_db
    from structgen.apps.sql import sql_messages
    from structgen.apps.sql_scope import scoped_grammar

    try:
        conn = sqlite_db.open_readonly(sqlite_db.shop_db_path())
        db = sqlite_db.read_schema(conn)
        grammar = structgen.Grammar(scoped_grammar(db), name="scoped SELECT grammar (shop)")
    except (structgen.StructgenError, AttributeError) as exc:
        return Task("sql", skipped=f"the shop database cannot be used: {exc}")

    def check(value: Any) -> str | None:
        try:
            sql_guard.check_select(value, conn)
        except structgen.StructgenError as exc:
            return f"{type(exc).__name__}: {exc}"
        return None

    schema_text = db.to_prompt()
    items = [Item(sql_messages(row["question"], schema_text), grammar, check=check, reference=row.get("gold"),
                  schema_in_prompt=False)
             for row in _read_jsonl(path)]
    return Task("sql", items)


def build_tasks(options: Options) -> list[Task]:
    """The requested tasks, each cut to its ``options.task_limits`` entry, else to ``options.limit`` items."""
    names = options.tasks or list(TASKS)
    unknown = [t for t in [*names, *options.task_limits] if t not in TASKS]
    if unknown:
        from structgen.errors import InvalidArgument

        raise InvalidArgument(f"unknown task(s) {unknown}; choose from {list(TASKS)}")
    tasks_dir = options.tasks_dir or TASKS_DIR
    def limit(name: str) -> int | None:
        return options.task_limits.get(name, options.limit)

    built: dict[str, Callable[[], Task]] = {
        "json": lambda: json_task(options.data_dir or mb.DEFAULT_DATA, limit("json") or JSON_SCHEMAS),
        "classification": classification_task,
        "regex": lambda: regex_task(tasks_dir),
        "sql": lambda: sql_task(tasks_dir),
    }
    tasks = [built[name]() for name in names]
    for t in tasks:
        if limit(t.name):
            t.items = t.items[: limit(t.name)]
    return tasks


# ---- models -----------------------------------------------------------------------------------------

def _hosted_model(base_url: str) -> Any:
    import structgen

    cls = getattr(structgen, "OpenAICompatible", None)
    if cls is None:
        from structgen.errors import InvalidArgument

        raise InvalidArgument("this structgen has no OpenAICompatible (the hosted chain); run without --base-url")
    return cls(base_url=base_url, model="local", timeout=120.0)


# ---- running ----------------------------------------------------------------------------------------

@dataclass
class _Row:
    strategy: str
    task: str
    n: int = 0
    valid: int = 0
    correct: int = 0
    judged: int = 0          # items with a gold answer
    latency_ms: float = 0.0
    tokens: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    served_by: Counter[str] = field(default_factory=Counter)
    server_crashes: int = 0  # items whose request killed the --serve server (counted failed; it was restarted)
    examples: list[str] = field(default_factory=list)     # the first few failures, for diagnosis

    def failed(self, kind: str, message: str) -> None:
        self.errors[kind] += 1
        if len(self.examples) < 3:
            self.examples.append(f"{kind}: {message.strip().splitlines()[0][:200] if message.strip() else ''}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy, "task": self.task, "n": self.n, "valid": self.valid,
            "valid_rate": round(self.valid / self.n, 4) if self.n else None,
            "mean_latency_ms": round(self.latency_ms / self.n, 1) if self.n else None,
            "mean_tokens": round(self.tokens / self.n, 1) if self.n else None,
            "accuracy": round(self.correct / self.judged, 4) if self.judged else None,
            "errors": dict(self.errors), "served_by": dict(self.served_by), "error_examples": self.examples,
            "server_crashes": self.server_crashes,
        }


def _tokens_of(result_or_error: Any) -> int:
    timings = getattr(result_or_error, "timings", None)
    if timings is not None and timings.generated_tokens:
        return int(timings.generated_tokens)
    attempts = getattr(result_or_error, "attempts", None) or []
    counted = sum(int(getattr(a, "tokens", 0) or 0) for a in attempts)
    return counted or len(getattr(result_or_error, "tokens", []) or [])


def _one(model: Any, item: Item, strategy: str, index: int, options: Options, row: _Row) -> None:
    import structgen

    n = SAMPLES.get(strategy, 1)
    temperature = MULTI_SAMPLE_TEMPERATURE if n > 1 else 0.0
    row.n += 1
    t0 = time.perf_counter()
    try:
        r = structgen.generate(item.prompt, item.schema, model=model, strategy=strategy, n=n,
                               temperature=temperature, seed=options.seed + index, max_tokens=options.max_tokens,
                               schema_in_prompt=item.schema_in_prompt)
    except structgen.StructgenError as exc:
        row.latency_ms += (time.perf_counter() - t0) * 1000
        row.failed(type(exc).__name__, str(exc))
        row.tokens += _tokens_of(exc)
        if item.correct is not None:
            row.judged += 1
        return
    row.latency_ms += (time.perf_counter() - t0) * 1000
    row.tokens += _tokens_of(r)
    row.served_by[r.strategy] += 1
    value = r.value.model_dump(mode="json") if hasattr(r.value, "model_dump") else r.value
    why = item.check(value)
    if why is None:
        row.valid += 1
    else:
        row.failed("task check failed", f"{why} ({str(value)[:80]!r})")
    if item.correct is not None:
        row.judged += 1
        row.correct += int(bool(item.correct(value)))


def run(options: Options, on_item: Callable[[int, int, str], None] | None = None,
        on_partial: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Every strategy on every task item; returns the report.

    ``on_partial`` receives the report so far after every item (``"complete": false``; the row under way is
    marked ``"partial": true``), so a long hosted run that is stopped still leaves its finished rows behind.
    """
    from structgen.errors import InvalidArgument
    from structgen.local.models import resolve_model_path

    hosted = options.base_url is not None or options.serve
    allowed = HOSTED_STRATEGIES if hosted else LOCAL_STRATEGIES
    strategies = options.strategies or list(allowed)
    bad = [s for s in strategies if s not in allowed]
    if bad:
        raise InvalidArgument(f"strategy(ies) {bad} not available {'hosted' if hosted else 'locally'}; "
                              f"choose from {list(allowed)}")
    tasks = build_tasks(options)
    model_path = str(resolve_model_path(options.model_path))
    setting = {"machine": machine(), "versions": versions()}
    started = time.perf_counter()
    with _source(options, model_path) as source:
        def report(rows: list[dict[str, Any]], complete: bool) -> dict[str, Any]:
            return {**_report(options, hosted, source.where, model_path, tasks, time.perf_counter() - started,
                              complete), **setting, "server_crashes": source.crashes, "rows": rows}

        partial = None if on_partial is None else (lambda rows: on_partial(report(rows, False)))
        rows = _run_all(source, tasks, strategies, options, on_item, partial)
        return report(rows, True)


def _report(options: Options, hosted: bool, where: str, model_path: str, tasks: list[Task],
            elapsed_s: float, complete: bool) -> dict[str, Any]:
    return {
        "bench": "strategies",
        "mode": "hosted" if hosted else "local",
        "endpoint": where,
        "model": model_path,
        "max_tokens": options.max_tokens,
        "sampling": {"single": "greedy", "best_of/self_consistency": f"temperature {MULTI_SAMPLE_TEMPERATURE}",
                     "n": SAMPLES, "seed": options.seed},
        "tasks": {t.name: {"items": len(t.items), "skipped": t.skipped} for t in tasks},
        "limits": {"all": options.limit, **options.task_limits},
        "json_task": f"{JSON_SCHEMAS} schemas of the MaskBench dev split (seeded order, structgen compiles them, a "
                     f"valid instance of ≤ {MAX_INSTANCE_CHARS} chars)",
        "elapsed_s": round(elapsed_s, 1),
        "complete": complete,
    }


class _Source:
    """The model every item runs on; for ``--serve``, a llama_cpp.server that is restarted when it dies."""

    def __init__(self, model: Any, where: str) -> None:
        self.model = model
        self.where = where
        self.crashes: list[dict[str, Any]] = []

    def check(self, strategy: str, task: str, index: int, item: Item) -> bool:
        """After an item that failed with a ``BackendError``: True if the server had died (now restarted)."""
        return False


class _ServedSource(_Source):
    def __init__(self, options: Options, model_path: str, log_dir: Path) -> None:
        super().__init__(None, "")
        self._options, self._model_path, self._log_dir = options, model_path, log_dir
        self._start()

    def _start(self) -> None:
        from structgen.testing import llama_server

        self.log = self._log_dir / f"server-{len(self.crashes)}.log"
        self._server = ExitStack()
        self.where = self._server.enter_context(llama_server(
            self._model_path, n_gpu_layers=self._options.n_gpu_layers, n_threads=self._options.n_threads,
            log_path=self.log))
        self.model = _hosted_model(self.where)

    def close(self) -> None:
        """Close the client and stop the server."""
        self.model.close()
        self._server.close()

    def check(self, strategy: str, task: str, index: int, item: Item) -> bool:
        from structgen.testing import server_answers

        if server_answers(self.where):
            return False
        # The request killed the server: the item stays failed (the strategy's request crashed the server);
        # the log's tail says why, and a fresh server takes the next item.
        tail = self.log.read_text(errors="replace").strip().splitlines()[-8:]
        self.crashes.append({"strategy": strategy, "task": task, "item": index, "name": item.name,
                             "log_tail": tail})
        self.close()
        self._start()
        return True


@contextmanager
def _source(options: Options, model_path: str) -> Iterator[_Source]:
    if options.serve:
        with tempfile.TemporaryDirectory(prefix="structgen-bench-") as tmp:
            source = _ServedSource(options, model_path, Path(tmp))
            try:
                yield source
            finally:
                source.close()
    elif options.base_url is not None:
        model = _hosted_model(options.base_url)
        try:
            yield _Source(model, options.base_url)
        finally:
            model.close()
    else:
        import structgen

        model = structgen.LlamaCpp(model_path, n_gpu_layers=options.n_gpu_layers, n_ctx=4096,
                                   n_threads=options.n_threads or None)
        try:
            yield _Source(model, "local")
        finally:
            model.close()


def _run_all(source: _Source, tasks: list[Task], strategies: list[str], options: Options,
             on_item: Callable[[int, int, str], None] | None,
             on_partial: Callable[[list[dict[str, Any]]], None] | None = None) -> list[dict[str, Any]]:
    total = sum(len(t.items) for t in tasks) * len(strategies)
    done = 0
    rows: list[dict[str, Any]] = []
    for task in tasks:
        for strategy in strategies:
            row = _Row(strategy, task.name)
            for i, item in enumerate(task.items):
                backend_errors = row.errors["BackendError"]
                _one(source.model, item, strategy, i, options, row)
                if row.errors["BackendError"] > backend_errors and source.check(strategy, task.name, i, item):
                    row.server_crashes += 1
                done += 1
                if on_item is not None:
                    on_item(done, total, f"{strategy} × {task.name}")
                if on_partial is not None:
                    last = i + 1 == len(task.items)
                    on_partial([*rows, row.to_dict() if last else {**row.to_dict(), "partial": True}])
            if task.items:
                rows.append(row.to_dict())
    return rows


# ---- output -----------------------------------------------------------------------------------------

def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: one row per strategy × task."""
    headers = ["strategy", "task", "n", "valid", "valid rate", "mean latency ms", "mean tokens", "accuracy",
               "errors"]
    rows = [[r["strategy"] + (" (partial)" if r.get("partial") else ""), r["task"], r["n"], r["valid"],
             f"{100 * r['valid_rate']:.1f}%", r["mean_latency_ms"],
             r["mean_tokens"], f"{100 * r['accuracy']:.1f}%" if r["accuracy"] is not None else None,
             ", ".join(f"{k} {v}" for k, v in sorted(r["errors"].items())) or "–"]
            for r in report["rows"]]
    skipped = [f"{name}: {t['skipped']}" for name, t in report["tasks"].items() if t["skipped"]]
    lines = [
        f"Strategies ({report['mode']}: {report['endpoint']}), {Path(report['model']).name}, "
        f"max_tokens={report['max_tokens']}",
        f"Machine: {machine_line(report['machine'])}",
        "",
        markdown_table(headers, rows),
    ]
    if skipped:
        lines += ["", "Skipped tasks: " + "; ".join(skipped)]
    if not report.get("complete", True):
        lines += ["", "The run was stopped before it completed: a row marked (partial) has only the items it finished."]
    for crash in report.get("server_crashes", []):
        lines += ["", f"The server died on {crash['strategy']} × {crash['task']} item {crash['item']} "
                      f"({crash['name'] or 'unnamed'}); that item counts as failed and a fresh server took over."]
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    """Grouped bars: valid rate per strategy (bars) per task (groups)."""
    tasks = list(dict.fromkeys(r["task"] for r in report["rows"]))
    strategies = list(dict.fromkeys(r["strategy"] for r in report["rows"]))
    rate = {(r["strategy"], r["task"]): r["valid_rate"] or 0.0 for r in report["rows"]}
    grouped_bars(path, tasks, [(s, [rate.get((s, t), 0.0) for t in tasks]) for s in strategies],
                 ylabel="valid outputs (%)", group_width=2.2,
                 title=f"{report['mode']} — {Path(report['model']).name} — {machine_line(report['machine'])}")
