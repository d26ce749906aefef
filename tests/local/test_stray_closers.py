"""A model that writes ``}}`` inside a JSON string as if the value had ended (then prose into the string until
max_tokens) is taken back one token, and the string ends there; one that writes an array's item again is taken back
to where the copy began: scripted logits over the real vocabulary."""

from __future__ import annotations

import numpy as np
import pytest

import structgen
from structgen.local import engine
from structgen.testing.random_logits import RandomLogitsModel

from ..scripted import ScriptedModel

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


# --- an array whose items start over -------------------------------------------------------------------------------

TAGS = {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"}}},
        "required": ["tags"], "additionalProperties": False}


def _tags_model() -> ScriptedModel:
    probe = RandomLogitsModel(seed=0)
    tok = probe._model.tokenize
    item = tok('"hello world"', add_special=False, parse_special=False)
    other = tok('"good morning"', add_special=False, parse_special=False)
    head = tok('{"tags":[', add_special=False, parse_special=False)
    comma = tok(",", add_special=False, parse_special=False)
    script = head + item + comma + other + comma + (item + comma) * 20
    return ScriptedModel(script, tok('"]}', add_special=False, parse_special=False)
                     + tok("]}", add_special=False, parse_special=False))


def test_an_array_item_written_again_is_taken_back() -> None:
    r = structgen.generate("Tags?", schema=TAGS, model=_tags_model(), temperature=0.0, max_tokens=200, chat=False)
    assert r.value["tags"][:2] == ["hello world", "good morning"]
    assert r.value["tags"].count("hello world") == 1          # the copy was taken back, the array ended
    assert len(r.attempts) == 1 and r.attempts[0].discarded > 0


def test_without_the_back_off_the_items_repeat(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "MAX_BACK_OFFS", 0)
    r = structgen.generate("Tags?", schema=TAGS, model=_tags_model(), temperature=0.0, max_tokens=200, chat=False,
                           max_attempts=1)
    assert r.value["tags"].count("hello world") > 5


def test_short_items_may_repeat() -> None:
    from structgen.compile.number_bound import NumberRuns

    runs = NumberRuns(12)
    runs.feed(b'{"a":["yes","no","yes"')
    assert runs.repeated == 0                                    # under REPEATED_ITEM_BYTES
    runs.feed(b',"hello world","x","hello world"')
    assert runs.repeated == len('"hello world"')                 # bytes back to the copy's opening quote
    keys = NumberRuns(12)
    keys.feed(b'{"a":"hello world","b":"hello world"}')            # object values are not array items
    assert keys.repeated == 0
    nested = NumberRuns(12)
    nested.feed(b'[["hello world"],["hello world"]]')              # each array keeps its own items
    assert nested.repeated == 0
