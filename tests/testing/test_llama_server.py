"""``structgen.testing.llama_server``: a server that cannot start is a typed error with its log, not a hang."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import structgen
from structgen.testing import llama_server

from ..conftest import llama_server_children


def test_a_file_that_is_no_gguf_fails_fast_with_the_servers_own_words(tmp_path: Path) -> None:
    bogus = tmp_path / "not-a-model.gguf"
    bogus.write_bytes(b"this is not a GGUF file")
    log = tmp_path / "server.log"
    with pytest.raises(structgen.BackendError, match="exited with code") as info, \
            llama_server(bogus, n_threads=1, startup_timeout=60, log_path=log):
        pytest.fail("the server must not come up")
    assert log.is_file() and log.stat().st_size > 0
    assert str(bogus) in str(info.value) or "gguf" in str(info.value).lower()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_terminated_bench_stops_the_server_it_started(tmp_path: Path) -> None:
    # SIGTERM (a CI timeout, `kill`) must unwind the CLI like Ctrl-C, so `--serve` does not leave a server behind.
    report = tmp_path / "report.json"
    bench = subprocess.Popen([sys.executable, "-m", "cli", "bench", "strategies", "--serve", "--task",
                              "classification", "--strategies", "prompt", "--threads", "1", "--json", str(report)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=Path(__file__).parents[2])
    try:
        server = None
        deadline = time.monotonic() + 120
        while server is None and time.monotonic() < deadline and bench.poll() is None:
            server = next(iter(llama_server_children(bench.pid)), None)
            time.sleep(0.2)
        assert server is not None, "the bench did not start llama_cpp.server"
        while not report.exists() and time.monotonic() < deadline:   # the server answered a first item
            time.sleep(0.2)
        bench.send_signal(signal.SIGTERM)
        assert bench.wait(timeout=30) == 143
        deadline = time.monotonic() + 15
        while _alive(server) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(server), "llama_cpp.server outlived the bench"
    finally:
        if bench.poll() is None:
            bench.kill()
