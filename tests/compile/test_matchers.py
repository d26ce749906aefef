"""One conformance suite for every Matcher backend, on the real model's vocabulary."""

from __future__ import annotations

import numpy as np
import pytest

import structgen
from structgen import Choice, Regex, compile_schema
from structgen.compile.matchers import Matcher, get_backend

BACKENDS = ["llguidance", "outlines-core"]

CASES = [
    (Regex(r"\(\d{3}\) \d{3}-\d{4}"), "(555) 123-4567", "555-123"),
    (Choice(["spam", "ham"]), "spam", "eggs"),
    ({"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"],
      "additionalProperties": False}, '{"x":12}', '{"y":1}'),
    ({"type": "array", "items": {"type": "string", "maxLength": 3}}, '["ab","c"]', '["abcd"]'),
]


def _allowed(m: Matcher, n_vocab: int) -> np.ndarray:
    mask = np.zeros((n_vocab + 31) // 32, dtype=np.int32)
    m.fill_mask(mask)
    return np.unpackbits(mask.view(np.uint8), count=n_vocab, bitorder="little").astype(bool)


def _matcher(model: structgen.LlamaCpp, backend: str, schema: object) -> Matcher:
    factory = get_backend(backend).compile(compile_schema(schema), model.vocab)  # type: ignore[arg-type]
    return factory.new_matcher()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("schema", "good", "bad"), CASES)
def test_valid_text_walks_through_masks(model: structgen.LlamaCpp, backend: str, schema: object, good: str,
                                        bad: str) -> None:
    m = _matcher(model, backend, schema)
    tokens = model.tokenize(good, special=False)
    for tok in tokens:
        assert _allowed(m, model.n_vocab)[tok], f"{backend}: token {tok} of {good!r} masked out"
        assert m.consume(tok)
    assert m.is_accepting()
    assert m.error() is None
    assert _allowed(m, model.n_vocab)[model.eos_ids[0]], "EOS must be allowed once the grammar is complete"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("schema", "good", "bad"), CASES)
def test_invalid_text_is_rejected_and_error_is_sticky(model: structgen.LlamaCpp, backend: str, schema: object,
                                                      good: str, bad: str) -> None:
    m = _matcher(model, backend, schema)
    tokens = model.tokenize(bad, special=False)
    consumed = m.consume_many(tokens)
    assert consumed < len(tokens) or not m.is_accepting()
    if consumed < len(tokens):
        assert not _allowed(m, model.n_vocab)[tokens[consumed]]
        assert not m.consume(tokens[consumed])
        assert m.error() is not None
        assert not m.consume(tokens[0])  # sticky


@pytest.mark.parametrize("backend", BACKENDS)
def test_eos_is_masked_until_complete(model: structgen.LlamaCpp, backend: str) -> None:
    m = _matcher(model, backend, Regex(r"abc"))
    assert not _allowed(m, model.n_vocab)[model.eos_ids[0]]
    assert not m.is_accepting()


@pytest.mark.parametrize("backend", BACKENDS)
def test_copy_is_independent(model: structgen.LlamaCpp, backend: str) -> None:
    m = _matcher(model, backend, Choice(["spam", "ham"]))
    twin = m.copy()
    for tok in model.tokenize("ham", special=False):
        assert twin.consume(tok)
    assert twin.is_accepting() and not m.is_accepting()
    for tok in model.tokenize("spam", special=False):
        assert m.consume(tok)
    assert m.is_accepting()


@pytest.mark.parametrize("backend", BACKENDS)
def test_forced_tokens_spell_the_forced_text(model: structgen.LlamaCpp, backend: str) -> None:
    m = _matcher(model, backend, Regex(r"hello world [0-9]"))
    text = ""
    while forced := m.forced_tokens():
        assert m.consume_many(forced) == len(forced)
        text += model.detokenize(forced)
    assert "hello world ".startswith(text), f"{backend} forced {text!r}"
    if backend == "llguidance":  # outlines-core only forces a token when it is the single one allowed
        assert text == "hello world "


@pytest.mark.parametrize("backend", BACKENDS)
def test_forced_bytes_run_on_past_the_forced_tokens(model: structgen.LlamaCpp, backend: str) -> None:
    """After a key the grammar forces ``":"`` whichever tokens write it (a token that begins with ``"`` may also begin
    the value): not forced tokens, but forced bytes, which drafts spell; outlines-core cannot say."""
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
              "additionalProperties": False}
    m = _matcher(model, backend, schema)
    assert m.consume_many(model.tokenize('{"city', special=False)) == len(model.tokenize('{"city', special=False))
    if backend == "outlines-core":
        assert m.forced_bytes() == b""
        return
    assert m.forced_bytes() == b'":"'
    assert model.detokenize(m.forced_tokens()) == ""      # the tokens are the model's choice
    assert m.consume_many(model.tokenize('":"Bo', special=False))
    assert m.forced_bytes() == b""                        # inside a free string nothing is forced


def test_outlines_core_refuses_lark_grammars(model: structgen.LlamaCpp) -> None:
    with pytest.raises(structgen.SchemaError, match="llguidance"):
        get_backend("outlines-core").compile(compile_schema(structgen.Grammar('start: "a"')), model.vocab)


def test_unknown_backend() -> None:
    with pytest.raises(structgen.InvalidArgument, match="llguidance"):
        get_backend("nope")


def test_llguidance_fills_a_batch_of_masks_like_one_by_one(model: structgen.LlamaCpp) -> None:
    # Matchers in different states (each case advanced by a different number of tokens of its good text).
    matchers = []
    for i, (schema, good, _) in enumerate(CASES):
        m = _matcher(model, "llguidance", schema)
        m.consume_many(model.tokenize(good, special=False)[:i])
        matchers.append(m)
    rows = np.full((len(matchers) + 1, (model.n_vocab + 31) // 32), -1, dtype=np.int32)
    type(matchers[0]).fill_masks(matchers, rows)  # type: ignore[attr-defined]
    for i, m in enumerate(matchers):
        expected = np.zeros(rows.shape[1], dtype=np.int32)
        m.fill_mask(expected)
        assert np.array_equal(rows[i], expected), f"row {i} differs from the matcher's own mask"
    assert (rows[-1] == -1).all(), "a row without a matcher is left alone"
    with pytest.raises(ValueError):
        type(matchers[0]).fill_masks(matchers, rows[0])  # type: ignore[attr-defined]


def test_our_llama_tokenizer_glue_matches_llguidance_s(model: structgen.LlamaCpp) -> None:
    import warnings

    from llguidance.llamacpp import lltokenizer_from_vocab

    from structgen.compile.matchers.llguidance import tokenizer_for

    ours = tokenizer_for(model.vocab)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        theirs = lltokenizer_from_vocab(model.vocab.llama_vocab, eos_token=list(model.vocab.eos_ids))
    assert ours.vocab_size == theirs.vocab_size and ours.eos_tokens == theirs.eos_tokens
    ids = list(range(ours.vocab_size))
    assert [ours.is_special_token(i) for i in ids] == [theirs.is_special_token(i) for i in ids]
    assert [ours.decode_bytes([i]) for i in ids] == [theirs.decode_bytes([i]) for i in ids]
    text = "Hello, <|im_start|> wörld {\"a\": 1}"
    assert ours.tokenize_str(text) == theirs.tokenize_str(text)


def test_llguidance_rolls_back_a_grammar_it_cannot_roll_back_itself_by_replaying(model: structgen.LlamaCpp) -> None:
    """llguidance refuses to roll back past a ``max_tokens`` lexeme (``think=``'s budget) and would enter its sticky
    error state; the matcher replays its tokens on a fresh copy instead (the decode loop's back-off relies on it)."""
    from structgen.compile.thinking import compile_think

    schema = compile_think(compile_schema(Choice(["spam", "ham"])), 8)
    m = get_backend("llguidance").compile(schema, model.vocab).new_matcher()
    head = model.tokenize("<think>\nmaybe</think>\n", special=False)
    assert m.consume_many(head) == len(head)
    before = _allowed(m, model.n_vocab)
    tail = model.tokenize("ham", special=False)
    assert m.consume_many(tail) == len(tail) and m.is_accepting()
    assert m.rollback(len(tail)) and m.error() is None
    assert (_allowed(m, model.n_vocab) == before).all()
    assert m.consume_many(model.tokenize("spam", special=False)) and m.is_accepting()
