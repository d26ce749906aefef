"""Fixtures for the determinism tests: the bundled model in its default and batch-invariant modes, and (slow
tests only) a real ``python -m llama_cpp.server`` on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import structgen
from structgen.testing import llama_server


@pytest.fixture(scope="session")
def plain() -> structgen.LlamaCpp:
    """The bundled model, default mode, one thread (on a shared 2-core machine two threads wait on each other);
    16 sequences for the best-of-16 samples."""
    return structgen.LlamaCpp(n_ctx=2048, n_threads=1, n_seq_max=16)


@pytest.fixture(scope="session")
def invariant() -> structgen.LlamaCpp:
    """The bundled model in the batch-invariant mode: 8 KV streams of 1024 tokens."""
    return structgen.LlamaCpp(n_ctx=1024, n_threads=1, deterministic=True)


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real llama-cpp-python OpenAI-compatible server over the bundled model; yields its /v1 URL."""
    log = Path(tmp_path_factory.mktemp("server")) / "server.log"
    with llama_server(n_ctx=2048, n_threads=1, startup_timeout=120, log_path=log) as url:
        yield url
