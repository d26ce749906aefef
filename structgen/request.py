"""A generation request, resolved and checked once, whichever model serves it."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from .chat import Message
from .errors import InvalidArgument
from .sampler import SamplingParams
from .schema import CompiledSchema

Strategy = Literal["auto", "constrained", "server", "prompt", "repair", "best_of", "self_consistency"]
STRATEGIES: tuple[str, ...] = ("auto", "constrained", "server", "prompt", "repair", "best_of", "self_consistency")


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
    select: Literal["logprob", "first_valid"] = "logprob"
    format: Literal["json", "yaml"] = "json"
    max_attempts: int = 3
    system: str | None = None
    chat: bool = True
    schema_in_prompt: bool = True
    fast_forward: bool = True
    model_logprobs: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.prompt, str) and not self.prompt.strip():
            raise InvalidArgument("the prompt is empty")
        if self.strategy not in STRATEGIES:
            raise InvalidArgument(f"unknown strategy {self.strategy!r}; choose from {', '.join(STRATEGIES)}")
        if not isinstance(self.max_tokens, int) or self.max_tokens <= 0:
            raise InvalidArgument(f"max_tokens must be a positive integer, got {self.max_tokens!r}")
        if not isinstance(self.n, int) or self.n <= 0:
            raise InvalidArgument(f"n must be a positive integer, got {self.n!r}")
        if not isinstance(self.max_attempts, int) or self.max_attempts <= 0:
            raise InvalidArgument(f"max_attempts must be a positive integer, got {self.max_attempts!r}")
        if self.select not in ("logprob", "first_valid"):
            raise InvalidArgument(f"select must be 'logprob' or 'first_valid', got {self.select!r}")
        if self.format not in ("json", "yaml"):
            raise InvalidArgument(f"format must be 'json' or 'yaml', got {self.format!r}")
        if not 0 <= self.seed < 2**63:
            raise InvalidArgument(f"seed must be in [0, 2**63), got {self.seed}")


def resolve_seed(seed: int | None) -> int:
    """The given seed, or a fresh random one (reported back in ``Result.seed``)."""
    if seed is None:
        return secrets.randbits(31)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InvalidArgument(f"seed must be an integer, got {seed!r}")
    return seed
