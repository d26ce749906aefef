"""``structgen bench masks``: the MaskBench method (JSONSchemaBench, arXiv 2501.10868) on structgen's own
compile path, side by side with raw llguidance in the same run.

For each file: compile the schema and compute the first mask (TTFM); then, for each labelled instance,
serialise it as the engine would emit it (compact JSON), tokenise it with the model's tokenizer and walk
a fresh matcher token by token, timing every mask (TBM). An instance is accepted when every token is in
its mask and the matcher accepts at the end. Each file gets one status, in MaskBench's terms and in this
order: ``compile_error`` / ``timeout`` / ``crash``, else ``invalidation_error`` (an invalid instance was
accepted: too loose, a bug), else ``validation_error`` (a valid instance was rejected: too strict), else
``passing``. Files without instances pass when they compile, as in MaskBench.

Engines:
- ``structgen``: ``compile_for_decoding`` (``compile_schema`` minus llguidance's separate grammar check,
  which the matcher build repeats) + ``get_backend(name).compile`` + ``new_matcher().fill_mask`` — what
  ``generate`` runs. structgen also validates every finished text (``CompiledSchema.validate``) and resamples
  on failure, so an instance counts as accepted only if the grammar *and* the validator accept it; the
  grammar-only count is reported beside it. The schema's own semantics are measured: ``extra_properties=True``,
  since by default structgen's grammar lets a model write only the properties a schema names (an instance
  with others, valid for the schema, would count as too strict here). Schemas llguidance refuses strictly but
  structgen compiles with a relaxed grammar (``CompiledSchema.relaxed``) are counted as ``relaxed``.
- ``llguidance``: ``LLMatcher(tokenizer, LLMatcher.grammar_from_json_schema(schema, overrides=<same
  options>))`` + ``llguidance.numpy.fill_next_token_bitmask`` — the library alone, same tokenizer.

Every step runs in a worker process under a deadline (``timeout``), so a pathological schema costs at
most that and is reported as a timeout. Compile caches are emptied before each compile: every TTFM is a
cold compile.
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import data as mb
from ._worker import Outcome, Worker
from .report import machine, machine_line, markdown_table, percentiles, pyplot, versions

TTFM_POINTS = {"p50": 50.0, "p75": 75.0, "p99": 99.0}
TBM_POINTS = {"p50": 50.0, "p75": 75.0, "p99": 99.0, "p999": 99.9}
RAW = "llguidance"
STATUSES = ("passing", "compile_errors", "validation_errors", "invalidation_errors", "timeouts", "crashes")


# ---- worker side ------------------------------------------------------------------------------------

@dataclass(eq=False)
class _State:
    vocab: Any
    backend: Any
    tokenizer: Any
    options: Any
    row: np.ndarray
    compiled: dict[str, Any] = field(default_factory=dict)
    schema: Any = None      # the schema compiled last (its property orders guide the key-order search)
    key_orders: list[dict[str, int]] | None = None   # those orders, worked out on the first value that needs them


def _setup(model_path: str | None, backend: str) -> _State:
    import structgen
    from structgen.compile.matchers import get_backend
    from structgen.compile.matchers.llguidance import tokenizer_for
    from structgen.testing import RandomLogitsModel

    vocab = RandomLogitsModel(model_path).vocab   # vocabulary only: no weights are loaded
    state = _State(vocab=vocab, backend=get_backend(backend), tokenizer=tokenizer_for(vocab),
                   options=structgen.JsonOptions(whitespace="compact", extra_properties=True),
                   row=np.zeros(vocab.mask_words, dtype=np.int32))
    warm = {"type": "object", "properties": {"a": {"type": "integer"}}}
    for engine in ("structgen", RAW):   # one-time lazy setup (per-vocabulary indexes) is not a schema's TTFM
        _compile(state, engine, warm)
    return state


def _forget_compiled(state: _State) -> None:
    """Empty structgen's compile caches so that each TTFM is a cold compile (MaskBench files repeat schemas)."""
    from structgen.compile import schema as schema_mod
    from structgen.compile.matchers import llguidance as llg_mod

    for fn in (getattr(schema_mod, "_compile_json_dict", None), getattr(llg_mod, "_compile_cached", None)):
        clear = getattr(fn, "cache_clear", None)
        if clear is not None:
            clear()
    indexes = state.vocab.cache.get("outlines-core-indexes")
    if isinstance(indexes, dict):
        indexes.clear()


def _compile(state: _State, engine: str, schema: Any) -> dict[str, Any]:
    import llguidance
    import llguidance.numpy as lln

    from structgen.compile.schema import compile_for_decoding
    from structgen.errors import StructgenError

    if schema is not state.schema:
        state.schema, state.key_orders = schema, None
    if engine == RAW:
        mask = state.row.reshape(1, -1)
        t0 = time.perf_counter_ns()
        try:
            grammar = llguidance.LLMatcher.grammar_from_json_schema(schema, overrides=state.options.compile_options())
            matcher = llguidance.LLMatcher(state.tokenizer, grammar, log_level=0)
        except (ValueError, TypeError) as exc:
            return {"error": f"{type(exc).__name__}: {exc}"}
        if matcher.is_error():
            return {"error": matcher.get_error()}
        lln.fill_next_token_bitmask(matcher, mask, 0)
        ttfm = (time.perf_counter_ns() - t0) / 1000
        state.compiled[engine] = matcher
        return {"ttfm_us": ttfm, "relaxed": False}
    _forget_compiled(state)
    t0 = time.perf_counter_ns()
    try:
        compiled = compile_for_decoding(schema, state.options)
        t1 = time.perf_counter_ns()
        factory = state.backend.compile(compiled, state.vocab)
        factory.new_matcher().fill_mask(state.row)
        t2 = time.perf_counter_ns()
        relaxed = compiled.checked().relaxed   # untimed: generate() never runs this check when the build succeeds
    except StructgenError as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    except Exception as exc:  # a dependency's exception escaping structgen's API is a bug worth counting
        return {"error": f"untyped {type(exc).__name__}: {exc}", "untyped": True}
    state.compiled[engine] = (compiled, factory)
    return {"ttfm_us": (t2 - t0) / 1000, "schema_us": (t1 - t0) / 1000, "relaxed": bool(relaxed)}


def _walk(state: _State, engine: str, tests: list[tuple[str, bool, Any]]) -> dict[str, Any]:
    import llguidance.numpy as lln

    row = state.row
    mask = row.reshape(1, -1)
    times: list[int] = []
    # (valid?, grammar ok, engine ok, tokens, why not, the grammar takes the same value written otherwise)
    results: list[tuple[bool, bool, bool, int, str, bool]] = []
    clock = time.perf_counter_ns
    for text, valid, data in tests:
        tokens = state.tokenizer.tokenize_str(text)
        if engine == RAW:
            m = state.compiled[engine].deep_copy()
            fill: Callable[[], None] = functools.partial(lln.fill_next_token_bitmask, m, mask, 0)
            consume = m.consume_token
        else:
            m = state.compiled[engine][1].new_matcher()
            fill = functools.partial(m.fill_mask, row)
            consume = m.consume
        why = ""
        for i, tok in enumerate(tokens):
            t0 = clock()
            fill()
            times.append(clock() - t0)
            if not (int(row[tok >> 5]) >> (tok & 31)) & 1 or not consume(tok):
                why = f"token {i} ({state.tokenizer.decode_str([tok])!r}) not allowed after {text[:60]!r}..."
                break
        if not why and not m.is_accepting():
            why = "the grammar does not accept the complete text"
        grammar_ok = not why
        engine_ok = grammar_ok
        if grammar_ok and engine != RAW:
            try:
                state.compiled[engine][0].validate(text)
            except ValueError as exc:
                engine_ok, why = False, f"post-validation: {exc}"
        as_value = valid and not grammar_ok and _accepted_as_value(state, engine, data)
        results.append((valid, grammar_ok, engine_ok, len(tokens), why, as_value))
    return {"tests": results, "tbm_ns": np.asarray(times, dtype=np.int64)}


KEY_ORDER_BUDGET = 50_000   # pieces fed per value before the search gives up (the value then counts as rejected)


def _property_orders(schema: Any) -> list[dict[str, int]]:
    """Every ``properties`` map of ``schema`` as name -> position: the orders llguidance writes keys in."""
    from structgen.compile.relax import subschemas

    if not isinstance(schema, dict):
        return []
    return [{name: i for i, name in enumerate(node["properties"])} for _, node in subschemas(schema)
            if isinstance(node.get("properties"), dict)]


def _schema_order(orders: list[dict[str, int]], keys: list[str]) -> list[str]:
    """``keys`` sorted by the properties map that names most of them (keys it does not name last, as written):
    the first order the key-order search tries, so that a large object does not exhaust its budget."""
    best = max(orders, key=lambda o: sum(k in o for k in keys), default={})
    return sorted(keys, key=lambda k: best.get(k, len(best)))


def _accepted_as_value(state: _State, engine: str, value: Any) -> bool:
    """True if the grammar accepts ``value`` written another way: object keys in another order, an integral
    float as an integer (1.0 and 1 are one JSON value), text in other tokens. A JSON object is unordered, but
    llguidance writes (and accepts) properties in the schema's order: a value it admits in that order is a value
    the model can produce. Depth-first over key orders, schema order first, guided by the matcher, within a
    budget."""
    import json

    raw = engine == RAW
    start = state.compiled[engine].deep_copy() if raw else state.compiled[engine][1].new_matcher()

    def copy(m: Any) -> Any:
        return m.deep_copy() if raw else m.copy()

    def consume(m: Any, toks: list[int]) -> int:
        return int(m.try_consume_tokens(toks) if raw else m.consume_many(toks))

    budget = [KEY_ORDER_BUDGET]
    if state.key_orders is None:
        state.key_orders = _property_orders(state.schema)
    orders = state.key_orders

    def fed(m: Any, piece: str) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            return None
        toks = state.tokenizer.tokenize_str(piece)
        tried = copy(m)
        if consume(tried, toks) == len(toks):
            return tried
        # The same text in other tokens: a tokenizer may cut text into tokens the grammar treats as special (Gemma
        # has HTML tags as user-defined tokens; llguidance keeps those out of JSON strings), and a model can
        # write that text character by character.
        toks = [t for c in piece for t in state.tokenizer.tokenize_str(c)]
        tried = copy(m)
        return tried if consume(tried, toks) == len(toks) else None

    def write(m: Any, v: Any) -> Any:
        if isinstance(v, dict):
            m = fed(m, "{")
            return None if m is None else members(m, [(k, v[k]) for k in _schema_order(orders, list(v))],
                                                  True)
        if isinstance(v, list):
            m = fed(m, "[")
            for i, item in enumerate(v):
                if m is not None and i:
                    m = fed(m, ",")
                m = None if m is None else write(m, item)
            return None if m is None else fed(m, "]")
        written = fed(m, json.dumps(v, ensure_ascii=False))
        if written is None and isinstance(v, float) and v.is_integer():   # 1.0 and 1 are one JSON value
            written = fed(m, str(int(v)))
        return written

    def head(m: Any, key: str, first: bool) -> Any:
        return fed(m, ("" if first else ",") + json.dumps(key, ensure_ascii=False) + ":")

    def members(m: Any, items: list[tuple[str, Any]], first: bool) -> Any:
        # Keys the grammar takes here, in the schema's order. A key written too early shuts out the keys that
        # come before it in the grammar: one after which the other open keys stay open is tried first.
        if not items:
            return fed(m, "}")
        open_keys = [(i, h) for i, (k, _) in enumerate(items) if (h := head(m, k, first)) is not None]
        later: list[tuple[int, Any]] = []
        for i, h in open_keys:
            done = write(h, items[i][1])
            if done is None:
                continue
            if any(head(done, items[j][0], False) is None for j, _ in open_keys if j != i):
                later.append((i, done))
                continue
            rest = members(done, items[:i] + items[i + 1:], False)
            if rest is not None or budget[0] < 0:
                return rest
        for i, done in later:
            rest = members(done, items[:i] + items[i + 1:], False)
            if rest is not None or budget[0] < 0:
                return rest
        return None

    end = write(start, value)
    return end is not None and end.is_accepting()


def _handle(state: _State, job: tuple[str, str, Any]) -> dict[str, Any]:
    kind, engine, payload = job
    if kind == "compile":
        return _compile(state, engine, payload)
    return _walk(state, engine, payload)


# ---- parent side ------------------------------------------------------------------------------------

@dataclass(eq=False)
class _Tally:
    """Counts and samples for one engine."""

    name: str
    status: Counter[str] = field(default_factory=Counter)
    tests: Counter[str] = field(default_factory=Counter)
    ttfm: list[float] = field(default_factory=list)
    schema_us: list[float] = field(default_factory=list)
    tbm: list[np.ndarray] = field(default_factory=list)
    tbm_by_file: dict[str, np.ndarray] = field(default_factory=dict)
    ttfm_by_file: dict[str, float] = field(default_factory=dict)
    relaxed: int = 0
    untyped: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    passing_files: set[str] = field(default_factory=set)
    value_rejecting_files: int = 0     # files with a valid value rejected however it is written
    compile_failed: set[str] = field(default_factory=set)

    def fail(self, case: str, status: str, message: str) -> None:
        self.status[status] += 1
        self.failures.append({"file": case, "status": status, "message": message.strip().splitlines()[0][:300]
                              if message.strip() else ""})


def _file(worker: Worker, tally: _Tally, case: mb.Case, timeout: float) -> None:
    out = worker.call(("compile", tally.name, case.schema), timeout)
    if out.status != "ok" or "error" in out.value:
        status, message = _failed_compile(out)
        tally.compile_failed.add(case.name)
        tally.untyped += int(out.status == "ok" and bool(out.value.get("untyped")))
        tally.fail(case.name, status, message)
        return
    tally.ttfm.append(out.value["ttfm_us"])
    tally.ttfm_by_file[case.name] = out.value["ttfm_us"]
    if "schema_us" in out.value:
        tally.schema_us.append(out.value["schema_us"])
    tally.relaxed += int(out.value["relaxed"])
    if not case.tests:
        tally.status["passing"] += 1
        tally.passing_files.add(case.name)
        return
    walked = worker.call(("walk", tally.name, [(mb.serialise(d), v, d) for d, v in case.tests]), timeout)
    if walked.status != "ok":
        tally.fail(case.name, "timeouts" if walked.status == "timeout" else "crashes",
                   f"walking the instances: {walked.message}")
        return
    tally.tbm.append(walked.value["tbm_ns"])
    tally.tbm_by_file[case.name] = walked.value["tbm_ns"]
    rejected_valid = accepted_invalid = rejected_value = 0
    reason = ""
    for valid, grammar_ok, engine_ok, n_tokens, why, as_value in walked.value["tests"]:
        tally.tests["tokens"] += n_tokens
        tally.tests["valid" if valid else "invalid"] += 1
        if valid and not engine_ok:
            rejected_valid += 1
            rejected_value += int(not as_value)
            reason = reason or why
        if not valid and engine_ok:
            accepted_invalid += 1
        tally.tests["grammar_validation_errors"] += int(valid and not grammar_ok)
        tally.tests["grammar_invalidation_errors"] += int(not valid and grammar_ok)
    tally.tests["validation_errors"] += rejected_valid
    tally.tests["value_validation_errors"] += rejected_value
    tally.tests["invalidation_errors"] += accepted_invalid
    tally.value_rejecting_files += int(rejected_value > 0 and not accepted_invalid)
    if accepted_invalid:
        tally.fail(case.name, "invalidation_errors", f"{accepted_invalid} invalid instance(s) accepted")
    elif rejected_valid:
        tally.fail(case.name, "validation_errors", f"{rejected_valid} valid instance(s) rejected "
                   f"({rejected_value} as values); first: {reason}")
    else:
        tally.status["passing"] += 1
        tally.passing_files.add(case.name)


def _failed_compile(out: Outcome) -> tuple[str, str]:
    if out.status == "timeout":
        return "timeouts", f"compile: {out.message}"
    if out.status == "crash":
        return "crashes", f"compile: {out.message}"
    if out.status == "error":
        return "compile_errors", f"untyped: {out.message}"
    return "compile_errors", str(out.value["error"])


def _summary(t: _Tally, files: int) -> dict[str, Any]:
    tbm_us = (np.concatenate(t.tbm) if t.tbm else np.zeros(0, dtype=np.int64)) / 1000
    row: dict[str, Any] = {"name": t.name, "files": files}
    row.update({k: t.status[k] for k in STATUSES})
    row["relaxed"] = t.relaxed
    # Usable: the schema compiles (strictly or relaxed), so generate() can serve it.
    row["usable"] = files - t.status["compile_errors"] - t.status["timeouts"] - t.status["crashes"]
    row["untyped_errors"] = t.untyped
    # MaskBench walks each instance as serialised; a JSON object is unordered, and a valid value the grammar takes
    # with its keys in another order (the schema's, as llguidance writes them) is one the model can produce.
    row["value_validation_errors"] = t.value_rejecting_files
    row["ttfm_us"] = percentiles(t.ttfm, TTFM_POINTS)
    row["tbm_us"] = percentiles(tbm_us, TBM_POINTS)
    row["tbm_mean_us"] = round(float(tbm_us.mean()), 2) if tbm_us.size else None
    row["masks"] = int(tbm_us.size)
    if t.schema_us:
        row["compile_schema_us"] = percentiles(t.schema_us, TTFM_POINTS)
    keys = ("valid", "invalid", "validation_errors", "value_validation_errors", "invalidation_errors",
            "grammar_validation_errors", "grammar_invalidation_errors", "tokens")
    row["tests"] = {k: t.tests[k] for k in keys}
    return row


def run(data_dir: Path = mb.DEFAULT_DATA, *, backend: str = "llguidance", limit: int | None = None,
        timeout: float = 30.0, model_path: str | None = None,
        on_file: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Run MaskBench on the dev split (or a seeded ``limit``-file sample of it); returns the report."""
    from structgen.local.models import resolve_model_path

    files = mb.sample(mb.dev_split(data_dir), limit)
    ours, raw = _Tally("structgen"), _Tally(RAW)
    samples: dict[str, dict[str, np.ndarray]] = {}
    with Worker(_setup, (model_path, backend), _handle) as worker:
        started = time.perf_counter()
        for i, case in enumerate(mb.cases(files)):
            # Alternate which engine goes first, so neither always runs on a warmer cache.
            for tally in ((ours, raw) if i % 2 == 0 else (raw, ours)):
                _file(worker, tally, case, timeout)
            if on_file is not None:
                on_file(i + 1, len(files))
        elapsed = time.perf_counter() - started
        restarts = worker.restarts
    rows = [_summary(ours, len(files)), _summary(raw, len(files))]
    for t in (ours, raw):
        samples[t.name] = {"ttfm_us": np.asarray(t.ttfm),
                           "tbm_us": (np.concatenate(t.tbm) / 1000) if t.tbm else np.zeros(0)}
    gained = sorted(ours.passing_files & raw.compile_failed)
    report: dict[str, Any] = {
        "bench": "masks",
        "method": "MaskBench (JSONSchemaBench, arXiv 2501.10868)",
        "data": str(data_dir),
        "split": "dev = every file of --data (the files carry no split marker); --limit N = seeded sample",
        "seed": mb.SEED,
        "limit": limit,
        "files": len(files),
        "backend": backend,
        "model": str(resolve_model_path(model_path)),
        "timeout_s": timeout,
        "serialisation": "compact JSON: json.dumps(separators=(',', ':'), ensure_ascii=False)",
        "elapsed_s": round(elapsed, 1),
        "worker_restarts": restarts,
        "machine": machine(),
        "versions": versions(),
        "engines": rows,
        "comparison": _compare(rows[0], rows[1], gained, _same_files(ours, raw)),
        "failures": {t.name: t.failures for t in (ours, raw)},
    }
    report["_samples"] = samples   # for the plot; dropped before JSON is written
    return report


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def _same_files(ours: _Tally, raw: _Tally) -> dict[str, Any]:
    """Both engines' percentiles over the files both compiled and walked: the wrapper's own cost, apart from the
    extra (often harder) schemas only structgen compiles."""
    walked = sorted(ours.tbm_by_file.keys() & raw.tbm_by_file.keys())
    compiled = sorted(ours.ttfm_by_file.keys() & raw.ttfm_by_file.keys())

    def tbm(t: _Tally) -> dict[str, float | None]:
        ns = [t.tbm_by_file[f] for f in walked]
        return percentiles(np.concatenate(ns) / 1000 if ns else np.zeros(0), TBM_POINTS)

    ours_tbm, raw_tbm = tbm(ours), tbm(raw)
    ours_ttfm = percentiles([ours.ttfm_by_file[f] for f in compiled], TTFM_POINTS)
    raw_ttfm = percentiles([raw.ttfm_by_file[f] for f in compiled], TTFM_POINTS)
    return {"files_walked": len(walked), "files_compiled": len(compiled),
            "tbm_us": {"structgen": ours_tbm, RAW: raw_tbm}, "ttfm_us": {"structgen": ours_ttfm, RAW: raw_ttfm},
            "tbm_p99_ratio": _ratio(ours_tbm["p99"], raw_tbm["p99"]),
            "ttfm_p50_ratio": _ratio(ours_ttfm["p50"], raw_ttfm["p50"])}


def _compare(ours: dict[str, Any], raw: dict[str, Any], gained: list[str], same: dict[str, Any]) -> dict[str, Any]:
    # The wrapper-overhead target compares like with like: the masks of the files both engines walked.
    tbm_ratio = same["tbm_p99_ratio"]
    ttfm_p50 = ours["ttfm_us"]["p50"]
    return {
        "tbm_p99_ratio_all": _ratio(ours["tbm_us"]["p99"], raw["tbm_us"]["p99"]),
        "ttfm_p50_ratio_all": _ratio(ttfm_p50, raw["ttfm_us"]["p50"]),
        "tbm_p99_ratio": tbm_ratio,
        "ttfm_p50_ratio": same["ttfm_p50_ratio"],
        "same_files": same,
        "passing_delta": ours["passing"] - raw["passing"],
        "relaxed_compiled": ours["relaxed"],
        "passing_beyond_llguidance": len(gained),
        "passing_beyond_llguidance_files": gained,
        "targets": {
            "zero_invalidation_errors": ours["invalidation_errors"] == 0,
            "ttfm_p50_le_1.1ms": ttfm_p50 is not None and ttfm_p50 <= 1100,
            "tbm_p99_le_1.1x_llguidance": tbm_ratio is not None and tbm_ratio <= 1.1,
            "passing_ge_llguidance": ours["passing"] >= raw["passing"],
            "usable_ge_98pct": ours["usable"] >= 0.98 * ours["files"],
            "validation_errors_le_llguidance_plus_10": ours["validation_errors"] <= raw["validation_errors"] + 10,
            "value_validation_errors_le_llguidance_plus_10":
                ours["value_validation_errors"] <= raw["value_validation_errors"] + 10,
            "ttfm_p50_le_1.1x_llguidance": same["ttfm_p50_ratio"] is not None and same["ttfm_p50_ratio"] <= 1.1,
        },
    }


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: machine, one row per engine, the comparison and its targets."""
    headers = ["engine", "files", "usable", "passing", "compile err", "validation err", "as values",
               "invalidation err", "timeouts", "crashes", "relaxed", "TTFM p50 µs", "TTFM p99 µs", "TBM p50 µs",
               "TBM p99 µs", "TBM p99.9 µs"]
    rows = [[e["name"], e["files"], e.get("usable", "-"), e["passing"], e["compile_errors"], e["validation_errors"],
             e.get("value_validation_errors", "-"), e["invalidation_errors"], e["timeouts"], e["crashes"],
             e["relaxed"], e["ttfm_us"]["p50"], e["ttfm_us"]["p99"], e["tbm_us"]["p50"], e["tbm_us"]["p99"],
             e["tbm_us"]["p999"]]
            for e in report["engines"]]
    c = report["comparison"]
    targets = ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in c["targets"].items())
    return "\n".join([
        f"MaskBench, {report['files']} files of {report['data']} ({report['split']}); backend {report['backend']}; "
        f"per-step timeout {report['timeout_s']:g} s",
        f"Machine: {machine_line(report['machine'])}",
        "",
        markdown_table(headers, rows),
        "",
        f"structgen ÷ llguidance on the {c['same_files']['files_walked']} files both walked: TBM p99 "
        f"{c['tbm_p99_ratio']}×, TTFM p50 {c['ttfm_p50_ratio']}× (all files, structgen's extra schemas included: "
        f"{c['tbm_p99_ratio_all']}×, {c['ttfm_p50_ratio_all']}×); passing {c['passing_delta']:+d}; "
        f"relaxed-grammar schemas: {c['relaxed_compiled']}, of which passing where llguidance cannot compile: "
        f"{c['passing_beyond_llguidance']}",
        f"Targets: {targets}",
    ])


def plot(report: dict[str, Any], path: Path) -> None:
    """Two CDFs (TTFM, TBM), one line per engine, log time axis."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, title in ((axes[0], "ttfm_us", "time to first mask"), (axes[1], "tbm_us", "time between masks")):
        for name, s in report["_samples"].items():
            values = np.sort(s[key])
            if values.size:
                ax.plot(values, np.arange(1, values.size + 1) / values.size, label=name)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        ax.set_xlabel("µs")
        ax.set_ylabel("fraction")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle(f"MaskBench, {report['files']} files — {machine_line(report['machine'])}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
