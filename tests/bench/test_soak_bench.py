"""``structgen bench soak``: a tiny run against structgen serve (every reply validated by the bench), and the
pieces that decide its verdict."""

from __future__ import annotations

import json
from typing import Any

from structgen_benchmarks import soak
from structgen_benchmarks.checks import is_valid


def test_tiny_run(bench: Any) -> None:
    code, stdout, report = bench("soak", "--requests", "4", "--clients", "2", "--n-ctx", "4096", "--warmup", "0")
    assert code == (0 if report["met"] else 1), stdout
    o = report["outcomes"]
    assert o["invalid_200"] == 0 and report["targets"]["server_errors"]["met"]
    assert o["valid"] + sum(o["http_errors"].values()) + o["retry_after"] == 4
    assert report["first"]["requests"] == report["last"]["requests"] == 2
    assert report["rss_mb"]["start"] and report["rss_mb"]["end"]
    assert "| window |" in stdout and "| target |" in stdout


def test_every_window_of_the_mix_holds_the_same_kinds() -> None:
    mix = soak.calls(3 * len(soak.KINDS))
    passes = [[(c.kind, c.body["stream"]) for c in mix[i : i + len(soak.KINDS)]]
              for i in range(0, len(mix), len(soak.KINDS))]
    assert passes[0] == passes[1] == passes[2]
    assert {kind for kind, _ in passes[0]} == {"json_schema", "tools", "regex", "document", "near_max_tokens"}
    assert {streamed for _, streamed in passes[0]} == {True, False}


def test_the_longest_valid_near_limit_answer_fits_its_max_tokens() -> None:
    longest = json.dumps({"items": ["x" * 12] * 8}, separators=(",", ":"))
    assert is_valid(longest, soak.LIST8)
    assert len(longest.encode()) <= soak.LIST8_MAX_TOKENS   # a token is at least one byte


def test_outcomes_keep_429_and_503_with_retry_after_apart() -> None:
    def r(status: Any, valid: bool = False, retry_after: bool = False, error: str | None = None) -> dict[str, Any]:
        return {"kind": "regex", "status": status, "valid": valid, "retry_after": retry_after, "error": error}

    o = soak.outcomes([r(200, True), r(200), r(200, error="ValidationFailed"), r(503, retry_after=True),
                       r(503), r(429, retry_after=True), r(500), r("transport", error="URLError")])
    assert o["valid"] == 1 and o["invalid_200"] == 1
    assert o["stream_errors"] == {"ValidationFailed": 1}
    assert o["retry_after"] == 2 and o["http_errors"] == {"503": 1, "500": 1}
    assert o["transport"] == 1
