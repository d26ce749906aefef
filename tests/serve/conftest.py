"""The serve tests' shared fixtures: one ``structgen serve`` on 127.0.0.1 per test module, on the session's model,
and an ``openai`` SDK client pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

import structgen
from structgen.serve import ServeConfig
from structgen.testing.app_server import serving


@pytest.fixture(scope="module")
def url(model: structgen.LlamaCpp) -> Iterator[str]:
    """The base URL (``http://127.0.0.1:PORT/v1``) of a server on the bundled model."""
    with serving(model, ServeConfig(max_tokens=256)) as base:
        yield base


@pytest.fixture(scope="module")
def client(url: str) -> openai.OpenAI:
    """The official ``openai`` SDK, pointed at ``url``."""
    return openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
