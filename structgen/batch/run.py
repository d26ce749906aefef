"""A batch job from start to end: check the whole input, check the manifest, skip what is done, run the rest on an
executor (the local engine, an endpoint, a Ray cluster), write each result as it completes, summarise.

Every executor hands back ``Outcome``s; this module alone writes them (``Journal``), so a resume works the same
whatever ran the lines. A ``custom_id`` already written is never written again (a Ray task retried after a lost
node may run a line twice; only its first result is kept). Ctrl-C stops the job cleanly: the lines that finished
are written and synced, the rest are left for the next run.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..errors import BatchInputError
from .journal import Journal
from .lines import BatchLine, LineProblem
from .manifest import check_manifest
from .plans import DEFAULT_MAX_TOKENS, PlannedLine, check_lines
from .progress import Progress, QuietProgress
from .results import Outcome, problem_line

__all__ = ["Executor", "JobOptions", "Summary", "error_path", "run_job"]


class Executor(Protocol):
    """Runs planned lines and hands each finished one to ``emit`` (from the calling thread), in any order."""

    def __call__(self, pending: list[PlannedLine], emit: Callable[[Outcome], None]) -> None:
        """Run ``pending``; return when all are emitted (or raise ``KeyboardInterrupt`` when stopped)."""


@dataclass(frozen=True)
class JobOptions:
    """Where results go and how a run treats what is there: ``err`` (default ``OUT.errors.jsonl``),
    ``retry_errors`` (run the failed lines again, replacing their error lines), ``force`` (resume despite a
    different manifest), ``skip_invalid`` (write bad input lines to the error file and run the rest, instead of not
    starting), ``max_tokens_cap`` (the cap and default of a line's ``max_tokens``), ``timeout`` (seconds per
    request)."""

    out: Path
    err: Path | None = None
    retry_errors: bool = False
    force: bool = False
    skip_invalid: bool = False
    max_tokens_cap: int = DEFAULT_MAX_TOKENS
    timeout: float | None = None


def error_path(out: Path) -> Path:
    """The default error file beside ``out``: ``OUT.errors.jsonl`` (``results.jsonl`` → ``results.errors.jsonl``)."""
    stem = out.name[: -len(".jsonl")] if out.name.endswith(".jsonl") else out.name
    return out.with_name(f"{stem}.errors.jsonl")


@dataclass
class Summary:
    """What a run did: ``total`` lines in the input, ``skipped`` (done by an earlier run), ``done`` this run,
    ``valid`` successes, ``errors`` by typed error, ``invalid`` input lines, tokens, wall time, documents/s, and
    whether it was ``interrupted``."""

    total: int = 0
    skipped: int = 0
    done: int = 0
    valid: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    invalid: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    wall_s: float = 0.0
    docs_per_s: float = 0.0
    distinct_schemas: int = 0
    torn_lines_dropped: int = 0
    interrupted: bool = False
    out: str = ""
    err: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready data (``--json``)."""
        return asdict(self)


def run_job(lines: list[BatchLine], problems: list[LineProblem], *, source: str, manifest: dict[str, Any],
            executor: Executor, options: JobOptions, progress: Progress | None = None) -> Summary:
    """Run a batch: the whole input is checked before the first request (bad lines raise ``BatchInputError``
    unless ``skip_invalid``), the manifest is checked, then every line not yet in OUT or ERR runs on ``executor``
    with its result appended as it completes. ``source`` names the input in messages."""
    started = time.perf_counter()
    progress = progress or QuietProgress()
    planned, bad = check_lines(lines, max_tokens_cap=options.max_tokens_cap, timeout=options.timeout)
    problems = sorted([*problems, *bad], key=lambda p: p.line)
    if problems and not options.skip_invalid:
        raise BatchInputError(source, [(p.line, p.reason) for p in problems])
    err = options.err or error_path(options.out)
    summary = Summary(total=len(planned) + len(problems), invalid=len(problems), out=str(options.out), err=str(err))
    summary.distinct_schemas = len({_schema_key(p) for p in planned})
    journal = Journal(options.out, err)
    has_results = any(p.exists() and p.stat().st_size > 0 for p in (options.out, err))
    check_manifest(options.out, manifest, has_results=has_results, force=options.force)
    retry = [p.line.custom_id for p in planned] if options.retry_errors else []
    with journal.open(retry=retry):
        summary.torn_lines_dropped = journal.torn
        done = journal.done
        for p in problems:   # bad lines go to the error file once
            if p.line not in journal.bad_lines and (p.custom_id is None or p.custom_id not in done):
                journal.write(problem_line(p), ok=False)
        pending = [p for p in planned if p.line.custom_id not in done]
        summary.skipped = len(planned) - len(pending)
        progress.start(summary.total, summary.total - len(pending))
        counts: Counter[str] = Counter()

        def emit(outcome: Outcome) -> None:
            if outcome.custom_id is not None and outcome.custom_id in journal.done:
                return   # a line run twice (a retried Ray task): its first result stands
            journal.write(outcome.record, ok=outcome.ok)
            summary.done += 1
            summary.valid += outcome.ok
            if outcome.code is not None:
                counts[outcome.code] += 1
            summary.prompt_tokens += outcome.prompt_tokens
            summary.completion_tokens += outcome.completion_tokens
            progress.advance(outcome.ok, outcome.completion_tokens)

        try:
            executor(pending, emit)
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            progress.close()
            summary.errors = dict(sorted(counts.items()))
    summary.wall_s = round(time.perf_counter() - started, 3)
    summary.docs_per_s = round(summary.done / summary.wall_s, 3) if summary.wall_s > 0 else 0.0
    return summary


def _schema_key(item: PlannedLine) -> str:
    import json

    schema = item.plan.schema
    if isinstance(schema, dict):
        return "json:" + json.dumps(schema, sort_keys=True)
    return f"{type(schema).__name__}:{schema!r}"
