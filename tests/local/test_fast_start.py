"""A fast start: light imports, the grammar engine's vocabulary tables built while the model loads, and a first
compile run beside the first prefill — with its errors still reaching the caller, typed."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

import structgen
from structgen.compile.matchers.llguidance import LLGuidanceBackend
from structgen.errors import SchemaError


def test_import_leaves_heavy_optional_modules_unloaded() -> None:
    code = ("import sys, structgen; heavy = ['jsonschema', 'ruamel.yaml', 'json_repair', 'openai', 'rich', "
            "'structgen.chain', 'structgen.hosted', 'structgen.testing.faultproxy']; "
            "print(','.join(m for m in heavy if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "", f"imported by `import structgen`: {out.stdout.strip()}"
    # ... and they are there when asked for.
    assert structgen.OpenAICompatible.__name__ == "OpenAICompatible"
    assert structgen.FaultProxy.__name__ == "FaultProxy"


def test_first_answer_of_a_fresh_model_is_valid_and_timed() -> None:
    model = structgen.LlamaCpp(n_ctx=1024, prefix_cache=0)
    try:
        r = structgen.generate("Is the sky blue? Answer yes or no.", structgen.Choice(["yes", "no"]), model=model)
        assert r.value in ("yes", "no")
        assert r.timings.compile_ms > 0 and r.timings.prompt_ms > 0
        again = structgen.generate("Is grass green?", structgen.Regex(r"(yes|no)"), model=model)
        assert again.value in ("yes", "no")
    finally:
        model.close()


def test_closing_a_model_at_once_waits_for_its_tables() -> None:
    for _ in range(2):
        structgen.LlamaCpp(n_ctx=512, prefix_cache=0).close()   # must not free the vocabulary under the build


def test_an_error_of_a_background_compile_reaches_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    gate = threading.Event()
    original = LLGuidanceBackend.prepare_vocab

    def slow_tables(self: LLGuidanceBackend, vocab: object) -> None:
        gate.wait(10)     # the tables are still being built when the first request comes
        original(self, vocab)  # type: ignore[arg-type]

    def refuse(self: LLGuidanceBackend, schema: object, vocab: object) -> object:
        raise SchemaError("the grammar engine rejected the schema: injected")

    monkeypatch.setattr(LLGuidanceBackend, "prepare_vocab", slow_tables)
    model = structgen.LlamaCpp(n_ctx=1024, prefix_cache=0)
    try:
        monkeypatch.setattr(LLGuidanceBackend, "compile", refuse)
        assert not model.backend.warm(model.vocab)
        gate.set()
        with pytest.raises(SchemaError, match="injected"):
            structgen.generate("Pick one.", structgen.Choice(["a", "b"]), model=model)
        monkeypatch.undo()
        ok = structgen.generate("Pick one.", structgen.Choice(["a", "b"]), model=model)   # the engine serves on
        assert ok.value in ("a", "b")
    finally:
        gate.set()
        model.close()
