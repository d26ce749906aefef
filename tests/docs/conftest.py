"""Fixtures of the docs tests: the session's bundled model as ``structgen.default_model()``."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

import structgen


@pytest.fixture
def default_is_session_model(model: structgen.LlamaCpp) -> Iterator[structgen.LlamaCpp]:
    """Code that calls ``generate`` without ``model=`` (as the docs and examples do) gets the session's model, not a
    second copy; restored afterwards."""
    module = sys.modules["structgen.generate"]
    saved = module._default_model     # type: ignore[attr-defined]
    module._default_model = model     # type: ignore[attr-defined]
    try:
        yield model
    finally:
        module._default_model = saved     # type: ignore[attr-defined]
