"""Bad-input fuzz: malformed and hostile inputs through the public API and the CLI, drawn by hypothesis.

Families: schemas (random JSON, mutated real schemas, deep nesting, huge enums, ``$ref`` tricks), regexes and
choices, Lark grammars, SQL for ``--sql``, databases with hostile names, hosted replies (served by the fault
proxy: truncated, huge, binary, deeply nested, YAML bombs), prompts that are not valid Unicode, absurd
parameters, and the CLI. The invariant, for every case: a valid value (checked here independently) or a
``StructgenError`` subclass, within ``TIME_BOUND_S``; never another exception, a crash, a hang or an invalid
value. The default run draws a fixed sample (derandomised, ~40 per family); ``make test-slow`` draws
≥ 1,000 cases in all. Counts by outcome are printed at the end of the run.
"""

from __future__ import annotations

import json
import os
import sqlite3
import string
import sys
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from jsonschema.validators import validator_for

import structgen
from structgen.apps import verify_sql
from structgen.apps.sqlite_db import UNSAFE_CATEGORIES, open_readonly, quote_identifier, read_schema, shop_db_path
from structgen.testing import Fault, FaultProxy, RandomLogitsModel

from .apps.conftest import digest
from .apps.sql_attacks import ATTACKS
from .conftest import MASKBENCH, completion_body

TIME_BOUND_S = 30.0     # per case, on a shared 2-core machine (the bounds under test are 1-5 s)
DEFAULT_EXAMPLES = 40
SLOW_EXAMPLES = 150     # x 8 families: >= 1,000 per `make test-slow`
OUTCOMES: dict[str, Counter[str]] = {}


def _record(family: str, case: Callable[[], Any]) -> None:
    """Run one case; count its outcome; fail on anything but a value or a StructgenError, or on a slow case."""
    start = time.monotonic()
    try:
        case()
        outcome = "valid"
    except structgen.StructgenError as exc:
        outcome = type(exc).__name__
        assert str(exc), f"{outcome} with an empty message"
    elapsed = time.monotonic() - start
    OUTCOMES.setdefault(family, Counter())[outcome] += 1
    assert elapsed < TIME_BOUND_S, f"{family}: a case took {elapsed:.1f} s"


def _family(name: str, strategy: st.SearchStrategy[Any], check: Callable[..., None]) -> tuple[Any, Any]:
    """A default test (fixed sample) and a slow one (more, random) of ``check`` over ``strategy``."""
    common = dict(deadline=None, database=None, print_blob=True,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                         HealthCheck.data_too_large, HealthCheck.filter_too_much])

    @settings(max_examples=DEFAULT_EXAMPLES, derandomize=True, **common)
    @given(strategy)
    def default(fixtures: Fixtures, value: Any) -> None:
        _record(name, lambda: check(fixtures, value))

    @pytest.mark.slow
    @settings(max_examples=SLOW_EXAMPLES, **common)
    @given(strategy)
    def slow(fixtures: Fixtures, value: Any) -> None:
        _record(name, lambda: check(fixtures, value))

    return default, slow


class Fixtures:
    """What the checks share: the random-logits model, a client of the fault proxy, a scratch directory."""

    def __init__(self, model: RandomLogitsModel, proxy: FaultProxy, client: structgen.OpenAICompatible,
                 scratch: Path) -> None:
        self.model, self.proxy, self.client, self.scratch = model, proxy, client, scratch


@pytest.fixture(scope="module")
def fixtures(random_model: RandomLogitsModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fixtures]:
    # Every fault here answers without forwarding, so the upstream is never contacted (port 9: discard).
    with FaultProxy("http://127.0.0.1:9") as proxy:
        client = structgen.OpenAICompatible(base_url=f"{proxy.url}/v1", timeout=10, max_retries=1, backoff=0.01)
        yield Fixtures(random_model, proxy, client, tmp_path_factory.mktemp("hostile"))
        client.close()


def _assert_valid(schema: Any, result: structgen.Result[Any]) -> None:
    """An independent check of a returned JSON value against its JSON Schema."""
    if isinstance(schema, dict):
        value = json.loads(result.text)
        cls = validator_for(schema, default=jsonschema.Draft202012Validator)
        errors = list(cls(schema, format_checker=cls.FORMAT_CHECKER).iter_errors(value))
        assert not errors, f"an invalid value was returned: {result.text!r}: {errors[0].message}"


# ---- schemas ---------------------------------------------------------------------------------------------------

def _real_schemas() -> list[dict[str, Any]]:
    files = sorted(MASKBENCH.glob("*.json"))[:400:10]
    if not files:
        pytest.fail(f"MaskBench data not found at {MASKBENCH}")
    return [json.loads(p.read_text())["schema"] for p in files]


REAL = _real_schemas()
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["type", "properties", "items", "enum", "$ref", "anyOf", "oneOf", "pattern", "required",
                         "minimum", "maxLength", "const", "additionalProperties", "format", "$defs", "x"]) | st.text(
            max_size=5), inner, max_size=4),
    max_leaves=12)
ref_tricks = st.sampled_from([
    {"$ref": "#"}, {"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
    {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
    {"$ref": "#/$defs/missing"}, {"$ref": "http://127.0.0.1:9/schema.json"}, {"$ref": 5}, {"$ref": "#/~2"},
    {"type": "object", "properties": {"a": {"$ref": "#"}}, "required": ["a"]},
    {"$defs": {"n": {"type": "array", "items": {"$ref": "#/$defs/n"}, "minItems": 1}}, "$ref": "#/$defs/n"},
    {"type": "integer", "minimum": 5, "maximum": 1}, {"type": "string", "minLength": 10, "maxLength": 2},
    {"enum": []}, {"not": {}}, {"type": []}, {"allOf": [{"type": "string"}, {"type": "integer"}]},
    {"type": "string", "pattern": "(a+)+$"}, {"type": "string", "pattern": "[z-a]"}, {"type": "string", "format": "x"},
])


@st.composite
def mutated_schema(draw: st.DrawFn) -> Any:
    schema = json.loads(json.dumps(draw(st.sampled_from(REAL))))
    for _ in range(draw(st.integers(1, 3))):
        node = schema
        path = draw(st.lists(st.integers(0, 5), max_size=4))
        for step in path:
            if isinstance(node, dict) and node:
                key = sorted(node)[step % len(node)]
                if isinstance(node[key], dict | list):
                    node = node[key]
            elif isinstance(node, list) and node and isinstance(node[step % len(node)], dict | list):
                node = node[step % len(node)]
        if isinstance(node, dict):
            key = draw(st.sampled_from(sorted(node) or ["type"]))
            node[key] = draw(json_values | ref_tricks)
    return schema


class Recipe:
    """A large input described by its parameters and built inside the check (hypothesis reports the recipe,
    not ten thousand nested levels)."""

    def __init__(self, kind: str, size: int, text: str = "") -> None:
        self.kind, self.size, self.text = kind, size, text

    def __repr__(self) -> str:
        return f"Recipe({self.kind!r}, {self.size}, {self.text!r})"

    def build(self) -> Any:
        if self.kind == "enum":
            return {"enum": [f"{self.text}{i}" for i in range(self.size)]}
        node: dict[str, Any] = {"type": "string"}
        for _ in range(self.size):
            node = {"items": node} if self.kind == "items" else {"anyOf": [node]} if self.kind == "anyOf" else (
                {"type": "object", "properties": {"a": node}} if self.kind == "properties" else {"not": node})
        return node


recipes = st.builds(Recipe, st.sampled_from(["items", "anyOf", "properties", "not"]), st.integers(20, 3000)) | \
    st.builds(Recipe, st.just("enum"), st.integers(1000, 30000), st.text(alphabet="ab\"\\\x00é", max_size=3))
schemas = st.one_of(json_values, mutated_schema(), recipes, ref_tricks)


def check_schema(fx: Fixtures, schema: Any) -> None:
    if isinstance(schema, Recipe):
        schema = schema.build()
    compiled = structgen.compile_schema(schema)
    result = structgen.generate("Give a value.", schema, model=fx.model, max_tokens=24, max_attempts=1, seed=1,
                                temperature=1.0)
    compiled.validate(result.text)   # raises ValueError (a test failure) for an invalid value
    _assert_valid(schema, result)


test_schemas, test_schemas_slow = _family("schemas", schemas, check_schema)


# ---- regexes, choices and grammars ------------------------------------------------------------------------------

regexes = st.text(alphabet="()[]{}*+?|^$\\.dDwWsSbBpP0123456789az,:<>=!-_é\x00", min_size=1, max_size=30) | \
    st.sampled_from([r"(a+)+b", r"(a|aa)+b", r"(?<=a)b", r"(a)\1", r"\p{L}+", r"[\w-]+@", "(" * 500, "a{99999}",
                     "a{2,1}", "[b-a]", r"\d{1,3}(\.\d{1,3}){3}", "(?i)abc", "\ud800", ".*" * 200])
choices = st.lists(st.text(max_size=6) | st.sampled_from(["", "\ud800", "a" * 10000]), min_size=0, max_size=6)


def check_regex(fx: Fixtures, value: tuple[str, Any]) -> None:
    kind, item = value
    schema = structgen.Regex(item) if kind == "regex" else structgen.Choice(item)
    compiled = structgen.compile_schema(schema)
    with _no_exception(ValueError):       # a hostile text against the pattern: bounded, typed or plain invalid
        compiled.validate("a" * 40 + "!")
    result = structgen.generate("Answer.", schema, model=fx.model, max_tokens=16, max_attempts=1, seed=2,
                                temperature=1.0)
    assert compiled.validate(result.text) == result.value


test_regexes, test_regexes_slow = _family(
    "regexes and choices", st.tuples(st.just("regex"), regexes) | st.tuples(st.just("choice"), choices), check_regex)


def _bundled_grammar_texts() -> list[str]:
    return [structgen.Grammar.bundled(n).source for n in structgen.bundled_grammars()]


@st.composite
def grammar_text(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["mutated", "random", "trick"]))
    if kind == "trick":
        return draw(st.sampled_from(["start: start", "start: start \"a\"", "start: a\na: b\nb: a", "",
                                     "start: \"a\"*" * 200, "start: /(a+)+b/", "start: %import common.WORD",
                                     "start: " + " | ".join(f'"{i}"' for i in range(5000)), "start: \"\\ud800\""]))
    if kind == "random":
        return draw(st.text(alphabet=string.ascii_letters + ":|\"'/*+?()[]{}%\n _-.~", max_size=80))
    text = draw(st.sampled_from(_bundled_grammar_texts()))
    at = draw(st.integers(0, len(text)))
    cut = draw(st.integers(0, 40))
    insert = draw(st.text(alphabet=":|\"/()[]*+?\n ", max_size=5))
    return text[:at] + insert + text[at + cut:]


def check_grammar(fx: Fixtures, source: str) -> None:
    compiled = structgen.compile_schema(structgen.Grammar(source))
    result = structgen.generate("Answer.", structgen.Grammar(source), model=fx.model, max_tokens=16,
                                max_attempts=1, seed=3, temperature=1.0)
    compiled.validate(result.text)


test_grammars, test_grammars_slow = _family("grammars", grammar_text(), check_grammar)


class _no_exception:
    """Let one exception type pass (a plain "invalid"), everything else through."""

    def __init__(self, kind: type[BaseException]) -> None:
        self.kind = kind

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> bool:
        return kind is not None and issubclass(kind, self.kind)


# ---- SQL and databases -----------------------------------------------------------------------------------------

SQL_PIECES = ["SELECT", "WITH RECURSIVE r(s, n) AS (SELECT 'a', 0 UNION ALL SELECT s || s, n + 1 FROM r WHERE n < 22)",
              "FROM", "customers", "orders", "\"customers\"", "`x`", "[y]", "*", ",", "(", ")", ";", "--", "/*",
              "load_extension('x')", "\"load_extension\"('x')", "instr(s, s)", "replace(s, 'a', s)",
              "zeroblob(1000000000)", "randomblob(99999999)", "printf('%.*c', 2000000000, 'x')", "LIKE", "'%a%'",
              "WHERE", "UNION ALL", "ORDER BY", "LIMIT 5", "pragma_table_info('orders')", "sqlite_master",
              "ATTACH", "'\u202e'", "\u00e9", "1e999", "x'00ff'", "CAST(s AS BLOB)", "n", "s", "r", "JOIN", "ON"]
heavy_selects = st.builds(
    "WITH RECURSIVE r(s, n) AS (SELECT {}, 0 UNION ALL SELECT s || s, n + 1 FROM r WHERE n < {}) "
    "SELECT {} FROM r{}".format,
    st.sampled_from(["'a'", "'ab'", "x'00'", "'é'"]), st.integers(0, 27),
    st.sampled_from(["length(s)", "instr(s, substr(s, 2) || 'b')", "replace(s, 'a', 'aa')", "s", "upper(s)",
                     "like('%' || s || '%', s)", "count(*)", "group_concat(s)", "max(s)", "n"]),
    st.sampled_from(["", " WHERE n = 20", " ORDER BY s DESC", ", r AS q"]))
sql_texts = st.lists(st.sampled_from(SQL_PIECES), min_size=1, max_size=14).map(" ".join) | st.sampled_from(
    [a.format(tmp="/tmp") for a in ATTACKS]) | st.text(max_size=60) | heavy_selects


def check_sql(fx: Fixtures, sql: str) -> None:
    shop = shop_db_path()
    before = digest(shop)
    try:
        result = verify_sql(sql, shop, execute=True, timeout_s=0.5, max_bytes=200_000, max_rows=50)
        assert result.explain_ok and result.rows is not None and len(result.rows) <= 50
    finally:
        assert digest(shop) == before, "the database changed"


test_sql, test_sql_slow = _family("SQL for --sql", sql_texts, check_sql)

names = st.text(alphabet=string.ascii_letters + "_ \"'`[];-\u00e9\u202e0123", min_size=1, max_size=12) | \
    st.sampled_from(["upsert", "pragma_x", "PRAGMA_table_info", "select", "from", "replace", "returning", "count",
                     "load_extension", "sqlite_x", "rowid", "Order", "\"", "a\"b", "[x]", "`y`", "t;DROP", "é"])


def _usable(name: str) -> bool:
    return not any(unicodedata.category(ch) in UNSAFE_CATEGORIES for ch in name)


def check_database(fx: Fixtures, value: tuple[str, list[str]]) -> None:
    table, columns = value
    assume(len({c.casefold() for c in columns}) == len(columns) and not table.casefold().startswith("sqlite_"))
    path = fx.scratch / f"db{time.monotonic_ns()}.sqlite"
    conn = sqlite3.connect(path)
    try:
        cols = ", ".join('"' + c.replace('"', '""') + '"' for c in columns)
        conn.execute(f'CREATE TABLE "{table.replace(chr(34), chr(34) * 2)}" ({cols})')
        conn.execute(f'INSERT INTO "{table.replace(chr(34), chr(34) * 2)}" VALUES ({", ".join("?" * len(columns))})',
                     list(range(len(columns))))
        conn.commit()
    except sqlite3.Error:
        assume(False)
    finally:
        conn.close()
    ro = open_readonly(path)
    schema = read_schema(ro)
    ro.close()
    # Every name the guard can see is written so that it passes: quoting is the builder's job, not the user's.
    sql = f"SELECT {', '.join(quote_identifier(c.name) for c in schema.tables[0].columns)} " \
          f"FROM {quote_identifier(schema.tables[0].name)}"
    writable = all(_usable(n) for n in (table, *columns))
    try:
        result = verify_sql(sql, path, execute=True, timeout_s=2.0)
    except structgen.UnsafeSQL as exc:
        # Only a name SQL text cannot carry (control or invisible characters) may be refused.
        assert not writable, f"a legitimate name was refused: {sql!r}: {exc}"
        raise
    assert result.rows == [tuple(range(len(columns)))]
    os.unlink(path)


test_databases, test_databases_slow = _family(
    "databases with hostile names", st.tuples(names, st.lists(names, min_size=1, max_size=4)), check_database)


# ---- hosted replies --------------------------------------------------------------------------------------------

YAML_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True))
BIG_REPLIES: dict[str, Callable[[], str]] = {
    "unclosed objects": lambda: '{"name": "a"' * 20000, "open brackets": lambda: "[" * 100000,
    "open braces": lambda: "{" * 50000, "YAML bomb": lambda: YAML_BOMB,
    "fenced repeats": lambda: "```json\n" + '{"a": 1}' * 30000, "huge string": lambda: '{"name": "' + "x" * 300000 + '"}',
    "control bytes": lambda: "\x00\x01\x02" * 1000, "chatter lines": lambda: "Sure! Here you go:\n" * 5000,
    "huge number": lambda: '{"name": ' + "9" * 5000 + "}", "dashes": lambda: "- - - - -" * 10000,
    "deep YAML": lambda: "a:\n" + "".join("  " * i + "b:\n" for i in range(2000)),
}
replies = st.one_of(
    st.sampled_from(sorted(BIG_REPLIES)).map(lambda k: ("big", k)),
    st.sampled_from(["null", "", '{"name": "\\ud800"}', '{"name": 1e999999}', "a" * 40 + "!",
                     "<!DOCTYPE html><html></html>", "!!python/object:os.system ['ls']", "*a", '{"name": "a"}',
                     "aab", "yes", '```yaml\nname: a\n```', "name: [a"]).map(lambda t: ("text", t)),
    st.text(max_size=200).map(lambda t: ("text", t)),
    (st.none() | st.integers() | st.lists(st.integers(), max_size=3)).map(lambda v: ("content", v)),
    st.binary(max_size=200).map(lambda b: ("body", b)),
    st.sampled_from([b"", b"{", b"{\"choices\": []}", b"{\"choices\": [{}]}", b"[]", b"\xff\xfe" * 1000,
                     b"{\"choices\": [{\"message\": {\"content\": \"ok\"}}]}" * 3, b"null"]).map(lambda b: ("body", b)),
)


def _reply_body(kind: str, item: Any) -> bytes:
    if kind == "big":
        return completion_body(BIG_REPLIES[item]())
    if kind in ("text", "content"):
        return completion_body(item)
    return bytes(item)


reply_schemas = st.sampled_from([
    {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
    {"type": "array", "items": {"type": "integer"}},
    structgen.Regex(r"(a|aa)+b"), structgen.Choice(["yes", "no"]), structgen.Regex(r"[a-z]+"),
    {"type": "object", "properties": {"name": {"type": "string", "pattern": "^(a+)+$"}}, "required": ["name"]},
])


def check_reply(fx: Fixtures, value: tuple[tuple[str, Any], Any, str, str]) -> None:
    (kind, item), schema, strategy, fmt = value
    fx.proxy.reset()
    fx.proxy.always(Fault.status(200, body=_reply_body(kind, item)))
    try:
        result = structgen.generate("Answer.", schema, model=fx.client, strategy=strategy, format=fmt,
                                    max_attempts=2, n=2, seed=4, max_tokens=64)
    finally:
        fx.proxy.always(None)
    structgen.compile_schema(schema).validate(result.text)
    _assert_valid(schema, result)


test_replies, test_replies_slow = _family(
    "hosted replies", st.tuples(replies, reply_schemas, st.sampled_from(["auto", "repair", "best_of",
                                                                          "self_consistency", "prompt"]),
                                st.sampled_from(["json", "yaml"])), check_reply)


# ---- prompts and parameters ------------------------------------------------------------------------------------

prompts = st.one_of(
    st.text(max_size=30), st.sampled_from(["caf\udce9", "\ud800", "a\x00b", "x" * 40000, "", " \n "]),
    st.lists(st.dictionaries(st.sampled_from(["role", "content", "x"]), st.text(max_size=5) | st.none() | st.integers(),
                             max_size=3), max_size=3),
    st.sampled_from([[{"role": "user", "content": "caf\udce9"}], [{"role": "\ud800", "content": "x"}], [], "x" * 3]),
    st.none() | st.integers() | st.binary(max_size=5))
absurd = st.fixed_dictionaries({}, optional={
    "temperature": st.sampled_from([-1, float("nan"), float("inf"), 1e308, "hot", None, 0.0, 2.0]),
    "top_p": st.sampled_from([0, -0.5, 1.5, float("nan"), 0.9]),
    "top_k": st.sampled_from([-5, 2**70, 3, 1.5]),
    "min_p": st.sampled_from([1.0, -1, 0.1]),
    "max_tokens": st.sampled_from([0, -1, 10**12, 2.5, True, 8]),
    "n": st.sampled_from([0, -2, 10**6, 2]),
    "seed": st.sampled_from([-1, 2**64, "x", 1.5, 7]),
    "strategy": st.sampled_from(["nope", "best_of", "prompt", "server", "self_consistency"]),
    "select": st.sampled_from(["x", "first_valid"]),
    "format": st.sampled_from(["xml", "yaml"]),
    "json_whitespace": st.sampled_from(["(", "a*", " *", "[ ]{0,2}", "spaced"]),
    "repetition_penalty": st.sampled_from([0, -1, 1.3]),
    "frequency_penalty": st.sampled_from([3, -3, 0.5]),
    "max_attempts": st.sampled_from([0, -1, 10**9, 1]),
    "system": st.sampled_from(["\ud800", "", "be brief"]),
})


def check_prompt(fx: Fixtures, value: tuple[Any, dict[str, Any]]) -> None:
    prompt, params = value
    params = {"max_tokens": 8, **params}
    if isinstance(params["max_tokens"], int) and params["max_tokens"] > 64:
        params["max_tokens"] = 10**12   # an absurd budget must be refused, not run
    if isinstance(params.get("n"), int) and params["n"] > 64:
        params["n"] = 10**6
    if isinstance(params.get("max_attempts"), int) and params["max_attempts"] > 3:
        params["max_attempts"] = 10**9 if params["max_tokens"] == 10**12 else 3
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    result = structgen.generate(prompt, schema, model=fx.model, **params)
    _assert_valid(schema, result)


test_prompts, test_prompts_slow = _family("prompts and parameters", st.tuples(prompts, absurd), check_prompt)


# ---- the CLI ---------------------------------------------------------------------------------------------------

cli_args = st.one_of(
    st.tuples(st.just("generate"), st.sampled_from(["caf\udce9", "ok", "\ud800"]),
              st.sampled_from([["--choice", "a,b"], ["--regex", "(a|aa)+b"], ["--regex", "("],
                               ["--choice", ""], ["--grammar", "start: start"], ["--max-tokens", "-3"],
                               ["--temperature", "nan"], ["--seed", "x"], ["--choice", "a", "--regex", "b"]])),
    st.tuples(st.just("sql"), st.just(""), sql_texts.map(lambda s: ["--sql", s, "--execute", "--timeout", "1"])),
    st.tuples(st.just("schema-file"), st.binary(max_size=60) | st.sampled_from(
        [b"\xe9", b"{\"type\": \"object\", \"properties\": {\"a\": {\"$ref\": \"#\"}}}", b"[" * 5000, b"{}"]),
        st.just([])),
)


def check_cli(fx: Fixtures, value: tuple[str, Any, list[str]]) -> None:
    from cli import apps as cli_apps
    from cli import main as cli_main

    command, arg, extra = value
    if command == "schema-file":
        path = fx.scratch / f"s{time.monotonic_ns()}.json"
        path.write_bytes(arg)
        argv = ["generate", "Give a value.", "--schema", str(path), "--max-tokens", "8"]
    elif command == "sql":
        argv = ["sql", *extra]
    else:
        argv = ["generate", arg, *extra, "--max-tokens", "8"] if "--max-tokens" not in extra else [
            "generate", arg, *extra]
    saved = (sys.argv, cli_main.load_model, cli_apps.load_model)
    sys.argv = ["structgen", *argv]
    cli_main.load_model = cli_apps.load_model = lambda *_a, **_k: fx.model   # type: ignore[assignment]
    try:
        cli_main.main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv, cli_main.load_model, cli_apps.load_model = saved
    assert code in (0, 1, 2, 3), code
    if code:
        raise _CliError(f"exit {code}")


class _CliError(structgen.StructgenError):
    """A non-zero exit of the CLI, counted as a typed outcome (the CLI maps typed errors to exit codes)."""


test_cli, test_cli_slow = _family("CLI", cli_args, check_cli)


def test_every_family_ran_in_the_default_sample() -> None:
    # Runs last in this module: each family's default test has counted its cases by now.
    families = {"schemas", "regexes and choices", "grammars", "SQL for --sql", "databases with hostile names",
                "hosted replies", "prompts and parameters", "CLI"}
    assert families <= set(OUTCOMES), sorted(families - set(OUTCOMES))
    assert sum(sum(c.values()) for c in OUTCOMES.values()) >= 8 * 20
