"""The result files as the record of what is done: torn lines, resume, --retry-errors, the manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from structgen.batch import Journal
from structgen.batch.manifest import check_manifest, manifest_path
from structgen.batch.results import error_line, success_line
from structgen.errors import InvalidArgument, ManifestMismatch


def test_a_torn_last_line_is_cut_and_its_request_runs_again(tmp_path: Path) -> None:
    out, err = tmp_path / "out.jsonl", tmp_path / "err.jsonl"
    with Journal(out, err).open() as j:
        j.write(success_line("a", {"x": 1}), ok=True)
        j.write(error_line("b", "TruncatedOutput", "ran out"), ok=False)
    whole = out.read_bytes()
    out.write_bytes(whole + json.dumps(success_line("c", {"x": 2})).encode()[:25])   # killed mid-write
    j = Journal(out, err).open()
    try:
        assert j.torn == 1 and j.succeeded == {"a"} and j.failed == {"b"}
        assert out.read_bytes() == whole
        j.write(success_line("c", {"x": 2}), ok=True)
    finally:
        j.close()
    assert [json.loads(x)["custom_id"] for x in out.read_text().splitlines()] == ["a", "c"]


def test_retry_errors_takes_their_error_lines_out(tmp_path: Path) -> None:
    out, err = tmp_path / "out.jsonl", tmp_path / "err.jsonl"
    with Journal(out, err).open() as j:
        j.write(error_line("a", "TruncatedOutput", "x"), ok=False)
        j.write(error_line("b", "DeadlineExceeded", "y"), ok=False)
        j.write(error_line(None, "InvalidArgument", "line 3: bad", line=3), ok=False)
    with Journal(out, err).open(retry=["a"]) as j:
        assert j.failed == {"b"} and j.bad_lines == {3} and "a" not in j.done
    assert [json.loads(x)["custom_id"] for x in err.read_text().splitlines()] == ["b", None]


def test_a_foreign_line_in_the_middle_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text('{"custom_id": "a"}\nnot json\n{"custom_id": "b"}\n')
    with pytest.raises(InvalidArgument, match=r"out.jsonl:2"):
        Journal(out, tmp_path / "err.jsonl").open()


def test_a_resume_with_another_model_is_refused_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    first = {"model": {"digest": "sha256:aa"}, "engine": {"deterministic": False}, "structgen_version": "0.1.0"}
    check_manifest(out, first, has_results=False)
    check_manifest(out, first, has_results=True)   # the same setup resumes
    other = {**first, "model": {"digest": "sha256:bb"}}
    with pytest.raises(ManifestMismatch, match="model") as info:
        check_manifest(out, other, has_results=True)
    assert set(info.value.differences) == {"model"}
    check_manifest(out, other, has_results=True, force=True)
    assert json.loads(manifest_path(out).read_text())["model"] == {"digest": "sha256:bb"}


def test_results_without_a_manifest_are_not_added_to(tmp_path: Path) -> None:
    with pytest.raises(ManifestMismatch, match="no manifest"):
        check_manifest(tmp_path / "out.jsonl", {"m": 1}, has_results=True)
