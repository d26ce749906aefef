"""``--endpoint``: the lines go to a real ``structgen serve`` on 127.0.0.1 through the fault proxy — 429 with
Retry-After, 503, a dropped connection and an invalid reply are retried or re-asked, every line ends once, every
success is valid."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import structgen
from structgen.batch import AsyncExecutor, JobOptions, endpoint_manifest, endpoint_model, read_batch_file, run_job
from structgen.serve import ServeConfig
from structgen.testing.app_server import serving
from structgen.testing.faultproxy import Fault, FaultProxy

from .conftest import PERSON, people_file, read_lines


@pytest.fixture(scope="module")
def served(model: structgen.LlamaCpp) -> Iterator[str]:
    with serving(model, ServeConfig(max_tokens=64)) as url:
        yield url


@pytest.fixture(scope="module")
def proxy(served: str) -> Iterator[FaultProxy]:
    with FaultProxy(served.removesuffix("/v1")) as p:
        yield p


def _comparable(body: dict[str, Any]) -> dict[str, Any]:
    """A completion body less what differs between two runs of one request (ids, clock, timings)."""
    out = {k: v for k, v in body.items() if k not in ("id", "created")}
    out["structgen"] = {"choices": [{k: v for k, v in c.items() if k != "timings"} for c in body["structgen"]["choices"]]}
    return out


def test_a_result_body_is_what_structgen_serve_answers(tmp_path: Path, model: structgen.LlamaCpp, served: str) -> None:
    line = {"custom_id": "x", "method": "POST", "url": "/v1/chat/completions", "body": {
        "messages": [{"role": "user", "content": "Is water wet?"}], "choice": ["yes", "no"], "seed": 7,
        "temperature": 0, "max_tokens": 4, "logprobs": True}}
    (tmp_path / "in.jsonl").write_text(json.dumps(line) + "\n")
    lines, problems = read_batch_file(tmp_path / "in.jsonl")
    run_job(lines, problems, source="in.jsonl", manifest={"m": 1}, executor=AsyncExecutor(model),
            options=JobOptions(tmp_path / "out.jsonl"))
    [result] = read_lines(tmp_path / "out.jsonl")
    request = urllib.request.Request(served + "/chat/completions", data=json.dumps(line["body"]).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as reply:
        direct = json.loads(reply.read())
    assert _comparable(result["response"]["body"]) == _comparable(direct)


def test_faults_are_retried_paced_and_validated(tmp_path: Path, proxy: FaultProxy) -> None:
    src = people_file(tmp_path / "in.jsonl", 2)
    proxy.reset()
    proxy.inject(Fault.status(429, retry_after=0.5), Fault.status(503), Fault.reset(),
                 Fault.content('{"name": 7}'))
    lines, problems = read_batch_file(src)
    url = proxy.url + "/v1"
    started = time.monotonic()
    summary = run_job(lines, problems, source=str(src), manifest=endpoint_manifest(url, "m"),
                      executor=AsyncExecutor(endpoint_model(url, model="m"), window=2), options=JobOptions(
                          tmp_path / "out.jsonl"))
    assert time.monotonic() - started >= 0.5   # the 429's Retry-After was waited out
    faults = [r.fault for r in proxy.log if r.fault is not None]
    assert faults == ["status", "status", "reset", "content"]
    results = read_lines(tmp_path / "out.jsonl")
    errors = read_lines(tmp_path / "out.errors.jsonl")
    assert sorted(r["custom_id"] for r in results + errors) == ["p0", "p1"]
    assert summary.valid == len(results) == 2, errors
    for r in results:
        jsonschema.validate(json.loads(r["response"]["body"]["choices"][0]["message"]["content"]), PERSON)
