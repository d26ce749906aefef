"""The bench worker: a job past its deadline or one that kills the process is reported, and the next job runs."""

from __future__ import annotations

import os
import time
from typing import Any

from structgen_benchmarks._worker import Worker


def _setup(tag: str) -> dict[str, Any]:
    return {"tag": tag, "pid": os.getpid()}


def _handle(state: dict[str, Any], job: tuple[str, float]) -> Any:
    kind, arg = job
    if kind == "sleep":
        time.sleep(arg)
    elif kind == "die":
        os._exit(3)
    elif kind == "raise":
        raise ValueError("bad input")
    return (state["tag"], state["pid"])


def test_timeouts_crashes_and_errors_are_outcomes_not_stalls() -> None:
    with Worker(_setup, ("t",), _handle) as w:
        first = w.call(("echo", 0), timeout=60)
        assert first.status == "ok" and first.value[0] == "t"
        t0 = time.perf_counter()
        slow = w.call(("sleep", 30), timeout=0.5)
        assert slow.status == "timeout" and time.perf_counter() - t0 < 10
        after = w.call(("echo", 0), timeout=60)
        assert after.status == "ok" and after.value[1] != first.value[1]     # a fresh process took over
        dead = w.call(("die", 0), timeout=60)
        assert dead.status == "crash" and "exit code 3" in dead.message
        error = w.call(("raise", 0), timeout=60)
        assert error.status == "error" and "bad input" in error.message
        same = w.call(("echo", 0), timeout=60)
        assert same.status == "ok"                                           # an exception does not restart
        assert w.restarts == 2
