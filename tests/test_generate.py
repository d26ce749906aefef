"""End to end on the real bundled model: every kind of schema, seeds, truncation, bad input, threads."""

from __future__ import annotations

import datetime
import re
import threading

import pytest
from pydantic import BaseModel, Field

import structgen
from structgen import Choice, Grammar, Regex, generate


class LineItem(BaseModel):
    description: str
    quantity: int
    unit_price: float


class Invoice(BaseModel):
    number: str
    date: datetime.date
    vendor: str
    line_items: list[LineItem] = Field(max_length=5)
    total: float


INVOICE = "Invoice INV-7 from ACME on 2024-03-15: 2 x Hammer at 12.50. Total 25.00."


def test_pydantic_invoice(model: structgen.LlamaCpp) -> None:
    r = generate(f"Extract the invoice: {INVOICE}", schema=Invoice, model=model, seed=1, max_tokens=300)
    assert isinstance(r.value, Invoice)
    assert Invoice.model_validate_json(r.text) == r.value
    assert r.strategy == "constrained" and r.seed == 1 + 1_000_003 * (len(r.attempts) - 1)   # retries shift it
    assert len(r.tokens) == len(r.logprobs) == len(r.forced) == r.timings.generated_tokens
    assert all(lp <= 0.0 for lp in r.logprobs)
    assert all(lp == 0.0 for lp, f in zip(r.logprobs, r.forced, strict=True) if f)
    assert r.timings.forced_tokens > 0, "JSON keys should be fast-forwarded"
    assert r.avg_logprob < 0.0
    assert model.detokenize(r.tokens) == r.text


def test_choice_regex_dict_grammar_text(model: structgen.LlamaCpp) -> None:
    r = generate("Is this spam? 'WIN A FREE PHONE, CLICK NOW'", schema=Choice(["spam", "ham"]), model=model)
    assert r.value in ("spam", "ham") and r.text == r.value
    r = generate("A US phone number:", schema=Regex(r"\(\d{3}\) \d{3}-\d{4}"), model=model)
    assert re.fullmatch(r"\(\d{3}\) \d{3}-\d{4}", r.value)
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20},
                                               "age": {"type": "integer", "minimum": 0, "maximum": 150}},
              "required": ["name", "age"]}
    r = generate("Alice is 31 years old. Give her name and age.", schema=schema, model=model)
    assert set(r.value) >= {"name", "age"} and 0 <= r.value["age"] <= 150
    g = Grammar('start: "The answer is " NUMBER "."\nNUMBER: /[0-9]{1,3}/\n')
    r = generate("What is 6 times 7?", schema=g, model=model)
    assert re.fullmatch(r"The answer is [0-9]{1,3}\.", r.value)
    r = generate("Say hello.", model=model, max_tokens=20)
    assert isinstance(r.value, str) and r.finish_reason in ("stop", "length")


CAPITALS = {"France": " Paris", "Italy": " Rome", "England": " London", "Egypt": " Cairo", "Japan": " Tokyo",
            "Germany": " Berlin", "Spain": " Madrid"}


def test_raw_prompt_mode(model: structgen.LlamaCpp) -> None:
    prompt = "Q: What is the capital of France?\nA:"
    assert model.prompt_tokens(prompt, chat=False) == model.tokenize(prompt)   # no chat template around it
    # The raw text is what the model continues: the same seven options for every country, so a model that did not
    # read the prompt gives one answer to all (at most one right). Greedy SmolLM2 names all seven here (logprob
    # margins >= 0.6); a tolerance, since another CPU's rounding may flip a close one.
    options = Choice(list(CAPITALS.values()))
    answers = {country: generate(f"The capital of {country} is", schema=options, model=model, chat=False).value
               for country in CAPITALS}
    assert all(a in CAPITALS.values() for a in answers.values()), answers
    assert sum(answers[c] == capital for c, capital in CAPITALS.items()) >= 5, answers


def test_same_seed_same_text_and_logprobs(model: structgen.LlamaCpp) -> None:
    kwargs = dict(schema=Invoice, model=model, temperature=1.0, seed=7, max_tokens=300)
    runs = []
    for _ in range(3):
        try:
            runs.append(generate(f"Extract the invoice: {INVOICE}", **kwargs))  # type: ignore[arg-type]
        except structgen.TruncatedOutput as exc:
            runs.append(exc.partial_text)  # type: ignore[arg-type]
    first = runs[0]
    for r in runs[1:]:
        if isinstance(first, str):
            assert r == first
        else:
            assert (r.text, r.logprobs) == (first.text, first.logprobs)


def test_different_seeds_differ_at_temperature(model: structgen.LlamaCpp) -> None:
    texts = {generate("Name a fruit.", schema=Regex(r"[a-z]{3,12}"), model=model, temperature=1.5,
                      seed=s).value for s in range(6)}
    assert len(texts) > 1


def test_truncated_output_is_an_error_with_the_partial_text(model: structgen.LlamaCpp) -> None:
    with pytest.raises(structgen.TruncatedOutput) as info:
        generate(f"Extract the invoice: {INVOICE}", schema=Invoice, model=model, max_tokens=8)
    assert info.value.partial_text.startswith('{"number":')
    assert len(info.value.tokens) == 8


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        (dict(prompt=""), structgen.InvalidArgument),
        (dict(prompt="  ", schema=Choice(["a", "b"])), structgen.InvalidArgument),
        (dict(prompt="x", top_p=2.0), structgen.InvalidArgument),
        (dict(prompt="x", max_tokens=-1), structgen.InvalidArgument),
        (dict(prompt="x", temperature=-1.0), structgen.InvalidArgument),
        (dict(prompt="x", n=0), structgen.InvalidArgument),
        (dict(prompt="x", strategy="magic"), structgen.InvalidArgument),
        (dict(prompt="x", schema=Regex("a(")), structgen.SchemaError),
        (dict(prompt="x", schema={"type": 5}), structgen.SchemaError),
        (dict(prompt="x", schema=Grammar("start: x\n")), structgen.GrammarError),
        (dict(prompt="x", model="not a model"), structgen.InvalidArgument),
        (dict(prompt=[]), structgen.InvalidArgument),
        (dict(prompt=[{"content": "no role"}]), structgen.InvalidArgument),
    ],
)
def test_bad_input_gets_a_typed_error(model: structgen.LlamaCpp, kwargs: dict, error: type) -> None:
    kwargs.setdefault("model", model)
    prompt = kwargs.pop("prompt")
    with pytest.raises(error):
        generate(prompt, **kwargs)


def test_missing_model_file() -> None:
    with pytest.raises(structgen.ModelNotFound):
        structgen.LlamaCpp("/nonexistent/model.gguf")


def test_not_a_gguf(tmp_path: object) -> None:
    import pathlib

    bad = pathlib.Path(str(tmp_path)) / "bad.gguf"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(structgen.ModelNotFound, match="could not load"):
        structgen.LlamaCpp(bad)


def test_eight_threads_share_one_model(model: structgen.LlamaCpp) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 99}},
              "required": ["n"], "additionalProperties": False}
    results: list[object] = [None] * 8
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            results[i] = generate(f"Pick a number for player {i}.", schema=schema, model=model, seed=i,
                                  temperature=1.0, max_tokens=30)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for r in results:
        assert isinstance(r, structgen.Result) and 0 <= r.value["n"] <= 99


class Contact(BaseModel):
    name: str = Field(max_length=30)
    email: str = Field(pattern=r"^[a-z]{1,12}@[a-z]{1,12}\.com$")
    age: int = Field(ge=0, le=120)


def test_both_backends_generate_valid_json(any_backend_model: structgen.LlamaCpp) -> None:
    r = generate("Bob Smith, 42, writes from bob@example.com. Extract the contact.", schema=Contact,
                 model=any_backend_model, seed=3, max_tokens=120)
    assert isinstance(r.value, Contact)


def test_compact_whitespace_is_default_and_configurable(model: structgen.LlamaCpp) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
              "required": ["a", "b"], "additionalProperties": False}
    r = generate("Give a=1 and b=2 as JSON.", schema=schema, model=model)
    assert " " not in r.text and "\n" not in r.text
    r = generate("Give a=1 and b=2 as JSON.", schema=schema, model=model, json_whitespace="spaced")
    assert ": " in r.text


def test_best_of_and_self_consistency(model: structgen.LlamaCpp) -> None:
    r = generate("Is the sky blue? Answer yes or no.", schema=Choice(["yes", "no"]), model=model,
                 strategy="best_of", n=4, temperature=1.0, seed=5)
    assert r.strategy == "best_of" and len(r.candidates) == 4
    assert r.avg_logprob == max(c.avg_logprob for c in r.candidates)
    r = generate("Is the sky blue? Answer yes or no.", schema=Choice(["yes", "no"]), model=model,
                 strategy="self_consistency", n=5, temperature=1.0, seed=5)
    votes = [c.value for c in r.candidates]
    assert votes.count(r.value) == max(votes.count(v) for v in set(votes))
