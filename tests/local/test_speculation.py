"""Speculative decoding from the request's own context (``LlamaCpp(speculate=K)``, ``structgen.local.lookup``).

Its promise: the drafted tokens change how many model steps a reply takes, never which tokens the sampler picks
from a given set of logits. llama.cpp's logits move in their last bits with the size of the batch they come from
(so on the real model a near-tie can go the other way), so the exact check runs on a stand-in whose logits are a
pure function of the tokens so far, one that copies as an extraction does; the real model is checked for what
it guarantees: drafts taken, valid replies, the same answer twice, a stream that adds up to the reply."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

import structgen
from structgen.local.decode import logit_rows
from structgen.local.lookup import PromptLookup
from structgen.testing.random_logits import RandomLogitsModel

# --- the n-gram index ---------------------------------------------------------------------------------------------


def test_lookup_proposes_what_followed_the_latest_earlier_occurrence() -> None:
    lookup = PromptLookup([5, 6, 7, 8, 9, 5, 6, 1, 2])
    assert lookup.propose([5, 6], 3) == [1, 2, 5]      # the later "5 6" (followed by 1 2), then what follows it
    assert lookup.propose([5, 6, 7], 2) == [8, 9]      # the longer match wins: "5 6 7" occurred once
    assert lookup.propose([5, 6, 7, 4], 2) == []       # "7 4" never occurred
    assert lookup.propose([5, 6, 7, 4], 0) == []


def test_lookup_never_matches_the_sequence_end_with_itself() -> None:
    lookup = PromptLookup([1, 2, 3])
    assert lookup.propose([], 2) == []                 # "2 3" occurs only at the end
    assert lookup.propose([1, 2], 2) == [3, 1]         # generated text is indexed too


def test_lookup_follows_tokens_taken_back() -> None:
    lookup = PromptLookup([1, 2, 3, 4])
    assert lookup.propose([9, 1, 2], 2) == [3, 4]
    # A back-off took the generated tokens back to [9] and it went on with [9, 3]: a new version re-indexes.
    assert lookup.propose([9, 3], 2, version=1) == []
    assert lookup.propose([9, 3, 4, 9, 3], 1, version=1) == [4]


def test_lookup_offers_other_guesses_best_first() -> None:
    """A grammar that refuses the first guess may take another: longer matches first, then later occurrences
    before earlier ones, no guess twice, at most ``limit``."""
    lookup = PromptLookup([7, 5, 6, 1, 2, 5, 6, 3, 4, 5, 6, 8, 9])
    # "7 5 6" occurred once (then 1 2); "5 6" three times: latest first, and 1 2 is not offered again.
    assert list(lookup.proposals([7, 5, 6], 2)) == [[1, 2], [8, 9], [3, 4]]
    assert list(lookup.proposals([7, 5, 6], 2, limit=2)) == [[1, 2], [8, 9]]
    assert list(lookup.proposals([7, 5, 6], 2, limit=0)) == []


# A toy vocabulary in which a word copied after a quote is another token than the same word after a space, as in
# BPE vocabularies: the token n-grams of a copied value match nowhere in its document, its bytes do.
TEXTS = [b"", b" Maria", b" Lopez", b",", b'"', b"Maria", b"Lopez", b" works", b" ", b"Dr."]
TEXTS += [bytes([c]) for c in range(33, 127)]                   # every other character, one token each
TEXTS += [b"Max"]


def toy_tokenize(text: str) -> list[int]:
    """Longest match first over ``TEXTS``."""
    data, out = text.encode(), []
    while data:
        best = max((i for i, t in enumerate(TEXTS) if t and data.startswith(t)), key=lambda i: len(TEXTS[i]))
        out.append(best)
        data = data[len(TEXTS[best]):]
    return out


def test_lookup_matches_a_copied_value_by_its_text() -> None:
    prompt = [9, 1, 2, 3, 7]                                     # 'Dr. Maria Lopez, works'
    plain = PromptLookup(prompt)
    assert list(plain.proposals([4, 5], 2)) == []                # '"Maria': no token n-gram occurred before
    lookup = PromptLookup(prompt, texts=TEXTS, tokenize=toy_tokenize)
    assert list(lookup.proposals([4, 5], 2)) == [[2, 3]]         # ' Lopez,' followed 'Maria' in the document
    assert lookup.propose([4, 5], 1) == [2]
    assert lookup.propose([4, 5, 2, 8, 8], 2) == []              # 'pez  ' (bytes) never occurred


def test_lookup_matches_a_value_s_first_bytes_at_a_word_start() -> None:
    """A value's first bytes after JSON's punctuation (too short for the byte lookup) are looked up where a word
    begins: not inside another word, and not from one byte."""
    def ids(text: str) -> list[int]:
        return toy_tokenize(text)

    lookup = PromptLookup(ids("Dr. Maria, LiMax"), texts=TEXTS, tokenize=toy_tokenize)
    assert lookup.propose(ids('{"name":"Ma'), 2) == ids("ri")    # Ma-ria, not Li-Ma-x: that Ma is inside a word
    assert lookup.propose(ids('{"name":"M'), 2, version=1) == []  # one byte: too weak a guess


def test_lookup_text_follows_tokens_taken_back() -> None:
    lookup = PromptLookup([9, 1, 2, 3, 7], texts=TEXTS, tokenize=toy_tokenize)
    assert lookup.propose([4, 5], 1) == [2]
    # A back-off took '"Maria' back and the sequence wrote it again: the text is '..."Maria', not '..."Maria"Maria'
    # (where the latest 'Maria' would be followed by '"').
    assert lookup.propose([4, 5], 1, version=1) == [2]


def test_lookup_drops_a_text_guess_the_tokenizer_changed() -> None:
    """A tokenizer that adds a leading space (SentencePiece's) turns ' Lopez' into '  Lopez': not what followed."""
    lookup = PromptLookup([9, 1, 2, 3, 7], texts=TEXTS, tokenize=lambda text: toy_tokenize(" " + text))
    assert lookup.propose([4, 5], 2) == []


class RefusingMatcher:
    """A grammar stand-in that refuses token 1 anywhere (``valid_prefix`` is all the draft needs)."""

    def is_stopped(self) -> bool:
        return False

    forced = b""

    def forced_bytes(self) -> bytes:
        return self.forced

    def valid_prefix(self, tokens: Sequence[int]) -> int:
        return next((i for i, t in enumerate(tokens) if t == 1), len(tokens))


def test_a_draft_takes_the_first_guess_the_grammar_accepts() -> None:
    from types import SimpleNamespace

    from structgen.local.decode import Loop, LoopOptions, Sequence_
    from structgen.request import SamplingParams

    model = SimpleNamespace(n_vocab=16, eos_ids=(0,), vocab=None)
    seq = Sequence_(seq=0, matcher=RefusingMatcher(), rng=np.random.default_rng(0), seed=0, pos=9,  # type: ignore[arg-type]
                    context=[5, 6, 2, 3, 5, 6, 1, 2], tokens=[5, 6], pending=[6])
    loop = Loop(model, [seq], SamplingParams(), LoopOptions(speculate=2))  # type: ignore[arg-type]
    assert loop.draft(seq) == [2, 3]          # the latest "5 6" led to 1 (refused); the earlier one to 2 3
    seq.matcher = None                        # without a grammar: the first guess, as it was
    assert loop.draft(seq) == [1, 2]


def test_forced_text_is_spelled_as_the_context_last_wrote_it() -> None:
    """Text a grammar forces but whose tokens it leaves to the model: the latest place the context wrote it in whole
    tokens gives the spelling; text found only across token boundaries does not count."""
    texts = [b"", b'"', b":", b'":', b'":"', b"a", b"b", b'a"', b"x"]
    tokenize = lambda text: {'":"': [4], '":"x': [4, 8]}.get(text, [])   # noqa: E731   (the tokenizer's own spelling)
    lookup = PromptLookup([5, 3, 1, 6], texts=texts, tokenize=tokenize)    # a ": " b
    assert lookup.spelling(b'":"', [], 4) == [3, 1]               # nothing generated yet: as the prompt wrote it
    assert lookup.spelling(b'":"', [6, 4], 4) == [4]              # the latest whole-token writing wins
    assert lookup.spelling(b'":"', [7, 2, 1], 4, version=1) == [3, 1]  # a" : ": the later one straddles a token
    assert lookup.spelling(b'":"x', [], 4) == [4, 8]              # never written whole: the tokenizer's spelling
    assert lookup.spelling(b"", [], 4) == []
    assert PromptLookup([5, 3, 1]).spelling(b'":"', [], 4) == []   # no vocabulary: nothing to spell with


def test_a_tokenizer_spelling_stops_where_it_leaves_the_forced_text() -> None:
    lookup = PromptLookup([], texts=TEXTS, tokenize=lambda text: toy_tokenize(" " + text))
    assert lookup.spelling(b"Maria", [], 4) == []                 # ' Maria': a space the grammar did not force
    lookup = PromptLookup([], texts=TEXTS, tokenize=toy_tokenize)
    assert lookup.spelling(b'"Maria', [], 4) == [4, 5]


def test_a_draft_spells_forced_text_first() -> None:
    from types import SimpleNamespace

    from structgen.local.decode import Loop, LoopOptions, Sequence_
    from structgen.request import SamplingParams

    model = SimpleNamespace(n_vocab=len(TEXTS), eos_ids=(0,), vocab=SimpleNamespace(texts=lambda: TEXTS),
                            tokenize=lambda text, special: toy_tokenize(text))
    matcher = RefusingMatcher()
    seq = Sequence_(seq=0, matcher=matcher, rng=np.random.default_rng(0), seed=0, pos=9,  # type: ignore[arg-type]
                    context=[9, 1, 2, 3], tokens=[4, 5], pending=[5])
    loop = Loop(model, [seq], SamplingParams(), LoopOptions(speculate=2))  # type: ignore[arg-type]
    assert loop.draft(seq) == [2, 3]           # nothing forced: the document's ' Lopez,' after 'Maria'
    matcher.forced = b'",'
    assert loop.draft(seq) == [4, 3]           # '",' is forced: spelled by the tokenizer, before any lookup
    asked: list[str] = []
    model.tokenize = lambda text, special: asked.append(text) or toy_tokenize(text)
    seq.lookup = None
    matcher.forced = b"!" * 100_000            # a long forced literal (fast-forward off): spelled a piece at a time
    assert loop.draft(seq) == toy_tokenize("!!")
    assert asked and max(map(len, asked)) <= 64


# --- the loop's bookkeeping, exactly ------------------------------------------------------------------------------


class CopyingModel(RandomLogitsModel):
    """Logits that depend only on the tokens of the sequence so far, whatever batch they are decoded in, with a
    strong pull to copy: the token that followed the last earlier occurrence of the current token is favoured, as
    an extraction copies its document. Every decode must start exactly where the sequence's cache ends."""

    def __init__(self, *, speculate: int, pull: float) -> None:
        super().__init__(seed=0, speculate=speculate)
        self.pull = pull
        self.history: dict[int, list[int]] = {}
        self.steps = 0

    def _row(self, tokens: Sequence[int]) -> NDArray[np.float32]:
        digest = hashlib.blake2b(np.asarray(tokens[-3:], dtype=np.int64).tobytes() + len(tokens).to_bytes(4, "little"),
                                 digest_size=8).digest()
        pick = int.from_bytes(digest, "little")
        row = np.roll(self._pool[pick % len(self._pool)], pick % self.n_vocab).copy()
        last = tokens[-1]
        for j in range(len(tokens) - 2, -1, -1):
            if tokens[j] == last:
                row[tokens[j + 1]] += self.pull
                break
        return row

    def prefill(self, tokens: Sequence[int]) -> NDArray[np.float32]:
        self.history = {0: list(tokens)}
        return self._row(tokens)

    def fork(self, n_prompt: int, copies: int) -> None:
        super().fork(n_prompt, copies)
        for seq in range(1, copies):
            self.history[seq] = self.history[0][:n_prompt]

    def decode(self, items: Sequence[Any]) -> list[NDArray[np.float32]]:
        self.steps += 1
        out: list[NDArray[np.float32]] = []
        for item in items:
            seq, tokens, start = item[:3]
            rows = logit_rows(item)
            history = self.history[seq]
            assert len(history) == start, f"sequence {seq} decoded at {start} but its cache ends at {len(history)}"
            got = []
            for i, token in enumerate(tokens):
                history.append(token)
                if i >= len(tokens) - rows:
                    got.append(self._row(history))
            out.append(got[0] if rows == 1 else np.stack(got))
        return out

    def drop(self, seq: int, start: int = 0) -> None:
        del self.history[seq][start:]


RECORD = {"type": "object", "required": ["name", "city", "notes"], "additionalProperties": False,
          "properties": {"name": {"type": "string", "maxLength": 40}, "city": {"type": "string", "maxLength": 40},
                         "notes": {"type": "array", "items": {"type": "string", "maxLength": 30}, "maxItems": 4}}}
PROMPTS = [f'Record {i}: {{"name":"Ada Lovelace {i}","city":"London","notes":["analytical engine","first program"]}}'
           for i in range(6)]


@pytest.mark.parametrize("temperature", [0.0, 0.9])
@pytest.mark.parametrize("pull", [6.0, 30.0])
def test_drafts_never_change_the_reply(temperature: float, pull: float) -> None:
    """The same picks with and without drafts (tokens, logprobs, attempts), over greedy and sampled decoding and
    a weak and a strong pull to copy (drafts mostly refused, mostly taken); with drafts, fewer model steps."""
    plain, drafted = CopyingModel(speculate=0, pull=pull), CopyingModel(speculate=3, pull=pull)
    took = 0
    for i, prompt in enumerate(PROMPTS):
        kwargs: dict[str, Any] = {"schema": RECORD, "temperature": temperature, "seed": i, "max_tokens": 120,
                                  "chat": False}
        try:
            a = structgen.generate(prompt, model=plain, **kwargs)
        except structgen.StructgenError as exc:   # the same failure, typed, with drafts
            with pytest.raises(type(exc)):
                structgen.generate(prompt, model=drafted, **kwargs)
            continue
        b = structgen.generate(prompt, model=drafted, **kwargs)
        assert (b.text, b.tokens, b.forced) == (a.text, a.tokens, a.forced)
        assert np.allclose(b.logprobs, a.logprobs)
        assert [x.text for x in b.attempts] == [x.text for x in a.attempts]
        assert b.timings.draft_accepted <= b.timings.draft_tokens
        took += b.timings.draft_accepted
    if pull >= 30.0:
        assert took > 0 and drafted.steps < plain.steps


def test_no_draft_runs_past_the_context() -> None:
    """Near the end of the context a draft is cut to the room left: the request ends as it would without drafts
    (here: the same typed error once the reply reaches n_ctx), not with a draft that overflows the step."""
    outcomes = []
    for k in (0, 3):
        model = CopyingModel(speculate=k, pull=30.0)
        model.n_ctx = 64 + 30    # type: ignore[misc]   # the stand-in's prompt is at most 64 tokens
        try:
            r = structgen.generate(PROMPTS[0], model=model, schema=RECORD, temperature=0.0, max_tokens=120,
                                   chat=False, max_attempts=1)
            outcomes.append(r.text)
        except structgen.StructgenError as exc:
            outcomes.append(type(exc).__name__)
    assert outcomes[0] == outcomes[1]


# --- the real model -----------------------------------------------------------------------------------------------

DOCUMENT = ("Invoice INV-20931 from Northwind Traders, 14 Harbour Street, Portsmouth, to Contoso Pharmaceuticals, "
            "due 2026-03-14, total 1,284.50 EUR. Contact: Maria Anders, maria.anders@northwind.example.")
INVOICE = {"type": "object", "required": ["number", "seller", "seller_address", "buyer", "contact_email"],
           "properties": {"number": {"type": "string"}, "seller": {"type": "string"},
                          "seller_address": {"type": "string"}, "buyer": {"type": "string"},
                          "contact_email": {"type": "string"}}}


@pytest.fixture(scope="module")
def engine() -> Iterator[structgen.LlamaCpp]:
    m = structgen.LlamaCpp(n_ctx=2048, n_seq_max=2, prefix_cache=2)
    yield m
    m.close()


CONTACT = ("From: Jonathan Whitfield-Okafor <j.whitfield-okafor@harbourline-logistics.example>\n"
           "Phone: +44 20 7946 0958\nCompany: Harbourline Logistics Ltd, Unit 7 Riverside Park, Leeds LS10 1AB")
PERSON = {"type": "object", "required": ["name", "email", "phone", "company"],
          "properties": {"name": {"type": "string"}, "email": {"type": "string"}, "phone": {"type": "string"},
                         "company": {"type": "string"}}}


def test_extractions_take_drafts_and_stay_valid(engine: structgen.LlamaCpp) -> None:
    """Copied values come from drafts: over two documents (whatever words this CPU's model picks), some drafted
    tokens are kept, and every reply is valid."""
    import jsonschema

    assert engine.speculate > 0       # on by default
    drafted = kept = 0
    for document, schema in ((DOCUMENT, INVOICE), (CONTACT, PERSON)):
        r = structgen.generate(f"Extract the fields.\n\n{document}", schema=schema, model=engine, max_tokens=200)
        jsonschema.validate(r.value, schema)
        assert r.timings.draft_accepted <= r.timings.draft_tokens
        drafted, kept = drafted + r.timings.draft_tokens, kept + r.timings.draft_accepted
    assert drafted > 0 and kept > 0


def test_the_same_call_twice_gives_the_same_answer(engine: structgen.LlamaCpp) -> None:
    prompt = f"Extract the invoice fields.\n\n{DOCUMENT}"
    first = structgen.generate(prompt, schema=INVOICE, model=engine, max_tokens=200, temperature=0.8, seed=3)
    again = structgen.generate(prompt, schema=INVOICE, model=engine, max_tokens=200, temperature=0.8, seed=3)
    assert (again.text, again.logprobs) == (first.text, first.logprobs)


def test_a_stream_adds_up_to_the_reply(engine: structgen.LlamaCpp) -> None:
    prompt = f"Extract the invoice fields.\n\n{DOCUMENT}"
    events = list(structgen.stream(prompt, schema=INVOICE, model=engine, max_tokens=200))
    done = events[-1]
    assert isinstance(done, structgen.Done)
    last_reset = max((i for i, e in enumerate(events) if isinstance(e, structgen.Reset)), default=-1)
    deltas = [e for e in events[last_reset + 1:] if isinstance(e, structgen.Delta)]   # a back-off resends
    assert deltas and deltas[-1].snapshot == done.result.text
    assert "".join(d.text for d in deltas) == done.result.text
    assert [t for d in deltas for t in d.tokens] == list(done.result.tokens)


def test_speculate_off_and_bad_values() -> None:
    with pytest.raises(structgen.InvalidArgument, match="speculate"):
        structgen.LlamaCpp(speculate=-1)
    m = structgen.LlamaCpp(n_ctx=1024, n_seq_max=1, speculate=0)
    try:
        r = structgen.generate(f"Extract the invoice fields.\n\n{DOCUMENT}", schema=INVOICE, model=m, max_tokens=200)
        assert r.timings.draft_tokens == 0
    finally:
        m.close()
    det = structgen.LlamaCpp(n_ctx=1024, n_seq_max=1, deterministic=True, speculate=4)
    try:
        assert det.speculate == 0     # the batch-invariant mode never drafts
    finally:
        det.close()
