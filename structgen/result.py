"""What a generation returns."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(slots=True)
class Timings:
    """Where the time went, in milliseconds, and token counts."""

    compile_ms: float = 0.0       # schema → grammar → matcher (0 when cached)
    prompt_ms: float = 0.0        # prompt decode (prefill)
    decode_ms: float = 0.0        # generation loop (model steps + masks + sampling)
    mask_ms: float = 0.0          # of decode_ms: computing and applying grammar masks
    total_ms: float = 0.0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    forced_tokens: int = 0        # of generated_tokens: fast-forwarded (grammar-forced, not sampled)
    queue_ms: float = 0.0         # waiting for room in the local engine (sequences, KV cells)
    first_token_ms: float = 0.0   # from the call to its first generated token (time to first token)
    prefix_hit_tokens: int = 0    # prompt tokens whose KV came from the prefix cache (not decoded again)
    wasted_tokens: int = 0        # tokens generated in attempts (or candidates) that gave no valid value
    draft_tokens: int = 0         # tokens decoded on speculation in the attempt returned (LlamaCpp ``speculate``)
    draft_accepted: int = 0       # of those, kept: each saved a model step

    @property
    def tokens_per_second(self) -> float:
        """Generated tokens per second of decode time."""
        return self.generated_tokens / (self.decode_ms / 1000) if self.decode_ms > 0 else 0.0


@dataclass(slots=True)
class Attempt:
    """One try at producing the value: the raw text and what went wrong (None = it validated)."""

    text: str
    error: str | None = None
    strategy: str = ""
    repaired: bool = False
    tokens: int = 0
    avg_logprob: float | None = None
    discarded: int = 0            # tokens decoded, then taken back to re-decide a repetition loop (local engine)


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call of one of the request's tools: the tool's ``name``, its ``arguments`` (validated against the tool's
    parameters: a dict, or the Pydantic instance for a tool given as a model) and ``arguments_json``, the
    arguments exactly as the model wrote them (JSON)."""

    name: str
    arguments: Any
    arguments_json: str
    id: str = ""


class ToolCalls(tuple[ToolCall, ...]):
    """What ``Result.value`` holds when the model called tools instead of answering (see ``Result.tool_calls``)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Relaxation:
    """One thing the grammar does not enforce, left to the validator: ``keyword`` at ``pointer`` (a JSON pointer
    into the schema), and how it was relaxed (``structgen.compile.relax``)."""

    keyword: str
    pointer: str
    how: str

    def __str__(self) -> str:
        return f"{self.keyword} at {self.pointer or '/'}: {self.how}"

    def to_dict(self) -> dict[str, str]:
        """A JSON-ready form."""
        return {"keyword": self.keyword, "pointer": self.pointer, "how": self.how}


@dataclass(slots=True)
class Result(Generic[T]):
    """A validated generation.

    ``value`` is always valid for the schema (a Pydantic instance, a JSON value, or the matched string).
    ``logprobs[i]`` is the log-probability of ``tokens[i]`` under the model's distribution after the grammar
    mask and penalties, at temperature 1 (grammar-forced tokens have probability 1, so 0.0, and are flagged in
    ``forced``); ``model_logprobs[i]`` is the unconstrained model's log-probability of the same token
    (None for forced tokens, which skip the model step).
    ``spans`` (``generate(source=...)``): for each grounded value, its JSON pointer → ``(start, end)`` character
    offsets in the source. ``reasoning`` (``generate(think=N)``): the model's thinking; ``text`` is then the
    answer alone, while ``tokens`` and ``logprobs`` cover both.
    """

    value: T
    text: str
    tokens: list[int]
    logprobs: list[float]
    seed: int | None
    strategy: str
    timings: Timings = field(default_factory=Timings)
    forced: list[bool] = field(default_factory=list)
    model_logprobs: list[float | None] = field(default_factory=list)
    finish_reason: str = "stop"
    candidates: list[Result[Any]] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    model: str = ""
    relaxed: list[Relaxation] = field(default_factory=list)   # what the grammar left to the validator
    top_logprobs: list[list[tuple[int, float]]] = field(default_factory=list)   # generate(top_logprobs=k)
    spans: dict[str, tuple[int, int]] = field(default_factory=dict)   # generate(source=...): pointer -> offsets
    reasoning: str | None = None   # generate(think=N): the thinking before the answer (``text`` is the answer)

    @property
    def tool_calls(self) -> list[ToolCall]:
        """The tool calls the model made (``generate(..., tools=...)``); empty when it answered instead."""
        return list(self.value) if isinstance(self.value, ToolCalls) else []

    @property
    def tool_call(self) -> ToolCall | None:
        """The first tool call, or None when the model answered instead."""
        calls = self.tool_calls
        return calls[0] if calls else None

    @property
    def avg_logprob(self) -> float:
        """Mean of ``logprobs`` over sampled (not forced) tokens; 0.0 if every token was forced."""
        sampled = [lp for lp, f in zip(self.logprobs, self.forced or [False] * len(self.logprobs), strict=False)
                   if not f]
        return sum(sampled) / len(sampled) if sampled else 0.0

    @property
    def perplexity(self) -> float:
        """exp(-avg_logprob)."""
        return math.exp(-self.avg_logprob)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view (the value dumped with pydantic where it is a model)."""
        value: Any = self.value
        if hasattr(value, "model_dump"):
            value = value.model_dump(mode="json")
        elif isinstance(value, ToolCalls):
            value = None
        return {
            "value": value,
            "text": self.text,
            "strategy": self.strategy,
            "seed": self.seed,
            "finish_reason": self.finish_reason,
            "tokens": self.tokens,
            "logprobs": self.logprobs,
            "forced": self.forced,
            "avg_logprob": self.avg_logprob,
            "timings": {**asdict(self.timings), "tokens_per_second": self.timings.tokens_per_second},
            "attempts": [asdict(a) for a in self.attempts],
            "candidates": [c.to_dict() for c in self.candidates],
            "model": self.model,
            "relaxed": [r.to_dict() for r in self.relaxed],
            "spans": {pointer: list(where) for pointer, where in self.spans.items()},
            "reasoning": self.reasoning,
            "tool_calls": [{"id": c.id, "name": c.name, "arguments": json.loads(c.arguments_json)}
                           for c in self.tool_calls],
        }
