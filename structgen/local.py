"""``LlamaCpp``: a local GGUF model driven by structgen's own decode loop (llama-cpp-python low-level API)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._llama import LlamaContext, LlamaModel
from .chat import CHATML_TEMPLATE, ChatTemplate, Message, as_messages
from .engine import run_local
from .errors import InvalidArgument
from .matchers import Backend, Vocab, get_backend
from .models import default_model_path
from .request import Request
from .result import Result


class LlamaCpp:
    """A local model: llama.cpp for the forward pass, a grammar engine for masks, structgen's sampler.

    ``n_gpu_layers`` is passed to llama.cpp (0 = CPU; -1 = all layers, needs a GPU build). One context
    serves one request at a time: concurrent ``generate`` calls on the same instance are serialised.
    ``deterministic=True`` is the batch-invariant mode: every prompt is decoded in the same fixed chunks
    from an empty cache, and each sequence is decoded alone, never co-batched, so a seed gives the same
    bytes whether a request runs alone or among others (at a throughput cost for best-of-n).
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        n_gpu_layers: int = 0,
        n_ctx: int = 4096,
        n_batch: int = 512,
        n_threads: int | None = None,
        n_seq_max: int = 16,
        backend: str = "llguidance",
        chat_template: str | None = None,
        deterministic: bool = False,
    ) -> None:
        if n_seq_max < 1:
            raise InvalidArgument("n_seq_max must be at least 1")
        self.path = Path(model_path) if model_path is not None else default_model_path()
        self.deterministic = deterministic
        self.n_gpu_layers = n_gpu_layers
        self._model = LlamaModel(self.path, n_gpu_layers=n_gpu_layers)
        self._ctx = LlamaContext(self._model, n_ctx=n_ctx, n_batch=n_batch, n_seq_max=n_seq_max,
                                 n_threads=n_threads)
        self.lock = threading.RLock()
        self.n_vocab = self._model.n_vocab
        eos_first = (self._model.eos, *(t for t in self._model.eog_ids if t != self._model.eos))
        self.eos_ids: tuple[int, ...] = eos_first
        self.vocab = Vocab(n_vocab=self.n_vocab, eos_ids=eos_first, token_bytes=self._all_token_bytes,
                           llama_vocab=self._model.vocab)
        self.backend: Backend = get_backend(backend)
        source = chat_template or self._model.meta("tokenizer.chat_template") or CHATML_TEMPLATE
        self.chat_template = ChatTemplate(
            source,
            bos_token=self._model.token_bytes(self._model.bos, special=True).decode("utf-8", "replace"),
            eos_token=self._model.token_bytes(self._model.eos, special=True).decode("utf-8", "replace"),
        )

    @property
    def name(self) -> str:
        """The model file name."""
        return self.path.name

    @property
    def n_ctx(self) -> int:
        """Context size in tokens."""
        return int(self._ctx.n_ctx)

    @property
    def n_batch(self) -> int:
        """Most tokens one decode call takes."""
        return self._ctx.n_batch

    @property
    def n_seq_max(self) -> int:
        """How many sequences one batch may hold (best-of-n needs n)."""
        return self._ctx.n_seq_max

    def _all_token_bytes(self) -> list[bytes]:
        return [self._model.token_bytes(t) for t in range(self.n_vocab)]

    # ---- text ⇄ tokens ------------------------------------------------------------------------------

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        """Tokenise ``text``; ``special`` parses control tokens such as ``<|im_start|>``."""
        return self._model.tokenize(text, add_special=False, parse_special=special)

    def detokenize(self, tokens: Sequence[int]) -> str:
        """Tokens to text."""
        return self._model.detokenize(tokens)

    def prompt_tokens(self, prompt: str | Sequence[Message], *, system: str | None = None,
                      chat: bool = True) -> list[int]:
        """The token ids the model sees: the chat template applied (``chat=True``) or the raw text."""
        if chat:
            text = self.chat_template.render(as_messages(prompt, system))
        else:
            if not isinstance(prompt, str):
                raise InvalidArgument("raw mode (chat=False) takes a string prompt")
            if not prompt:
                raise InvalidArgument("the prompt is empty")
            text = prompt
        tokens = self.tokenize(text)
        if self._model.add_bos and (not tokens or tokens[0] != self._model.bos):
            tokens.insert(0, self._model.bos)
        if len(tokens) >= self.n_ctx:
            raise InvalidArgument(f"the prompt has {len(tokens)} tokens; n_ctx is {self.n_ctx}")
        return tokens

    # ---- StepModel (used by structgen.decode) ---------------------------------------------------------

    def prefill(self, tokens: Sequence[int]) -> NDArray[np.float32]:
        """Decode a prompt into sequence 0 from an empty cache, in fixed n_batch chunks."""
        self._ctx.clear()
        self._ctx.decode_sequence(tokens, 0, 0)
        return self._ctx.logits(-1)

    def fork(self, n_prompt: int, copies: int) -> None:
        """Share the prompt's KV cells of sequence 0 with sequences 1..copies-1 (no recompute)."""
        if copies > self.n_seq_max:
            raise InvalidArgument(f"n={copies} exceeds this model's n_seq_max={self.n_seq_max}")
        for seq in range(1, copies):
            self._ctx.seq_copy(0, seq, 0, n_prompt)

    def decode(self, items: Sequence[tuple[int, Sequence[int], int]]) -> list[NDArray[np.float32]]:
        """One batched decode of several sequences; the logits of each item's last token."""
        batch: list[tuple[int, int, int, bool]] = []
        last_index: list[int] = []
        for seq, tokens, start in items:
            for i, tok in enumerate(tokens):
                batch.append((tok, start + i, seq, i == len(tokens) - 1))
            last_index.append(len(batch) - 1)
        end = max((start + len(t) for _, t, start in items), default=0)
        if end > self.n_ctx:
            raise InvalidArgument(f"generation reached n_ctx={self.n_ctx} tokens; raise n_ctx or lower max_tokens")
        self._ctx.decode(batch)
        return [self._ctx.logits(i) for i in last_index]

    def run(self, request: Request) -> Result[Any]:
        """Serve one request with structgen's decode loop (see ``structgen.engine``)."""
        return run_local(self, request)

    def close(self) -> None:
        """Free the context and the weights."""
        self._ctx.close()
        self._model.close()

    def __repr__(self) -> str:
        return f"LlamaCpp({str(self.path)!r}, n_gpu_layers={self.n_gpu_layers}, backend={self.backend.name!r})"

