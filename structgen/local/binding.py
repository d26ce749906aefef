"""A thin layer over llama-cpp-python's low-level C API: one model, one context, one reusable batch.

Only what structgen's decode loop needs: load, tokenize, detokenize, batched decode of several
sequences, zero-copy logits views, and KV-cache sequence operations.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Sequence
from pathlib import Path

# llama_cpp must be imported before numpy: on some CUDA images numpy's bundled libraries loading
# first made llama.cpp crash while initialising its tokenizer.
import llama_cpp  # isort: skip
import numpy as np
from numpy.typing import NDArray

from .._unicode import check_text
from ..errors import BackendError, InvalidArgument, ModelNotFound

_backend_lock = threading.Lock()
_backend_ready = False


def _drop_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    """llama.cpp logs every load step to stderr; structgen reports failures as typed errors instead."""


# ctypes keeps only a weak reference to the callback: hold it for the life of the process.
_quiet_log = llama_cpp.llama_log_callback(_drop_log)


def init_backend() -> None:
    """Initialise llama.cpp once per process, its log routed away from stderr (``STRUCTGEN_LLAMA_LOG=1`` keeps it)."""
    global _backend_ready
    with _backend_lock:
        if not _backend_ready:
            if not os.environ.get("STRUCTGEN_LLAMA_LOG"):  # set it to see llama.cpp's own log
                llama_cpp.llama_log_set(_quiet_log, ctypes.c_void_p(0))
            llama_cpp.llama_backend_init()
            _backend_ready = True


class LlamaModel:
    """A loaded GGUF model: weights, vocabulary and metadata (no context)."""

    def __init__(self, path: str | Path, *, n_gpu_layers: int = 0, vocab_only: bool = False) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelNotFound(f"model file not found: {self.path}")
        init_backend()
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = n_gpu_layers
        params.vocab_only = vocab_only
        model = llama_cpp.llama_model_load_from_file(str(self.path).encode(), params)
        if not model:
            raise ModelNotFound(f"llama.cpp could not load {self.path} (not a GGUF file, or an unsupported "
                                "architecture)")
        self.ptr = model
        self.vocab = llama_cpp.llama_model_get_vocab(model)
        self.n_vocab: int = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.bos: int = llama_cpp.llama_vocab_bos(self.vocab)
        self.eos: int = llama_cpp.llama_vocab_eos(self.vocab)
        self.add_bos: bool = bool(llama_cpp.llama_vocab_get_add_bos(self.vocab))
        self.eog_ids: tuple[int, ...] = tuple(
            t for t in range(self.n_vocab) if llama_cpp.llama_vocab_is_eog(self.vocab, t)
        )
        self._piece_bufs = threading.local()

    @property
    def kv_bytes_per_token(self) -> int:
        """Bytes one token's keys and values take in an f16 KV cache (all layers)."""
        n_head = max(1, llama_cpp.llama_model_n_head(self.ptr))
        head_dim = llama_cpp.llama_model_n_embd(self.ptr) // n_head
        kv_heads = llama_cpp.llama_model_n_head_kv(self.ptr)
        return int(2 * 2 * llama_cpp.llama_model_n_layer(self.ptr) * kv_heads * head_dim)

    def meta(self, key: str) -> str | None:
        """A GGUF metadata value as a string, or None."""
        size = 1 << 16
        buf = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_model_meta_val_str(self.ptr, key.encode(), buf, size)
        if n < 0:
            return None
        if n >= size:
            buf = ctypes.create_string_buffer(n + 1)
            llama_cpp.llama_model_meta_val_str(self.ptr, key.encode(), buf, n + 1)
        return buf.value.decode("utf-8", "replace")

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool) -> list[int]:
        """Text to token ids with llama.cpp's own tokenizer."""
        data = check_text("the text to tokenize", text).encode("utf-8")   # a lone surrogate: InvalidArgument
        cap = len(data) + 8
        buf = (llama_cpp.llama_token * cap)()
        n = llama_cpp.llama_tokenize(self.vocab, data, len(data), buf, cap, add_special, parse_special)
        if n < 0:
            cap = -n
            buf = (llama_cpp.llama_token * cap)()
            n = llama_cpp.llama_tokenize(self.vocab, data, len(data), buf, cap, add_special, parse_special)
        return list(buf[:n])

    def token_bytes(self, token: int, *, special: bool = False) -> bytes:
        """The raw bytes of one token (control tokens render as b'' unless ``special``)."""
        buf = getattr(self._piece_bufs, "buf", None)
        if buf is None:   # one buffer per thread: the engine thread and stream readers detokenize at once
            buf = self._piece_bufs.buf = ctypes.create_string_buffer(256)
        n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, 256, 0, special)
        if n < 0:
            big = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self.vocab, token, big, -n, 0, special)
            return bytes(big.raw[:n])
        return bytes(buf.raw[:n])

    def detokenize(self, tokens: Sequence[int]) -> str:
        """Token ids to text (invalid UTF-8 replaced)."""
        return b"".join(self.token_bytes(t) for t in tokens).decode("utf-8", "replace")

    def close(self) -> None:
        """Free the weights."""
        if self.ptr:
            llama_cpp.llama_model_free(self.ptr)
            self.ptr = None


class LlamaContext:
    """A llama.cpp context over ``model`` with a reusable batch of up to ``n_batch`` tokens.

    ``kv_unified`` (default): all sequences share one ``n_ctx``-cell cache, so best-of-n copies a prompt
    for free. Otherwise every sequence has its own stream of ``n_ctx`` cells (``n_ctx * n_seq_max`` in all),
    which keeps one sequence's attention independent of what the others hold, and short: a step attends
    over each sequence's own cells, not over every cell in use. Sharing a prompt then copies a stream.
    ``quantised_kv``: a q8_0 cache with flash attention (on CPU, attention whose result does not depend on the
    thread count). ``flash_attn``: True or False turns llama.cpp's flash attention on or off; None leaves it
    llama.cpp's choice (on where the device supports it).
    """

    def __init__(
        self,
        model: LlamaModel,
        *,
        n_ctx: int = 4096,
        n_batch: int = 512,
        n_ubatch: int | None = None,
        n_seq_max: int = 1,
        n_threads: int | None = None,
        kv_unified: bool = True,
        quantised_kv: bool = False,
        flash_attn: bool | None = None,
    ) -> None:
        if n_ctx <= 0 or n_batch <= 0 or n_seq_max <= 0:
            raise InvalidArgument("n_ctx, n_batch and n_seq_max must be positive")
        if quantised_kv and flash_attn is False:
            raise InvalidArgument("a quantised KV cache needs flash attention (flash_attn=False given)")
        self.model = model
        threads = n_threads or max(1, os.cpu_count() or 1)
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx if kv_unified else n_ctx * n_seq_max
        params.n_batch = n_batch
        params.n_ubatch = n_ubatch or n_batch
        params.n_seq_max = n_seq_max
        params.n_threads = threads
        params.n_threads_batch = threads
        params.kv_unified = kv_unified
        if flash_attn is not None:
            params.flash_attn_type = (llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn
                                      else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        if quantised_kv:  # a quantised V cache needs flash attention
            params.type_k = params.type_v = llama_cpp.GGML_TYPE_Q8_0
            params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        params.no_perf = True
        ctx = llama_cpp.llama_init_from_model(model.ptr, params)
        if not ctx:
            layout = f"n_ctx={n_ctx}" if kv_unified else f"{n_seq_max} streams of {n_ctx} tokens"
            raise BackendError(f"llama.cpp could not create a context ({layout}); out of memory?")
        self.ptr = ctx
        self.n_ctx = llama_cpp.llama_n_ctx(ctx)
        self.n_batch = n_batch
        self.n_seq_max = n_seq_max
        self.kv_unified = kv_unified
        self.flash_attn = True if quantised_kv else flash_attn
        self.n_threads = threads
        self.memory = llama_cpp.llama_get_memory(ctx)
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, n_seq_max)
        self._n_vocab = model.n_vocab

    def clear(self) -> None:
        """Forget every sequence in the KV cache."""
        llama_cpp.llama_memory_clear(self.memory, True)

    def seq_remove(self, seq: int, start: int, end: int = -1) -> None:
        """Drop positions [start, end) of ``seq`` (-1: to the end; seq -1: all sequences)."""
        llama_cpp.llama_memory_seq_rm(self.memory, seq, start, end)

    def seq_copy(self, src: int, dst: int, start: int = 0, end: int = -1) -> None:
        """Give ``dst`` positions [start, end) of sequence ``src`` (no recompute); ``dst`` must already hold
        positions [0, start) of the same tokens. A unified cache tags the cells; with one stream per sequence
        llama.cpp can only copy a whole stream (at the next decode): ``dst`` becomes a copy of ``src``, cut at
        ``end``."""
        if self.kv_unified or src == dst:
            llama_cpp.llama_memory_seq_cp(self.memory, src, dst, start, end)
            return
        llama_cpp.llama_memory_seq_cp(self.memory, src, dst, -1, -1)
        if end >= 0:
            llama_cpp.llama_memory_seq_rm(self.memory, dst, end, -1)

    def save_sequence(self, seq: int) -> ctypes.Array[ctypes.c_uint8]:
        """The KV of sequence ``seq`` (its cells' positions, keys and values), for ``restore_sequence``."""
        size = llama_cpp.llama_state_seq_get_size(self.ptr, seq)
        buf: ctypes.Array[ctypes.c_uint8] = (ctypes.c_uint8 * size)()
        llama_cpp.llama_state_seq_get_data(self.ptr, buf, size, seq)
        return buf

    def restore_sequence(self, seq: int, data: ctypes.Array[ctypes.c_uint8]) -> bool:
        """Put back what ``save_sequence`` saved, as sequence ``seq``, in the first run of free cells large enough
        (from the start of the cache when it is mostly free); False if llama.cpp found no room."""
        return bool(llama_cpp.llama_state_seq_set_data(self.ptr, data, len(data), seq))

    def decode(self, items: Sequence[tuple[int, int, int, bool]]) -> None:
        """Decode one batch of ``(token, position, sequence, want_logits)`` items."""
        n = len(items)
        if n == 0:
            return
        if n > self.n_batch:
            raise InvalidArgument(f"batch of {n} tokens exceeds n_batch={self.n_batch}")
        b = self._batch
        for i, (tok, pos, seq, want) in enumerate(items):
            b.token[i] = tok
            b.pos[i] = pos
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = seq
            b.logits[i] = want
        b.n_tokens = n
        rc = llama_cpp.llama_decode(self.ptr, b)
        if rc != 0:
            hint = " (the KV cache is full: raise n_ctx)" if rc == 1 else ""
            raise BackendError(f"llama_decode failed with code {rc}{hint}", retryable=False)

    def decode_sequence(self, tokens: Sequence[int], start_pos: int, seq: int = 0) -> None:
        """Decode ``tokens`` of one sequence in chunks of n_batch; logits only for the last token."""
        last = len(tokens) - 1
        for off in range(0, len(tokens), self.n_batch):
            chunk = tokens[off : off + self.n_batch]
            self.decode([(t, start_pos + off + i, seq, off + i == last) for i, t in enumerate(chunk)])

    def logits(self, index: int = -1) -> NDArray[np.float32]:
        """A zero-copy view of the logits of batch item ``index`` (valid until the next decode)."""
        ptr = llama_cpp.llama_get_logits_ith(self.ptr, index)
        if not ptr:
            raise BackendError(f"llama.cpp returned no logits for batch index {index}")
        return np.ctypeslib.as_array(ptr, shape=(self._n_vocab,))

    def logit_rows(self, index: int, rows: int) -> NDArray[np.float32]:
        """A zero-copy ``(rows, n_vocab)`` view of the logits of batch items ``index`` .. ``index + rows - 1``, which
        must all have asked for logits (llama.cpp keeps the rows of a batch's outputs in batch order)."""
        first = llama_cpp.llama_get_logits_ith(self.ptr, index)
        last = llama_cpp.llama_get_logits_ith(self.ptr, index + rows - 1)
        if not first or not last:
            raise BackendError(f"llama.cpp returned no logits for batch items {index}..{index + rows - 1}")
        if ctypes.addressof(last.contents) - ctypes.addressof(first.contents) != (rows - 1) * self._n_vocab * 4:
            return np.stack([self.logits(index + r) for r in range(rows)])   # not laid out in a row: copied
        return np.ctypeslib.as_array(first, shape=(rows, self._n_vocab))

    def close(self) -> None:
        """Free the batch and the context."""
        if self.ptr:
            llama_cpp.llama_batch_free(self._batch)
            llama_cpp.llama_free(self.ptr)
            self.ptr = None
