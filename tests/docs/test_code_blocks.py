"""Docs that cannot rot: every python and bash block of README.md and docs/ runs (marks: ``code_blocks.py``).

Python blocks of one page share a namespace, in page order (a marked block run alone first runs the unmarked ones
above it), with ``structgen.default_model()`` the session's model; each page works in its own temporary directory.
Bash blocks run with ``bash -euo pipefail`` there, ``structgen`` being this checkout's CLI.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import structgen

from .code_blocks import Block, blocks

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCKS = [b for page in PAGES for b in blocks(page)]
_MARKS: dict[str | None, list[Any]] = {
    None: [], "slow": [pytest.mark.slow], "server": [pytest.mark.slow], "hosted": [pytest.mark.slow],
    "gpu": [pytest.mark.gpu]}
_NAMESPACES: dict[Path, dict[str, Any]] = {}
_WORKDIRS: dict[Path, Path] = {}
_RUN: set[tuple[Path, int]] = set()


def _param(block: Block) -> Any:
    marks = [pytest.mark.skip(reason=block.why or "marked skip")] if block.mark == "skip" else _MARKS[block.mark]
    return pytest.param(block, id=f"{block.path.relative_to(ROOT)}:{block.line}", marks=marks)


def test_the_pages_have_blocks_to_run() -> None:
    assert len(BLOCKS) >= 30 and {b.language for b in BLOCKS} == {"python", "bash"}


@pytest.mark.timeout(600)
@pytest.mark.parametrize("block", [_param(b) for b in BLOCKS])
def test_code_block(block: Block, default_is_session_model: structgen.LlamaCpp,
                    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    workdir = _WORKDIRS.setdefault(block.path, tmp_path_factory.mktemp(block.path.stem))
    monkeypatch.chdir(workdir)
    with _endpoint(block, default_is_session_model) as code:
        if block.language == "python":
            for earlier in _unrun_before(block):     # a marked block run alone still has what the page defined
                _exec(earlier.code, earlier)
            _exec(code, block)
        else:
            _bash(code, workdir)


def _exec(code: str, block: Block) -> None:
    _RUN.add((block.path, block.line))
    exec(compile(code, f"{block.path}:{block.line}", "exec"), _namespace(block.path))


def _unrun_before(block: Block) -> list[Block]:
    """The page's unmarked python blocks above ``block`` that have not run in this session (deselected: ``-m
    slow`` runs only the marked ones)."""
    return [b for b in BLOCKS if b.path == block.path and b.line < block.line and b.language == "python"
            and b.mark is None and (b.path, b.line) not in _RUN]


def _namespace(page: Path) -> dict[str, Any]:
    """The page's namespace: a module registered in ``sys.modules``, as a script's would be (pydantic resolves a
    model's nested types through its module)."""
    if page not in _NAMESPACES:
        name = "docs_page_" + "_".join(page.relative_to(ROOT).with_suffix("").parts).replace("-", "_")
        module = types.ModuleType(name)
        sys.modules[name] = module
        _NAMESPACES[page] = module.__dict__
    return _NAMESPACES[page]


@contextlib.contextmanager
def _endpoint(block: Block, model: structgen.LlamaCpp) -> Iterator[str]:
    """The block's code, pointed at the server its mark asks for (started for the block)."""
    if block.mark == "server":
        from structgen.serve import ServeConfig
        from structgen.testing.app_server import serving

        with serving(model, ServeConfig(max_tokens=256)) as url:
            yield block.code.replace("http://127.0.0.1:8000/v1", url)
    elif block.mark == "hosted":
        from structgen.testing.llama_server import llama_server

        with llama_server(model.path, n_ctx=2048) as url:
            yield block.code.replace("http://127.0.0.1:8080/v1", url)
    else:
        yield block.code


def _bash(code: str, workdir: Path) -> None:
    script = f'structgen() {{ "{sys.executable}" -m cli "$@"; }}\n{code}'
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    # Its own process group: on timeout every process the block started is killed, not only bash.
    with subprocess.Popen(["bash", "-euo", "pipefail", "-c", script], cwd=workdir, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True) as proc:
        try:
            out, err = proc.communicate(timeout=540)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
    assert proc.returncode == 0, f"exit {proc.returncode}\n--- stdout\n{out[-3000:]}\n--- stderr\n{err[-3000:]}"
