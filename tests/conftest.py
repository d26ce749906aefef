"""Shared fixtures: the real bundled model (loaded once) and the random-logits stand-in."""

from __future__ import annotations

import json
import os
import random
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import structgen
from structgen.testing import RandomLogitsModel

REPO = Path(__file__).resolve().parents[1]
MASKBENCH = Path(os.environ.get("STRUCTGEN_MASKBENCH", REPO.parent / "shared" / "jsonschemabench" / "maskbench"))


def maskbench_sample(n: int, seed: int, *, max_chars: int | None = None) -> list[tuple[str, dict[str, Any]]]:
    """``n`` MaskBench schemas (file name, schema) that structgen compiles, in a fixed shuffle of the files;
    ``max_chars`` bounds a schema's compact JSON (to fit a small model's context)."""
    files = sorted(MASKBENCH.glob("*.json"))
    if len(files) < n:
        pytest.fail(f"MaskBench data not found at {MASKBENCH} (set STRUCTGEN_MASKBENCH)")
    random.Random(seed).shuffle(files)
    picked: list[tuple[str, dict[str, Any]]] = []
    for path in files:
        schema = json.loads(path.read_text())["schema"]
        if max_chars is not None and len(json.dumps(schema, separators=(",", ":"))) > max_chars:
            continue
        try:
            structgen.compile_schema(schema)
        except structgen.StructgenError:
            continue
        picked.append((path.name, schema))
        if len(picked) == n:
            break
    return picked


def completion_body(content: Any) -> bytes:
    """An OpenAI chat-completion body whose one choice says ``content`` (any JSON value: a server's choice),
    for the fault proxy to answer with."""
    return json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                    "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}).encode()


def llama_server_children(pid: int) -> list[int]:
    """Process ids of the ``llama_cpp.server`` processes that ``pid`` started (read from Linux /proc)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in task.read_text().split():
            try:
                if b"llama_cpp.server" in Path(f"/proc/{child}/cmdline").read_bytes():
                    found.append(int(child))
            except OSError:     # it exited in between
                continue
    return found


@pytest.fixture(scope="session")
def model() -> structgen.LlamaCpp:
    """The bundled SmolLM2-135M on CPU, shared by the whole session. No prefix cache: a cache hit changes the
    floating-point path of the default mode, and the outputs tests pin must not depend on test order."""
    return structgen.LlamaCpp(n_ctx=4096, prefix_cache=0)


@pytest.fixture(scope="session")
def outlines_model(model: structgen.LlamaCpp) -> structgen.LlamaCpp:
    """The same model file with the outlines-core backend."""
    return structgen.LlamaCpp(model.path, n_ctx=2048, backend="outlines-core")


@pytest.fixture(scope="session")
def random_model() -> RandomLogitsModel:
    """Random logits over the real vocabulary: pushes grammars into odd corners."""
    return RandomLogitsModel(seed=1234)


@pytest.fixture(params=["llguidance", "outlines-core"])
def any_backend_model(request: pytest.FixtureRequest, model: structgen.LlamaCpp,
                      outlines_model: structgen.LlamaCpp) -> structgen.LlamaCpp:
    """Each matcher backend on the real model."""
    return model if request.param == "llguidance" else outlines_model


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the validity-fuzz counts (tests/test_fuzz.py) and the bad-input fuzz's outcomes
    (tests/test_hostile_inputs.py) at the end of the run."""
    from .test_fuzz import SUMMARY
    from .test_hostile_inputs import OUTCOMES

    if SUMMARY:
        terminalreporter.section("validity fuzz (MaskBench sample)")
        for label, counts in SUMMARY.items():
            terminalreporter.write_line(f"{label}: {dict(sorted(counts.items()))}")
    if OUTCOMES:
        total = sum(sum(c.values()) for c in OUTCOMES.values())
        terminalreporter.section(f"bad-input fuzz: {total} cases, each a valid value or a typed error")
        for family, counts in OUTCOMES.items():
            terminalreporter.write_line(f"{family} ({sum(counts.values())}): {dict(counts.most_common())}")


@pytest.fixture
def ctrl_c() -> Iterator[None]:
    """Python's own Ctrl-C handler (SIGINT raises KeyboardInterrupt) for the test, whatever an earlier test or a
    library (an event loop, a server) left installed; the previous handler is put back after."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
