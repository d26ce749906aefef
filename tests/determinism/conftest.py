"""Fixtures for the determinism tests: the bundled model in its default and batch-invariant modes, and (slow
tests only) a real ``python -m llama_cpp.server`` on 127.0.0.1."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import structgen


@pytest.fixture(scope="session")
def plain() -> structgen.LlamaCpp:
    """The bundled model, default mode, one thread (on a shared 2-core machine two threads wait on each other)."""
    return structgen.LlamaCpp(n_ctx=2048, n_threads=1)


@pytest.fixture(scope="session")
def invariant() -> structgen.LlamaCpp:
    """The bundled model in the batch-invariant mode: 8 KV streams of 1024 tokens."""
    return structgen.LlamaCpp(n_ctx=1024, n_threads=1, deterministic=True)


def _free_port() -> int:
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
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real llama-cpp-python OpenAI-compatible server over the bundled model; yields its /v1 URL."""
    port = _free_port()
    log_path = Path(tmp_path_factory.mktemp("server")) / "server.log"
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(structgen.default_model_path()),
           "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "1",
           "--n_threads_batch", "1", "--verbose", "False"]
    url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120
            while not _ready(url):
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"llama_cpp.server did not start:\n{log_path.read_text(errors='replace')[-2000:]}")
                time.sleep(0.2)
            yield f"{url}/v1"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
