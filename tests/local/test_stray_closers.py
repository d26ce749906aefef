"""A model that writes ``}}`` inside a JSON string as if the value had ended (then prose into the string until
max_tokens) is taken back one token, and the string ends there: scripted logits over the real vocabulary."""

from __future__ import annotations

import numpy as np
import pytest

import structgen
from structgen.local import engine
from structgen.testing.random_logits import RandomLogitsModel

NOTE = {"type": "object", "properties": {"note": {"type": "string"}}, "required": ["note"],
        "additionalProperties": False}


def _scripted(preferences: dict[bytes, float]) -> RandomLogitsModel:
    """The same logits every step: the listed tokens above everything else, in the given order."""
    model = RandomLogitsModel(seed=0)
    texts = model.vocab.texts()
    row = np.zeros(model.n_vocab, dtype=np.float32)
    for text, score in preferences.items():
        row[texts.index(text)] = score
    model._logits = lambda: row.copy()   # type: ignore[method-assign]
    return model


def test_the_vocabulary_sets_are_what_they_say() -> None:
    model = RandomLogitsModel(seed=0)
    texts = model.vocab.texts()
    closers = {texts[i] for i in model.vocab.string_closers()}
    enders = {texts[i] for i in model.vocab.string_enders()}
    assert b"}}" in closers and b"]" in closers and b'"}' not in closers and b"{}" not in closers
    assert all(b"}" in t or b"]" in t for t in closers)
    assert b'"' in enders and b'"}' in enders and b'",' not in enders


def test_a_stray_closer_in_a_string_ends_the_string_instead() -> None:
    model = _scripted({b"}}": 20.0, b"hello": 15.0, b'"': 12.0, b'"}': 10.0})
    r = structgen.generate("Write a note.", schema=NOTE, model=model, temperature=0.0, max_tokens=64)
    assert r.value == {"note": ""}
    assert len(r.attempts) == 1 and r.attempts[0].discarded == 1


def test_without_the_back_off_the_string_runs_to_max_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "MAX_BACK_OFFS", 0)
    model = _scripted({b"}}": 20.0, b"hello": 15.0, b'"': 12.0, b'"}': 10.0})
    with pytest.raises(structgen.TruncatedOutput):
        structgen.generate("Write a note.", schema=NOTE, model=model, temperature=0.0, max_tokens=64,
                           max_attempts=1)
