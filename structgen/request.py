"""A generation request, resolved and checked once, whichever model serves it."""

from __future__ import annotations

import dataclasses
import math
import numbers
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from ._unicode import check_text
from .compile.schema import CompiledSchema
from .errors import InvalidArgument

Message = Mapping[str, str]
"""One chat turn: ``{"role": ..., "content": ...}``."""

Strategy = Literal["auto", "constrained", "server", "prompt", "repair", "best_of", "self_consistency"]
STRATEGIES: tuple[str, ...] = ("auto", "constrained", "server", "prompt", "repair", "best_of", "self_consistency")
REASKING: tuple[str, ...] = ("prompt", "repair")
"""Strategies that prompt and re-ask in chat turns (the text chain), even on a local model: never masked."""
MAX_TOP_LOGPROBS = 20
"""Most alternatives per token ``top_logprobs`` may ask for (OpenAI's limit)."""
LOOP_FREQUENCY_PENALTY = 0.5
"""Frequency penalty a retry adds per earlier attempt cut at the length limit, unless the request set its own
penalties (``SamplingParams.after_cut``): on SmolLM2-135M over 60 MaskBench extraction prompts, greedy decoding ran
out of 256 tokens on 20 (loops, schemas echoed, endless strings); one warm retry alone finished 43 % of those, a
warm retry with this penalty 82 %."""


@dataclass(frozen=True, slots=True)
class Request:
    """Everything a model needs to serve one ``generate`` call."""

    prompt: str | Sequence[Message]
    schema: CompiledSchema
    sampling: SamplingParams
    seed: int
    max_tokens: int = 512
    strategy: str = "auto"
    n: int = 1
    select: Literal["logprob", "first_valid", "first_finished"] = "logprob"
    format: Literal["json", "yaml"] = "json"
    max_attempts: int = 3
    system: str | None = None
    chat: bool = True
    schema_in_prompt: bool = True
    fast_forward: bool = True
    model_logprobs: bool = False
    timeout: float | None = None
    top_logprobs: int = 0
    priority: int = 0

    @property
    def reasks(self) -> bool:
        """Whether this request goes through the re-asking text chain (``REASKING``) rather than a mask."""
        return self.strategy in REASKING

    def __post_init__(self) -> None:
        _check_prompt(self.prompt)
        if self.system is not None:
            check_text("the system prompt", self.system)
        if self.strategy not in STRATEGIES:
            raise InvalidArgument(f"unknown strategy {self.strategy!r}; choose from {', '.join(STRATEGIES)}")
        if not isinstance(self.max_tokens, int) or self.max_tokens <= 0:
            raise InvalidArgument(f"max_tokens must be a positive integer, got {self.max_tokens!r}")
        if not isinstance(self.n, int) or self.n <= 0:
            raise InvalidArgument(f"n must be a positive integer, got {self.n!r}")
        if not isinstance(self.max_attempts, int) or self.max_attempts <= 0:
            raise InvalidArgument(f"max_attempts must be a positive integer, got {self.max_attempts!r}")
        if self.select not in ("logprob", "first_valid", "first_finished"):
            raise InvalidArgument(f"select must be 'logprob', 'first_valid' or 'first_finished', got {self.select!r}")
        if self.format not in ("json", "yaml"):
            raise InvalidArgument(f"format must be 'json' or 'yaml', got {self.format!r}")
        if self.timeout is not None and (isinstance(self.timeout, bool) or not isinstance(self.timeout, int | float)
                                         or not math.isfinite(self.timeout) or self.timeout <= 0):
            raise InvalidArgument(f"timeout must be a positive number of seconds, got {self.timeout!r}")
        if isinstance(self.top_logprobs, bool) or not isinstance(self.top_logprobs, int) or \
                not 0 <= self.top_logprobs <= MAX_TOP_LOGPROBS:
            raise InvalidArgument(f"top_logprobs must be an integer in [0, {MAX_TOP_LOGPROBS}], "
                                  f"got {self.top_logprobs!r}")
        if isinstance(self.priority, bool) or not isinstance(self.priority, int) or abs(self.priority) > 2**31:
            raise InvalidArgument(f"priority must be an integer (lower runs first), got {self.priority!r}")
        if not 0 <= self.seed < 2**63:
            raise InvalidArgument(f"seed must be in [0, 2**63), got {self.seed}")


def resolve_seed(seed: int | None) -> int:
    """The given seed, or a fresh random one (reported back in ``Result.seed``)."""
    if seed is None:
        return secrets.randbits(31)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InvalidArgument(f"seed must be an integer, got {seed!r}")
    return seed


def _check_prompt(prompt: object) -> None:
    if isinstance(prompt, str):
        if not prompt.strip():
            raise InvalidArgument("the prompt is empty")
        check_text("the prompt", prompt)
        return
    if not isinstance(prompt, Sequence) or isinstance(prompt, bytes | bytearray):
        raise InvalidArgument(f"the prompt must be a string or a list of messages, got {type(prompt).__name__}")
    if not prompt:
        raise InvalidArgument("the message list is empty")
    for i, message in enumerate(prompt):
        if not isinstance(message, Mapping) or "role" not in message or "content" not in message:
            raise InvalidArgument(f"message {i} needs 'role' and 'content'")
        check_text(f"message {i}'s role", message["role"])
        check_text(f"message {i}'s content", message["content"])


def as_messages(prompt: str | Sequence[Message], system: str | None = None) -> list[dict[str, str]]:
    """Normalise a prompt (a string or a list of messages) to a list of message dicts, checked as a
    ``Request`` checks its prompt."""
    _check_prompt(prompt)
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]
    if system is not None:
        messages.insert(0, {"role": "system", "content": check_text("the system prompt", system)})
    return messages


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """How ``sample_token`` turns logits into a token; validated on construction.

    ``temperature`` 0 is greedy (argmax, ties to the lowest index); otherwise logits are divided by it.
    ``top_k`` (0 = off) keeps the k largest logits, ``top_p`` (1.0 = off, in (0, 1]) the smallest
    most-probable set holding at least that much probability, ``min_p`` (0 = off, in [0, 1)) the
    tokens at least ``min_p`` times as probable as the most probable one.
    Penalties act on tokens already generated (``counts`` > 0): ``repetition_penalty`` (> 0, 1 = off)
    divides a positive logit and multiplies a negative one (llama.cpp/CTRL); ``frequency_penalty`` and
    ``presence_penalty`` (in [-2, 2], 0 = off) subtract ``penalty * count`` and ``penalty`` (OpenAI).

    >>> SamplingParams(temperature=0.7, top_p=0.9).greedy
    False
    >>> SamplingParams(top_p=2)
    Traceback (most recent call last):
    ...
    structgen.errors.InvalidArgument: top_p must be in (0, 1], got 2
    """

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0

    def __post_init__(self) -> None:
        # Check each field against its range and store it as a plain Python int/float, so that numpy
        # arithmetic with it never changes the dtype of the (float32) logits.
        checked: dict[str, float | int] = {
            "temperature": in_range("temperature", self.temperature, 0.0, math.inf, hi_open=True),
            "top_k": non_negative_int("top_k", self.top_k),
            "top_p": in_range("top_p", self.top_p, 0.0, 1.0, lo_open=True),
            "min_p": in_range("min_p", self.min_p, 0.0, 1.0, hi_open=True),
            "repetition_penalty": in_range("repetition_penalty", self.repetition_penalty, 0.0, math.inf,
                                            lo_open=True, hi_open=True),
            "frequency_penalty": in_range("frequency_penalty", self.frequency_penalty, -2.0, 2.0),
            "presence_penalty": in_range("presence_penalty", self.presence_penalty, -2.0, 2.0),
        }
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    @property
    def greedy(self) -> bool:
        """True when ``temperature`` is 0: the token is the argmax, ties to the lowest index."""
        return self.temperature == 0.0

    @property
    def has_penalties(self) -> bool:
        """Whether any penalty is switched on (otherwise token counts need not be kept)."""
        return (self.repetition_penalty != 1.0 or self.frequency_penalty != 0.0
                or self.presence_penalty != 0.0)

    def after_cut(self, cut: int) -> SamplingParams:
        """These settings for a retry after ``cut`` attempts ran out of tokens: a frequency penalty of
        ``LOOP_FREQUENCY_PENALTY`` per cut attempt (at most 2), unless penalties were set by the request."""
        if not cut or self.has_penalties:
            return self
        return dataclasses.replace(self, frequency_penalty=min(2.0, LOOP_FREQUENCY_PENALTY * cut))


def in_range(name: str, value: object, lo: float, hi: float, *,
              lo_open: bool = False, hi_open: bool = False) -> float:
    """``value`` as a float if it is a real number in the interval, else InvalidArgument naming it."""
    # Booleans are ints to Python, but ``top_p=True`` is a bug, not 1.0.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidArgument(f"{name} must be a number, got {value!r}")
    v = float(value)
    # NaN fails every comparison below, so it is rejected with the same message.
    above = v > lo if lo_open else v >= lo
    below = v < hi if hi_open else v <= hi
    if not (above and below):
        interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        raise InvalidArgument(f"{name} must be in {interval}, got {value!r}")
    return v


def non_negative_int(name: str, value: object) -> int:
    """``value`` as an int if it is an integer >= 0, else InvalidArgument naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidArgument(f"{name} must be an integer, got {value!r}")
    if value < 0:
        raise InvalidArgument(f"{name} must be >= 0 (0 = off), got {value!r}")
    return int(value)
