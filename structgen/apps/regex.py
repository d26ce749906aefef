"""``text_to_regex``: a description (plus strings that must and must not match) → a verified Python regex.

Candidates are generated under the bundled ``python_regex.lark`` grammar, so the whole output is one
regex (no quotes, slashes or prose). Each is then verified: ``re.compile`` succeeds, every example fully
matches and no counter-example does. The best verified candidate by average logprob is returned; if none
verifies, :class:`RegexNotVerified` carries every candidate and the reason it failed.

Matching runs in a separate Python process with a time limit, because a model-written pattern can
backtrack catastrophically (``(a+)+b`` on a long string) and Python's ``re`` cannot be interrupted.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._unicode import check_text
from ..compile.kinds import Grammar
from ..errors import GenerationError, GrammarError, InvalidArgument
from ..request import resolve_seed
from ._sampling import Sample, sample_texts

__all__ = [
    "RegexCandidate",
    "RegexNotVerified",
    "RegexResult",
    "extract_regex",
    "regex_messages",
    "text_to_regex",
    "verify_regex",
]

SYSTEM_PROMPT = "You write Python regular expressions. Reply with the regex only."

# Few-shot turns (none of them is a benchmark task). A small model copies their form closely: anchored
# patterns drew far more regex-like answers from SmolLM2-135M than bare ones, and listing the examples in
# the request made it echo them back instead of writing a pattern, so the examples are only verified.
SHOTS: tuple[tuple[str, str], ...] = (
    ("a 4-digit PIN", r"^\d{4}$"),
    ("a lowercase word", r"^[a-z]+$"),
    ("a Canadian postal code like K1A 0B1", r"^[A-Z]\d[A-Z] \d[A-Z]\d$"),
    ("yes or no", r"^(yes|no)$"),
    ("a version like v1.2, optionally with a patch number", r"^v\d+\.\d+(\.\d+)?$"),
    ("a word of 2 to 5 uppercase letters", r"^[A-Z]{2,5}$"),
    ("a file name ending in .txt or .md", r"^\w+\.(txt|md)$"),
)


@dataclass(frozen=True, slots=True)
class RegexCandidate:
    """One generated regex and what verification found: ``error`` is None exactly when it verified."""

    regex: str
    avg_logprob: float | None
    compiles: bool
    examples: dict[str, bool] = field(default_factory=dict)   # example -> fully matches (should be True)
    counters: dict[str, bool] = field(default_factory=dict)   # counter-example -> fully matches (should be False)
    error: str | None = None

    @property
    def verified(self) -> bool:
        """It compiles, every example fully matches and no counter-example does."""
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view."""
        return {"regex": self.regex, "avg_logprob": self.avg_logprob, "compiles": self.compiles,
                "examples": dict(self.examples), "counters": dict(self.counters), "verified": self.verified,
                "error": self.error}


@dataclass(frozen=True, slots=True)
class RegexResult:
    """The chosen regex (verified, best average logprob) and every candidate that was tried."""

    regex: str
    avg_logprob: float | None
    compiles: bool
    examples: dict[str, bool]
    counters: dict[str, bool]
    verified: bool
    candidates: list[RegexCandidate]
    seed: int

    def to_dict(self) -> dict[str, Any]:
        """The ``structgen regex --json`` object."""
        return {"regex": self.regex, "compiles": self.compiles, "examples": dict(self.examples),
                "counters": dict(self.counters), "verified": self.verified,
                "candidates": [c.to_dict() for c in self.candidates]}


class RegexNotVerified(GenerationError):
    """No candidate regex verified; ``candidates`` holds each one with the reason it failed."""

    def __init__(self, message: str, *, candidates: Sequence[RegexCandidate] = ()) -> None:
        self.candidates = list(candidates)
        super().__init__(message)

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` object for a failure: the most likely candidate, ``verified: false``."""
        top = self.candidates[0] if self.candidates else RegexCandidate("", None, False, error=str(self))
        return {"regex": top.regex, "compiles": top.compiles, "examples": dict(top.examples),
                "counters": dict(top.counters), "verified": False,
                "candidates": [c.to_dict() for c in self.candidates]}


def regex_messages(description: str) -> list[dict[str, str]]:
    """The chat messages that ask for a regex: instructions, few-shot turns, then the description."""
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    for desc, answer in SHOTS:
        messages.append({"role": "user", "content": _request(desc)})
        messages.append({"role": "assistant", "content": answer})
    messages.append({"role": "user", "content": _request(description)})
    return messages


def _request(description: str) -> str:
    return f"Python regex for: {description.strip()}"


# ---- extraction (prompt-only baseline) -------------------------------------------------------------

_FENCE = re.compile(r"```[^\n`]*\n?(.*?)(?:```|\Z)", re.S)
_LABEL = re.compile(r"^(?:the\s+)?(?:python\s+)?(?:regex|regular expression|pattern|answer)\s*(?:is)?\s*:?\s+",
                    re.I)
_QUOTED = re.compile(r"""[rR]?(['"])(.+)\1""")
_INLINE_CODE = re.compile(r"`([^`]+)`")


def extract_regex(reply: str) -> str:
    """The regex in a free-text reply: a fenced or inline code span, else the first line, with any
    ``Regex:`` label, Python string quotes or ``/.../`` slashes taken off. Used by the prompt-only
    baseline; constrained output needs none of this."""
    text = reply.strip()
    fence = _FENCE.search(text)
    if fence:
        text = fence.group(1).strip()
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    code = _INLINE_CODE.search(line)
    if code:
        line = code.group(1).strip()
    line = _LABEL.sub("", line)
    quoted = _QUOTED.fullmatch(line)
    if quoted:
        return quoted.group(2)
    if len(line) >= 2 and line[0] == "/" and line[-1] == "/":
        return line[1:-1]
    return line


# ---- verification ---------------------------------------------------------------------------------

# Runs in a fresh interpreter; prints one JSON line per pattern so a timeout still keeps earlier results.
_MATCHER = """
import json, re, sys, warnings
warnings.simplefilter("ignore")
job = json.load(sys.stdin)
for p in job["patterns"]:
    c = re.compile(p)
    print(json.dumps([c.fullmatch(s) is not None for s in job["strings"]]), flush=True)
"""


def _compile_error(pattern: str) -> str | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            re.compile(pattern)
        except (re.error, RecursionError, OverflowError, ValueError) as exc:
            return f"does not compile: {exc}"
    return None


def _run_matcher(patterns: Sequence[str], strings: Sequence[str], timeout_s: float) -> list[list[bool]]:
    """Full-match results for a prefix of ``patterns``: all of them, or those done before the time limit."""
    job = json.dumps({"patterns": list(patterns), "strings": list(strings)})
    try:
        proc = subprocess.run([sys.executable, "-I", "-S", "-c", _MATCHER], input=job, capture_output=True,
                              text=True, timeout=timeout_s, check=False)
        out = proc.stdout
    except subprocess.TimeoutExpired as exc:
        raw = exc.stdout or b""
        out = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    except OSError as exc:
        raise GenerationError(f"cannot start the regex matcher process: {exc}") from exc
    results = []
    for line in out.splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            break
        if not isinstance(row, list) or len(row) != len(strings):
            break
        results.append([bool(x) for x in row])
    return results


def _fullmatches(patterns: Sequence[str], strings: Sequence[str], timeout_s: float) -> list[list[bool] | None]:
    """For each pattern, whether each string fully matches; None for a pattern stopped by the time limit."""
    out: list[list[bool] | None] = []
    pending = list(patterns)
    while pending:
        done = _run_matcher(pending, strings, timeout_s)
        out.extend(done)
        if len(done) < len(pending):  # the pattern after the last result ran out of time (or crashed the child)
            out.append(None)
        pending = pending[len(done) + 1:]
    return out


def _verify_many(samples: Sequence[tuple[str, float | None]], examples: Sequence[str], counters: Sequence[str],
                 timeout_s: float) -> list[RegexCandidate]:
    errors = [_compile_error(p) for p, _ in samples]
    compiled = [p for (p, _), e in zip(samples, errors, strict=True) if e is None]
    strings = [*examples, *counters]
    matches = iter(_fullmatches(compiled, strings, timeout_s) if strings else [[] for _ in compiled])
    candidates = []
    for (pattern, logprob), error in zip(samples, errors, strict=True):
        if error is not None:
            candidates.append(RegexCandidate(pattern, logprob, False, error=error))
            continue
        row = next(matches)
        if row is None:
            candidates.append(RegexCandidate(pattern, logprob, True,
                                             error=f"matching stopped after {timeout_s:g} s (catastrophic "
                                                   "backtracking?)"))
            continue
        ex = dict(zip(examples, row[: len(examples)], strict=True))
        co = dict(zip(counters, row[len(examples):], strict=True))
        missed = [s for s, ok in ex.items() if not ok]
        wrong = [s for s, ok in co.items() if ok]
        reasons = ([f"example {s!r} does not fully match" for s in missed]
                   + [f"counter-example {s!r} fully matches" for s in wrong])
        candidates.append(RegexCandidate(pattern, logprob, True, ex, co, "; ".join(reasons) or None))
    return candidates


def verify_regex(regex: str, examples: Iterable[str] = (), counters: Iterable[str] = (), *,
                 timeout_s: float = 5.0) -> RegexCandidate:
    """Check ``regex``: ``re.compile``, every example fully matches, no counter-example does (each match
    in a child process stopped after ``timeout_s``). The returned candidate's ``error`` says what failed."""
    ex, co = _strings(examples, "examples"), _strings(counters, "counters")
    return _verify_many([(regex, None)], ex, co, timeout_s)[0]


# ---- the app --------------------------------------------------------------------------------------

def _strings(values: Iterable[str], what: str) -> list[str]:
    if isinstance(values, str):
        raise InvalidArgument(f"{what} must be a list of strings, not one string")
    out = list(dict.fromkeys(values))
    for i, v in enumerate(out):
        check_text(f"{what}[{i}]", v)
    return out


def _regex_grammar() -> Grammar:
    try:
        return Grammar.bundled("python_regex")
    except (OSError, UnicodeDecodeError) as exc:
        raise GrammarError(f"cannot read the bundled grammar: {exc}", file="python_regex.lark") from exc


def text_to_regex(
    description: str,
    examples: Iterable[str] = (),
    counters: Iterable[str] = (),
    n: int = 4,
    model: Any = None,
    *,
    temperature: float | None = None,
    seed: int | None = None,
    max_tokens: int = 96,
    rounds: int = 3,
    constrained: bool = True,
    timeout_s: float = 5.0,
) -> RegexResult:
    """Write a Python regex for ``description`` and verify it against ``examples`` and ``counters``.

    ``n`` candidates are sampled in one batch (``n == 1``: greedy; otherwise ``temperature``, default 0.7,
    seeded by ``seed``) under the ``python_regex`` grammar, and the verified one with the best average
    logprob is returned. If no candidate even compiles, up to ``rounds`` rounds are drawn. Raises
    :class:`RegexNotVerified` (with every candidate and why it failed) when none verifies.
    ``constrained=False`` is the prompt-only baseline: free text, the regex extracted from the reply.

    Example: ``text_to_regex("a US ZIP code, optionally ZIP+4", ["12345", "12345-6789"], ["1234"]).regex``.
    """
    if not isinstance(description, str) or not description.strip():
        raise InvalidArgument("the description is empty")
    check_text("the description", description)
    ex, co = _strings(examples, "examples"), _strings(counters, "counters")
    both = sorted(set(ex) & set(co))
    if both:
        raise InvalidArgument(f"{both[0]!r} is both an example and a counter-example")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidArgument(f"n must be a positive integer, got {n!r}")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise InvalidArgument(f"rounds must be a positive integer, got {rounds!r}")
    temp = (0.0 if n == 1 else 0.7) if temperature is None else temperature
    base_seed = resolve_seed(seed)
    schema = _regex_grammar() if constrained else None
    messages = regex_messages(description)
    candidates: list[RegexCandidate] = []
    for k in range(rounds):
        samples = sample_texts(messages, schema, model=model, n=n, temperature=temp, seed=base_seed,
                               max_tokens=max_tokens, round_index=k)
        candidates.extend(_verify_samples(samples, ex, co, timeout_s, constrained, seen=candidates))
        if any(c.compiles for c in candidates):
            break
    candidates.sort(key=lambda c: _rank(c.avg_logprob), reverse=True)
    best = next((c for c in candidates if c.verified), None)
    if best is None:
        top = candidates[0] if candidates else None
        why = f"; the most likely, {top.regex!r}: {top.error}" if top else ""
        raise RegexNotVerified(f"no regex verified among {len(candidates)} candidate(s){why}",
                               candidates=candidates)
    return RegexResult(regex=best.regex, avg_logprob=best.avg_logprob, compiles=True, examples=best.examples,
                       counters=best.counters, verified=True, candidates=candidates, seed=base_seed)


def _rank(avg_logprob: float | None) -> float:
    return avg_logprob if avg_logprob is not None else -math.inf


def _verify_samples(samples: Sequence[Sample], examples: Sequence[str], counters: Sequence[str], timeout_s: float,
                    constrained: bool, seen: Sequence[RegexCandidate]) -> list[RegexCandidate]:
    """Verify each new regex once (a duplicate keeps the better logprob); unfinished samples are reported."""
    known = {c.regex for c in seen}
    best: dict[str, float | None] = {}
    unfinished: list[RegexCandidate] = []
    for s in samples:
        pattern = s.text if constrained else extract_regex(s.text)
        if s.error is not None and constrained:
            unfinished.append(RegexCandidate(pattern, None, False, error=f"generation failed: {s.error}"))
            continue
        if pattern in known:
            continue
        if pattern not in best or s.rank > _rank(best[pattern]):
            best[pattern] = s.avg_logprob
    if "" in best:  # nothing extractable from a free-text reply
        unfinished.append(RegexCandidate("", best.pop(""), False, error="no regex in the reply"))
    return [*_verify_many(list(best.items()), examples, counters, timeout_s), *unfinished]
