"""Fixtures for the hosted path: the real ``python -m llama_cpp.server`` on 127.0.0.1 with the default model,
and structgen's fault-injecting proxy in front of it."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import structgen
from structgen.testing import llama_server as serve_llama

STARTUP_TIMEOUT_S = 120.0
SWEEP_COUNTS: dict[str, dict[str, int]] = {}


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real llama-cpp-python OpenAI-compatible server over the bundled SmolLM2-135M; yields its URL
    (without ``/v1``)."""
    log = Path(tmp_path_factory.mktemp("llama_server")) / "server.log"
    # One thread: on a shared 2-core machine, two llama.cpp threads wait on each other (measured 0.4 s against
    # 2–12 s for a 2-token reply under load).
    with serve_llama(n_ctx=4096, n_threads=1, extra_args=("--interrupt_requests", "False"),
                     startup_timeout=STARTUP_TIMEOUT_S, log_path=log) as url:
        yield url.removesuffix("/v1")


@pytest.fixture(scope="session")
def local_model() -> structgen.LlamaCpp:
    """The bundled model in-process, one thread (see the server's note: far faster on a shared machine)."""
    return structgen.LlamaCpp(n_ctx=2048, n_threads=1, prefix_cache=0)


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
