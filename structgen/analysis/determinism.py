"""The determinism experiment: repeat one request N times and count what changes, per serving mode.

Modes: ``alone`` (the request by itself, batch 1); ``batched-k`` (the request in one llama.cpp batch with
k - 1 other, different prompts, the batch's make-up changing from run to run as on a busy server); and
``hosted`` (an OpenAI-compatible endpoint). Each local mode runs on a default ``LlamaCpp`` and, where
given, on a ``LlamaCpp(deterministic=True)`` (the batch-invariant mode), so the two can be compared.

Per mode the report counts distinct texts, distinct values (``engine.normalise``), distinct per-token
logprob vectors (two vectors are the same when they have the same length and differ by at most
``tolerance`` everywhere; exact-bytes counts are given too), the first token position where any run
departs from the first run, and the probability of the answer's first sampled token in every run (the
coin-flip experiment: how many distinct values P(heads) takes; locally the probability under the grammar
mask, from a hosted endpoint whatever its logprobs report: llama.cpp's server gives the model's, before its
grammar). For a choice-like schema the exact option probabilities (``structgen.probs``) are reported as
the reference for sampled frequencies.
"""

from __future__ import annotations

import functools
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..compile.kinds import SchemaLike
from ..compile.schema import compile_schema
from ..errors import InvalidArgument, StructgenError
from ..generate import generate, generate_batch
from ..result import Result
from ..selection import normalise

__all__ = ["OTHER_PROMPTS", "DeterminismReport", "ModeStats", "cluster_count", "plot", "run_experiment", "summarise"]

# Co-batched neighbours: different lengths and topics, so every run's batch is shaped differently.
OTHER_PROMPTS: tuple[str, ...] = (
    "Name a colour.",
    "What is 17 times 23? Show your work step by step.",
    "Write a haiku about the sea at night.",
    "Translate 'good morning' into French, German and Spanish, one per line.",
    "Describe a cat in detail: its fur, its eyes, its whiskers, and how it moves around the house at night.",
    "Name a prime number.",
    "Explain photosynthesis to a child in two sentences.",
    "List three famous bridges and the cities they are in.",
    "Is a tomato a fruit or a vegetable? Explain briefly.",
    "Give a one-line summary of the plot of Hamlet.",
    "What is the boiling point of water at sea level, in Celsius and in Fahrenheit?",
    "Suggest a name for a small bakery.",
)


@dataclass(slots=True)
class ModeStats:
    """What N repeats of one request gave in one serving mode."""

    mode: str
    runs: int
    errors: int
    distinct_texts: int
    distinct_values: int
    distinct_logprob_vectors: int          # clustered within the report's tolerance
    distinct_logprob_vectors_exact: int    # bit for bit
    first_divergence: int | None           # first token position where a run's token or logprob departs
    first_token_divergence: int | None     # first position where a run's token departs
    p_first_token: list[float]             # P(first sampled token) in each run
    distinct_p_first_token: int
    value_frequencies: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    tokens_per_second: float = 0.0         # generated tokens of the whole batch per wall second
    error_messages: list[str] = field(default_factory=list)


@dataclass(slots=True)
class DeterminismReport:
    """The experiment's settings, the exact reference probabilities (if any) and one ``ModeStats`` per mode."""

    prompt: str
    schema: str
    temperature: float
    seed: int
    tolerance: float
    model: str
    threads: int | None
    modes: dict[str, ModeStats]
    reference: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view; ``modes`` maps each mode to its fields."""
        out = asdict(self)
        out["modes"] = {name: asdict(m) for name, m in self.modes.items()}
        return out

    def to_markdown(self) -> str:
        """The per-mode counts as a Markdown table."""
        lines = [
            f"prompt: {self.prompt!r} · schema: {self.schema} · temperature {self.temperature:g} · seed {self.seed}"
            f" · model {self.model} · logprob tolerance {self.tolerance:g}",
            "",
            "| mode | runs | errors | distinct texts | distinct values | distinct logprob vectors (exact) "
            "| first divergence | distinct P(first token) | P(first token) range | tok/s |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for m in self.modes.values():
            lo, hi = (min(m.p_first_token), max(m.p_first_token)) if m.p_first_token else (math.nan, math.nan)
            div = "none" if m.first_divergence is None else str(m.first_divergence)
            lines.append(f"| {m.mode} | {m.runs} | {m.errors} | {m.distinct_texts} | {m.distinct_values} | "
                         f"{m.distinct_logprob_vectors} ({m.distinct_logprob_vectors_exact}) | {div} | "
                         f"{m.distinct_p_first_token} | {lo:.6f} – {hi:.6f} | {m.tokens_per_second:.1f} |")
        if self.reference:
            sampler = ", ".join(f"{k}: {v:.4f}" for k, v in self.reference["sampler"].items())
            whole = ", ".join(f"{k}: {v:.4f}" for k, v in self.reference["model"].items())
            lines += ["", f"exact P(constrained generation returns option) at this temperature: {sampler}",
                      f"exact P(option is the model's whole answer), normalised: {whole}; "
                      f"outside the options: {self.reference['model_outside']:.4f}"]
        return "\n".join(lines)


def run_experiment(
    prompt: str,
    schema: SchemaLike = None,
    *,
    models: Mapping[str, Any] | None = None,
    runs: int = 100,
    batch_sizes: Sequence[int] = (1, 4, 8),
    temperature: float = 0.0,
    seed: int = 42,
    max_tokens: int = 64,
    chat: bool = True,
    system: str | None = None,
    tolerance: float = 1e-6,
    hosted: Any = None,
    others: Sequence[str] = OTHER_PROMPTS,
    reference: bool = True,
    progress: Callable[[str, int, int], None] | None = None,
) -> DeterminismReport:
    """Repeat ``generate(prompt, schema, seed=seed, temperature=temperature)`` ``runs`` times per mode.

    ``models``: label → local ``LlamaCpp``; each runs every batch size in ``batch_sizes`` (1 = ``alone``,
    k = ``batched-k``, the mode name suffixed with `` (label)`` unless the label is ``default``). ``chat``
    and ``system`` go to every ``generate`` call (neighbours included).
    ``hosted``: an ``OpenAICompatible`` (logprobs on) for the ``hosted`` mode. ``reference``: compute the
    exact option probabilities for a choice-like schema on the first local model. ``progress`` is called
    with (mode, run, runs) after every run.
    """
    if runs < 1:
        raise InvalidArgument("runs must be at least 1")
    if any(b < 1 for b in batch_sizes):
        raise InvalidArgument("batch sizes must be at least 1")
    if not models and hosted is None:
        raise InvalidArgument("give at least one local model or a hosted endpoint")
    if any(b > 1 for b in batch_sizes) and not others:
        raise InvalidArgument("batched modes need other prompts to batch with")
    compile_schema(schema)  # a bad schema fails here, once
    kwargs: dict[str, Any] = {"temperature": temperature, "max_tokens": max_tokens, "chat": chat, "system": system}
    modes: dict[str, ModeStats] = {}
    for label, model in (models or {}).items():
        suffix = "" if label == "default" else f" ({label})"
        for b in batch_sizes:
            name = ("alone" if b == 1 else f"batched-{b}") + suffix
            results, wall, tokens = _repeat(name, runs, progress, functools.partial(
                _local_run, model, prompt, schema, seed, b, others=others, kwargs=kwargs))
            modes[name] = summarise(name, results, tolerance, wall, tokens)
    if hosted is not None:
        results, wall, tokens = _repeat("hosted", runs, progress, lambda r: _one(generate(
            prompt, schema, model=hosted, seed=seed, **kwargs)))
        modes["hosted"] = summarise("hosted", results, tolerance, wall, tokens)
    first_local = next(iter((models or {}).values()), None)
    ref = _reference(prompt, schema, first_local, chat=chat, system=system, temperature=temperature) \
        if reference and first_local is not None else None
    model_name = str(getattr(first_local, "name", None) or getattr(hosted, "name", ""))
    threads = getattr(first_local, "n_threads", None)
    return DeterminismReport(prompt=prompt, schema=_describe(schema), temperature=temperature, seed=seed,
                             tolerance=tolerance, model=model_name, threads=threads, modes=modes, reference=ref)


def summarise(mode: str, results: Sequence[Result[Any] | StructgenError], tolerance: float = 1e-6,
              wall_s: float = 0.0, generated_tokens: int | None = None) -> ModeStats:
    """Count what differs between the runs of one mode (errors are counted, not compared)."""
    ok = [r for r in results if isinstance(r, Result)]
    errors = [r for r in results if not isinstance(r, Result)]
    vectors = [tuple(r.logprobs) for r in ok]
    p_first = [_p_first_token(r) for r in ok]
    values = [normalise(r.value) for r in ok]
    tokens = generated_tokens if generated_tokens is not None else sum(len(r.tokens) or len(r.logprobs) for r in ok)
    return ModeStats(
        mode=mode, runs=len(results), errors=len(errors),
        distinct_texts=len({r.text for r in ok}),
        distinct_values=len(set(values)),
        distinct_logprob_vectors=cluster_count(vectors, tolerance),
        distinct_logprob_vectors_exact=len(set(vectors)),
        first_divergence=_first_divergence(ok, tolerance, logprobs=True),
        first_token_divergence=_first_divergence(ok, tolerance, logprobs=False),
        p_first_token=p_first,
        distinct_p_first_token=len(set(p_first)),
        value_frequencies=dict(Counter(values).most_common()),
        wall_s=wall_s,
        tokens_per_second=tokens / wall_s if wall_s > 0 else 0.0,
        error_messages=sorted({f"{type(e).__name__}: {e}" for e in errors})[:5],
    )


def cluster_count(vectors: Sequence[Sequence[float]], tolerance: float) -> int:
    """How many groups the vectors fall into: a vector joins the first group whose first member has its
    length and lies within ``tolerance`` of it at every position (greedy leader clustering)."""
    leaders: list[Sequence[float]] = []
    for v in vectors:
        if not any(len(u) == len(v) and all(abs(a - b) <= tolerance for a, b in zip(u, v, strict=True))
                   for u in leaders):
            leaders.append(v)
    return len(leaders)


def _repeat(mode: str, runs: int, progress: Callable[[str, int, int], None] | None,
            once: Callable[[int], tuple[Result[Any], int]]) -> tuple[list[Result[Any] | StructgenError], float, int]:
    """``runs`` calls of ``once``: the results (or typed errors), the wall time, the tokens generated."""
    results: list[Result[Any] | StructgenError] = []
    tokens = 0
    t0 = time.perf_counter()
    for r in range(runs):
        try:
            result, n = once(r)
            results.append(result)
            tokens += n
        except StructgenError as exc:
            results.append(exc)
        if progress is not None:
            progress(mode, r + 1, runs)
    return results, time.perf_counter() - t0, tokens


def _one(result: Result[Any]) -> tuple[Result[Any], int]:
    return result, len(result.tokens) or len(result.logprobs)  # hosted replies may carry no token ids


def _local_run(model: Any, prompt: str, schema: SchemaLike, seed: int, size: int, run: int, *,
               others: Sequence[str], kwargs: dict[str, Any]) -> tuple[Result[Any], int]:
    """One run of the target request, alone or at position ``run % size`` of a batch of ``size``; the
    result and the tokens the whole batch generated."""
    if size == 1:
        return _one(generate(prompt, schema, model=model, seed=seed, **kwargs))
    slot = run % size
    neighbours = [others[(run * (size - 1) + j) % len(others)] for j in range(size - 1)]
    prompts = [*neighbours[:slot], prompt, *neighbours[slot:]]
    seeds = [seed if i == slot else seed + 1 + run * size + i for i in range(size)]
    results = generate_batch(prompts, schema, model=model, seed=seeds, return_exceptions=True, **kwargs)
    target = results[slot]
    if isinstance(target, StructgenError):
        raise target
    return target, sum(len(r.tokens) for r in results if isinstance(r, Result))


def _p_first_token(r: Result[Any]) -> float:
    """P of the first sampled (not grammar-forced) token; 1.0 if every token was forced."""
    forced = r.forced or [False] * len(r.logprobs)
    for lp, f in zip(r.logprobs, forced, strict=False):
        if not f:
            return math.exp(lp)
    return 1.0


def _first_divergence(results: Sequence[Result[Any]], tolerance: float, *, logprobs: bool) -> int | None:
    """The first position where some run's token (or, with ``logprobs``, its logprob beyond ``tolerance``)
    differs from run 0's; a run that ends earlier differs where it ends. Hosted replies may carry logprobs but
    no token ids: their texts are compared instead (a difference is reported at position 0)."""
    if len(results) < 2:
        return None
    ref = results[0]
    first: int | None = None
    for r in results[1:]:
        at = _differ(ref.tokens, r.tokens, 0.0)
        if logprobs:
            lp_at = _differ(ref.logprobs, r.logprobs, tolerance)
            at = lp_at if at is None or (lp_at is not None and lp_at < at) else at
        if at is None and ref.text != r.text:
            at = 0 if not (ref.tokens and r.tokens) else min(len(ref.tokens), len(r.tokens))
        if at is not None:
            first = at if first is None else min(first, at)
    return first


def _differ(a: Sequence[float], b: Sequence[float], tolerance: float) -> int | None:
    """First index where two sequences differ by more than ``tolerance`` (or one of them has ended)."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if abs(x - y) > tolerance:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def _reference(prompt: str, schema: SchemaLike, model: Any, *, chat: bool, system: str | None,
               temperature: float) -> dict[str, Any] | None:
    """Exact probabilities of a choice-like schema's strings (None for other schemas or on error): how
    often constrained sampling returns each (``method="sampler"``) and the model's own view (``model``)."""
    from .probs import probs

    compiled = compile_schema(schema)
    if compiled.grammar is None or compiled.kind == "json":
        return None
    try:
        sampler = probs(prompt, schema, model=model, method="sampler", temperature=temperature, chat=chat,
                        system=system, min_prob=1e-9)
        whole = probs(prompt, schema, model=model, chat=chat, system=system)
    except StructgenError:
        return None
    return {"sampler": dict(sampler), "sampler_unexplored": sampler.outside, "model": dict(whole),
            "model_outside": whole.outside, "model_logprobs": whole.logprobs}


def _describe(schema: SchemaLike) -> str:
    if schema is None:
        return "free text"
    compiled = compile_schema(schema)
    if compiled.kind == "choice":
        return f"Choice({list(compiled.source)})"
    if compiled.kind == "regex":
        return f"Regex({compiled.regex!r})"
    if compiled.kind == "json":
        return "JSON Schema"
    return compiled.kind


def plot(report: DeterminismReport, path: str) -> None:
    """Save a strip plot of P(first token) per mode to ``path`` (PNG; needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise InvalidArgument("plotting needs matplotlib: pip install 'structgen[bench]'") from exc
    modes = list(report.modes.values())
    fig, ax = plt.subplots(figsize=(8, 1.0 + 0.6 * max(1, len(modes))))
    for row, m in enumerate(modes):
        counts = Counter(m.p_first_token)
        xs = list(counts)
        sizes = [20 + 180 * counts[x] / max(1, len(m.p_first_token)) for x in xs]
        ax.scatter(xs, [row] * len(xs), s=sizes, alpha=0.6)
        ax.annotate(f"{m.distinct_p_first_token} distinct", (1.01, row), xycoords=("axes fraction", "data"),
                    va="center", fontsize=8)
    ax.set_yticks(range(len(modes)), [m.mode for m in modes])
    ax.set_xlabel("P(first sampled token of the answer), one dot per distinct value (size: how many runs)")
    ax.set_title(f"{report.schema}, temperature {report.temperature:g}, seed {report.seed}", fontsize=9)
    ax.invert_yaxis()
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=120)
    except OSError as exc:
        raise InvalidArgument(f"cannot write the plot to {path}: {exc.strerror}") from exc
    finally:
        plt.close(fig)
