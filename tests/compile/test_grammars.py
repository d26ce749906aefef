"""The bundled grammars json.lark, python_regex.lark and csv.lark, in both of their engines.

Each grammar is the sampler's grammar in llguidance and the verifier's oracle in the ``lark`` package
(Earley, dynamic lexer), so both engines must build it and must agree, string by string, on what is in
the language. Each grammar gets a labelled corpus of accepted and rejected strings, checked in both
engines and against Python's own reader (``json.loads``, ``re.compile``, ``csv.reader``), plus
property tests: generated documents are accepted, and strings sampled by llguidance byte by byte are
accepted by lark. ``benchmarks/tasks/regex.jsonl`` is checked here too.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import random
import re
import warnings
from pathlib import Path
from typing import Any

import lark
import llguidance
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from structgen.compile._byte_tokenizer import byte_tokenizer, grammar_accepts

REPO = Path(__file__).resolve().parents[2]
GRAMMARS = REPO / "grammars"
REGEX_TASKS = REPO / "benchmarks" / "tasks" / "regex.jsonl"
NAMES = ("json", "python_regex", "csv")

PROPERTY = settings(max_examples=120, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


@functools.cache
def _source(name: str) -> str:
    return (GRAMMARS / f"{name}.lark").read_text(encoding="utf-8")


@functools.cache
def _llg(name: str) -> str:
    return llguidance.LLMatcher.grammar_from_lark(_source(name))


@functools.cache
def _lark(name: str) -> lark.Lark:
    return lark.Lark(_source(name), start="start", parser="earley", lexer="dynamic")


def llg_accepts(name: str, text: str) -> bool:
    return grammar_accepts(_llg(name), text)


def lark_accepts(name: str, text: str) -> bool:
    try:
        _lark(name).parse(text)
    except lark.exceptions.LarkError:
        return False
    return True


def _compile_error(pattern: str) -> str | None:
    """None if ``re.compile`` takes ``pattern`` without error or warning, else the message."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            re.compile(pattern)
    except (re.error, FutureWarning, DeprecationWarning, OverflowError) as exc:
        return str(exc)
    return None


# Errors a context-free grammar cannot rule out (see the header of python_regex.lark): the verifier
# catches them with re.compile.
SEMANTIC_REGEX_ERRORS = (
    "bad character range",
    "min repeat greater than max repeat",
    "invalid group reference",
    "unknown group name",
    "cannot refer to an open group",
    "redefinition of group name",
    "octal escape value",
)


# --------------------------------------------------------------------------------------------------
# Corpora

JSON_ACCEPT = [
    "0", "-0", "1", "-1", "123", "1.5", "-0.0", "1e-7", "1E+10", "2.5e3", "-1.5E-300",
    "12345678901234567890", "0.000001",
    '""', '"hello"', '"esc \\" \\\\ \\/ \\b \\f \\n \\r \\t"', '"\\u00e9\\u20AC"', '"\\ud83d\\ude00"',
    '"é ü 中文 😀"', '"\x7f"', '"\\\\"',
    "true", "false", "null",
    "{}", "[]", "{ }", "[ ]", "[\n]",
    '{"a":1}', '{"a": {"b": [1, {"c": null}]}}', "[[[[[]]]]]", "[1,2,3]", "[ 1 , 2 , 3 ]",
    '{"":""}', '{"a":1,"a":2}', ' \t\n{"k": "v"}\r\n', '{"a" : 1 , "b" :2}', "[\r\n  1,\r\n  2\r\n]",
    "[true,false,null]",
    json.dumps({"a": [1, 2], "b": {"c": "d", "e": []}}, indent=2),
    json.dumps([{"deep": [[{"x": 1.25}]]}], indent=4),
]

JSON_REJECT = [
    "", " ", "01", "-01", "00", "1.", ".5", "+1", "-", "1e", "1e+", "0x10", "--1", "1.5.2",
    "[1,]", '{"a":1,}', "{a:1}", "{'a':1}", "[1,,2]", "{,}", "[1 2]", '{"a" 1}', '{"a":}',
    "[", "]", '{"a":1}}', "1 2", "null null", "True", "nul",
    '"\\x41"', '"\\u12"', '"\\u12G4"', '"\\a"', '"abc', 'abc"', '"\\"',
    '"tab\there"', '"new\nline"', '"\x00"',
]

# Valid for json.loads but outside the grammar on purpose: not RFC 8259 (NaN, Infinity), or a
# whitespace gap longer than the bound (32 spaces/tabs, at most two line breaks).
JSON_LOADS_BUT_REJECTED = [
    "NaN", "Infinity", "-Infinity", "[NaN]",
    " " * 33 + "1", "1" + "\t" * 33, "\n\n\n1", "[1," + " " * 40 + "2]", "[\n\n\n]", '{"a":\n\n\n1}',
]

REGEX_ACCEPT = [
    "a", "abc", "a|b|c", "\\d+", "\\d{3}-\\d{4}", "^\\w+$", "^$", "\\A\\s*\\Z", ".*?", "a+?", "a??",
    "a{2}", "a{2,}", "a{2,5}", "a{,5}", "a{2,5}?", "a{0}", "a*+", "a{3}+",
    "(a)", "(?:ab)+", "((a|b)(c(d)))", "(?:(?:a|b)*c)+", "(^)*",
    "(?P<year>\\d{4})-(?P<month>\\d{2})", "(?P<q>[\"'])\\w+(?P=q)", "(a)\\1", "(a)(b)\\2\\1+",
    "(?=\\d)\\w", "(?!foo)bar", "(?<=\\$)\\d+", "(?<!-)\\d{2}", "(?<=[a-c]{3}x.)y",
    "[abc]", "[^abc]", "[a-zA-Z0-9_]", "[\\]]", "[a\\-z]", "[-a]", "[a-]", "[-]", "[^-]", "[\\w-]",
    "[\\w.-]+@[\\w-]+\\.[a-z]{2,}", "[\\d\\s]", "[\\x00-\\x1f]", "[^\\^]", "[é-ü]",
    "\\.\\*\\+\\?\\(\\)\\[\\]\\{\\}\\|\\\\\\^\\$", "\\x41\\u00e9", "\\n\\t", "\\bword\\b", "\\Bx",
    "café|naïve", "中文+", "a b", "-?\\d+(\\.\\d+)?", "\\{\\}", "a,b:c=d<e>f!g",
]

REGEX_REJECT = [
    "", "(", ")", "(a", "a)", "(()", "((a)", "a))",
    "*a", "+", "?", "a**", "a*{2}", "a{2}{3}", "a*??", "^*", "$+", "\\b*", "(?=a)*", "a|*b", "(*)",
    "(?P<>x)", "(?P<1a>x)", "(?P<a b>x)", "(?P=)", "(?P<a>x", "(?<a>x)",
    "a{,", "a{", "a{}", "a{,}", "a{1,2", "{2}", "a{-1}", "}",
    "[", "[]", "[^]", "]", "[a", "a]", "[\\d-z]", "[[a]", "[a--b]", "[a&&b]", "[--]",
    "\\", "a\\", "\\q", "\\x4", "\\u12", "\\xZZ", "\\k",
    "()", "a|", "|a", "a||b", "(?:)", "(a|)",
    "(?<=a+)", "(?<=a|bc)", "(?<=a*)", "(?<=(a))", "(?i)abc", "(?#comment)", "a\nb",
]

CSV_ACCEPT = [
    "a", "a,b,c", "a,b\r\n1,2", "a,b\r\n1,2\r\n", "a,b\n1,2\n", "a,b\n1,2\r\n3,4",
    'name,age\n"Smith, John",42', '"a""b",c', '""', '"",""', ",", ",,", "a,,c", "a,b\n,",
    '"line1\nline2",x', '"line1\r\nline2",x\r\n', '"x"', 'h\n""', "é,ü\n中文,😀", "a b,c d",
    " a , b ", "a\tb", "it's,fine", '"",x\n', '"a,b,c"', '"""quoted"""', 'h1,h2\n"",""\n',
    "x\n1\n2\n3", '"multi\n\nblank lines inside",x', "a;b", 'k,v\n"{""json"": 1}",2', '"a\rb"',
]

CSV_REJECT = [
    "", "\n", "\r\n", ",\n\n", "a\n\n", "a\n\nb", "a,b\n\n1,2", "a\n\n\n", "a\r\n\r\n", "\na", "a\n\r\n",
    'a"b', 'a,b"c', '"a"b', '"a" ', ' "a"', '"a', 'a,"b', '"a""', '"a"x,b', 'a,b\n"c"d', '""""x',
    'x"', '"', '"""', 'a,"b"c\n', 'x\n"unterminated\n',
    "a\rb", "a\r", "a,b\r\r\n", "a\n\r",
]

CORPUS = {
    "json": (JSON_ACCEPT, JSON_REJECT + JSON_LOADS_BUT_REJECTED),
    "python_regex": (REGEX_ACCEPT, REGEX_REJECT),
    "csv": (CSV_ACCEPT, CSV_REJECT),
}


def _cases() -> list[Any]:
    cases = []
    for name, (accept, reject) in CORPUS.items():
        for expected, strings in ((True, accept), (False, reject)):
            label = "accept" if expected else "reject"
            cases += [pytest.param(name, s, expected, id=f"{name}-{label}-{s!r}") for s in strings]
    return cases


# --------------------------------------------------------------------------------------------------
# Loading and corpus labels


@pytest.mark.parametrize("name", NAMES)
def test_grammar_builds_in_both_engines(name: str) -> None:
    error = llguidance.LLMatcher.validate_grammar(_llg(name))
    assert error == "", f"llguidance rejects {name}.lark: {error}"
    is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(_llg(name))
    assert (is_error, messages) == (False, []), messages
    assert _lark(name).options.start == ["start"]


@pytest.mark.parametrize("name", NAMES)
def test_corpus_sizes(name: str) -> None:
    accept, reject = CORPUS[name]
    assert len(accept) >= 30 and len(reject) >= 30
    assert not set(accept) & set(reject)


@pytest.mark.parametrize(("name", "text", "expected"), _cases())
def test_both_engines_agree_with_label(name: str, text: str, expected: bool) -> None:
    got = {"llguidance": llg_accepts(name, text), "lark": lark_accepts(name, text)}
    assert got == {"llguidance": expected, "lark": expected}, f"{name}.lark on {text!r}"


@pytest.mark.parametrize("text", JSON_ACCEPT)
def test_json_accepted_loads(text: str) -> None:
    json.loads(text)


@pytest.mark.parametrize("text", JSON_REJECT)
def test_json_rejected_fails_to_load(text: str) -> None:
    with pytest.raises(ValueError):
        json.loads(text)


@pytest.mark.parametrize("text", JSON_LOADS_BUT_REJECTED)
def test_json_outside_grammar_by_design(text: str) -> None:
    json.loads(text)  # Python is lenient here; the grammar is not (RFC 8259, bounded whitespace)


def test_json_whitespace_bound_edges() -> None:
    assert llg_accepts("json", " " * 32 + "1") and lark_accepts("json", " " * 32 + "1")
    gap = "\t" * 32 + "\r\n" + " " * 32 + "\n" + " " * 32
    assert llg_accepts("json", f"[1,{gap}2]") and lark_accepts("json", f"[1,{gap}2]")


@pytest.mark.parametrize("pattern", REGEX_ACCEPT)
def test_regex_accepted_compiles(pattern: str) -> None:
    assert _compile_error(pattern) is None


SEMANTIC_GAPS = ["[z-a]", "a{5,2}", "\\1", "(a\\1)", "(?P=x)", "(?P<a>x)(?P<a>y)", "\\400"]


@pytest.mark.parametrize("pattern", SEMANTIC_GAPS)
def test_regex_semantic_errors_are_left_to_re_compile(pattern: str) -> None:
    """Documented gaps: accepted by the grammar in both engines, rejected by re.compile."""
    assert llg_accepts("python_regex", pattern) and lark_accepts("python_regex", pattern)
    error = _compile_error(pattern)
    assert error is not None and any(e in error for e in SEMANTIC_REGEX_ERRORS), error


@pytest.mark.parametrize("text", CSV_ACCEPT)
def test_csv_accepted_reads_strictly(text: str) -> None:
    rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    assert rows and all(rows)


# --------------------------------------------------------------------------------------------------
# Property tests

_chars = st.characters(exclude_categories=("Cs",))
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(_chars, max_size=8),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(_chars, max_size=6), inner, max_size=4),
    max_leaves=12,
)


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


@PROPERTY
@given(value=_json_values, ensure_ascii=st.booleans(), indent=st.sampled_from([None, 2]))
def test_json_dumps_is_accepted(value: Any, ensure_ascii: bool, indent: int | None) -> None:
    if indent is None:
        text = json.dumps(value, ensure_ascii=ensure_ascii, separators=(",", ":"))
    else:
        assume(_depth(value) <= 16)  # indentation of 2 per level stays within the 32-space bound
        text = json.dumps(value, ensure_ascii=ensure_ascii, indent=indent)
    assert llg_accepts("json", text), text
    assert lark_accepts("json", text), text


# Pieces of regex syntax, valid and broken, glued at random: both engines must agree on every result,
# and every accepted one must compile (up to the documented semantic errors).
_REGEX_PIECES = [
    "(", "(?:", "(?P<n>", "(?P<m>", "(?=", "(?!", "(?<=", "(?<!", ")", ")", "|",
    "a", "bc", "é", " ", ",", "-",
    "\\d", "\\w", "\\.", "\\[", "\\x41", "\\x4", "\\u00e9", "\\q", "\\", "\\1", "(?P=n)",
    "[a-z]", "[^-]", "[-a]", "[a-]", "[\\]x]", "[", "]", "&&", "--", "{", "}",
    "*", "+", "?", "*?", "++", "{2}", "{2,}", "{,3}", "{2,3}?", "{3,1}",
    "^", "$", "\\b", "\\B", "\\A", "\\Z", ".",
]


@PROPERTY
@given(pieces=st.lists(st.sampled_from(_REGEX_PIECES), min_size=1, max_size=8))
def test_regex_engines_agree_and_accepted_compile(pieces: list[str]) -> None:
    pattern = "".join(pieces)
    accepted = llg_accepts("python_regex", pattern)
    assert accepted == lark_accepts("python_regex", pattern), pattern
    if accepted:
        error = _compile_error(pattern)
        assert error is None or any(e in error for e in SEMANTIC_REGEX_ERRORS), (pattern, error)


_csv_styles = st.tuples(st.sampled_from(["\r\n", "\n"]), st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
_csv_rows = st.lists(st.lists(st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"),
                                      max_size=6), min_size=1, max_size=4), min_size=1, max_size=4)


@PROPERTY
@given(rows=_csv_rows, style=_csv_styles, final_newline=st.booleans())
def test_csv_writer_output_is_accepted(
    rows: list[list[str]], style: tuple[str, int], final_newline: bool
) -> None:
    terminator, quoting = style
    if terminator == "\n" and quoting == csv.QUOTE_MINIMAL:
        # With a bare LF terminator, csv.writer leaves a lone CR unquoted, which RFC 4180 forbids.
        assume(not any("\r" in field for row in rows for field in row))
    buf = io.StringIO(newline="")
    csv.writer(buf, lineterminator=terminator, quoting=quoting).writerows(rows)
    text = buf.getvalue()
    if not final_newline:
        text = text.removesuffix(terminator)
    assert llg_accepts("csv", text), text
    assert lark_accepts("csv", text), text
    assert list(csv.reader(io.StringIO(text, newline=""), strict=True)) == rows


def _sample(name: str, rng: random.Random, max_bytes: int = 80) -> bytes | None:
    """Walk the llguidance grammar byte by byte, choosing among allowed bytes; None if unfinished."""
    matcher = llguidance.LLMatcher(byte_tokenizer(), _llg(name), log_level=0)
    out = bytearray()
    eos = 256
    for _ in range(max_bytes):
        mask = matcher.compute_bitmask()
        allowed = [t for t in range(257) if mask[t // 8] >> (t % 8) & 1]
        if eos in allowed and (len(allowed) == 1 or rng.random() < 0.15):
            return bytes(out)
        choices = [t for t in allowed if t != eos]
        ascii_choices = [t for t in choices if t < 128]
        structural = [t for t in ascii_choices if chr(t) in '()[]{}?*+|\\^$.-:=<>!P,"\n\r 0123456789']
        roll = rng.random()
        if structural and roll < 0.6:
            pool = structural
        elif ascii_choices and roll < 0.97:
            pool = ascii_choices
        else:
            pool = choices
        token = rng.choice(pool)
        assert matcher.consume_token(token)
        out.append(token)
    return None


@PROPERTY
@given(name=st.sampled_from(NAMES), rng=st.randoms(use_true_random=False))
def test_llguidance_samples_are_accepted_by_lark(name: str, rng: random.Random) -> None:
    sample = _sample(name, rng)
    if sample is None or not sample:
        return
    text = sample.decode("utf-8")
    assert lark_accepts(name, text), text
    if name == "json":
        json.loads(text)
    elif name == "python_regex":
        error = _compile_error(text)
        assert error is None or any(e in error for e in SEMANTIC_REGEX_ERRORS), (text, error)
    else:
        assert list(csv.reader(io.StringIO(text, newline=""), strict=True))


# --------------------------------------------------------------------------------------------------
# benchmarks/tasks/regex.jsonl


def _regex_tasks() -> list[dict[str, Any]]:
    lines = REGEX_TASKS.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_regex_tasks_file_shape() -> None:
    tasks = _regex_tasks()
    assert len(tasks) >= 25
    ids = [t["id"] for t in tasks]
    assert len(set(ids)) == len(ids)
    for task in tasks:
        assert set(task) == {"id", "description", "positives", "negatives", "reference"}, task["id"]
        assert re.fullmatch(r"[a-z0-9_]+", task["id"]) and task["description"]
        assert 3 <= len(task["positives"]) <= 6 and 3 <= len(task["negatives"]) <= 6, task["id"]
        assert not set(task["positives"]) & set(task["negatives"]), task["id"]


@pytest.mark.parametrize("task", _regex_tasks(), ids=lambda t: t["id"])
def test_regex_task_reference(task: dict[str, Any]) -> None:
    reference = task["reference"]
    assert _compile_error(reference) is None
    compiled = re.compile(reference)
    for text in task["positives"]:
        assert compiled.fullmatch(text), f"{task['id']}: reference misses positive {text!r}"
    for text in task["negatives"]:
        assert not compiled.fullmatch(text), f"{task['id']}: reference matches negative {text!r}"
    assert llg_accepts("python_regex", reference), reference
    assert lark_accepts("python_regex", reference), reference
