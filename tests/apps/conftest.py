"""Fixtures for the app tests: the bundled model on one thread, a scratch copy of shop.sqlite, and the
``structgen`` command line run in-process through ``cli.main.main`` (so typed errors map to exit codes)."""

from __future__ import annotations

import hashlib
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import structgen
from structgen.apps.sqlite_db import shop_db_path

CliRun = Callable[..., tuple[int, str, str]]


@pytest.fixture(scope="session")
def app_model() -> structgen.LlamaCpp:
    """The bundled SmolLM2-135M, one thread: on a shared 2-core machine two llama.cpp threads spin-wait on
    each other (measured here: 32 tokens in 1.5 s on one thread, 26 s on two, at load 8)."""
    return structgen.LlamaCpp(n_ctx=4096, n_threads=1, prefix_cache=0)


@pytest.fixture
def shop_copy(tmp_path: Path) -> Path:
    """A private copy of the bundled shop.sqlite."""
    dest = tmp_path / "shop.sqlite"
    shutil.copyfile(shop_db_path(), dest)
    return dest


def digest(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> CliRun:
    """Run ``structgen <args>`` through ``cli.main.main``; returns (exit code, stdout, stderr).

    ``model=`` stands in for ``--model`` loading: the commands get that already-loaded model object.
    """
    from cli import apps as cli_apps
    from cli import main as cli_main

    def run(*args: str, model: Any = None) -> tuple[int, str, str]:
        if model is not None:
            monkeypatch.setattr(cli_apps, "load_model", lambda *_a, **_k: model)
        monkeypatch.setattr(sys, "argv", ["structgen", *args])
        capsys.readouterr()
        with pytest.raises(SystemExit) as info:
            cli_main.main()
        out = capsys.readouterr()
        code = info.value.code
        return (code if isinstance(code, int) else 1), out.out, out.err

    return run
