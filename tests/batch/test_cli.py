"""``structgen batch run`` as a user runs it: records mode, --json, resume, the manifest refusal, and (slow) SIGKILL
at random points over several runs of the same command."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest

from .conftest import PERSON, people_file, read_lines

STRUCTGEN = str(Path(sys.executable).with_name("structgen"))


def batch(*argv: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([STRUCTGEN, "batch", "run", *argv], capture_output=True, text=True, timeout=timeout)


def test_records_mode_json_summary_resume_and_manifest(tmp_path: Path) -> None:
    (tmp_path / "person.schema.json").write_text(json.dumps(PERSON))
    (tmp_path / "docs.csv").write_text("key,body\nk1,Ann is 31.\nk2,Bob is 45.\n")
    out = tmp_path / "out.jsonl"
    argv = [str(tmp_path / "docs.csv"), "-o", str(out), "--schema", str(tmp_path / "person.schema.json"),
            "--prompt", "Extract the person:", "--text-field", "body", "--id-field", "key", "--max-tokens", "24",
            "--n-ctx", "2048", "--n-seq-max", "2", "--json"]
    first = batch(*argv)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert (summary["done"], summary["valid"], summary["total"]) == (2, 2, 2)
    results = read_lines(out)
    assert sorted(r["custom_id"] for r in results) == ["k1", "k2"]
    for r in results:
        jsonschema.validate(json.loads(r["response"]["body"]["choices"][0]["message"]["content"]), PERSON)
    again = batch(*argv)
    assert again.returncode == 0 and json.loads(again.stdout)["skipped"] == 2
    other = batch(*argv, "--deterministic")   # other engine options: refused before any work
    assert other.returncode == 2 and "ManifestMismatch" in other.stderr and "deterministic" in other.stderr
    assert len(read_lines(out)) == 2


def test_bad_lines_stop_the_job_with_their_line_numbers(tmp_path: Path) -> None:
    src = people_file(tmp_path / "in.jsonl", 1)
    src.write_text(src.read_text() + "{oops\n" + json.dumps({"custom_id": "p0", "url": "/v1/completions",
                                                             "body": {"prompt": "x"}}) + "\n")
    r = batch(str(src), "-o", str(tmp_path / "out.jsonl"))
    assert r.returncode == 2
    assert "BatchInputError" in r.stderr and "line 2: not JSON" in r.stderr and "line 3: custom_id 'p0'" in r.stderr
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_exactly_once(tmp_path: Path) -> None:
    n = 30   # enough work that most of the kills land while the job runs (12 lines ran out before the third kill)
    src = people_file(tmp_path / "in.jsonl", n)
    out = tmp_path / "out.jsonl"
    argv = [STRUCTGEN, "batch", "run", str(src), "-o", str(out), "--n-ctx", "2048", "--n-seq-max", "3",
            "--progress", "quiet"]
    rng = random.Random(31)
    kills = 0
    for _ in range(5):
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + rng.uniform(1.5, 5.0)
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=30)
    final = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr
    assert kills >= 3
    results, errors = read_lines(out), read_lines(tmp_path / "out.errors.jsonl")
    ids = [r["custom_id"] for r in results + errors]
    assert sorted(ids) == sorted(f"p{i}" for i in range(n))   # every id, exactly once
    for r in results:
        jsonschema.validate(json.loads(r["response"]["body"]["choices"][0]["message"]["content"]), PERSON)


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_the_next_run_finishes(tmp_path: Path) -> None:
    src = people_file(tmp_path / "in.jsonl", 8)
    out = tmp_path / "out.jsonl"
    argv = [STRUCTGEN, "batch", "run", str(src), "-o", str(out), "--n-seq-max", "2", "--progress", "quiet"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while proc.poll() is None and not read_lines(out):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "resume" in stderr
    assert out.read_bytes().endswith(b"\n")   # nothing half-written
    done = len(read_lines(out))
    assert 1 <= done < 8
    final = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert final.returncode == 0
    assert sorted(r["custom_id"] for r in read_lines(out)) == sorted(f"p{i}" for i in range(8))


@pytest.mark.slow   # 950 short requests on the real model: 4-6 minutes on 2 cores
def test_a_thousand_lines_with_five_percent_bad_each_bad_line_named_every_good_line_done(tmp_path: Path) -> None:
    rng = random.Random(5)
    bad_at = set(rng.sample(range(1, 1001), 50))    # 1-based line numbers
    bad_kinds = [lambda i: f'{{"custom_id": "broken-{i}", ',                                        # not JSON
                 lambda i: json.dumps({**short_line(f"u{i}", i), "url": "/v1/images"}),              # unknown url
                 lambda i: json.dumps(short_line("g1", i)),                                          # duplicate id
                 lambda i: json.dumps(short_line(f"r{i}", i, regex="[0-9")),                         # bad regex
                 lambda i: json.dumps({"custom_id": f"n{i}", "method": "POST", "url": "/v1/chat/completions"})]
    rows, good = [], []
    for n in range(1, 1001):
        if n in bad_at:
            rows.append(bad_kinds[n % len(bad_kinds)](n))
        else:
            good.append(f"g{n}")
            rows.append(json.dumps(short_line(f"g{n}", n)))
    assert "g1" in good   # the duplicates above repeat a good line's id
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(rows) + "\n")
    out = tmp_path / "out.jsonl"
    r = batch(str(src), "-o", str(out), "--skip-invalid", "--n-ctx", "2048", "--progress", "quiet", "--json",
              timeout=1200)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert (summary["total"], summary["invalid"], summary["done"]) == (1000, 50, 950)
    errors = read_lines(tmp_path / "out.errors.jsonl")
    assert sorted(e["line"] for e in errors) == sorted(bad_at) and all(e["error"]["message"] for e in errors)
    results = read_lines(out)
    assert sorted(x["custom_id"] for x in results) == sorted(good)   # each good line exactly once
    for x in results:
        content = x["response"]["body"]["choices"][0]["message"]["content"]
        assert content in ("yes", "no") if int(x["custom_id"][1:]) % 2 else content.isdigit(), x


def short_line(cid: str, i: int, **body: object) -> dict[str, object]:
    """A cheap chat request: a yes/no choice (odd ``i``) or a number of up to 3 digits (even ``i``)."""
    kind: dict[str, object] = {"choice": ["yes", "no"]} if i % 2 else {"regex": "[0-9]{1,3}"}
    return {"custom_id": cid, "method": "POST", "url": "/v1/chat/completions", "body": {
        "messages": [{"role": "user", "content": f"Item {i}: is {i} a prime number? Answer briefly."}],
        "max_tokens": 4, "temperature": 0, **kind, **body}}
