"""Exact probabilities of a fixed set of answers: ``probs("Heads or tails?", ["heads", "tails"])``.

Nothing is sampled. Two questions, two methods:

- ``method="model"`` (default), *how sure is the model?* Each option is tokenised and scored token by
  token under the model, after the same chat-templated prompt ``generate`` would send (schema hint
  included), and then the end-of-turn token::

      P(option is the whole answer) = P(t1 | prompt) · P(t2 | prompt, t1) · … · P(end | prompt, option)

  normalised over the options (it sums to 1), the mass on every other answer reported as ``outside``.
- ``method="sampler"``, *what will constrained generation return?* The exact distribution of
  ``generate(prompt, schema, temperature=T)``: the grammar is walked over every token path its masks
  allow (a grammar-constrained sampler also reaches "heads" as "h" + forced "eads"), each step's masked
  softmax taken from the model. This is the reference for sampled frequencies.

Options sharing a token prefix share its model step: the paths form a token trie, decoded one trie level
per llama.cpp batch, each branch in its own sequence on top of the one prompt decode.

A ``Regex``, ``Grammar`` or JSON Schema with a small finite language is enumerated first by walking its
grammar with the grammar engine (``finite_language``); an infinite or too large language is a
``SchemaError``.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from ..compile.kinds import Choice, SchemaLike
from ..compile.matchers import Backend, Matcher, MatcherFactory, Vocab
from ..compile.schema import CompiledSchema, compile_schema
from ..errors import GenerationError, InvalidArgument, SchemaError
from ..local.engine import with_hint
from ..request import Message

__all__ = ["OptionProbs", "ScoringModel", "finite_language", "probs"]

MAX_OPTIONS = 256       # default bound on an enumerated language
MAX_LENGTH = 64         # default bound on the bytes of one enumerated string
_WALK_BUDGET = 100_000  # text prefixes expanded at most while enumerating


class ScoringModel(Protocol):
    """What scoring needs from a local model (``LlamaCpp``)."""

    backend: Backend
    vocab: Vocab
    eos_ids: tuple[int, ...]
    n_vocab: int
    lock: Any
    deterministic: bool

    @property
    def n_seq_max(self) -> int:
        """Most sequences one batch may hold."""

    @property
    def name(self) -> str:
        """A name for reports."""

    def prompt_tokens(self, prompt: str | Sequence[Message], *, system: str | None = None,
                      chat: bool = True) -> list[int]:
        """The prompt as token ids."""

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        """Text to token ids."""

    def prefill(self, tokens: Sequence[int]) -> NDArray[np.float32]:
        """Decode a prompt into sequence 0 from an empty cache; its last logits."""

    def share(self, src: int, dst: int, n_prompt: int) -> None:
        """Let ``dst`` start from the first ``n_prompt`` positions of ``src``."""

    def drop(self, seq: int, start: int = 0) -> None:
        """Forget positions ``start``.. of ``seq``."""

    def decode_rows(self, items: Sequence[tuple[int, int, int, bool]]) -> NDArray[np.float32]:
        """One batch of ``(token, position, sequence, want_logits)``; the wanted rows' logits."""


@dataclass(frozen=True, eq=False)
class OptionProbs(Mapping[str, float]):
    """Each option's probability, normalised over the options; a read-only mapping option → probability.

    ``outside``: the probability of any other answer (1 − the sum of the unnormalised probabilities); for
    ``method="sampler"`` the mass of paths left unexplored below ``min_prob`` (the sampler itself never
    leaves the options). ``logprobs``: each option's unnormalised log-probability. ``tokens``: the token
    ids scored for each option (its canonical tokenisation; the end-of-turn token not included).
    ``complete``: whether the end of the answer was scored (False: the probability that the answer's
    tokens begin with the option's).
    """

    probs: dict[str, float]
    outside: float
    logprobs: dict[str, float]
    tokens: dict[str, tuple[int, ...]]
    method: str
    complete: bool
    prompt_tokens: int
    model: str
    elapsed_ms: float

    def __getitem__(self, option: str) -> float:
        return self.probs[option]

    def __iter__(self) -> Iterator[str]:
        return iter(self.probs)

    def __len__(self) -> int:
        return len(self.probs)

    @property
    def best(self) -> str:
        """The most probable option (the first of equals)."""
        return max(self.probs, key=self.probs.__getitem__)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view."""
        return {"probs": self.probs, "outside": self.outside, "logprobs": self.logprobs,
                "tokens": {k: list(v) for k, v in self.tokens.items()}, "method": self.method,
                "complete": self.complete,
                "prompt_tokens": self.prompt_tokens, "model": self.model, "elapsed_ms": self.elapsed_ms}


def probs(
    prompt: str | Sequence[Message],
    options: Sequence[str] | SchemaLike,
    *,
    model: Any = None,
    method: Literal["model", "sampler"] = "model",
    system: str | None = None,
    chat: bool = True,
    schema_in_prompt: bool = True,
    complete: bool = True,
    temperature: float = 1.0,
    min_prob: float = 0.0,
    max_options: int = MAX_OPTIONS,
    max_length: int = MAX_LENGTH,
) -> OptionProbs:
    """The exact probability of each option as the model's answer to ``prompt``.

    ``options``: a list of strings (scored as ``Choice(options)``), or a ``Choice``, ``Regex``, ``Grammar``
    or JSON Schema whose language is finite (at most ``max_options`` strings of at most ``max_length``
    bytes; otherwise ``SchemaError``). ``model``: a local ``LlamaCpp`` (default: the bundled model).
    The prompt is built as ``generate`` builds it: chat template, ``system``, and the schema's format hint
    when ``schema_in_prompt``.

    ``method="model"``: the model's probability of each option; ``complete`` scores the end of the answer
    too (default; False: the answer's tokens begin with the option's, and the options must be
    prefix-free as token sequences). ``method="sampler"``: the probability that ``generate(prompt, schema,
    temperature=temperature)`` returns each option (fast-forward on, as by default); paths less likely
    than ``min_prob`` are not explored and their mass is reported as ``outside``.

    On ``LlamaCpp(deterministic=True)`` every token path is decoded on its own, so a probability does not
    depend on which other options are asked about; otherwise paths share prefixes and batches.
    """
    t0 = time.perf_counter()
    if model is None:
        from ..generate import default_model

        model = default_model()
    if not hasattr(model, "decode_rows"):
        raise InvalidArgument(f"probs needs a local model that exposes its logits, not {type(model).__name__}")
    if method not in ("model", "sampler"):
        raise InvalidArgument(f"method must be 'model' or 'sampler', got {method!r}")
    if not (temperature >= 0.0 and math.isfinite(temperature)) or not 0.0 <= min_prob < 1.0:
        raise InvalidArgument("temperature must be >= 0 and min_prob in [0, 1)")
    schema = _as_schema(options)
    strings = list(schema.source) if schema.kind == "choice" else finite_language(
        schema, model, max_options=max_options, max_length=max_length)
    if not strings:
        raise SchemaError("the schema's language is empty: there is nothing to score")
    hint = schema.prompt_hint if schema_in_prompt else None
    prompt_ids = model.prompt_tokens(with_hint(prompt, hint, chat=chat), system=system, chat=chat)
    option_ids = {o: tuple(model.tokenize(o, special=False)) for o in strings}
    if method == "model" and not complete:
        _check_prefix_free(option_ids)
    with model.lock:
        scorer = _Scorer(model, prompt_ids)
        if method == "model":
            by_tokens = scorer.option_logprobs(list(option_ids.values()), complete)
            lp = {o: by_tokens[t] for o, t in option_ids.items()}
        else:
            factory = model.backend.compile(schema, model.vocab)
            lp, pruned = _sampler_walk(model, scorer, factory, strings, temperature, min_prob)
    total = _logsumexp(list(lp.values()))
    normalised = {o: math.exp(v - total) if total > -math.inf else 1.0 / len(lp) for o, v in lp.items()}
    outside = pruned if method == "sampler" else max(0.0, -math.expm1(total))
    return OptionProbs(probs=normalised, outside=outside, logprobs=lp, tokens=option_ids, method=method,
                       complete=complete or method == "sampler", prompt_tokens=len(prompt_ids), model=model.name,
                       elapsed_ms=(time.perf_counter() - t0) * 1000)


def finite_language(schema: SchemaLike | CompiledSchema, model: Any, *, max_options: int = MAX_OPTIONS,
                    max_length: int = MAX_LENGTH) -> list[str]:
    """Every string a grammar accepts, in byte order, found by walking the grammar engine's masks.

    From each text prefix the walk follows every token the matcher allows (each prefix is expanded once,
    however it was tokenised); accepting states are the strings of the language. ``SchemaError`` if it
    has more than ``max_options`` strings or one longer than ``max_length`` bytes (an infinite language
    always does).
    """
    compiled = schema if isinstance(schema, CompiledSchema) else compile_schema(schema)
    if compiled.grammar is None:
        raise SchemaError("free text has an infinite language: give a Choice, Regex or Grammar")
    factory = model.backend.compile(compiled, model.vocab)
    vocab: Vocab = model.vocab
    pieces: list[bytes] = vocab.cached("token_bytes_list", lambda: list(vocab.token_bytes()))
    eos = np.array(sorted(set(vocab.eos_ids)), dtype=np.intp)
    mask = np.empty(vocab.mask_words, dtype=np.int32)
    found: set[bytes] = set()
    seen: set[bytes] = set()
    stack: list[tuple[Matcher, bytes]] = [(factory.new_matcher(), b"")]
    while stack:
        matcher, text = stack.pop()
        if text in seen or matcher.error():
            continue
        seen.add(text)
        if len(seen) > _WALK_BUDGET:
            raise SchemaError(f"the language is too large to enumerate (over {_WALK_BUDGET} prefixes)")
        if matcher.is_accepting():
            found.add(text)
            if len(found) > max_options:
                raise SchemaError(f"the language has more than {max_options} strings: too many to score "
                                  "(raise max_options, or narrow the schema)")
        if matcher.is_stopped():
            continue
        matcher.fill_mask(mask)
        allowed = np.flatnonzero(np.unpackbits(mask.view(np.uint8), count=vocab.n_vocab, bitorder="little"))
        for token in np.setdiff1d(allowed, eos, assume_unique=True).tolist():
            child_text = text + pieces[token]
            if child_text in seen:
                continue
            if len(child_text) > max_length:
                raise SchemaError(f"the language is infinite or has strings over {max_length} bytes: it cannot "
                                  "be enumerated (raise max_length, or bound the schema)")
            child = matcher.copy()
            if child.consume(token):
                stack.append((child, child_text))
    try:
        return [s.decode("utf-8") for s in sorted(found)]
    except UnicodeDecodeError as exc:
        raise SchemaError(f"the language has a string that is not UTF-8: {exc}") from exc


def _as_schema(options: Sequence[str] | SchemaLike) -> CompiledSchema:
    if isinstance(options, CompiledSchema):
        return options
    if isinstance(options, Sequence) and not isinstance(options, str):
        if not all(isinstance(o, str) for o in options):
            raise InvalidArgument("options must be strings")
        return compile_schema(Choice(options))
    if isinstance(options, str):
        raise InvalidArgument("options must be a list of strings or a schema, not one string")
    return compile_schema(options)


def _check_prefix_free(option_ids: Mapping[str, tuple[int, ...]]) -> None:
    """Without the end of the answer, an option whose tokens begin another's would count that one's mass too."""
    ordered = sorted(option_ids.items(), key=lambda kv: kv[1])
    for (a, ta), (b, tb) in itertools.pairwise(ordered):
        if tb[: len(ta)] == ta:
            raise InvalidArgument(f"with complete=False no option's tokens may begin another's: {a!r} begins {b!r}")


def _logsumexp(values: Sequence[float]) -> float:
    top = max(values)
    if top == -math.inf:
        return -math.inf
    return top + math.log(sum(math.exp(v - top) for v in values))


_Rows = dict[tuple[int, ...], tuple[NDArray[np.float32], float]]  # path -> (logits row, its logsumexp)


class _Scorer:
    """Logits rows after one prompt for token paths (tuples of ids), prefix-shared over a token trie."""

    def __init__(self, model: ScoringModel, prompt: Sequence[int]) -> None:
        self.model = model
        self.n_prompt = len(prompt)
        self.eos = np.array(sorted(set(model.eos_ids)), dtype=np.int64)
        # A row's log-softmax is only read at a few ids: keep the logits and their logsumexp, not a full
        # normalised vocabulary per path.
        self.rows: _Rows = {}
        root = model.prefill(prompt)
        self.rows[()] = (root.copy(), _row_lse(root))

    def option_logprobs(self, options: list[tuple[int, ...]], complete: bool) -> dict[tuple[int, ...], float]:
        """log P(option [, end]) for each option."""
        if self.model.deterministic:
            return {o: self._option_alone(o, complete) for o in options}
        self.ensure({o[:d] for o in options for d in range(1, len(o) + complete)})
        return {o: self._logprob(o, complete, self.rows) for o in options}

    def ensure(self, paths: set[tuple[int, ...]]) -> None:
        """Make ``self.rows[p]`` available for every path in ``paths``."""
        todo = sorted(p for p in paths if p not in self.rows)
        if not todo:
            return
        if self.model.deterministic:
            for p in todo:
                self.rows[p] = self._decode_alone(p, want_all=False)[p]
        else:
            self._decode_trie(sorted({p[:d] for p in todo for d in range(1, len(p) + 1)}))

    def _option_alone(self, option: tuple[int, ...], complete: bool) -> float:
        rows: _Rows = {(): self.rows[()]}
        depth = len(option) - 1 + complete
        if depth > 0:
            rows.update(self._decode_alone(option[:depth], want_all=True))
        return self._logprob(option, complete, rows)

    def _decode_alone(self, path: tuple[int, ...], *, want_all: bool) -> _Rows:
        """One path in sequence 0 after the prompt, in one decode of its own, then forgotten: the same
        shapes whatever else is scored."""
        items = [(tok, self.n_prompt + i, 0, want_all or i == len(path) - 1) for i, tok in enumerate(path)]
        depths = range(1, len(path) + 1) if want_all else [len(path)]
        out = {path[:d]: (row, _row_lse(row)) for d, row in zip(depths, self.model.decode_rows(items), strict=True)}
        self.model.drop(0, self.n_prompt)
        return out

    def _decode_trie(self, nodes: list[tuple[int, ...]]) -> None:
        """Every node (a prefix-closed set of paths), in waves of at most n_seq_max - 1 branches, one
        batched decode per trie level; each branch continues in its own sequence (shared KV cells)."""
        leaves = [p for p in nodes if not any(len(q) > len(p) and q[:len(p)] == p for q in nodes)]
        width = max(1, self.model.n_seq_max - 1)
        for start in range(0, len(leaves), width):
            wave = leaves[start : start + width]
            seq_of: dict[tuple[int, ...], int] = {}
            for k, leaf in enumerate(wave):          # a node runs in the sequence of its first leaf
                for d in range(1, len(leaf) + 1):
                    seq_of.setdefault(leaf[:d], k + 1)
            for depth in range(1, max(len(leaf) for leaf in wave) + 1):
                # Earlier waves' KV is gone: shared ancestors are decoded again, in this wave's sequences.
                level = [p for p in seq_of if len(p) == depth]
                for p in level:
                    parent_seq = seq_of.get(p[:-1], 0)
                    if seq_of[p] != parent_seq:
                        self.model.share(parent_seq, seq_of[p], self.n_prompt + depth - 1)
                logits = self.model.decode_rows([(p[-1], self.n_prompt + depth - 1, seq_of[p], True) for p in level])
                for p, row in zip(level, logits, strict=True):
                    self.rows[p] = (row, _row_lse(row))
            for k in range(len(wave)):
                self.model.drop(k + 1)

    def end_logprob(self, path: tuple[int, ...], rows: _Rows) -> float:
        """log P(end of turn | prompt, path)."""
        row, lse = rows[path]
        return _logsumexp([float(row[e]) - lse for e in self.eos])

    def _logprob(self, option: tuple[int, ...], complete: bool, rows: _Rows) -> float:
        total = 0.0
        for d, tok in enumerate(option):
            row, lse = rows[option[:d]]
            total += float(row[tok]) - lse
        return total + (self.end_logprob(option, rows) if complete else 0.0)


def _sampler_walk(model: ScoringModel, scorer: _Scorer, factory: MatcherFactory, strings: list[str],
                  temperature: float, min_prob: float) -> tuple[dict[str, float], float]:
    """log P(generate returns s) for each string, and the probability mass left unexplored.

    Mirrors the decode loop: forced tokens first, then at each step a draw from the masked softmax at
    ``temperature`` (0: the argmax, ties to the lowest id), the tokens the grammar forces after it, and
    the end when the grammar stops (or EOS is drawn where it is allowed).
    """
    pieces: list[bytes] = model.vocab.cached("token_bytes_list", lambda: list(model.vocab.token_bytes()))
    eos = frozenset(model.eos_ids)
    mask = np.empty(model.vocab.mask_words, dtype=np.int32)
    mass: dict[bytes, float] = {}
    pruned = 0.0
    frontier: list[tuple[tuple[int, ...], Matcher, float]] = []

    def settle(path: tuple[int, ...], m: Matcher, lp: float) -> None:
        forced = m.forced_tokens() if not m.is_stopped() else []
        if forced and m.consume_many(forced) == len(forced):
            path += tuple(forced)
        if m.error():
            raise GenerationError(f"grammar engine error while enumerating: {m.error()}")
        if m.is_stopped():
            text = b"".join(pieces[t] for t in path)
            mass[text] = mass.get(text, 0.0) + math.exp(lp)
        else:
            frontier.append((path, m, lp))

    settle((), factory.new_matcher(), 0.0)
    visited = 0
    while frontier:
        visited += len(frontier)
        if visited > _WALK_BUDGET:
            raise SchemaError(f"too many token paths to walk (over {_WALK_BUDGET}); raise min_prob")
        scorer.ensure({p for p, _, _ in frontier if p})
        current, frontier = frontier, []
        for path, m, lp in current:
            row, _ = scorer.rows[path]
            m.fill_mask(mask)
            ids = np.flatnonzero(np.unpackbits(mask.view(np.uint8), count=model.n_vocab, bitorder="little"))
            for token, step_lp in zip(ids.tolist(), _masked_logsoftmax(row[ids], temperature).tolist(),
                                      strict=True):
                p_path = lp + step_lp
                if p_path == -math.inf:
                    continue
                if math.exp(p_path) < min_prob:
                    pruned += math.exp(p_path)
                elif token in eos:
                    if m.is_accepting():
                        text = b"".join(pieces[t] for t in path)
                        mass[text] = mass.get(text, 0.0) + math.exp(p_path)
                else:
                    child = m.copy()
                    if child.consume(token):
                        settle((*path, token), child, p_path)
    by_text = {s.encode("utf-8"): s for s in strings}
    lp_out = {s: -math.inf for s in strings}
    for text, p in mass.items():
        if text not in by_text:
            raise GenerationError(f"the grammar walk reached {text!r}, which is not in the language")
        lp_out[by_text[text]] = math.log(p) if p > 0 else -math.inf
    return lp_out, pruned


def _masked_logsoftmax(x: NDArray[np.float32], temperature: float) -> NDArray[np.float64]:
    """log-softmax of the allowed logits at ``temperature``, as the sampler draws (0: the argmax)."""
    if temperature == 0.0:
        out = np.full(x.size, -np.inf)
        out[int(x.argmax())] = 0.0
        return out
    z = x.astype(np.float64) / temperature
    z -= z.max()
    return z - math.log(float(np.exp(z).sum()))


def _row_lse(row: NDArray[np.float32]) -> float:
    """logsumexp of one logits row, in float64."""
    top = float(row.max())
    return top + math.log(float(np.exp(row - np.float32(top), dtype=np.float64).sum()))
