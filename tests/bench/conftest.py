"""Helpers for the bench smoke tests: run ``structgen bench ...`` in-process and read its JSON report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from structgen_cli.main import app
from typer.testing import CliRunner


@pytest.fixture
def bench(tmp_path: Path) -> Any:
    """Run ``structgen bench <args> --json FILE``; returns (exit code, stdout, report)."""

    def run(*args: str) -> tuple[int, str, dict[str, Any]]:
        out = tmp_path / "report.json"
        result = CliRunner().invoke(app, ["bench", *args, "--json", str(out)], catch_exceptions=False)
        report = json.loads(out.read_text()) if out.exists() else {}
        return result.exit_code, result.stdout, report

    return run


def is_png(path: Path) -> bool:
    """True if ``path`` is a non-empty PNG file."""
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
