"""A random-logits stand-in model, for fuzzing the production decode loop.

``RandomLogitsModel`` has the real model's vocabulary and tokenizer but returns random logits, so the
sampler wanders into grammar corners a trained model never visits (long strings, deep nesting, odd
escapes). Everything else — masks, fast-forward, validation — is the production path.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..compile.matchers import Backend, Vocab, get_backend
from ..errors import InvalidArgument
from ..local.binding import LlamaModel
from ..local.decode import DecodeItem, logit_rows
from ..local.models import resolve_model_path
from ..local.run import run_local
from ..request import Message, Request, as_messages
from ..result import Result


class RandomLogitsModel:
    """A stand-in model: the vocabulary of a GGUF (``vocab_only`` load), logits drawn from N(0, scale²)."""

    deterministic = False
    n_batch = 512
    n_seq_max = 64
    n_ctx = 4096   # positions per sequence, enforced as LlamaCpp enforces its own

    def __init__(self, model_path: str | Path | None = None, *, seed: int = 0, scale: float = 3.0,
                 backend: str = "llguidance", speculate: int = 0) -> None:
        self.path = resolve_model_path(model_path)
        self._model = LlamaModel(self.path, vocab_only=True)
        self.n_vocab = self._model.n_vocab
        eos = self._model.eos
        self.eos_ids: tuple[int, ...] = (eos, *(t for t in self._model.eog_ids if t != eos))
        self.vocab = Vocab(n_vocab=self.n_vocab, eos_ids=self.eos_ids,
                           token_bytes=lambda: [self._model.token_bytes(t) for t in range(self.n_vocab)],
                           llama_vocab=self._model.vocab)
        self.backend: Backend = get_backend(backend)
        self.lock = threading.RLock()
        self.scale = scale
        self.speculate = speculate   # drafts are verified on random rows: the loop's bookkeeping, not their worth
        self._rng = np.random.Generator(np.random.PCG64(seed))
        self._pool = (self._rng.standard_normal((32, self.n_vocab), dtype=np.float32) * scale).astype(np.float32)

    @property
    def name(self) -> str:
        """Describes the stand-in."""
        return f"random-logits({self.path.name})"

    def prompt_tokens(self, prompt: str | Sequence[Message], *, system: str | None = None,
                      chat: bool = True) -> list[int]:
        """The prompt is irrelevant to random logits; it is still checked and tokenised."""
        text = " ".join(m["content"] for m in as_messages(prompt, system)) if chat else str(prompt)
        return self._model.tokenize(text, add_special=False, parse_special=False)[:64] or [0]

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        """Text to token ids with the GGUF's own tokenizer (the decode loop's drafts look text up with it)."""
        return self._model.tokenize(text, add_special=False, parse_special=special)

    def _logits(self) -> NDArray[np.float32]:
        # Drawing 50k-260k normals per step dominates a fuzz run; a pool of fresh-looking rows (random row,
        # random cyclic shift) is as good at steering the sampler somewhere new and costs one copy.
        row = self._pool[int(self._rng.integers(len(self._pool)))]
        return np.roll(row, int(self._rng.integers(self.n_vocab)))

    def prefill(self, tokens: Sequence[int]) -> NDArray[np.float32]:
        """Random logits for the first position."""
        return self._logits()

    def fork(self, n_prompt: int, copies: int) -> None:
        """Nothing to share; more sequences than ``n_seq_max`` are refused, as by ``LlamaCpp``."""
        if copies > self.n_seq_max:
            raise InvalidArgument(f"n={copies} exceeds this model's n_seq_max={self.n_seq_max}")

    def decode(self, items: Sequence[DecodeItem]) -> list[NDArray[np.float32]]:
        """Fresh random logits for each item (positions past ``n_ctx`` are refused, as by ``LlamaCpp``)."""
        if max((item[2] + len(item[1]) for item in items), default=0) > self.n_ctx:
            raise InvalidArgument(f"generation reached n_ctx={self.n_ctx} tokens; raise n_ctx or lower max_tokens")
        rows = [logit_rows(item) for item in items]
        return [self._logits() if r == 1 else np.stack([self._logits() for _ in range(r)]) for r in rows]

    def decode_async(self, items: Sequence[DecodeItem]) -> Callable[[], list[NDArray[np.float32]]]:
        """Random logits are ready at once."""
        out = self.decode(items)
        return lambda: out

    def drop(self, seq: int, start: int = 0) -> None:
        """Nothing is cached: random logits do not depend on earlier positions."""

    def detokenize(self, tokens: Sequence[int]) -> str:
        """Tokens to text with the real vocabulary."""
        return self._model.detokenize(tokens)

    def run(self, request: Request) -> Result[Any]:
        """Serve a request through the production decode loop."""
        return run_local(self, request)
