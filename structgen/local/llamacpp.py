"""``LlamaCpp``: a local GGUF model driven by structgen's own decode loop (llama-cpp-python low-level API)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np
from numpy.typing import NDArray

from ..compile.matchers import Backend, Vocab, get_backend
from ..compile.thinking import PLAIN_THINKING, THINK_TOKEN_PAIRS, ThinkDelimiters
from ..errors import InvalidArgument
from ..request import Message, Request, as_messages
from ..result import Result
from .binding import LlamaContext, LlamaModel
from .chat import CHATML_TEMPLATE, ChatTemplate
from .context_lock import ContextLock
from .decode import DecodeItem, logit_rows
from .engine import prepare, run_attempts, shared_head
from .models import resolve_model_path
from .prefix_cache import KvSequences
from .scheduler import Scheduler, Sink, Ticket

STREAMS_SEQ_MAX = 8
"""Default ``n_seq_max`` with one KV stream per sequence (16 with a shared cache, where a sequence costs no memory
until it is used)."""
STREAMS_PREFIX_CACHE = 2
"""Default ``prefix_cache`` with one KV stream per sequence (each entry is a whole stream; 4 with a shared cache)."""
SPECULATE_DEFAULT = 3
"""Draft tokens a lone sequence verifies per model step (``structgen.local.lookup``; ``speculate``). Chosen by
``structgen bench serve`` (one client) and ``bench throughput`` on a 2-core CPU, where a drafted token costs about a
third of a step of its own: see docs/benchmarks/index.md, "The plain request"."""
KV_STREAMS_BUDGET = 1 << 30
"""Bytes of f16 KV cache up to which a CPU model gets one KV stream per sequence by default (``kv_unified``)."""


class LlamaCpp:
    """A local model: llama.cpp for the forward pass, a grammar engine for masks, structgen's sampler.

    ``n_gpu_layers`` is passed to llama.cpp (0 = CPU; -1 = all layers, needs a GPU build). Concurrent
    ``generate`` / ``agenerate`` / ``stream`` calls on one instance run together: its engine thread decodes the
    live sequences of every admitted request in one batch per step (``structgen.local.scheduler``).
    ``deterministic=True`` is the batch-invariant mode: a seed gives the same bytes (text and logprobs)
    whether a request runs alone, as one of n best-of candidates, or batched with other prompts
    (``structgen.generate_batch``). What it fixes, and why (measured; see ``structgen.determinism``):

    - one KV stream per sequence (llama.cpp ``kv_unified=false``): with a shared cache, other sequences'
      cells change where a sequence's cells sit and how long the attention row is (``n_kv``), and llama.cpp
      picks its attention kernel by that length (on CPU, a split-KV path from 512 cells);
    - every prompt decoded alone from an empty stream, in fixed ``n_batch`` chunks;
    - every sequence decoded alone at each step, never co-batched (same tensor shapes as a lone run);
    - on CPU (``n_gpu_layers=0``) a q8_0 KV cache with flash attention: for an f16 cache past 512 cells
      llama.cpp splits one attention row across the threads, so the bytes would depend on ``n_threads``;
      for a quantised cache it has no such kernel.

    The cost: ``n_ctx`` is then per sequence and the KV memory is ``n_ctx * n_seq_max`` tokens (default
    ``n_seq_max`` 8 in this mode; q8_0 halves it on CPU), and n sequences take n model steps per token instead of
    one batched step; there is no prefix cache.

    The KV layout (``kv_unified``). One KV stream per sequence (False) keeps batched steps and the prefix cache but
    gives each sequence its own stream of ``n_ctx`` cells (so ``n_ctx`` is per sequence, and the KV memory is
    ``n_ctx`` times ``n_seq_max + prefix_cache``): each sequence then attends over its own cells only, where a shared
    cache (True) makes every sequence's step span every cell in use, which grows with the number of callers.
    Sharing a prompt (prefix cache, best-of-n) then copies a stream (~0.05 ms) instead of tagging cells. None (the
    default) picks one stream per sequence on CPU whenever that KV fits in ``KV_STREAMS_BUDGET`` (1 GiB: the bundled
    model at the default ``n_ctx`` takes ~0.94 GB with ``n_seq_max`` 8 and ``prefix_cache`` 2), with flash attention
    off: the fastest layout on CPU (docs/benchmarks/index.md, "The plain request"), and the one where the same call
    on an idle model gives the same bytes (a sequence's rows compute alike whatever batch they are decoded in and
    wherever other sequences' cells are). A larger KV, or GPU layers, get the shared cache (``n_seq_max`` 16,
    ``prefix_cache`` 4).

    ``flash_attn``: llama.cpp's flash attention. None (the default) turns it off on CPU with one KV stream per
    sequence and leaves it to llama.cpp (on where supported) otherwise. On CPU llama.cpp's flash-attention kernel
    is the slower one (SmolLM2, 2 cores: a decode step ~1.4x, a prefill under 64 tokens ~1.7x a token, 3-10x past
    a few thousand cells), but its result does not depend on where a sequence's cells sit in the cache: it walks
    a row's cells in order and skips the masked ones, while the kernel without it sums over every cell in SIMD
    lanes picked by the cell's index. On a unified cache, where other requests decide where a sequence's cells
    go, ``flash_attn=False`` is faster but the same request and seed can then give other bytes after other
    traffic (a logit moved by 0.47 when a continuation sat one cell later), and ``probs`` branches agree only to
    that rounding. With one stream per sequence a sequence's cells sit where a lone run puts them, so off is exact
    there. Without it llama.cpp keeps an attention buffer of ``n_ctx`` x ``n_batch`` floats a head. Deterministic
    mode on CPU keeps it on: its q8_0 cache needs it.

    ``speculate``: speculative decoding for a request decoding alone (``structgen.local.lookup``): up to this many
    tokens guessed from the request's own prompt and output are decoded with the chosen token and kept while the
    sampler picks them, so a value copied from the document takes fewer model steps. None: ``SPECULATE_DEFAULT``;
    0: off. Off in deterministic mode (a draft changes the batch a sequence's logits come from). The sampling is
    the same as without drafts, on logits computed in a batch of a few tokens, which llama.cpp does not compute
    exactly as a one-token step's (on CPU without flash attention, up to 0.8 in a logit): a near-tie can then go the
    other way.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        n_gpu_layers: int = 0,
        n_ctx: int = 4096,
        n_batch: int = 512,
        n_threads: int | None = None,
        n_seq_max: int | None = None,
        backend: str = "llguidance",
        chat_template: str | None = None,
        deterministic: bool = False,
        prefix_cache: int | None = None,
        max_queue: int = 256,
        kv_unified: bool | None = None,
        flash_attn: bool | None = None,
        speculate: int | None = None,
    ) -> None:
        if n_seq_max is not None and n_seq_max < 1:
            raise InvalidArgument("n_seq_max must be at least 1")
        if (prefix_cache is not None and prefix_cache < 0) or max_queue < 1:
            raise InvalidArgument("prefix_cache must be >= 0 and max_queue >= 1")
        if deterministic and kv_unified:
            raise InvalidArgument("deterministic=True needs one KV stream per sequence (kv_unified=False)")
        cache_slots = 0 if deterministic else prefix_cache
        self.path = resolve_model_path(model_path)
        self.deterministic = deterministic
        self.n_gpu_layers = n_gpu_layers
        self.backend: Backend = get_backend(backend)
        self._model = LlamaModel(self.path, n_gpu_layers=n_gpu_layers)
        if kv_unified is None:
            streams = (n_seq_max or STREAMS_SEQ_MAX) + (STREAMS_PREFIX_CACHE if cache_slots is None else cache_slots)
            kv_unified = not deterministic and not (n_gpu_layers == 0 and self._streams_fit(n_ctx, streams))
        if n_seq_max is None:
            n_seq_max = 16 if kv_unified else STREAMS_SEQ_MAX
        if cache_slots is None:
            cache_slots = 4 if kv_unified else STREAMS_PREFIX_CACHE
        self.n_vocab = self._model.n_vocab
        eos_first = (self._model.eos, *(t for t in self._model.eog_ids if t != self._model.eos))
        self.eos_ids: tuple[int, ...] = eos_first
        self.vocab = Vocab(n_vocab=self.n_vocab, eos_ids=eos_first, token_bytes=self._all_token_bytes,
                           llama_vocab=self._model.vocab)
        # The grammar engine's tables for this vocabulary (~0.35 s for 49k tokens) are built while the context is
        # made and the first prompt is prefilled; the first compile waits for them if it must.
        self.vocab.background(functools.partial(self.backend.prepare_vocab, self.vocab))
        try:
            # Deterministic mode: one KV stream per sequence (and on CPU a q8_0 cache with flash attention), so a
            # sequence's attention does not depend on its batch-mates (see structgen.determinism).
            quantised_kv = deterministic and n_gpu_layers == 0
            if flash_attn is None and not quantised_kv and n_gpu_layers == 0 and not kv_unified:
                flash_attn = False
            self._ctx = LlamaContext(self._model, n_ctx=n_ctx, n_batch=n_batch, n_seq_max=n_seq_max + cache_slots,
                                     n_threads=n_threads, kv_unified=kv_unified, quantised_kv=quantised_kv,
                                     flash_attn=flash_attn)
        except BaseException:
            self.vocab.join()
            raise
        self._n_seq_max = n_seq_max
        if speculate is not None and speculate < 0:
            raise InvalidArgument("speculate must be 0 (off) or a number of draft tokens")
        # Drafts change the batch a sequence's logits come from, so the batch-invariant mode has none.
        self.speculate = 0 if deterministic else (SPECULATE_DEFAULT if speculate is None else speculate)
        self.lock = ContextLock()
        source = chat_template or self._model.meta("tokenizer.chat_template") or CHATML_TEMPLATE
        self.chat_template = ChatTemplate(
            source,
            bos_token=self._model.token_bytes(self._model.bos, special=True).decode("utf-8", "replace"),
            eos_token=self._model.token_bytes(self._model.eos, special=True).decode("utf-8", "replace"),
        )
        self._think: ThinkDelimiters | None = None
        self.scheduler = Scheduler(self, cache_slots=range(n_seq_max, n_seq_max + cache_slots), max_queue=max_queue)

    def _streams_fit(self, n_ctx: int, streams: int) -> bool:
        """Whether ``streams`` KV streams of ``n_ctx`` cells fit in ``KV_STREAMS_BUDGET`` bytes."""
        return n_ctx * streams * self._model.kv_bytes_per_token <= KV_STREAMS_BUDGET

    @property
    def name(self) -> str:
        """The model file name."""
        return self.path.name

    @property
    def n_ctx(self) -> int:
        """Context size of one sequence in tokens (prompt plus generated)."""
        return int(llama_cpp.llama_n_ctx_seq(self._ctx.ptr))

    @property
    def kv_unified(self) -> bool:
        """Whether all sequences share one KV cache (else each has its own stream of ``n_ctx`` cells)."""
        return self._ctx.kv_unified

    @property
    def min_prefill(self) -> int:
        """Prompt tokens below which a prefill batch costs as much as this many: 64 on CPU with flash attention
        (llama.cpp's CPU kernel tiles its work only from 64 rows: measured, 51 tokens 338 ms, 63 tokens 499 ms, 64
        tokens 243 ms), else 1. The scheduler then re-decodes a few cached tokens rather than prefill 32-63."""
        return 64 if self.n_gpu_layers == 0 and self.flash_attn is not False else 1

    @property
    def flash_attn(self) -> bool | None:
        """Whether llama.cpp's flash attention was asked for (None: left to llama.cpp, on where supported)."""
        return self._ctx.flash_attn

    @property
    def n_threads(self) -> int:
        """CPU threads llama.cpp uses (part of what a deterministic run depends on)."""
        return self._ctx.n_threads

    @property
    def n_batch(self) -> int:
        """Most tokens one decode call takes."""
        return self._ctx.n_batch

    @property
    def n_seq_max(self) -> int:
        """How many sequences requests may use at once (best-of-n needs n)."""
        return self._n_seq_max

    def _all_token_bytes(self) -> list[bytes]:
        return [self._model.token_bytes(t) for t in range(self.n_vocab)]

    # ---- text ⇄ tokens ------------------------------------------------------------------------------

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        """Tokenise ``text``; ``special`` parses control tokens such as ``<|im_start|>``."""
        return self._model.tokenize(text, add_special=False, parse_special=special)

    def token_bytes(self, token: int) -> bytes:
        """The bytes one token stands for (a piece of a UTF-8 character, possibly)."""
        return self._model.token_bytes(token)

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

    def think_delimiters(self) -> ThinkDelimiters:
        """How this model thinks (``generate(think=N)``): a pair of ``THINK_TOKEN_PAIRS`` that are single tokens of
        its vocabulary, or else the plain-text scratchpad (``PLAIN_THINKING``)."""
        if self._think is None:
            self._think = PLAIN_THINKING
            for opening, closing in THINK_TOKEN_PAIRS:
                ids = [self.tokenize(opening), self.tokenize(closing)]
                if all(len(i) == 1 for i in ids):
                    rendered = self.chat_template.render([{"role": "user", "content": "?"}])
                    self._think = ThinkDelimiters(opening, closing, special=self.token_bytes(ids[0][0]) == b"",
                                                  opened=rendered.rstrip().endswith(opening))
                    break
        return self._think

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
            self.share(0, seq, n_prompt)

    # ---- KV sharing and scoring (used by the scheduler and structgen.probs) -----------------------------

    def share(self, src: int, dst: int, n_prompt: int) -> None:
        """Let sequence ``dst`` start from the first ``n_prompt`` positions of ``src`` (no recompute).

        A shared cache only tags the cells; with one stream per sequence llama.cpp copies the whole stream.
        """
        self._ctx.seq_remove(dst, 0, -1)
        self._ctx.seq_copy(src, dst, 0, n_prompt)

    def kv(self) -> KvSequences:
        """The KV-cache sequence operations (for the prefix cache)."""
        return self._ctx

    def clear(self) -> None:
        """Forget every sequence in the KV cache."""
        self._ctx.clear()

    def drop(self, seq: int, start: int = 0) -> None:
        """Forget positions ``start``.. of sequence ``seq``."""
        self._ctx.seq_remove(seq, start, -1)

    def compact(self, keep: Sequence[int]) -> list[int]:
        """Forget every sequence but ``keep``, and lay those, in order, at the start of the KV cache (each in its
        own cells: cells they shared are copied); the sequences put back (one llama.cpp found no room for is gone).
        Only while nothing else is decoding."""
        saved = [(seq, self._ctx.save_sequence(seq)) for seq in keep]
        self._ctx.seq_remove(-1, 0, -1)   # every cell free: llama.cpp places the next cells from the start again
        return [seq for seq, data in saved if self._ctx.restore_sequence(seq, data)]

    def decode_rows(self, items: Sequence[tuple[int, int, int, bool]]) -> NDArray[np.float32]:
        """Decode ``(token, position, sequence, want_logits)`` items in one batch; the wanted rows' logits
        (a copy, one row per wanted item, in order)."""
        self._ctx.decode(items)
        rows = [i for i, item in enumerate(items) if item[3]]
        out = np.empty((len(rows), self.n_vocab), dtype=np.float32)
        for r, i in enumerate(rows):
            out[r] = self._ctx.logits(i)
        return out

    def decode(self, items: Sequence[DecodeItem]) -> list[NDArray[np.float32]]:
        """One batched decode of several sequences; the logits of each item's last token."""
        return self._launch(items)()

    def _launch(self, items: Sequence[DecodeItem]) -> Callable[[], list[NDArray[np.float32]]]:
        batch: list[tuple[int, int, int, bool]] = []
        last_index = [0] * len(items)
        rows = [logit_rows(item) for item in items]
        # One stream per sequence: llama.cpp puts sequences in one micro-batch only while their ids follow each
        # other in batch order, so the batch goes in sequence order (else it runs as several model passes).
        order = range(len(items)) if self.kv_unified else sorted(range(len(items)), key=lambda k: items[k][0])
        end = 0
        for k in order:
            seq, tokens, start = items[k][:3]
            first_row = len(tokens) - rows[k]
            for i, tok in enumerate(tokens):
                batch.append((tok, start + i, seq, i >= first_row))
            last_index[k] = len(batch) - 1
            end = max(end, start + len(tokens))
        if end > self.n_ctx:
            raise InvalidArgument(f"generation reached n_ctx={self.n_ctx} tokens; raise n_ctx or lower max_tokens")
        self._ctx.decode(batch)
        ctx = self._ctx
        return lambda: [ctx.logits(i) if r == 1 else ctx.logit_rows(i - r + 1, r)
                        for i, r in zip(last_index, rows, strict=True)]

    def decode_async(self, items: Sequence[DecodeItem]) -> Callable[[], list[NDArray[np.float32]]]:
        """Like ``decode``, but returns as soon as llama.cpp has queued the work (asynchronous on a GPU):
        the returned function waits for it and gives the logits."""
        return self._launch(items)

    def run(self, request: Request) -> Result[Any]:
        """Serve one request: masked strategies on the engine thread, concurrently with other callers; the
        re-asking text chain (``prompt``, ``repair``) with the context to itself."""
        if request.reasks:
            from .unmasked import run_local_chain  # the text-model chain (YAML, JSON repair) loads on first use

            return run_local_chain(self, request)
        if self.lock.held_by_me():   # called under ``with model.lock``: the engine cannot run, serve it here
            return run_attempts(self, prepare(self, request))
        return self.submit(request).result()

    def submit(self, request: Request, *, stream: bool | Sink = False) -> Ticket:
        """Queue a masked request on the engine thread; ``Ticket.result()`` waits for it. Raises ``Overloaded``
        when the wait queue is full. ``stream=True`` (or a ``Sink``): the ticket also receives its tokens as they
        come, in ``Ticket.sink`` (or that sink)."""
        if request.reasks:
            raise InvalidArgument(f"strategy {request.strategy!r} re-asks in turns; it cannot be submitted")
        job = prepare(self, request)
        if self.scheduler.cache.size:
            job.shared = shared_head(self, request, job.tokens)
        return self.scheduler.submit(job, timeout=request.timeout, stream=stream)

    def close(self) -> None:
        """Stop the engine thread, then free the context and the weights."""
        self.scheduler.close()
        self.vocab.join()      # a grammar still compiling reads the vocabulary: never free it under it
        self._ctx.close()
        self._model.close()

    def __repr__(self) -> str:
        return (f"LlamaCpp({str(self.path)!r}, n_gpu_layers={self.n_gpu_layers}, backend={self.backend.name!r}, "
                f"deterministic={self.deterministic})")
