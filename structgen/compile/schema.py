"""Schema kinds users pass to ``generate`` and their compilation to one grammar plus one validator.

``compile_schema`` turns a Pydantic model (or any type pydantic can validate), a JSON Schema dict, a
``Regex``, a ``Choice``, a ``Grammar`` or ``None`` (free text) into a ``CompiledSchema``: an llguidance
grammar string for the sampler, and an independent validator for the finished text. Results are
cached by schema, so repeated calls do not recompile.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, cast

import jsonschema_rs
import llguidance
import pydantic

from .._unicode import check_text
from ..errors import GrammarError, InvalidArgument, SchemaError
from ..result import Relaxation
from . import regex_match
from ._locations import first_line, json_pointer
from .closed import close_objects
from .depth import MAX_SCHEMA_DEPTH, check_depth
from .ecma_regex import python_pattern
from .emptiness import check_grammar_productive, check_schema_finite
from .hint import outline
from .kinds import Choice, Grammar, Regex, SchemaLike
from .number_bound import DEFAULT_DIGITS, digit_limit
from .relax import relax_json_schema, subschemas
from .validation import clip, json_validator

if TYPE_CHECKING:
    from llguidance._lib import JsonCompileOptions

__all__ = [
    "Choice",
    "CompiledSchema",
    "Grammar",
    "JsonOptions",
    "Regex",
    "SchemaLike",
    "compile_schema",
]


@dataclass(frozen=True, slots=True)
class JsonOptions:
    """How JSON is laid out. ``whitespace``: "compact" (none), "spaced" (``", "`` and ``": "``) or a regex
    for each gap between tokens, e.g. ``r"[ \\n]{0,4}"`` — always bounded, so the model cannot loop on
    whitespace until ``max_tokens``. ``lenient``: let llguidance skip keywords it does not implement
    (the output is then checked by the validator and resampled if invalid). ``strict``: refuse a schema the
    grammar cannot enforce in full (``SchemaError`` listing what would be relaxed) instead of relaxing it.
    ``number_digits``: the most digits in a row a number's integer part or fraction may have when a local model
    writes it (its exponent: 3), unless the schema's own numbers are written with more; None: unbounded
    (see ``compile/number_bound.py``). ``extra_properties``: whether the model may write properties a JSON Schema
    does not name where the schema leaves that open (an object with ``properties`` and no
    ``additionalProperties``); False: only the named ones, as llama.cpp's and xgrammar's grammars do (see
    ``compile/closed.py``; the validator still follows the schema as written)."""

    whitespace: str = "compact"
    lenient: bool = False
    strict: bool = False
    number_digits: int | None = DEFAULT_DIGITS
    extra_properties: bool = False

    def compile_options(self) -> JsonCompileOptions:
        """The llguidance ``JsonCompileOptions`` for these settings."""
        opts: dict[str, Any] = {"lenient": self.lenient}
        if self.whitespace == "compact":
            opts.update(item_separator=",", key_separator=":", whitespace_flexible=False)
        elif self.whitespace == "spaced":
            opts.update(item_separator=", ", key_separator=": ", whitespace_flexible=False)
        else:
            try:
                re.compile(self.whitespace)
            except re.error as exc:
                raise InvalidArgument(f"whitespace pattern does not compile: {exc}") from exc
            opts.update(item_separator=",", key_separator=":", whitespace_flexible=True,
                        whitespace_pattern=self.whitespace)
        return cast("JsonCompileOptions", opts)


Kind = Literal["json", "regex", "choice", "grammar", "text", "tools"]


class _Invalid(Exception):
    """Raised by a validator; the message says why the text is not valid."""


@dataclass(frozen=True, eq=False)
class CompiledSchema:
    """A schema ready for decoding: a grammar for the matcher and a validator for the result."""

    kind: Kind
    grammar: str | None                 # llguidance grammar string; None = unconstrained text
    validator: Callable[[str], Any]     # text -> value, raises _Invalid
    json_schema: dict[str, Any] | None = None
    regex: str | None = None            # a regex form where one exists (for regex-only backends)
    relaxations: tuple[Relaxation, ...] = ()   # what the grammar leaves to the validator (compile/relax.py)
    hint: str | Callable[[], str] | None = None  # the prompt hint, or a function that writes it on first use
    warnings: tuple[str, ...] = field(default_factory=tuple)
    source: Any = None
    # Set when the grammar has not been through llguidance's own check yet (see ``compile_for_decoding``).
    deferred_check: Callable[[], CompiledSchema] | None = None
    # Fills what a result carries besides its value (``Result.spans``, ``Result.reasoning``) once it validated.
    annotate: Callable[[Any], None] | None = None
    number_bound: int = 0               # JSON output: JsonOptions.number_digits (0: none; see number_digits)

    @property
    def relaxed(self) -> bool:
        """Whether the grammar may admit invalid values (each output is then validated and resampled)."""
        return bool(self.relaxations)

    @functools.cached_property
    def prompt_hint(self) -> str | None:
        """What to tell the model about the expected format (None: nothing)."""
        return self.hint() if callable(self.hint) else self.hint

    def checked(self) -> CompiledSchema:
        """This schema with its grammar checked by llguidance: raises ``SchemaError`` (with a location) for an
        unsupported schema, or returns the relaxed fallback. Already-checked schemas return themselves."""
        return self if self.deferred_check is None else self.deferred_check()

    @functools.cached_property
    def number_digits(self) -> int:
        """The digit bound of the numbers a local model writes for this schema (0: none): ``number_bound``, or
        more where the schema's own numbers need it (``compile/number_bound.py``). Worked out on first use, so a
        compile does not pay for it."""
        if not self.number_bound or self.json_schema is None:
            return self.number_bound
        return digit_limit(json.dumps(self.json_schema), self.number_bound)

    def validate(self, text: str) -> Any:
        """The validated value for ``text``; raises ``ValueError`` with the reason if it is invalid."""
        try:
            return self.validator(text)
        except _Invalid as exc:
            raise ValueError(str(exc)) from None


def compile_schema(schema: SchemaLike, options: JsonOptions | None = None) -> CompiledSchema:
    """Compile any supported schema kind (cached); an unsupported schema raises ``SchemaError`` here."""
    return _compile(schema, options or JsonOptions(), checked=True)


def compile_for_decoding(schema: SchemaLike, options: JsonOptions | None = None) -> CompiledSchema:
    """Like ``compile_schema``, but a JSON Schema's grammar is not put through llguidance's separate check:
    the matcher build that follows (``Backend.compile``) finds the same errors, and then calls
    ``CompiledSchema.checked()`` for the located error or the relaxed fallback. That check costs as much as
    half the build, so skipping it on the common path halves the time to first mask."""
    return _compile(schema, options or JsonOptions(), checked=False)


_SCHEMA_ENCODER = json.JSONEncoder(allow_nan=False, ensure_ascii=False)   # one encoder: none built per compile


def _compile(schema: SchemaLike, options: JsonOptions, *, checked: bool) -> CompiledSchema:
    if schema is None:
        return _compile_text()
    if isinstance(schema, Regex):
        return _compile_regex(check_text("the regex", schema.pattern, SchemaError))
    if isinstance(schema, Choice):
        for i, option in enumerate(schema.options):
            check_text(f"Choice option {i}", option, SchemaError)
        return _compile_choice(schema.options)
    if isinstance(schema, Grammar):
        return _compile_grammar(check_text("the grammar", schema.source, GrammarError), schema.name, schema.check)
    if isinstance(schema, Mapping):
        try:
            # Order-preserving: llguidance emits properties in the order the schema lists them.
            key = _SCHEMA_ENCODER.encode(schema)   # NaN / Infinity are not JSON
            key.encode("utf-8")   # a lone surrogate (a key or string that was not UTF-8) fails here
        except RecursionError:
            check_depth(schema)   # raises the located error
            raise SchemaError(f"the JSON Schema is nested deeper than {MAX_SCHEMA_DEPTH} levels") from None
        except (TypeError, ValueError) as exc:   # UnicodeEncodeError included
            raise SchemaError(f"the JSON Schema is not JSON-serialisable: {exc}") from exc
        check_depth(schema, key)
        return _compile_json_dict(key, options, checked)
    if isinstance(schema, type) or _is_typing_form(schema):
        return _compile_pydantic(schema, options, checked)
    raise SchemaError(f"unsupported schema kind {type(schema).__name__}: pass a Pydantic model, a JSON Schema "
                      "dict, Regex, Choice, Grammar or None")


def _is_typing_form(obj: object) -> bool:
    return type(obj).__module__ in ("typing", "types", "typing_extensions")


# ---- text -----------------------------------------------------------------------------------------

@functools.cache
def _compile_text() -> CompiledSchema:
    return CompiledSchema(kind="text", grammar=None, validator=lambda text: text)


# ---- regex ----------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=512)
def _compile_regex(pattern: str) -> CompiledSchema:
    if not isinstance(pattern, str) or pattern == "":
        raise SchemaError("the regex is empty")
    try:
        re.compile(pattern)   # the syntax check; matching untrusted text is bounded in time (regex_match)
    except re.error as exc:
        raise SchemaError(f"invalid regex: {exc.msg}", pointer=f"pattern[{exc.pos}]") from exc
    grammar = llguidance.LLMatcher.grammar_from_regex(pattern)
    check_llguidance(grammar, lambda msg: SchemaError(f"regex not supported by the grammar engine: "
                                                       f"{first_line(msg)}", pointer="pattern"))

    def validate(text: str) -> str:
        matched = regex_match.fullmatch(pattern, text)   # MatchTimeout (a ValueError): not verified, not valid
        if not matched:
            raise _Invalid(f"{clip(text)!r} does not fully match /{pattern}/")
        return text

    return CompiledSchema(kind="regex", grammar=grammar, validator=validate, regex=pattern, source=pattern)


# ---- choice ---------------------------------------------------------------------------------------

def _rust_regex_escape(text: str) -> str:
    return "".join("\\" + c if c in r"\.+*?()|[]{}^$#&-~" else c for c in text)


@functools.lru_cache(maxsize=512)
def _compile_choice(options: tuple[str, ...]) -> CompiledSchema:
    lark = "start: " + " | ".join(json.dumps(o) for o in options) + "\n"
    grammar = llguidance.LLMatcher.grammar_from_lark(lark)
    check_llguidance(grammar, lambda msg: SchemaError(f"choice cannot be compiled: {first_line(msg)}"))
    allowed = frozenset(options)

    def validate(text: str) -> str:
        if text not in allowed:
            raise _Invalid(f"{text!r} is not one of {list(options)}")
        return text

    hint = "Answer with exactly one of: " + ", ".join(options)
    regex = "|".join(_rust_regex_escape(o) for o in options)
    return CompiledSchema(kind="choice", grammar=grammar, validator=validate, regex=f"({regex})",
                          hint=hint, source=options)


# ---- Lark grammar ---------------------------------------------------------------------------------

_LOCATION = re.compile(r"(\d+)\((\d+)\)")


@functools.lru_cache(maxsize=128)
def _compile_grammar(source: str, name: str | None, check: Callable[[str], object] | None = None) -> CompiledSchema:
    if not source.strip():
        raise GrammarError("the grammar is empty", file=name)
    grammar = llguidance.LLMatcher.grammar_from_lark(source)

    def error(msg: str) -> GrammarError:
        m = _LOCATION.search(msg)
        line, col = (int(m.group(1)), int(m.group(2))) if m else (None, None)
        reason = re.sub(r"^(at )?\d+\(\d+\):\s*", "", first_line(msg))
        return GrammarError(reason, file=name, line=line, column=col)

    check_llguidance(grammar, error)
    oracle = _lark_oracle(source)
    if oracle is not None:
        check_grammar_productive(oracle, name)

    def validate(text: str) -> str:
        if oracle is not None:
            try:
                oracle.parse(text)
            except Exception as exc:  # lark raises many exception types; all mean "not in the language"
                raise _Invalid(f"the grammar oracle (lark) rejects the output: {first_line(str(exc))}") from None
        else:
            from ._byte_tokenizer import grammar_accepts

            if not grammar_accepts(grammar, text):
                raise _Invalid("the grammar rejects the output")
        if check is not None:
            try:
                check(text)
            except ValueError as exc:
                raise _Invalid(f"the grammar's check rejects the output: {exc}") from None
        return text

    return CompiledSchema(kind="grammar", grammar=grammar, validator=validate, source=source)


def _lark_oracle(source: str) -> Any:
    """An independent parser from the ``lark`` package, or None if the grammar uses llguidance-only syntax."""
    import lark

    try:
        return lark.Lark(source, start="start", parser="earley", lexer="dynamic")
    except Exception:  # llguidance extensions (%json, lazy terminals...) are not Lark; fall back
        return None


# ---- JSON Schema ----------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1024)
def _compile_json_dict(key: str, options: JsonOptions, checked: bool = True) -> CompiledSchema:
    schema = json.loads(key)
    if not isinstance(schema, dict):
        raise SchemaError("a JSON Schema must be an object")
    _check_meta_schema(schema)
    _check_patterns(schema)
    if '"$ref"' in key:   # without a $ref there is no cycle, and llguidance finds every other contradiction
        check_schema_finite(schema)
    # Built on first use: the decode loop needs the validator only once the output is complete.
    validator = functools.cache(functools.partial(json_validator, schema))

    def validate(text: str) -> Any:
        try:
            value = json.loads(text)
            errors = sorted(validator().iter_errors(value), key=lambda e: list(e.path))
        except ValueError as exc:   # JSONDecodeError, or an integer past Python's digit limit
            raise _Invalid(f"not JSON: {exc}") from None
        except RecursionError:
            raise _Invalid("nested too deeply to check") from None
        except Exception as exc:
            from referencing.exceptions import Unresolvable  # loaded with jsonschema by now

            if not isinstance(exc, Unresolvable):   # a $ref never fetched: the value cannot be checked
                raise
            raise _Invalid(f"cannot be checked: $ref {exc} does not resolve here") from None
        if errors:
            raise _Invalid("; ".join(f"{json_pointer(e.absolute_path) or '/'}: {e.message}" for e in errors[:5]))
        return value

    deferred = None if checked else functools.partial(_compile_json_dict, key, options, True)
    return _json_compiled(schema, validate, options, source=schema, deferred=deferred, text=key)


@functools.lru_cache(maxsize=256)
def _compile_pydantic(tp: Any, options: JsonOptions, checked: bool = True) -> CompiledSchema:
    try:
        adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(tp)
        schema = adapter.json_schema()
    except (pydantic.PydanticUserError, pydantic.PydanticSchemaGenerationError) as exc:
        raise SchemaError(f"pydantic cannot build a JSON Schema for {tp!r}: {exc}") from exc

    def validate(text: str) -> Any:
        try:
            return adapter.validate_json(text)
        except pydantic.ValidationError as exc:
            raise _Invalid("; ".join(f"/{'/'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])) \
                from None

    deferred = None if checked else functools.partial(_compile_pydantic, tp, options, True)
    # Pydantic ignores unknown keys: whatever ``extra_properties`` says, a model should not spend tokens on them.
    # Closed here (the closed schema is the one hosted servers and prompts see), so not again in _json_compiled.
    return _json_compiled(close_objects(schema), validate, dataclasses.replace(options, extra_properties=True),
                          source=tp, deferred=deferred)


def _json_compiled(schema: dict[str, Any], validate: Callable[[str], Any], options: JsonOptions,
                   source: Any, deferred: Callable[[], CompiledSchema] | None,
                   text: str | None = None) -> CompiledSchema:
    compile_opts = options.compile_options()
    digits = options.number_digits or 0
    enforced = schema if options.extra_properties else close_objects(schema)
    if enforced is not schema:
        text = None
    try:
        # ``text`` is the schema already serialised: llguidance would serialise the dict again (half its cost here).
        grammar = llguidance.LLMatcher.grammar_from_json_schema(text or enforced, overrides=compile_opts)
    except ValueError as exc:
        raise SchemaError(f"not a JSON object: {exc}") from exc
    if deferred is not None:
        return CompiledSchema(kind="json", grammar=grammar, validator=validate, json_schema=schema,
                              hint=functools.partial(outline, schema), source=source, deferred_check=deferred,
                              number_bound=digits)
    is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar)
    if is_error and enforced is not schema and "Unsatisfiable" in messages[0]:
        # Closing is a preference: whether the schema can be satisfied is the schema's own matter.
        return _json_compiled(schema, validate, dataclasses.replace(options, extra_properties=True), source,
                              deferred, text)
    relaxations: tuple[Relaxation, ...] = ()
    if is_error and not options.lenient:
        if "Unsatisfiable" in messages[0]:
            raise SchemaError(f"the schema cannot be satisfied: {first_line(messages[0])}",
                              pointer=_locate(schema, messages[0]))
        grammar, relaxations, relaxed_messages = relax_json_schema(enforced, dict(compile_opts), messages[0])
        if options.strict:
            raise SchemaError("strict=True: the grammar cannot enforce all of this schema: "
                              + "; ".join(str(r) for r in relaxations[:8]), pointer=relaxations[0].pointer)
        is_error, messages = False, [*messages, *relaxed_messages]
    if is_error:
        raise SchemaError(f"JSON Schema not supported: {first_line(messages[0])}",
                          pointer=_locate(schema, messages[0]))
    return CompiledSchema(kind="json", grammar=grammar, validator=validate, json_schema=schema,
                          relaxations=relaxations, hint=functools.partial(outline, schema),
                          warnings=tuple(messages), source=source, number_bound=digits)


def _check_meta_schema(schema: dict[str, Any]) -> None:
    """``SchemaError`` (with a pointer) unless ``schema`` is valid against its meta-schema."""
    # jsonschema-rs checks against the meta-schema ~200x faster; only a schema it rejects goes through
    # jsonschema's own (slow) check, which is the authority (it is the validator used afterwards) and
    # words the error. They disagree on a handful of MaskBench schemas, e.g. ECMA-262 vs Python regexes.
    try:
        fast_ok = jsonschema_rs.meta.is_valid(schema)
    except Exception:  # e.g. a $schema it does not know: let jsonschema decide
        fast_ok = False
    if not fast_ok:
        import jsonschema  # only here and in the validator: jsonschema and its format checkers load slowly
        from jsonschema.validators import validator_for

        try:
            validator_for(schema, default=jsonschema.Draft202012Validator).check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise SchemaError(f"malformed JSON Schema: {exc.message}", pointer=json_pointer(exc.absolute_path)) from exc


def _check_patterns(schema: dict[str, Any]) -> None:
    """``SchemaError`` (with a pointer) for a ``pattern`` or ``patternProperties`` regex the validator cannot compile:
    the meta-schema does not check a regex, and such a pattern would fail every reply that reaches it."""
    for path, node in subschemas(schema):
        pattern = node.get("pattern")
        named = node.get("patternProperties")
        found: list[tuple[tuple[str, ...], str]] = [(("pattern",), pattern)] if isinstance(pattern, str) else []
        found += [(("patternProperties", p), p) for p in named] if isinstance(named, dict) else []
        for where, regex in found:
            try:
                regex_match.check_syntax(python_pattern(regex))
            except ValueError as exc:
                raise SchemaError(f"invalid regex {regex!r}: {str(exc).rsplit(': ', 1)[-1]}",
                                  pointer=json_pointer([*path, *where])) from None


def _locate(schema: Any, message: str) -> str:
    """Best-effort JSON pointer to the keyword an llguidance error message names."""
    names = re.findall(r'"([^"]+)"', message) or re.findall(r"'([^']+)'", message)
    if not names:
        return ""

    def walk(node: Any, path: list[str]) -> str | None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k in names:
                    return json_pointer([*path, k])
                found = walk(v, [*path, k])
                if found is not None:
                    return found
        elif isinstance(node, list):
            for i, v in enumerate(node):
                found = walk(v, [*path, str(i)])
                if found is not None:
                    return found
        return None

    return walk(schema, []) or ""


def check_llguidance(grammar: str, make_error: Callable[[str], Exception]) -> None:
    """Raise ``make_error(llguidance's first message)`` if llguidance refuses ``grammar``."""
    is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar)
    if is_error:
        raise make_error(messages[0])


def named_grammars(grammar: str, name: str) -> list[dict[str, Any]]:
    """The sub-grammars of an llguidance grammar string, the first one named ``name`` (for ``@name`` references
    from a Lark grammar that composes it)."""
    if grammar.lstrip().startswith("{"):
        subs = [dict(g) for g in json.loads(grammar)["grammars"]]
        subs[0]["name"] = name
        return subs
    return [{"name": name, "lark_grammar": grammar}]


def replace_options(options: JsonOptions, **changes: Any) -> JsonOptions:
    """A copy of ``options`` with some fields changed."""
    return dataclasses.replace(options, **changes)
