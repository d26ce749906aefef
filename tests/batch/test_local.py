"""``run_job`` on the real bundled model: every good line done once and valid, bad lines named, resume skips what
is done, bodies shaped as ``structgen serve`` answers."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

import structgen
from structgen.batch import AsyncExecutor, JobOptions, read_batch_file, run_job

from .conftest import PERSON, people_file, person_line, read_lines


def test_a_file_with_good_and_bad_lines_runs_each_good_line_once(tmp_path: Path, model: structgen.LlamaCpp) -> None:
    src = people_file(tmp_path / "in.jsonl", 3)
    extra = [
        '{"custom_id": "broken", ',                                                         # 4 malformed
        json.dumps({**person_line("u", "Al", 3), "url": "/v1/images"}),                     # 5 unknown url
        json.dumps(person_line("p0", "Al", 3)),                                             # 6 duplicate
        json.dumps(person_line("bad", "Al", 3, response_format={                            # 7 bad schema
            "type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 5}}})),
        json.dumps({"custom_id": "choice", "method": "POST", "url": "/v1/chat/completions",  # 8 good: a choice
                    "body": {"messages": [{"role": "user", "content": "Yes or no?"}], "choice": ["yes", "no"],
                             "max_tokens": 4}}),
        json.dumps({"custom_id": "text", "method": "POST", "url": "/v1/completions",           # 9 good: a regex
                    "body": {"prompt": "Year:", "regex": " [0-9]{4}", "max_tokens": 8}}),
    ]
    src.write_text(src.read_text() + "\n".join(extra) + "\n")
    lines, problems = read_batch_file(src)
    out = tmp_path / "out.jsonl"
    options = JobOptions(out, skip_invalid=True)
    peak = {"in_engine": 0}

    def watched(pending, emit):  # type: ignore[no-untyped-def]
        def watch(outcome):  # type: ignore[no-untyped-def]
            # queued (not yet admitted by the engine thread) and live together: what the window let in
            peak["in_engine"] = max(peak["in_engine"], model.scheduler.queued + model.scheduler.live_sequences)
            emit(outcome)
        AsyncExecutor(model, window=3)(pending, watch)

    summary = run_job(lines, problems, source=str(src), manifest={"m": 1}, executor=watched, options=options)
    assert (summary.done, summary.invalid, summary.distinct_schemas) == (5, 4, 3)
    assert 0 < peak["in_engine"] <= 3   # the window keeps the engine as full as asked, no fuller
    results = read_lines(out)
    errors = read_lines(tmp_path / "out.errors.jsonl")
    assert sorted(r["custom_id"] for r in results) == ["choice", "p0", "p1", "p2", "text"]
    assert sorted(e["line"] for e in errors) == [4, 5, 6, 7]
    by_id = {r["custom_id"]: r for r in results}
    for cid in ("p0", "p1", "p2"):
        body = by_id[cid]["response"]["body"]
        assert by_id[cid]["response"]["status_code"] == 200 and by_id[cid]["error"] is None
        assert body["object"] == "chat.completion" and body["choices"][0]["finish_reason"] == "stop"
        jsonschema.validate(json.loads(body["choices"][0]["message"]["content"]), PERSON)
        assert body["usage"]["completion_tokens"] > 0 and body["model"] == model.name
    assert by_id["choice"]["response"]["body"]["choices"][0]["message"]["content"] in ("yes", "no")
    text = by_id["text"]["response"]["body"]
    assert text["object"] == "text_completion" and text["choices"][0]["text"][1:].isdigit()
    # Run again: nothing left to do, nothing written twice.
    again = run_job(lines, problems, source=str(src), manifest={"m": 1}, executor=AsyncExecutor(model),
                    options=options)
    assert (again.done, again.skipped) == (0, 5)
    assert len(read_lines(out)) == 5 and len(read_lines(tmp_path / "out.errors.jsonl")) == 4


def test_a_failed_line_is_a_typed_error_and_retry_errors_replaces_it(tmp_path: Path, model: structgen.LlamaCpp) -> None:
    src = tmp_path / "in.jsonl"
    short = person_line("short", "Ann", 31, max_tokens=3)          # cannot finish the object: TruncatedOutput
    src.write_text(json.dumps(short) + "\n")
    out = tmp_path / "out.jsonl"
    lines, problems = read_batch_file(src)
    summary = run_job(lines, problems, source=str(src), manifest={"m": 1}, executor=AsyncExecutor(model),
                      options=JobOptions(out))
    assert summary.errors == {"TruncatedOutput": 1}
    [error] = read_lines(tmp_path / "out.errors.jsonl")
    assert error["custom_id"] == "short" and error["response"] is None and error["error"]["code"] == "TruncatedOutput"
    src.write_text(json.dumps(person_line("short", "Ann", 31)) + "\n")   # fixed budget, same id
    lines, problems = read_batch_file(src)
    summary = run_job(lines, problems, source=str(src), manifest={"m": 1}, executor=AsyncExecutor(model),
                      options=JobOptions(out, retry_errors=True))
    assert (summary.done, summary.valid) == (1, 1)
    assert read_lines(tmp_path / "out.errors.jsonl") == []
    assert [r["custom_id"] for r in read_lines(out)] == ["short"]
