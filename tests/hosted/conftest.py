"""Fixtures for the hosted path: the real ``python -m llama_cpp.server`` on 127.0.0.1 with the default model,
and structgen's fault-injecting proxy in front of it."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import structgen

STARTUP_TIMEOUT_S = 120.0
SWEEP_COUNTS: dict[str, dict[str, int]] = {}


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/v1/models", timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real llama-cpp-python OpenAI-compatible server over the bundled SmolLM2-135M; yields its URL."""
    port = free_port()
    log_path = Path(tmp_path_factory.mktemp("llama_server")) / "server.log"
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(structgen.default_model_path()),
           "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096",
           # One thread: on a shared 2-core machine, two llama.cpp threads wait on each other (measured 0.4 s
           # against 2–12 s for a 2-token reply under load).
           "--n_threads", "1", "--n_threads_batch", "1",
           "--interrupt_requests", "False", "--verbose", "False"]
    url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            while not _ready(url):
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = log_path.read_text(errors="replace")[-2000:]
                    pytest.fail(f"llama_cpp.server did not become ready (exit code {proc.poll()}):\n{tail}")
                time.sleep(0.2)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture(scope="session")
def local_model() -> structgen.LlamaCpp:
    """The bundled model in-process, one thread (see the server's note: far faster on a shared machine)."""
    return structgen.LlamaCpp(n_ctx=2048, n_threads=1)


@pytest.fixture(scope="session")
def _session_proxy(llama_server: str) -> Iterator[structgen.FaultProxy]:
    with structgen.FaultProxy(llama_server) as proxy:
        yield proxy


@pytest.fixture
def proxy(_session_proxy: structgen.FaultProxy) -> Iterator[structgen.FaultProxy]:
    """The fault proxy in front of the real server, with no faults queued and an empty log."""
    _session_proxy.reset()
    yield _session_proxy
    _session_proxy.reset()


@pytest.fixture
def hosted(llama_server: str) -> Iterator[structgen.OpenAICompatible]:
    """A fresh client of the real server (nothing learnt about the endpoint yet)."""
    model = structgen.OpenAICompatible(base_url=f"{llama_server}/v1", timeout=120)
    yield model
    model.close()


@pytest.fixture
def via_proxy(proxy: structgen.FaultProxy) -> Iterator[structgen.OpenAICompatible]:
    """A client of the real server through the fault proxy; fast backoff so retries cost little time."""
    model = structgen.OpenAICompatible(base_url=f"{proxy.url}/v1", timeout=60, max_retries=2, backoff=0.05)
    yield model
    model.close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Valid-output rate per strategy over the MaskBench sample (tests/hosted/test_maskbench.py)."""
    if SWEEP_COUNTS:
        terminalreporter.section("hosted chain over MaskBench schemas (valid-output rate per strategy)")
        for label, counts in sorted(SWEEP_COUNTS.items()):
            total = sum(counts.values())
            rate = counts.get("valid", 0) / total if total else 0.0
            terminalreporter.write_line(f"{label}: {rate:.0%} valid of {total}  {dict(sorted(counts.items()))}")


@contextlib.contextmanager
def elapsed() -> Iterator[list[float]]:
    """Measures a block: ``with elapsed() as t: ...`` then ``t[0]`` is its wall time in seconds."""
    box: list[float] = []
    start = time.monotonic()
    try:
        yield box
    finally:
        box.append(time.monotonic() - start)
