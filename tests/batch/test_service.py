"""OpenAI's Batch endpoints in ``structgen serve --data-dir``, driven by the official openai SDK over real HTTP:
create, poll, download, cancel, and a server restart mid-batch."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jsonschema
import openai
import pytest

import structgen
from structgen.serve import ServeConfig
from structgen.testing.app_server import serving

from .conftest import PERSON, people_file


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key="unused", max_retries=0)


def wait(c: openai.OpenAI, bid: str, until: tuple[str, ...], timeout: float = 300) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = c.batches.retrieve(bid)
        if batch.status in until:
            return batch
        time.sleep(0.3)
    raise AssertionError(f"batch {bid} is still {batch.status}")


def lines_of(c: openai.OpenAI, fid: str | None) -> list[dict[str, Any]]:
    return [json.loads(x) for x in c.files.content(fid).text.splitlines()] if fid else []


def test_create_poll_download(tmp_path: Path, model: structgen.LlamaCpp) -> None:
    src = people_file(tmp_path / "in.jsonl", 2)
    with serving(model, ServeConfig(max_tokens=64), data_dir=tmp_path / "data") as url:
        c = client(url)
        f = c.files.create(file=("in.jsonl", src.read_bytes()), purpose="batch")
        batch = c.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
        assert batch.status in ("validating", "in_progress")
        done = wait(c, batch.id, ("completed", "failed"))
        assert done.status == "completed" and done.request_counts.completed == 2
        results = lines_of(c, done.output_file_id)
        assert sorted(r["custom_id"] for r in results) == ["p0", "p1"]
        for r in results:
            jsonschema.validate(json.loads(r["response"]["body"]["choices"][0]["message"]["content"]), PERSON)
        assert batch.id in [b.id for b in c.batches.list()]
        bad = tmp_path / "bad.jsonl"
        bad.write_text('{"custom_id": "x", "url": "/v1/chat/completions", "body": {"messages": []}}\n')
        failed = wait(c, c.batches.create(input_file_id=c.files.create(file=("bad.jsonl", bad.read_bytes()), purpose="batch").id,
                                          endpoint="/v1/chat/completions", completion_window="24h").id,
                      ("completed", "failed"))
        assert failed.status == "failed" and "line 1" in failed.errors.data[0].message


@pytest.mark.slow
def test_cancel_and_restart_mid_batch(tmp_path: Path, model: structgen.LlamaCpp) -> None:
    src = people_file(tmp_path / "in.jsonl", 6)
    data = tmp_path / "data"
    with serving(model, ServeConfig(max_tokens=64), data_dir=data) as url:
        c = client(url)
        fid = c.files.create(file=("in.jsonl", src.read_bytes()), purpose="batch").id
        cancelled = c.batches.create(input_file_id=fid, endpoint="/v1/chat/completions", completion_window="24h")
        c.batches.cancel(cancelled.id)
        assert wait(c, cancelled.id, ("cancelled",)).request_counts.completed < 6
        batch = c.batches.create(input_file_id=fid, endpoint="/v1/chat/completions", completion_window="24h")
        deadline = time.monotonic() + 300
        while c.batches.retrieve(batch.id).request_counts.completed < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
    # The server stopped mid-batch; a new one on the same data directory resumes it.
    with serving(model, ServeConfig(max_tokens=64), data_dir=data) as url:
        c = client(url)
        done = wait(c, batch.id, ("completed",))
        results = lines_of(c, done.output_file_id) + lines_of(c, done.error_file_id)
        assert sorted(r["custom_id"] for r in results) == sorted(f"p{i}" for i in range(6))
