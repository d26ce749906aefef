"""Reading and checking batch input before any request: every bad line named with its line number and reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from structgen.batch import RecordSpec, read_batch_file, read_records
from structgen.batch.plans import check_lines
from structgen.batch.run import JobOptions, run_job
from structgen.errors import BatchInputError

PERSON = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12}},
          "required": ["name"], "additionalProperties": False}


def chat(cid: str, schema: object = PERSON, **extra: object) -> dict[str, object]:
    body = {"messages": [{"role": "user", "content": "Bob. Extract the person."}], "max_tokens": 24,
            "temperature": 0, "response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": schema}},
            **extra}
    return {"custom_id": cid, "method": "POST", "url": "/v1/chat/completions", "body": body}


def write(path: Path, lines: list[object]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


BAD_LINES: list[object] = [
    chat("a"),                                                          # 1 good
    '{"custom_id": "b", "url": ',                                       # 2 malformed JSON
    {**chat("c"), "url": "/v1/embeddings"},                             # 3 unknown url
    chat("a"),                                                          # 4 duplicate id
    chat("e", {"type": "strnig"}),                                      # 5 bad schema
    chat("f", {"$ref": "#/$defs/n", "$defs": {"n": {"type": "object", "properties": {"next": {"$ref": "#/$defs/n"}},
                                                    "required": ["next"]}}}),   # 6 no finite valid value
    chat("g", strategy="telepathy"),                                    # 7 unknown strategy
    {"custom_id": "h", "method": "POST", "url": "/v1/completions", "body": {"prompt": "Hi", "max_tokens": 4}},  # 8
    "",                                                                 # 9 blank: skipped
    {"custom_id": "", "url": "/v1/completions", "body": {}},            # 10 empty id
    chat("k", stream=True),                                             # 11 streaming asked for
]


def test_every_bad_line_is_named_with_its_line_number(tmp_path: Path) -> None:
    lines, problems = read_batch_file(write(tmp_path / "in.jsonl", BAD_LINES))
    planned, bad = check_lines(lines)
    by_line = {p.line: p for p in [*problems, *bad]}
    assert sorted(by_line) == [2, 3, 4, 5, 6, 7, 10, 11]
    assert "not JSON" in by_line[2].reason
    assert "/v1/embeddings" in by_line[3].reason
    assert "also on line 1" in by_line[4].reason and by_line[4].custom_id is None
    assert by_line[5].code == "SchemaError" and by_line[5].custom_id == "e"
    assert by_line[6].code == "SchemaError"
    assert by_line[7].code == "InvalidArgument" and "telepathy" in by_line[7].reason
    assert "custom_id" in by_line[10].reason
    assert "stream" in by_line[11].reason
    assert [p.line.custom_id for p in planned] == ["a", "h"]


def test_a_file_with_bad_lines_does_not_start(tmp_path: Path) -> None:
    lines, problems = read_batch_file(write(tmp_path / "in.jsonl", BAD_LINES))
    ran: list[object] = []
    with pytest.raises(BatchInputError) as info:
        run_job(lines, problems, source="in.jsonl", manifest={}, executor=lambda pending, emit: ran.append(1),
                options=JobOptions(tmp_path / "out.jsonl"))
    assert [line for line, _ in info.value.problems] == [2, 3, 4, 5, 6, 7, 10, 11]
    assert "line 2:" in str(info.value) and not ran
    assert not (tmp_path / "out.jsonl").exists()


def test_skip_invalid_writes_bad_lines_once_and_runs_the_rest(tmp_path: Path) -> None:
    lines, problems = read_batch_file(write(tmp_path / "in.jsonl", BAD_LINES))
    seen: list[list[str]] = []

    def executor(pending, emit):  # type: ignore[no-untyped-def]
        seen.append([p.line.custom_id for p in pending])

    options = JobOptions(tmp_path / "out.jsonl", skip_invalid=True)
    for _ in range(2):
        summary = run_job(lines, problems, source="in.jsonl", manifest={"m": 1}, executor=executor, options=options)
        assert summary.invalid == 8
    errors = [json.loads(x) for x in (tmp_path / "out.errors.jsonl").read_text().splitlines()]
    assert sorted(e["line"] for e in errors) == [2, 3, 4, 5, 6, 7, 10, 11]   # once, not again on the second run
    assert all(e["response"] is None and e["error"]["code"] for e in errors)
    assert seen == [["a", "h"], ["a", "h"]]   # nothing was written for them, so they run again


def test_records_from_jsonl_csv_and_a_folder(tmp_path: Path) -> None:
    spec = RecordSpec(PERSON, "Extract the person:", source=True, max_tokens=32)
    (tmp_path / "docs.jsonl").write_text('{"id": "d1", "text": "Ann"}\n{"id": 2, "text": "Bo"}\n{"id": "d3"}\n')
    lines, problems = read_records(tmp_path / "docs.jsonl", spec)
    assert [x.custom_id for x in lines] == ["d1", "2"]
    assert [(p.line, "no text" in p.reason) for p in problems] == [(3, True)]
    body = lines[0].body
    assert body["messages"][0]["content"] == "Extract the person:\n\nAnn" and body["source"] == "Ann"
    assert body["response_format"]["json_schema"]["schema"] == PERSON
    (tmp_path / "docs.csv").write_text("key,body\nx,Ann\ny,Bo\n")
    lines, _ = read_records(tmp_path / "docs.csv", RecordSpec(PERSON, "", text_field="body", id_field="key"))
    assert [(x.custom_id, x.line) for x in lines] == [("x", 2), ("y", 3)]
    folder = tmp_path / "txt"
    folder.mkdir()
    (folder / "b.txt").write_text("Bo")
    (folder / "a.txt").write_text("Ann")
    lines, _ = read_records(folder, spec)
    assert [x.custom_id for x in lines] == ["a", "b"]
    planned, bad = check_lines(lines)
    assert not bad and len(planned) == 2
